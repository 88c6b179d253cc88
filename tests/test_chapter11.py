"""Chapter 11 (the future: scale, efficiency, data quality in 11a; privacy, bias, interpretability in
11b): the notebooks are wired to their checks, the checks' references agree with the libraries, the
results keep their assertions, and each widget's slice of its notebook runs on its own.

tests/test_notebook_wiring.py checks what every chapter shares (seeding, stubs, solutions, tags).
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from labkit import privacy, scaling
from labkit.course.checks import ch11a, ch11b
from labkit.course.exercises import chapter_exercises
from notebook_cells import code_cells as _code_cells, run_widget_slice

REPO = Path(__file__).resolve().parent.parent
A = REPO / "chapters" / "11a_scale_and_efficiency.ipynb"
B = REPO / "chapters" / "11b_privacy_bias_interpretability.ipynb"


def test_the_notebooks_have_exercises_11_1_to_11_7():
    assert [ex.id for ex in chapter_exercises("11a")] == ["11.1", "11.2", "11.3", "11.7"]
    assert [ex.id for ex in chapter_exercises("11b")] == ["11.4", "11.5", "11.6"]
    assert [ex.id for ex in chapter_exercises("11")] == [f"11.{i}" for i in range(1, 8)]


@pytest.mark.parametrize("path", [A, B], ids=["11a", "11b"])
def test_timing_and_widget_cells_are_marked_for_nbval(path):
    for source in _code_cells(path):
        if re.search(r"\binteract\(|perf_counter\(\)", source):
            assert source.splitlines()[0] == "# NBVAL_IGNORE_OUTPUT", source[:120]


def test_11a_result_assertions_keep_their_thresholds():
    a = "\n".join(_code_cells(A))
    assert 'assert loss_law.exponent < 0' in a
    assert 'noise_accuracy[0.0] > 0.9 and noise_accuracy[0.6] < noise_accuracy[0.0]' in a


def test_11b_result_assertions_keep_their_thresholds():
    b = "\n".join(_code_cells(B))
    assert 'exposures[32] > exposures[0] + 3' in b
    assert 'max(probe_results["trained GPT"]) > max(probe_results["random weights (control)"])' in b
    assert 'assert drop_salient > drop_random' in b


def test_fit_reference_equals_numpy():
    for x, y in ch11a._fit_cases():
        a, b = ch11a._reference_fit(x, y)
        slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
        assert b == pytest.approx(slope) and a == pytest.approx(math.exp(intercept))


def test_noisy_labels_reference_changes_exactly_the_rate():
    labels = torch.randint(0, 10, (1000,), generator=torch.Generator().manual_seed(0))
    for rate in (0.0, 0.25, 0.6, 1.0):
        noisy = ch11a._reference_noisy_labels(labels, rate, 10, torch.Generator().manual_seed(1))
        assert int((noisy != labels).sum()) == round(rate * 1000)


def test_noise_ratio_is_the_batch_ratio():
    assert ch11b.noise_ratio(64, 256) == pytest.approx(4.0, rel=0.03)
    assert ch11b.noise_ratio(100, 100) == pytest.approx(1.0, rel=0.03)


def test_exposure_reference_is_labkits():
    for canary, scores in ch11b._exposure_cases():
        rank = 1 + int((scores > canary).sum())
        assert privacy.exposure(canary, scores) == pytest.approx(math.log2(len(scores)) - math.log2(rank))


def test_chinchilla_reference_on_gpt3s_compute():
    n, d = scaling.chinchilla_optimal(6 * 175e9 * 300e9)
    assert 50e9 < n < 60e9 and d == pytest.approx(20 * n)


def test_11b_widget_slice_runs_on_its_own():
    namespace = run_widget_slice(B, with_widget=False)
    plt = namespace["plt"]
    for layer, head in ((0, 0), (namespace["gpt"].config.n_layer - 1, namespace["gpt"].config.n_head - 1)):
        fig, ax = plt.subplots()
        namespace["draw_attention"](ax, layer, head)
    plt.close("all")


@pytest.mark.slow
def test_11a_widget_slice_runs_on_its_own():
    """The sweep's stand-in trains four small GPTs for a fifth of the steps."""
    namespace = run_widget_slice(A, with_widget=False)
    plt = namespace["plt"]
    for budget in (12.0, 24.0):  # the slider's ends
        fig, ax = plt.subplots()
        namespace["draw_scaling"](ax, budget)
    plt.close("all")


def test_11_7_chapter_and_solution_measure_what_the_check_recomputes():
    """The same corruption (60%, a generator seeded 0, the next digit), network (seeded 0) and training
    (2 epochs, lr 1e-3, batch 64, fit's seed 0, on the CPU) as `ch11a.systematic_noise`."""
    solutions = REPO / "solutions" / "11a_scale_and_efficiency_solutions.ipynb"
    for path in (A, solutions):
        cell = next(c for c in _code_cells(path) if c.startswith("committed = prediction"))
        for line in ("torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))[: round(0.6 * len(labels))]",
                     "labels[chosen] = (labels[chosen] + 1) % 10",
                     "torch.manual_seed(0)\nmodel = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))",
                     "epochs=2, lr=1e-3, batch_size=64, seed=0, verbose=False,", 'device="cpu")'):
            assert line in cell, (path.name, line)
    section = next(c for c in _code_cells(A) if "def accuracy_with_noise(rate):" in c)
    assert 'x.float().div(255).flatten(1)' in section and "epochs=2, lr=1e-3, batch_size=64, seed=0" in section


def test_11_7_systematic_noise_is_learned_as_the_next_digit():
    result = ch11a.systematic_noise()
    assert result["right"] < 0.5 < result["next"]
