"""Tests for labkit.estimates (6·N·D, training time, training memory, readable units) and for the
table of well-known models it is checked against (datasets/large_models, labkit.data.load_table)."""
from __future__ import annotations

import doctest
import math
from pathlib import Path

import pytest

from labkit import data, estimates
from labkit.estimates import (
    REFERENCE_ACCELERATORS,
    format_bytes,
    format_count,
    format_duration,
    training_flops,
    training_memory_bytes,
    training_time_seconds,
)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def real_data_dir(monkeypatch):
    """Every test reads the repository's datasets/, whatever the caller's environment says."""
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(data, "DATA_DIR", REPO / "datasets")


# --------------------------------------------------------------------------- training_flops


def test_training_flops_gpt3_by_hand():
    # 175e9 parameters × 300e9 tokens × 6 = 3.15e23 (GPT-3's paper publishes 3.14e23)
    assert training_flops(175e9, 300e9) == pytest.approx(3.15e23, rel=1e-12)


def test_training_flops_small_numbers_and_linearity():
    assert training_flops(1, 1) == 6
    assert training_flops(1000, 20) == 120_000
    assert training_flops(2e6, 5e6) == 2 * training_flops(1e6, 5e6) == 2 * training_flops(2e6, 2.5e6)


@pytest.mark.parametrize("params, tokens, bad", [(-1, 10, "params"), (10, 0, "tokens"), (math.nan, 1, "params"),
                                                 (1, math.inf, "tokens")])
def test_training_flops_rejects_impossible_sizes(params, tokens, bad):
    with pytest.raises(ValueError, match=f"{bad} must be a finite number > 0, got"):
        training_flops(params, tokens)


def test_training_flops_rejects_non_numbers():
    with pytest.raises(TypeError, match="params must be a number, got str '7B'"):
        training_flops("7B", 1e12)
    with pytest.raises(TypeError, match="got bool"):
        training_flops(True, 1e12)


# --------------------------------------------------------------------------- training_time_seconds


def test_training_time_by_hand():
    # 1e18 FLOP at 100 GFLOP/s, half of it achieved: 1e18 / (1e11 × 0.5) = 2e7 s ≈ 231 days
    assert training_time_seconds(1e18, 100, utilisation=0.5) == pytest.approx(2e7)
    assert training_time_seconds(1e18, 100) == pytest.approx(1e18 / (1e11 * 0.4))  # default 40 %
    assert training_time_seconds(0, 100) == 0


def test_training_time_scales_inversely_with_speed_and_utilisation():
    base = training_time_seconds(3.15e23, 312e3, 0.4)
    assert training_time_seconds(3.15e23, 2 * 312e3, 0.4) == pytest.approx(base / 2)
    assert training_time_seconds(3.15e23, 312e3, 0.8) == pytest.approx(base / 2)


@pytest.mark.parametrize("kwargs, match", [
    (dict(flops=1e9, gflops_per_s=0), "gflops_per_s must be a finite number > 0, got 0"),
    (dict(flops=-1, gflops_per_s=1), "flops must be a finite number >= 0, got -1"),
    (dict(flops=1e9, gflops_per_s=1, utilisation=40), r"between 0 and 1, got 40 \(for 40 % pass 0.4\)"),
    (dict(flops=1e9, gflops_per_s=1, utilisation=0), "utilisation must be a finite number > 0"),
])
def test_training_time_errors_say_what_to_pass(kwargs, match):
    with pytest.raises(ValueError, match=match):
        training_time_seconds(**kwargs)


# --------------------------------------------------------------------------- training_memory_bytes


def test_memory_fp32_adam_is_16_bytes_per_parameter():
    parts = training_memory_bytes(1e9, "fp32", "adam")
    assert parts == {"weights": 4e9, "gradients": 4e9, "master_weights": 0.0, "optimizer_state": 8e9, "total": 16e9}


def test_memory_mixed_bf16_adam_keeps_an_fp32_master_copy():
    parts = training_memory_bytes(1e9, "bf16", "adam")
    assert parts == {"weights": 2e9, "gradients": 2e9, "master_weights": 4e9, "optimizer_state": 8e9, "total": 16e9}


@pytest.mark.parametrize("dtype, optimizer, per_param", [
    ("fp32", "sgd", 8), ("fp32", "momentum", 12), ("bf16", "sgd", 8), ("bf16", "momentum", 12), ("bf16", "adam", 16),
])
def test_memory_per_parameter_for_each_optimizer(dtype, optimizer, per_param):
    parts = training_memory_bytes(7e9, dtype, optimizer)
    assert parts["total"] == pytest.approx(per_param * 7e9)
    assert parts["total"] == pytest.approx(sum(v for k, v in parts.items() if k != "total"))


def test_memory_llama_7b_in_gib():
    # 7e9 × 16 bytes = 1.12e11 bytes = 104.3 GiB: more than one 80 GiB H100 holds, before any activation
    assert training_memory_bytes(7e9)["total"] / 2**30 == pytest.approx(104.3, abs=0.05)


def test_memory_rejects_unknown_formats_and_optimizers():
    with pytest.raises(ValueError, match="dtype must be one of 'fp32', 'bf16', got 'fp16'"):
        training_memory_bytes(1e6, "fp16")
    with pytest.raises(ValueError, match="optimizer must be one of 'sgd', 'momentum', 'adam', got 'adamw'"):
        training_memory_bytes(1e6, "fp32", "adamw")
    with pytest.raises(ValueError, match="params must be"):
        training_memory_bytes(0)


# --------------------------------------------------------------------------- accelerators


def test_reference_accelerators_are_labelled_data():
    names = [acc.name for acc in REFERENCE_ACCELERATORS]
    assert {"NVIDIA V100", "NVIDIA A100", "NVIDIA H100"} <= set(names) and len(set(names)) == len(names)
    for acc in REFERENCE_ACCELERATORS:
        assert 50 < acc.peak_tflops < 5000 and acc.memory_gib > 0 and 2015 <= acc.year <= 2030
        assert acc.source.strip() and acc.precision.strip()
        assert acc.gflops_per_s == pytest.approx(acc.peak_tflops * 1000)


def test_h100_peak_is_the_dense_half_of_the_sparse_datasheet_figure():
    h100 = next(acc for acc in REFERENCE_ACCELERATORS if acc.name == "NVIDIA H100")
    assert h100.peak_tflops == pytest.approx(1979 / 2, rel=1e-3)


# --------------------------------------------------------------------------- readable units


@pytest.mark.parametrize("seconds, text", [
    (0, "0 seconds"), (0.0042, "4.2 ms"), (2e-6, "2.0 µs"), (1, "1.0 second"), (45, "45 seconds"),
    (90 * 60, "1.5 hours"), (86_400, "1.0 day"), (3.2 * 86_400, "3.2 days"), (41 * 365.25 * 86_400, "41 years"),
    (1234.4 * 365.25 * 86_400, "1,234 years"), (2.7e6 * 365.25 * 86_400, "2.7 million years"),
    (13.8e9 * 365.25 * 86_400, "14 billion years"),
])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_format_duration_gpt3_on_a_laptop_cpu():
    # 3.15e23 FLOP / (140e9 FLOP/s × 0.4) = 5.625e12 s = 178,245 years
    assert format_duration(training_time_seconds(training_flops(175e9, 300e9), 140)) == "178,245 years"


@pytest.mark.parametrize("n_bytes, text", [(0, "0 bytes"), (512, "512 bytes"), (2048, "2.0 KiB"),
                                           (16 * 7e9, "104 GiB"), (80 * 2**30, "80 GiB"), (2.8e12, "2.5 TiB")])
def test_format_bytes(n_bytes, text):
    assert format_bytes(n_bytes) == text


@pytest.mark.parametrize("n, text", [(0, "0"), (7, "7"), (60_000, "60K"), (117e6, "117M"), (1.542e9, "1.54B"),
                                     (6.7e9, "6.7B"), (15.6e12, "15.6T"), (999.9e6, "1B"), (2e15, "2,000T")])
def test_format_count(n, text):
    assert format_count(n) == text


def test_format_rejects_negative():
    with pytest.raises(ValueError, match="seconds must be"):
        format_duration(-1)
    with pytest.raises(ValueError, match="n_bytes must be"):
        format_bytes(-1)
    with pytest.raises(ValueError, match="n must be"):
        format_count(-1)


def test_module_docstring_examples_run():
    result = doctest.testmod(estimates)
    assert result.attempted >= 3 and result.failed == 0


# --------------------------------------------------------------------------- the table of large models


@pytest.fixture(scope="module")
def rows():
    return data.load_table("large_models")


def test_table_columns_types_and_order(rows):
    assert 12 <= len(rows) <= 20
    assert list(rows[0]) == ["name", "year", "organisation", "domain", "parameters", "training_tokens",
                             "training_flop", "flop_kind", "accelerator", "accelerator_hours", "source", "note"]
    assert [r["year"] for r in rows] == sorted(r["year"] for r in rows)
    assert len({r["name"] for r in rows}) == len(rows)
    for r in rows:
        assert isinstance(r["year"], int) and isinstance(r["parameters"], int) and r["parameters"] > 0, r["name"]
        assert r["source"] and r["organisation"], r["name"]
        assert r["flop_kind"] in ("published", "estimated", None), r["name"]
        assert (r["flop_kind"] is None) == (r["training_flop"] is None), r["name"]


def test_table_has_the_landmarks_and_ends_with_this_course(rows):
    names = {r["name"] for r in rows}
    assert {"LeNet-5", "AlexNet", "BERT-base", "BERT-large", "GPT-2", "GPT-3", "Chinchilla", "PaLM", "LLaMA 7B"} <= names
    assert rows[-1]["organisation"] == "this course" and "this course" in rows[-1]["note"]
    gpt3 = next(r for r in rows if r["name"] == "GPT-3")
    assert (gpt3["parameters"], gpt3["training_tokens"], gpt3["training_flop"]) == (175e9, 300e9, 3.14e23)


def test_estimated_rows_are_exactly_six_n_d(rows):
    for r in rows:
        if r["flop_kind"] == "estimated":
            expected = training_flops(r["parameters"], r["training_tokens"])
            assert r["training_flop"] == pytest.approx(expected, rel=5e-3), r["name"]  # 3 significant digits


def test_six_n_d_is_within_five_percent_of_every_published_figure_with_tokens(rows):
    checked = [r for r in rows if r["flop_kind"] == "published" and r["training_tokens"]]
    assert len(checked) >= 3
    for r in checked:
        ratio = training_flops(r["parameters"], r["training_tokens"]) / r["training_flop"]
        assert 0.95 < ratio < 1.05, f"{r['name']}: 6·N·D / published = {ratio:.3f}"


def test_gpu_hours_imply_a_plausible_utilisation(rows):
    """6·N·D over (GPU-hours × A100 peak) should land near the 40 % that large runs report: a typo check."""
    a100 = next(acc for acc in REFERENCE_ACCELERATORS if acc.name == "NVIDIA A100")
    with_hours = [r for r in rows if r["accelerator_hours"]]
    assert with_hours
    for r in with_hours:
        assert r["accelerator"] == "NVIDIA A100-80GB"
        utilisation = r["training_flop"] / (r["accelerator_hours"] * 3600 * a100.gflops_per_s * 1e9)
        assert 0.3 < utilisation < 0.6, f"{r['name']}: implied utilisation {utilisation:.2f}"


def test_shipped_csv_is_what_build_py_writes(build_script, tmp_path):
    written = build_script.build_large_models(tmp_path, tmp_path)
    assert written == ["large_models/large_models.csv"]
    assert (tmp_path / written[0]).read_bytes() == (REPO / "datasets" / written[0]).read_bytes()
    assert (tmp_path / written[0]).read_bytes().decode("utf-8")  # UTF-8 text


def test_build_refuses_a_bad_row(build_script, monkeypatch):
    bad = [*build_script.LARGE_MODELS, dict(name="Oops", year=1990, organisation="x", parameters=1, source="y")]
    monkeypatch.setattr(build_script, "LARGE_MODELS", bad)
    with pytest.raises(SystemExit, match="order of year"):
        build_script.large_models_rows()
    monkeypatch.setattr(build_script, "LARGE_MODELS", [dict(name="Oops", year=2000, organisation="x",
                                                            parameters=-5, source="y")])
    with pytest.raises(SystemExit, match="parameters must be > 0"):
        build_script.large_models_rows()


def test_load_table_converts_cells_and_refuses_image_sets(rows):
    lenet = rows[0]
    assert lenet["name"] == "LeNet-5" and lenet["training_tokens"] is None and lenet["training_flop"] is None
    assert isinstance(next(r for r in rows if r["name"] == "GPT-3")["training_flop"], float)
    with pytest.raises(ValueError, match="'mnist' is not a table .*tables: large_models"):
        data.load_table("mnist")
    with pytest.raises(ValueError, match="unknown dataset 'gpt4'"):
        data.load_table("gpt4")


def test_load_table_checks_the_checksum_first(tmp_path, monkeypatch):
    (tmp_path / "large_models").mkdir()
    shipped = (REPO / "datasets" / "large_models" / "large_models.csv").read_text(encoding="utf-8")
    (tmp_path / "large_models" / "large_models.csv").write_text(shipped.replace("175000000000", "175000000001"),
                                                                  encoding="utf-8")
    (tmp_path / "SHA256SUMS").write_text((REPO / "datasets" / "SHA256SUMS").read_text())
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    with pytest.raises(data.DatasetError, match="wrong checksum"):
        data.load_table("large_models")
