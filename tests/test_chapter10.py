"""Chapter 10 (tools): the chapter's checks accept their reference answers and reject plausible wrong
ones; the predict-measure-explain exercise measures what its options claim; the widget slice runs on
its own; the notebook's result assertions keep their thresholds.

labkit.export, labkit.glove and labkit.tracking have their own tests (test_export, test_glove,
test_tracking); tests/test_notebook_wiring.py checks what every chapter shares.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from labkit.course.checks import ch10
from labkit.course.exercises import chapter_exercises, check
from notebook_cells import code_cells as _code_cells, run_widget_slice

REPO = Path(__file__).resolve().parent.parent
CHAPTER = REPO / "chapters" / "10_tools.ipynb"
IDS = [ex.id for ex in chapter_exercises("10")]


def test_the_chapter_has_exercises_10_1_to_10_5():
    assert IDS == ["10.1", "10.2", "10.3", "10.4", "10.5"]


@pytest.mark.parametrize("exercise_id", ["10.1", "10.2", "10.3", "10.4", "10.5"])
def test_each_check_passes_the_reference_and_fails_the_stub_and_every_wrong_answer(exercise_id):
    exercise = next(ex for ex in chapter_exercises("10") if ex.id == exercise_id)
    assert check(exercise_id, exercise.reference(), show=False).passed
    assert not check(exercise_id, exercise.stub(), show=False).passed
    assert exercise.wrong, f"{exercise_id} has no wrong answers to test its check with"
    for wrong in exercise.wrong:
        result = check(exercise_id, wrong(), show=False)
        assert not result.passed, f"{exercise_id} accepted a wrong answer: {result.message}"


def test_10_1_measures_centuries_from_the_shipped_checkpoints_record():
    flops = ch10.laptop_flops_per_second("base_bpe")
    assert 5e10 < flops < 5e11                      # the 2-core CPU's sustained training rate
    years = ch10.laptop_years_for_smollm2()
    assert 100 < years < 3000
    assert ch10.LAPTOP.predicted(years) == "c" and ch10.LAPTOP.explained(years) == "a"
    for option in ch10.LAPTOP.predictions:           # a wrong prediction, explained, passes
        assert check("10.1", ch10.LAPTOP.answer(committed=option, prediction=option), show=False).passed


def test_10_4_and_10_2_hints_name_the_mistake():
    untransposed = check("10.4", lambda sd: {k: v for k, v in sd.items() if k != "lm_head.weight"}, show=False)
    assert "not transposed" in untransposed.message
    weighted = check("10.2", lambda ids, V, w: ch10._cooc(ids, V, w, weighted=True), show=False)
    assert "not 1/distance" in weighted.message


@pytest.mark.slow  # counts the English co-occurrences (a few seconds)
def test_the_widget_slice_runs_on_its_own():
    """What the browser test runs: the cells tagged browser-setup, then the widget's drawing at the sliders' ends."""
    namespace = run_widget_slice(CHAPTER)  # the widget cell defines show_weighting and draws it once
    for alpha, x_max in ((0.0, 5), (1.5, 500), (0.75, 100)):
        namespace["show_weighting"](alpha, x_max)
    namespace["plt"].close("all")


def test_timing_and_widget_cells_are_marked_for_nbval():
    for source in _code_cells(CHAPTER):
        if re.search(r"\binteract\(|perf_counter\(\)|time_call\(", source):
            assert source.splitlines()[0] == "# NBVAL_IGNORE_OUTPUT", source[:120]


def test_result_assertions_keep_their_thresholds():
    source = "\n".join(_code_cells(CHAPTER))
    assert 'assert keras_run["parameters"] == torch_run["parameters"]' in source
    assert 'assert abs(keras_run["accuracy"] - torch_run["accuracy"]) < 0.03, name' in source
    assert "assert probe_accuracy > majority + 0.02" in source
    assert "english.losses[-1] < 0.1 * english.losses[0]" in source
    assert 'overlap.loc["GloVe (ours, 0.4M words)", "SmolLM2 embedding"] > 3 * chance' in source
    assert "assert gap < 1e-4" in source and "assert onnx_gap < 1e-4" in source
    assert 'assert np.allclose([v for _, v in logged["char_gpt"]["history/val_loss"]], lm_history["val_loss"], rtol=1e-6)' in source
