"""Chapter 08c (pruning and quantization): its notebooks are wired to its checks,
the checks' references agree with torch.nn.utils.prune, PyTorch's int8 and gguf's Q4_1, and the
widget's slice of the notebook runs on its own.

tests/test_notebook_wiring.py checks what every chapter shares (seeding, stubs, solutions, tags).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from gguf import GGMLQuantizationType, quants
from torch import nn
from torch.nn.utils import prune

from labkit.course.checks import ch08c
from labkit.course.exercises import chapter_exercises
from notebook_cells import code_cells as _code_cells, run_widget_slice

REPO = Path(__file__).resolve().parent.parent
NAME = "08c_pruning_and_quantization"
CHAPTER = REPO / "chapters" / f"{NAME}.ipynb"
SOLUTIONS = REPO / "solutions" / f"{NAME}_solutions.ipynb"
IDS = [ex.id for ex in chapter_exercises("08c")]


def test_the_notebook_has_exercises_08_8_to_08_11():
    assert IDS == ["08.8", "08.9", "08.10", "08.11"]


def test_timing_and_widget_cells_are_marked_for_nbval():
    for source in _code_cells(CHAPTER):
        if re.search(r"\binteract\(|perf_counter\(\)", source):
            assert source.splitlines()[0] == "# NBVAL_IGNORE_OUTPUT", source[:120]


def test_the_widget_slice_runs_on_its_own():
    """What the browser test runs: the cells tagged browser-setup, then the widget's drawing at the ends."""
    namespace = run_widget_slice(CHAPTER, with_widget=False)
    for percent, method in ((0, "unstructured"), (95, "structured")):          # the slider's ends
        loss = namespace["val_loss"](namespace["pruned_gpt"](namespace["gpt"], percent / 100, method == "structured"))
        fig, ax = namespace["plt"].subplots()
        namespace["draw_curves"](ax, namespace["gpt_curves"], "loss", chosen=(method, percent, loss))
    namespace["plt"].close("all")


def test_result_assertions_keep_their_thresholds():
    source = "\n".join(_code_cells(CHAPTER))
    assert 'cnn_curves["unstructured"][half] >= dense_accuracy - 0.01' in source
    assert 'speed["structured 50 % (2048 × 1024)"] < 0.8 * dense_ms' in source
    assert 'abs(ratio["q4_1"] - 1) < 1e-3' in source
    assert 'abs(ratio["int8"] - 1) < 0.03' in source
    assert "Q4_1 again = the file's bytes" in source


# --------------------------------------------------------------------------- the checks agree with the libraries


def test_mask_reference_is_prunes_mask():
    for seed, (shape, amount) in enumerate(ch08c._MASK_CASES):
        weight = ch08c._weights(seed, shape)
        layer = nn.Linear(1, 1)
        layer.weight = nn.Parameter(weight.clone())
        prune.l1_unstructured(layer, "weight", amount=amount)
        assert torch.equal(ch08c._reference_magnitude_mask(weight, amount), layer.weight_mask)


def test_int8_reference_equals_pytorchs_integers():
    for seed, shape in enumerate(ch08c._INT8_SHAPES):
        weight = ch08c._weights(100 + seed, shape)
        layer = nn.Sequential(nn.Linear(shape[1], shape[0]))
        layer[0].weight = nn.Parameter(weight.clone())
        dynamic = torch.ao.quantization.quantize_dynamic(
            layer, {nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}, dtype=torch.qint8)
        q, _ = ch08c._reference_quantize_int8(weight)
        assert torch.equal(dynamic[0]._packed_params._weight_bias()[0].int_repr(), q)


def test_q4_1_reference_equals_gguf():
    for seed, shape in enumerate(ch08c._Q4_SHAPES):
        weight = ch08c._weights(200 + seed, shape)
        theirs = quants.dequantize(quants.quantize(weight.numpy(), GGMLQuantizationType.Q4_1), GGMLQuantizationType.Q4_1)
        assert np.array_equal(ch08c._reference_q4_1_round_trip(weight).numpy(), theirs)
