"""Chapter 08d (knowledge distillation and a mixture of experts): its notebook is wired to its checks,
the checks' references agree with PyTorch's KLDivLoss and with labkit.moe's layer, and the widget's slice
of the notebook runs on its own.

tests/test_notebook_wiring.py checks what every chapter shares (seeding, stubs, solutions, tags).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labkit import moe
from labkit.course.checks import ch08d
from labkit.course.exercises import chapter_exercises
from labkit.gpt import GPT, GPTConfig
from notebook_cells import code_cells as _code_cells, run_widget_slice

REPO = Path(__file__).resolve().parent.parent
NAME = "08d_distillation_and_experts"
CHAPTER = REPO / "chapters" / f"{NAME}.ipynb"
IDS = [ex.id for ex in chapter_exercises("08d")]


def test_the_notebook_has_exercises_08_12_to_08_15():
    assert IDS == ["08.12", "08.13", "08.14", "08.15"]


def test_timing_and_widget_cells_are_marked_for_nbval():
    for source in _code_cells(CHAPTER):
        if re.search(r"\binteract\(|perf_counter\(\)", source):
            assert source.splitlines()[0] == "# NBVAL_IGNORE_OUTPUT", source[:120]


def test_the_widget_slice_runs_on_its_own():
    """What the browser test runs: the cells tagged browser-setup, then the widget's drawing at the slider's ends."""
    namespace = run_widget_slice(CHAPTER, with_widget=False)   # the notebook's one thread is undone after it
    for temperature in (0.25, 8.0):
        fig, ax = namespace["plt"].subplots()
        namespace["draw_soft_targets"](ax, temperature)
    namespace["plt"].close("all")


def test_result_assertions_keep_their_thresholds():
    source = "\n".join(_code_cells(CHAPTER))
    assert "assert final_distilled < final_labels - 0.03" in source
    assert 'compare("MoE with 1 expert, k = 1 vs the dense MLP", single(x), dense(x), atol=1e-6)' in source
    assert 'compare("Switch loss: labkit.moe.switch_loss vs the formula"' in source
    assert "assert late_without > late_with" in source


# --------------------------------------------------------------------------- the checks agree with the libraries


@pytest.mark.parametrize("case", range(len(ch08d._DISTILL_CASES)))
def test_distill_reference_equals_kldivloss(case):
    n, k, T, alpha = ch08d._DISTILL_CASES[case]
    student, teacher, labels = ch08d._logits(case, n, k)
    kl = nn.KLDivLoss(reduction="batchmean")(F.log_softmax(student / T, 1), F.softmax(teacher / T, 1))
    want = alpha * T * T * kl + (1 - alpha) * F.cross_entropy(student, labels)
    got = ch08d._reference_distill_loss(student, teacher, labels, T, alpha)
    assert got.item() == pytest.approx(want.item(), rel=1e-5)


def test_dropped_reference_equals_the_layers_count():
    torch.manual_seed(0)
    for top_k, factor in ((1, 1.0), (2, 1.0), (2, 1.5), (1, 0.5)):
        layer = moe.MoE(8, n_experts=4, top_k=top_k, capacity_factor=factor)
        x = torch.randn(1, 30, 8)
        with torch.no_grad():
            _, experts, _ = moe.route(layer.router(x[0]), top_k)
            layer(x)
        assert ch08d._reference_dropped_choices(experts, 4, factor) == layer.dropped


@pytest.mark.parametrize("case", ch08d._COUNT_CASES)
def test_parameter_reference_equals_the_models_count(case):
    n_layer, n_embd, vocab_size, block_size, n_experts, top_k = case
    config = GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_head=1, n_embd=n_embd)
    model = moe.use_moe(GPT(config), n_experts, top_k)
    assert ch08d._reference_predicted_parameters(*case) == moe.parameter_counts(model)


def test_08_15_measures_the_chapters_race_model():
    """08.15's check recomputes the share on its own copy of the race's settings: they must be the chapter's."""
    source = "\n".join(_code_cells(CHAPTER))
    match = re.search(r"^RACE = dict\((.*)\)$", source, re.MULTILINE)
    assert match, "the chapter defines RACE = dict(...) on one line"
    settings = dict(item.split("=") for item in match.group(1).replace(" ", "").split(","))
    assert settings.pop("vocab_size") == "V"
    assert {key: int(value) for key, value in settings.items()} == {k: v for k, v in ch08d.RACE.items() if k != "vocab_size"}
    from labkit.checkpoints import load_pretrained

    assert ch08d.RACE["vocab_size"] == load_pretrained("shakespeare_char")[1].vocab_size  # the chapter's V
