"""Chapter 08a (where memory and time go): its notebooks are wired to its checks, the checks agree
with labkit and with PyTorch's own GradScaler, and the widget's slice of the notebook runs on its own.

tests/test_notebook_wiring.py checks what every chapter shares (seeding, stubs, solutions, tags).
"""
from __future__ import annotations

import math
import random
import re
from pathlib import Path

import pytest
import torch

from labkit.course.checks import ch08a
from labkit.course.exercises import chapter_exercises, check
from labkit.gpt import GPT, GPTConfig
from labkit.memory import gpt_activation_bytes
from labkit.roofline import attainable_gflops, matmul_intensity
from notebook_cells import code_cells as _code_cells, run_widget_slice

REPO = Path(__file__).resolve().parent.parent
NAME = "08a_memory_and_speed"


CHAPTER = REPO / "chapters" / f"{NAME}.ipynb"
SOLUTIONS = REPO / "solutions" / f"{NAME}_solutions.ipynb"
IDS = [ex.id for ex in chapter_exercises("08a")]


def test_the_notebook_has_exercises_08_1_to_08_4_and_08_16():
    assert IDS == ["08.1", "08.2", "08.3", "08.4", "08.16"]
    assert [ex.id for ex in chapter_exercises("08")][:4] == IDS[:4] and "08.16" in [ex.id for ex in chapter_exercises("08")]


def test_timing_and_widget_cells_are_marked_for_nbval():
    for source in _code_cells(CHAPTER):
        if re.search(r"\binteract\(|perf_counter\(\)", source) or "key_averages().table" in source:
            assert source.splitlines()[0] == "# NBVAL_IGNORE_OUTPUT", source[:120]


def test_the_widget_slice_runs_on_its_own():
    """What the browser test runs: the cells tagged browser-setup, then the widget cell."""
    namespace = run_widget_slice(CHAPTER)
    fig, ax = namespace["plt"].subplots()
    namespace["memory_bars"](ax, batch_size=64, block_size=4096, n_layer=48, n_embd=2048)  # the sliders' far ends
    namespace["plt"].close("all")


def test_result_assertions_keep_their_thresholds():
    source = "\n".join(_code_cells(CHAPTER))
    assert "abs(measured - predicted) <= 0.01 * predicted" in source
    assert "abs(v - formula[part]) <= 0.05 * formula[part]" in source
    assert 'assert fused == memory.gpt_activation_bytes(config, b, t)["total"]' in source
    assert 'assert ckpt_bytes == ckpt_formula["total"]' in source
    assert "assert max(elementwise) < min(big)" in source


# --------------------------------------------------------------------------- the checks agree with labkit and torch


def test_activation_reference_is_labkits_formula_exactly():
    for config, B, T in ch08a._ACTIVATION_CASES:
        assert ch08a._reference_activation_memory(config, B, T) == gpt_activation_bytes(config, B, T)["total"]


def test_roofline_reference_is_labkits_roofline():
    for m, k, n, peak, bandwidth in ch08a._ROOFLINE_CASES:
        want = attainable_gflops(matmul_intensity(m, k, n), peak, bandwidth)
        assert math.isclose(ch08a._reference_predict_gflops(m, k, n, peak, bandwidth), want, rel_tol=1e-12)


@pytest.mark.parametrize("interval", [1, 2, 5])
def test_loss_scale_reference_is_torchs_grad_scaler(interval):
    rng = random.Random(interval)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=interval)
    weight = torch.nn.Parameter(torch.ones(2))
    sgd = torch.optim.SGD([weight], lr=0.0)
    scale, good = 2.0**10, 0
    for step in range(40):
        overflow = rng.random() < 0.3
        sgd.zero_grad()
        scaler.scale((weight * (math.inf if overflow else 1.0)).sum()).backward()
        scaler.step(sgd)
        scaler.update()
        scale, good = ch08a._reference_update_scale(scale, good, overflow, interval)
        assert scaler.get_scale() == scale, f"step {step}"
        assert int(scaler._get_growth_tracker()) == good, f"step {step}"


def test_checkpoint_reference_matches_the_plain_model_and_checkpoint_sequential_keeps_more():
    model, idx, targets = ch08a._checkpoint_case()
    for every in (1, 2, 3, 4):
        torch.testing.assert_close(ch08a._reference_forward_checkpointed(model, idx, every), model(idx), rtol=0, atol=1e-6)
    assert not check("08.2", ch08a._forward_sequential, show=False).passed


def test_the_checkpoint_case_is_a_small_gpt():
    model, idx, _ = ch08a._checkpoint_case()
    assert isinstance(model, GPT) and model.config.n_layer == 4 and idx.shape == (2, 12)
    assert GPTConfig.preset("gpt2").vocab_size == 50257  # 08.1's large-vocabulary case
