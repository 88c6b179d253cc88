"""Chapter 12 (the FAQ): labkit.metrics' ROC curve, AUC, k-fold splits and accuracy interval equal
scikit-learn's and SciPy's; the chapter's checks reject plausible wrong answers; the notebook's
widget slice runs on its own; its result assertions keep their thresholds.

tests/test_notebook_wiring.py checks what every chapter shares (seeding, stubs, solutions, tags).
scikit-learn and SciPy are test dependencies only (pyproject's `test` extra), so the comparison with
them lives here and not in the notebook.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from labkit.course.checks import ch12
from labkit.course.exercises import chapter_exercises, check
from labkit.metrics import accuracy_interval, auc, kfold_indices, roc_auc, roc_curve
from notebook_cells import code_cells as _code_cells, run_widget_slice

sklearn_metrics = pytest.importorskip("sklearn.metrics")
model_selection = pytest.importorskip("sklearn.model_selection")
scipy_stats = pytest.importorskip("scipy.stats")

REPO = Path(__file__).resolve().parent.parent
NAME = "12_faq"
CHAPTER = REPO / "chapters" / f"{NAME}.ipynb"
IDS = [ex.id for ex in chapter_exercises("12")]


def _random_scores(seed: int, n: int = 60, levels: int | None = 7) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, 2, (n,), generator=g)
    targets[:2] = torch.tensor([0, 1])
    scores = torch.randint(0, levels, (n,), generator=g).double() if levels else torch.randn(n, generator=g).double()
    return targets, scores + targets                                 # positives tend to score higher


# --------------------------------------------------------------------------- labkit.metrics = scikit-learn / SciPy


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("levels", [3, 7, None])                       # many ties, some, none
def test_roc_curve_equals_scikit_learns(seed, levels):
    targets, scores = _random_scores(seed, levels=levels)
    fpr, tpr, thresholds = roc_curve(targets, scores)
    their_fpr, their_tpr, their_thresholds = sklearn_metrics.roc_curve(targets.numpy(), scores.numpy(),
                                                                       drop_intermediate=False)
    np.testing.assert_allclose(fpr.numpy(), their_fpr, rtol=0, atol=1e-15)
    np.testing.assert_allclose(tpr.numpy(), their_tpr, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(thresholds.numpy(), their_thresholds)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("levels", [2, 7, None])
def test_roc_auc_and_auc_equal_scikit_learns(seed, levels):
    targets, scores = _random_scores(seed, levels=levels)
    assert roc_auc(targets, scores) == pytest.approx(sklearn_metrics.roc_auc_score(targets.numpy(), scores.numpy()), abs=1e-12)
    x, y = torch.rand(9, generator=torch.Generator().manual_seed(seed)).sort().values, torch.rand(9).double()
    assert auc(x, y) == pytest.approx(sklearn_metrics.auc(x.numpy(), y.numpy()), abs=1e-12)
    assert auc(x.flip(0), y.flip(0)) == pytest.approx(sklearn_metrics.auc(x.flip(0).numpy(), y.flip(0).numpy()), abs=1e-12)


def test_roc_auc_is_the_share_of_pairs_ranked_right():
    targets, scores = _random_scores(0, levels=4)
    assert roc_auc(targets, scores) == pytest.approx(ch12._reference_auc_by_pairs(targets, scores), abs=1e-12)


@pytest.mark.parametrize("n, k", [(10, 2), (11, 3), (23, 5), (7, 7), (100, 10)])
def test_kfold_indices_equal_scikit_learns_kfold(n, k):
    ours = kfold_indices(n, k)
    theirs = list(model_selection.KFold(n_splits=k).split(np.arange(n)))
    assert len(ours) == len(theirs) == k
    for (train, val), (their_train, their_val) in zip(ours, theirs):
        assert train.tolist() == their_train.tolist() and val.tolist() == their_val.tolist()


def test_shuffled_kfold_validates_every_sample_once_and_repeats_with_its_seed():
    splits = kfold_indices(23, 4, shuffle=True, seed=3)
    validated = torch.cat([val for _, val in splits]).sort().values
    assert torch.equal(validated, torch.arange(23))
    assert all(len(set(train.tolist()) & set(val.tolist())) == 0 and len(train) + len(val) == 23 for train, val in splits)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(splits, kfold_indices(23, 4, shuffle=True, seed=3)))
    assert not torch.equal(splits[0][1], kfold_indices(23, 4)[0][1])


@pytest.mark.parametrize("correct, total", [(0, 10), (7, 10), (10, 10), (812, 1000), (1, 3)])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_accuracy_interval_equals_scipys_wilson_interval(correct, total, confidence):
    theirs = scipy_stats.binomtest(correct, total).proportion_ci(confidence_level=confidence, method="wilson")
    low, high = accuracy_interval(correct, total, confidence)
    assert low == pytest.approx(theirs.low, abs=1e-12) and high == pytest.approx(theirs.high, abs=1e-12)


@pytest.mark.parametrize("call, words", [
    (lambda: roc_curve(torch.tensor([0, 1, 2]), torch.rand(3)), "targets must be 0"),
    (lambda: roc_curve(torch.tensor([1, 1, 1]), torch.rand(3)), "only the class"),
    (lambda: roc_curve(torch.tensor([0, 1]), torch.rand(3)), "same length"),
    (lambda: roc_curve(torch.tensor([0, 1]), torch.rand(2, 2)), "1-D"),
    (lambda: roc_curve(torch.tensor([0, 1]), torch.tensor([0.5, float("nan")])), "NaN"),
    (lambda: auc(torch.tensor([0.0, 1.0, 0.5]), torch.tensor([0.0, 1.0, 1.0])), "increasing or decreasing"),
    (lambda: kfold_indices(10, 1), "k (the number of folds)"),
    (lambda: kfold_indices(3, 5), "n (the number of samples)"),
    (lambda: accuracy_interval(11, 10), "correct must be"),
    (lambda: accuracy_interval(5, 10, confidence=95), "confidence must be"),
])
def test_bad_input_gets_a_clear_error(call, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        call()


# --------------------------------------------------------------------------- the checks


def test_the_chapter_has_exercises_12_1_to_12_3():
    assert IDS == ["12.1", "12.2", "12.3"]


@pytest.mark.parametrize("exercise_id", ["12.1", "12.2", "12.3"])
def test_each_check_passes_the_reference_and_fails_the_stub_and_every_wrong_answer(exercise_id):
    exercise = next(ex for ex in chapter_exercises("12") if ex.id == exercise_id)
    assert check(exercise_id, exercise.reference(), show=False).passed
    assert not check(exercise_id, exercise.stub(), show=False).passed
    assert exercise.wrong, f"{exercise_id} has no wrong answers to test its check with"
    for wrong in exercise.wrong:
        result = check(exercise_id, wrong(), show=False)
        assert not result.passed, f"{exercise_id} accepted a wrong answer: {result.message}"


def test_12_1_a_wrong_prediction_explained_passes_and_a_changed_one_fails():
    pme = ch12.TEST_ONCE
    for option in pme.predictions:
        assert check("12.1", pme.answer(committed=option, prediction=option), show=False).passed
    assert not check("12.1", pme.answer(committed="a", prediction="b"), show=False).passed


def test_12_1_measures_a_lucky_winner_that_is_a_coin_flip_on_fresh_data():
    test_score, fresh_score = ch12.best_guesser_accuracies()
    assert test_score >= 0.58 and abs(fresh_score - 0.5) < 0.03
    assert ch12.TEST_ONCE.predicted(fresh_score) == "b" and ch12.TEST_ONCE.explained(fresh_score) == "a"


def test_12_3_hints_name_the_mistake():
    targets, scores = ch12._scores_with_ties(5)
    swapped = check("12.3", lambda t, s, th: ch12._reference_scores_at(t, s, th)[1::-1]
                    + (ch12._reference_scores_at(t, s, th)[2],), show=False)
    assert "swapped" in swapped.message
    strict = check("12.3", lambda t, s, th: ch12._reference_scores_at(t, s, th + 1e-9), show=False)
    assert ">=" in strict.message


# --------------------------------------------------------------------------- the notebook


def test_the_widget_slice_runs_on_its_own():
    """What the browser test runs: the cells tagged browser-setup, then the widget's drawing at the slider's ends."""
    namespace = run_widget_slice(CHAPTER, with_widget=False)
    for threshold in (0.02, 0.5, 0.98):
        namespace["show_threshold"](threshold)
    namespace["plt"].close("all")


def test_timing_and_widget_cells_are_marked_for_nbval():
    for source in _code_cells(CHAPTER):
        if re.search(r"\binteract\(|perf_counter\(\)", source):
            assert source.splitlines()[0] == "# NBVAL_IGNORE_OUTPUT", source[:120]


def test_result_assertions_keep_their_thresholds():
    source = "\n".join(_code_cells(CHAPTER))
    assert 'architectures["images", "CNN"]["quality"] > architectures["images", "LSTM (rows)"]["quality"]' in source
    assert 'final[name]["gap"] < base["gap"] for name in REMEDIES' in source
    assert 'final["4x more data"]["acc"] > base["acc"] + 0.015' in source
    assert 'assert big["bpc"] < english_ours["bpc"]' in source
    assert 'compare("ROC curve by hand vs labkit.metrics.roc_curve (TPR)", tpr_by_hand, tpr, atol=1e-12)' in source
