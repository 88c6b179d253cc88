"""doctor(), get_device(), seed_everything() and the `python -m labkit` command line."""
from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
import sys

import pytest
import torch

import labkit
from labkit import device as device_module, machine
from labkit.device import device_reason, get_device

doctor_module = importlib.import_module("labkit.readiness")


def test_doctor_reports_everything_a_learner_needs():
    report = labkit.doctor(seconds=0.1)
    text = str(report)
    for needed in ("Python", "torch", "torchvision", "jupyterlab", "device", "CPU threads", "matmul speed", "dataset mnist",
                   "dataset fashion_mnist"):
        assert needed in text, needed
    assert report.ok, text
    assert report.gflops["float32"] > 1  # a real measurement, not a placeholder
    assert "<table>" in report._repr_html_()


def test_matmul_measurement_counts_flops():
    machine._MEASURED.clear()
    gflops = machine.matmul_gflops("cpu", torch.float32, size=256, seconds=0.05)
    assert 0.01 < gflops < 100_000  # a positive, finite measurement: under a load of 14 here it read 0.49


def test_a_product_slower_than_a_window_is_measured_once(monkeypatch):
    """A slow dtype (bf16 without bf16 instructions: seconds per product) is timed by one product
    after the warm-up, not a dozen: here every product takes longer than the whole budget."""
    machine._MEASURED.clear()
    calls = []
    real = torch.Tensor.__matmul__
    monkeypatch.setattr(torch.Tensor, "__matmul__", lambda a, b: calls.append(1) or real(a, b))
    gflops = machine.matmul_gflops("cpu", torch.float32, size=64, seconds=1e-9)
    assert len(calls) == 2 and gflops > 0  # the warm-up and the measured product


def test_measurements_are_cached_per_size():
    machine._MEASURED.clear()
    machine.matmul_gflops("cpu", torch.float32, size=64, seconds=0.01)
    machine.matmul_gflops("cpu", torch.float32, size=128, seconds=0.01)
    assert set(machine._MEASURED) == {("cpu", "torch.float32", 64), ("cpu", "torch.float32", 128)}


@pytest.mark.parametrize(("fp32", "bf16", "expected"), [
    (150.0, 350.0, torch.bfloat16),   # a CPU with AVX-512 BF16: bf16 about 2.3x
    (175.0, 1.2, torch.float32),      # a CPU without bf16 instructions (measured here: 175 and 1.2 GFLOP/s)
    (100.0, 110.0, torch.float32),    # within the margin: not worth the rounding
])
def test_fastest_dtype_takes_bf16_only_where_it_measures_faster(monkeypatch, fp32, bf16, expected):
    rates = {torch.float32: fp32, torch.bfloat16: bf16}
    monkeypatch.setattr(machine, "matmul_gflops", lambda device, dtype, **kw: rates[dtype])
    assert machine.fastest_dtype("cpu") == expected


def test_fastest_dtype_measures_nothing_where_bf16_is_unsupported(monkeypatch):
    def no_measuring(*args, **kwargs):
        raise AssertionError("measured a device without bf16")
    monkeypatch.setattr(machine, "matmul_gflops", no_measuring)
    monkeypatch.setattr(device_module, "supports_bf16", lambda device: False)
    assert machine.fastest_dtype("cpu") == torch.float32


def test_dtype_rates_are_the_measurements_fastest_dtype_compares():
    machine._MEASURED.clear()
    rates = machine.dtype_rates("cpu", size=64)
    assert set(rates) == {torch.float32, torch.bfloat16} and all(r > 0 for r in rates.values())
    machine.fastest_dtype("cpu", size=64)
    assert machine.dtype_rates("cpu", size=64) == rates  # cached: the same numbers a chapter prints


def test_fastest_dtype_on_this_machine_is_a_float_dtype():
    assert labkit.fastest_dtype() in (torch.float32, torch.bfloat16)


def test_a_missing_package_is_a_failed_check_with_a_fix(monkeypatch):
    monkeypatch.setattr(doctor_module, "_required_packages", lambda: ["torch>=2.0", "surely-not-installed-pkg>=1"])
    report = labkit.doctor(benchmark=False)
    assert not report.ok
    (problem,) = [c for c in report.problems if c.name == "surely-not-installed-pkg"]
    assert "not installed" in problem.detail and "make lab" in problem.fix
    assert "✗ surely-not-installed-pkg" in str(report) and "fix: run `make lab`" in str(report)


def test_a_too_old_package_is_reported_with_the_needed_range(monkeypatch):
    monkeypatch.setattr(doctor_module, "_required_packages", lambda: ["torch>=99"])
    report = labkit.doctor(benchmark=False)
    installed = importlib.metadata.version("torch")
    assert [c.detail for c in report.problems if c.name == "torch"] == [f"{installed} (needs >=99)"]


def test_a_damaged_dataset_makes_doctor_fail(monkeypatch):
    missing = "datasets/MNIST/raw/x is missing\nrebuild it with `python datasets/build.py mnist`"
    monkeypatch.setattr("labkit.data.dataset_status", lambda: [("mnist", False, missing)])
    report = labkit.doctor(benchmark=False)
    (problem,) = report.problems
    assert problem.name == "dataset mnist" and "python datasets/build.py mnist" in problem.fix


def test_get_device_on_this_machine_and_forced():
    device, why = device_reason()
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert device.type == expected and why
    assert get_device("cpu") == torch.device("cpu")


def test_asking_for_a_missing_gpu_says_so(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="sees no CUDA GPU"):
        get_device("cuda")
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        get_device("gpu")
    monkeypatch.setenv("LABKIT_DEVICE", "cpu")
    assert device_reason()[1] == "asked for 'cpu'"


def test_seed_everything_repeats_torch_numpy_and_random():
    import random

    import numpy as np

    draws = []
    for _ in range(2):
        labkit.seed_everything(7)
        draws.append((torch.randn(3).tolist(), np.random.rand(2).tolist(), random.random()))
    assert draws[0] == draws[1]
    with pytest.raises(ValueError, match="seed must be a whole number >= 0, got -1"):
        labkit.seed_everything(-1)


def test_command_line_doctor_prints_the_report_and_exits_zero():
    result = subprocess.run([sys.executable, "-m", "labkit", "doctor", "--no-benchmark"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "labkit doctor" in result.stdout and "ready for the course" in result.stdout


def test_public_names_all_resolve():
    for name in labkit.__all__:
        assert getattr(labkit, name) is not None, name
    with pytest.raises(AttributeError):
        labkit.no_such_thing  # noqa: B018  reading the attribute is what must raise
