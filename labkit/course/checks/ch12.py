"""Checks for chapter 12 (the FAQ, 常见问题与解答: evaluation, overfitting, choosing a model).

The stub cells in ``chapters/12_faq.ipynb``::

    prediction = ...  # TODO: "a", "b" or "c", BEFORE running the measurement cell
    committed = prediction  # (the measurement cell's first line)
    measured = ...     # TODO: the winner's accuracy on fresh data, as the cell printed it
    explanation = ...  # TODO: "a", "b" or "c"
    check("12.1", dict(committed=committed, prediction=prediction, measured=measured, explanation=explanation))

    def auc_by_pairs(targets, scores):
        raise NotImplementedError  # TODO: the share of (positive, negative) pairs ranked right, ties half
    check("12.2", auc_by_pairs)

    def scores_at(targets, scores, threshold):
        raise NotImplementedError  # TODO: (precision, recall, f1), a score >= threshold counts as positive
    check("12.3", scores_at)

Every check runs on numbers from its own random generator (the notebook's stream is untouched).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from labkit.course.checks.predict import PredictMeasureExplain
from labkit.course.exercises import Hint, exercise, expect_callable, expect_number
from labkit.metrics import roc_auc


def _not_done(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError  # what an untouched stub function does


# --------------------------------------------------------------------------- 12.1 predict, measure, explain

GUESSERS, TEST_SIZE, FRESH_SIZE, SELECTION_SEED = 50, 100, 2000, 12


def best_guesser_accuracies(guessers: int = GUESSERS, test_size: int = TEST_SIZE, fresh_size: int = FRESH_SIZE,
                            seed: int = SELECTION_SEED) -> tuple[float, float]:
    """(test accuracy, fresh accuracy) of the best of `guessers` coin-flip classifiers, chosen on the test set.

    Each "classifier" answers 0 or 1 at random for every sample (its own fixed coin flips); the
    labels are coin flips too, so every one of them is worth exactly 50 %. The one with the best
    score on `test_size` samples is then scored on `fresh_size` new samples. The measurement of
    exercise 12.1; the chapter's measurement cell writes the same lines out.
    """
    g = torch.Generator().manual_seed(seed)
    test_labels = torch.randint(0, 2, (test_size,), generator=g)
    fresh_labels = torch.randint(0, 2, (fresh_size,), generator=g)
    test_answers = torch.randint(0, 2, (guessers, test_size), generator=g)
    fresh_answers = torch.randint(0, 2, (guessers, fresh_size), generator=g)
    test_accuracy = (test_answers == test_labels).double().mean(dim=1)        # (guessers,)
    best = int(test_accuracy.argmax())
    return test_accuracy[best].item(), (fresh_answers[best] == fresh_labels).double().mean().item()


def _fresh_accuracy() -> float:
    return best_guesser_accuracies()[1]


TEST_ONCE = PredictMeasureExplain(
    predictions={
        "a": "about the accuracy it had on the test set: it is the best classifier",
        "b": "about 50 %, like any coin flip",
        "c": "clearly below 50 %: it used up its luck",
    },
    explanations={
        "a": "the winner was chosen for being lucky on those 100 samples; luck on them says nothing about new "
             "samples, so its test score was an overestimate made by the choosing",
        "b": "the winner overfitted its training data",
        "c": "the fresh samples are harder than the test samples",
    },
    measure=_fresh_accuracy,
    predicted=lambda acc: "a" if acc > 0.56 else "b" if acc > 0.44 else "c",
    explained=lambda acc: "a" if abs(acc - 0.5) < 0.05 else "none",
    what="the winner's accuracy on the fresh samples",
    wrong_explanations={
        "b": "a coin flip has no training data and learns nothing: there is nothing to overfit. What made it the "
             "winner?",
        "c": "the fresh labels are coin flips exactly like the test labels: no set is harder. What made it the winner?",
    },
    abs_tol=0.002,
    misreadings=(
        (lambda value, true: math.isclose(value, best_guesser_accuracies()[0], abs_tol=1e-9),
         "that is the winner's score on the test set it was chosen on; the question is its score on fresh data"),
        (lambda value, true: math.isclose(value, 100 * true, rel_tol=0.01),
         "that is a percentage: enter the accuracy as a fraction (0.5, not 50)"),
    ),
)


TEST_ONCE.register(
    "12.1", "Predict, measure, explain: the best of 50 coin flips on a test set", module=__name__,
    wrong_measurements=(
        lambda: best_guesser_accuracies()[0],  # the test score, not the fresh one
        lambda: 100 * _fresh_accuracy(),  # a percentage
    ),
)


# --------------------------------------------------------------------------- 12.2 AUC by pairs


def _scores_with_ties(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels (40,) with both classes and scores (40,) on a coarse grid, so that ties occur."""
    g = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, 2, (40,), generator=g)
    targets[:2] = torch.tensor([0, 1])
    scores = (torch.randint(0, 6, (40,), generator=g) + 2 * targets).double() / 4   # positives tend to score higher
    return targets, scores


def _reference_auc_by_pairs(targets: torch.Tensor, scores: torch.Tensor) -> float:
    pos, neg = scores[targets == 1], scores[targets == 0]
    wins = (pos[:, None] > neg[None, :]).double() + 0.5 * (pos[:, None] == neg[None, :]).double()
    return wins.mean().item()


def _check_auc_by_pairs(auc_by_pairs: Callable) -> str:
    expect_callable(auc_by_pairs, "auc_by_pairs")
    for seed in (3, 4):
        targets, scores = _scores_with_ties(seed)
        got = expect_number(auc_by_pairs(targets.clone(), scores.clone()), "auc_by_pairs(targets, scores)")
        right = roc_auc(targets, scores)
        if math.isclose(got, right, abs_tol=1e-9):
            continue
        pos, neg = scores[targets == 1], scores[targets == 0]
        strict = (pos[:, None] > neg[None, :]).double().mean().item()
        loose = (pos[:, None] >= neg[None, :]).double().mean().item()
        if math.isclose(got, strict, abs_tol=1e-9):
            raise Hint(f"got {got:.4f} = the share of pairs the positive wins outright: a tie (equal scores) "
                       "counts half a win (the ROC curve's diagonal step through tied samples)")
        if math.isclose(got, loose, abs_tol=1e-9):
            raise Hint(f"got {got:.4f}: you counted a tie as a whole win; it counts half")
        if math.isclose(got, 1 - right, abs_tol=1e-9):
            raise Hint(f"got {got:.4f} = 1 - AUC: count the pairs where the POSITIVE sample scores higher")
        raise Hint(f"got {got:.4f}, expected {right:.4f} (labkit.metrics.roc_auc on the same data): compare every "
                   "positive with every negative, divide the wins by (number of positives × number of negatives)")
    return "equals the area under the ROC curve, ties and all"


exercise(
    "12.2",
    title="AUC as ranked pairs (a variation of the sorting method)",
    reference=lambda: _reference_auc_by_pairs,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda t, s: (s[t == 1][:, None] > s[t == 0][None, :]).double().mean().item(),     # ties count 0
        lambda: lambda t, s: (s[t == 1][:, None] >= s[t == 0][None, :]).double().mean().item(),    # ties count 1
        lambda: lambda t, s: 1 - _reference_auc_by_pairs(t, s),                                    # the wrong way round
        lambda: lambda t, s: (s[t == 1][:, None] > s[t == 0][None, :]).double().sum().item() / len(s) ** 2,  # wrong count
    ],
)(_check_auc_by_pairs)


# --------------------------------------------------------------------------- 12.3 precision, recall, F1 at a threshold


def _reference_scores_at(targets: torch.Tensor, scores: torch.Tensor, threshold: float) -> tuple[float, float, float]:
    predicted = scores >= threshold
    tp = (predicted & (targets == 1)).sum().item()
    fp = (predicted & (targets == 0)).sum().item()
    fn = (~predicted & (targets == 1)).sum().item()
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return precision, recall, f1


def _check_scores_at(scores_at: Callable) -> str:
    expect_callable(scores_at, "scores_at")
    targets, scores = _scores_with_ties(5)
    for threshold in (1.0, 0.5):
        got = scores_at(targets.clone(), scores.clone(), threshold)
        if not isinstance(got, (tuple, list)) or len(got) != 3:
            raise Hint("scores_at should return three numbers: `return precision, recall, f1`")
        p, r, f = (expect_number(v, name) for v, name in zip(got, ("precision", "recall", "f1")))
        right = _reference_scores_at(targets, scores, threshold)
        if all(math.isclose(a, b, abs_tol=1e-9) for a, b in zip((p, r, f), right)):
            continue
        strict = _reference_scores_at(targets, scores + 0.0, threshold + 1e-9)
        if all(math.isclose(a, b, abs_tol=1e-9) for a, b in zip((p, r, f), strict)):
            raise Hint(f"at threshold {threshold} you counted only scores > threshold as positive; a score equal "
                       "to the threshold counts as positive too (>=), as in labkit.metrics.roc_curve")
        if math.isclose(p, right[1], abs_tol=1e-9) and math.isclose(r, right[0], abs_tol=1e-9):
            raise Hint("precision and recall are swapped: precision = tp / (tp + fp) (of those called positive), "
                       "recall = tp / (tp + fn) (of the real positives)")
        if math.isclose(p, right[0], abs_tol=1e-9) and math.isclose(r, right[1], abs_tol=1e-9):
            if math.isclose(f, (p + r) / 2, abs_tol=1e-9):
                raise Hint("F1 is the harmonic mean 2PR / (P + R), not the arithmetic mean (P + R) / 2")
            raise Hint(f"precision and recall are right; F1 should be {right[2]:.4f} = 2PR / (P + R), got {f:.4f}")
        raise Hint(f"at threshold {threshold}: expected precision {right[0]:.4f}, recall {right[1]:.4f}, "
                   f"F1 {right[2]:.4f}; got {p:.4f}, {r:.4f}, {f:.4f}")
    return "precision, recall and F1 right at two thresholds"


exercise(
    "12.3",
    title="Precision, recall and F1 at a threshold",
    reference=lambda: _reference_scores_at,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda t, s, th: _reference_scores_at(t, s, th + 1e-9),                      # > instead of >=
        lambda: lambda t, s, th: _reference_scores_at(t, s, th)[1::-1] + (_reference_scores_at(t, s, th)[2],),  # swapped
        lambda: lambda t, s, th: (*_reference_scores_at(t, s, th)[:2], sum(_reference_scores_at(t, s, th)[:2]) / 2),
    ],
)(_check_scores_at)
