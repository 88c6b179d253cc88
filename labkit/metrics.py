"""How good is a classifier? Accuracy, the confusion matrix, precision / recall / F1, ROC and AUC.

Everything here is plain torch (no scikit-learn), and the definitions are scikit-learn's:
`precision_recall_f1(t, p, C, average=a)` equals
``sklearn.metrics.precision_recall_fscore_support(t, p, labels=range(C), average=a, zero_division=0)``.

Each function takes a whole test set's labels and predictions (or scores) and returns Python
numbers or small tensors. Elsewhere: the printed table of these numbers is `labkit.report`;
running a model to get its predictions, and the per-batch metrics `fit` adds up while it
trains, are `labkit.evaluation`.
"""
from __future__ import annotations

from typing import Any

import torch

__all__ = [
    "accuracy",
    "confusion_matrix",
    "precision_recall_f1",
    "roc_curve",
    "auc",
    "roc_auc",
    "kfold_indices",
    "accuracy_interval",
]

AVERAGES = ("macro", "micro", "weighted", None)


# ---------------------------------------------------------------------------------------
# Input checks shared by the evaluation functions
# ---------------------------------------------------------------------------------------
def _as_labels(values: Any, name: str) -> torch.Tensor:
    """Class labels (N,) from labels (N,) or from logits / probabilities (N, C) (argmax)."""
    values = torch.as_tensor(values)
    if values.ndim == 2:
        return values.argmax(dim=1)
    if values.ndim != 1:
        raise ValueError(
            f"{name} must be class labels of shape (N,) or logits of shape (N, C), "
            f"got shape {tuple(values.shape)}"
        )
    if values.is_floating_point() or values.is_complex():
        if not torch.equal(values, values.round()):
            raise ValueError(
                f"{name} must hold whole class numbers (0, 1, 2, ...), got dtype {values.dtype} "
                "with fractions; for logits or probabilities pass the 2-D (N, C) tensor"
            )
    return values.long()


def _check_pair(targets: Any, preds: Any, num_classes: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets (N,) and predicted labels (N,) as int64, checked for length and label range."""
    t = _as_labels(targets, "targets")
    p = _as_labels(preds, "preds")
    if t.shape[0] != p.shape[0]:
        raise ValueError(
            f"targets and preds must have the same length, got {t.shape[0]} targets and {p.shape[0]} preds"
        )
    if t.shape[0] == 0:
        raise ValueError("got 0 samples: there is nothing to score")
    p = p.to(t.device)
    if num_classes is not None:
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        for name, labels in (("targets", t), ("preds", p)):
            low, high = int(labels.min()), int(labels.max())
            if low < 0 or high >= num_classes:
                bad = low if low < 0 else high
                raise ValueError(
                    f"{name} contain the label {bad}, but num_classes={num_classes} allows only "
                    f"0..{num_classes - 1}; pass the right num_classes (or class_names)"
                )
    return t, p


def _safe_divide(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """numerator / denominator as float, with 0/0 (and x/0) defined as 0."""
    numerator, denominator = numerator.double(), denominator.double()
    nonzero = denominator != 0
    return torch.where(nonzero, numerator / torch.where(nonzero, denominator, 1.0), 0.0)


# ---------------------------------------------------------------------------------------
# Evaluation metrics
# ---------------------------------------------------------------------------------------
def accuracy(logits_or_preds: Any, targets: Any) -> float:
    """Fraction of samples whose predicted class equals the target.

    `logits_or_preds` is either logits / probabilities (N, C), turned into labels by argmax,
    or predicted labels (N,); `targets` are class labels (N,).

    >>> accuracy(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]))
    0.6666666666666666

    Chapter 00 uses it first; 02 computes it by hand.
    """
    t, p = _check_pair(targets, logits_or_preds)
    return (p == t).double().mean().item()


def confusion_matrix(targets: Any, preds: Any, num_classes: int) -> torch.Tensor:
    """Counts (C, C) int64: entry [i, j] = how many samples of true class i were predicted j.

    Rows are true classes, columns predicted ones (scikit-learn's layout), so the diagonal
    holds the correct predictions, and row i sums to the number of samples of class i.
    `targets` are labels (N,); `preds` are labels (N,) or logits (N, C).

    >>> confusion_matrix(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]), 2)
    tensor([[1, 1],
            [0, 1]])

    Chapter 02 builds it by hand; 05 and 07b read their models' mistakes from it.
    """
    t, p = _check_pair(targets, preds, num_classes)
    # Each (true, pred) pair gets its own number true * C + pred; counting those numbers
    # with bincount fills all C * C cells in one vectorised pass.
    cells = torch.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return cells.reshape(num_classes, num_classes)


def _per_class_counts(cm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """True positives, predicted counts and supports (each (C,)) from a confusion matrix."""
    true_positives = cm.diagonal()
    predicted = cm.sum(dim=0)  # column sums: how often each class was predicted
    support = cm.sum(dim=1)  # row sums: how many samples truly are each class
    return true_positives, predicted, support


def _scores(true_positives: torch.Tensor, predicted: torch.Tensor, support: torch.Tensor):
    """Precision, recall and F1 from counts; 0/0 counts as 0 (scikit-learn's zero_division=0)."""
    precision = _safe_divide(true_positives, predicted)  # tp / (tp + fp)
    recall = _safe_divide(true_positives, support)  # tp / (tp + fn)
    # F1 = 2PR / (P + R), written with counts: 2tp / (2tp + fp + fn). The count form is
    # exactly scikit-learn's, and stays defined when P or R alone is 0/0.
    f1 = _safe_divide(2 * true_positives, predicted + support)
    return precision, recall, f1


def precision_recall_f1(
    targets: Any, preds: Any, num_classes: int, average: str | None = "macro"
) -> dict[str, Any]:
    """Precision, recall and F1 of a classifier, per class or averaged.

    For class c: precision = tp / (tp + fp) (of the samples predicted c, how many are c),
    recall = tp / (tp + fn) (of the samples that are c, how many were found),
    F1 = 2 * precision * recall / (precision + recall) = 2tp / (2tp + fp + fn).
    **0/0 is defined as 0**: a class that is never predicted has precision 0, a class with
    no samples has recall 0 (scikit-learn's ``zero_division=0``).

    `targets` (N,) labels; `preds` (N,) labels or (N, C) logits. `average`:

    - ``"macro"``: plain mean over the C classes (every class counts the same);
    - ``"weighted"``: mean weighted by each class's support (number of true samples);
    - ``"micro"``: computed from the summed counts; for single-label classification all
      three equal the accuracy;
    - ``None``: per-class tensors (C,) for "precision", "recall", "f1" (float64) and
      "support" (int64).

    The averages are returned as Python floats under "precision", "recall" and "f1".
    All C classes take part, even one that appears in neither targets nor preds (it then
    scores 0), as in scikit-learn with ``labels=range(num_classes)``.

    Chapter 02 computes precision, recall and F1 by hand.
    """
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")
    cm = confusion_matrix(targets, preds, num_classes)
    true_positives, predicted, support = _per_class_counts(cm)
    precision, recall, f1 = _scores(true_positives, predicted, support)

    if average is None:
        return {"precision": precision, "recall": recall, "f1": f1, "support": support}
    if average == "micro":
        precision, recall, f1 = _scores(true_positives.sum(), predicted.sum(), support.sum())
        return {"precision": precision.item(), "recall": recall.item(), "f1": f1.item()}
    if average == "macro":
        weights = torch.ones_like(precision)
    else:  # weighted
        weights = support.double()
    total = weights.sum()
    return {
        name: (_safe_divide((values * weights).sum(), total)).item()
        for name, values in (("precision", precision), ("recall", recall), ("f1", f1))
    }


# ---------------------------------------------------------------------------------------
# Scores, thresholds and resampling (chapter 12)
# ---------------------------------------------------------------------------------------
def _binary_scores(targets: Any, scores: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets (N,) as 0/1 int64 and scores (N,) as float64, checked."""
    t = torch.as_tensor(targets)
    s = torch.as_tensor(scores)
    if t.ndim != 1 or s.ndim != 1:
        raise ValueError(f"targets and scores must be 1-D (N,), got shapes {tuple(t.shape)} and {tuple(s.shape)}; "
                         "for logits (N, 2) pass the positive class's column, e.g. logits[:, 1]")
    if t.shape[0] != s.shape[0]:
        raise ValueError(f"targets and scores must have the same length, got {t.shape[0]} and {s.shape[0]}")
    values = set(torch.unique(t).tolist())
    if not values <= {0, 1}:
        raise ValueError(f"targets must be 0 (negative) or 1 (positive), got the values {sorted(values)}")
    if len(values) < 2:
        raise ValueError(f"targets hold only the class {sorted(values)}: a ROC curve needs positives and negatives")
    s = s.double()
    if not torch.isfinite(s).all():
        raise ValueError("scores contain NaN or infinity: score every sample with a finite number")
    return t.long(), s


def roc_curve(targets: Any, scores: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ROC curve: (false-positive rates, true-positive rates, thresholds), each (K,) float64.

    Sort the samples by score, highest first; lowering the threshold past each distinct score
    turns those samples positive: the true-positive rate TP/P and the false-positive rate FP/N
    are cumulative counts. The first point (0, 0) has threshold +inf (nothing positive).
    `targets` (N,) 0/1; `scores` (N,) any real numbers, higher = more positive.
    Equals ``sklearn.metrics.roc_curve(targets, scores, drop_intermediate=False)``.

    Chapter 12 builds it by sorting scores by hand.
    """
    t, s = _binary_scores(targets, scores)
    order = torch.argsort(s, descending=True, stable=True)
    s, t = s[order], t[order]
    last_of_each_score = torch.nonzero(torch.diff(s) != 0).flatten()      # ties move together
    ends = torch.cat([last_of_each_score, torch.tensor([len(s) - 1])])
    true_positives = torch.cumsum(t, 0)[ends].double()
    false_positives = (ends + 1).double() - true_positives
    tpr = torch.cat([torch.zeros(1, dtype=torch.float64), true_positives / true_positives[-1]])
    fpr = torch.cat([torch.zeros(1, dtype=torch.float64), false_positives / false_positives[-1]])
    thresholds = torch.cat([torch.tensor([float("inf")], dtype=torch.float64), s[ends]])
    return fpr, tpr, thresholds


def auc(x: Any, y: Any) -> float:
    """Area under a curve through the points (x, y), by the trapezoid rule; x must be monotonic.

    ``auc(*roc_curve(t, s)[:2])`` is the ROC AUC: the chance that a random positive scores
    above a random negative (ties count half). Equals ``sklearn.metrics.auc``.

    Chapter 12 uses it for the ROC curve.
    """
    xs, ys = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    if xs.ndim != 1 or xs.shape != ys.shape or len(xs) < 2:
        raise ValueError(f"x and y must be 1-D of the same length >= 2, got shapes {tuple(xs.shape)} and {tuple(ys.shape)}")
    steps = torch.diff(xs)
    if (steps < 0).any() and (steps > 0).any():
        raise ValueError("x must be increasing or decreasing (sort the points by x first)")
    area = torch.trapezoid(ys, xs).item()
    return -area if (steps <= 0).all() else area


def roc_auc(targets: Any, scores: Any) -> float:
    """Area under the ROC curve of `scores` (N,) for 0/1 `targets` (N,); 0.5 is chance, 1 perfect.

    Equals ``sklearn.metrics.roc_auc_score(targets, scores)``. Chapter 12 computes it by hand.
    """
    fpr, tpr, _ = roc_curve(targets, scores)
    return auc(fpr, tpr)


def kfold_indices(n: int, k: int, *, shuffle: bool = False, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """k-fold cross-validation splits of n samples: k pairs (train indices, validation indices).

    The samples (shuffled first with `seed` if `shuffle`) are cut into k consecutive folds; the
    first n % k folds hold one sample more. Each sample is validated exactly once. Without
    shuffling the folds equal ``sklearn.model_selection.KFold(k).split(range(n))``.

    Chapter 12 cross-validates a classifier with it.
    """
    if not isinstance(k, int) or isinstance(k, bool) or k < 2:
        raise ValueError(f"k (the number of folds) must be a whole number >= 2, got {k!r}")
    if not isinstance(n, int) or isinstance(n, bool) or n < k:
        raise ValueError(f"n (the number of samples) must be a whole number >= k = {k}, got {n!r}")
    order = (torch.randperm(n, generator=torch.Generator().manual_seed(seed)) if shuffle
             else torch.arange(n))
    sizes = [n // k + (1 if fold < n % k else 0) for fold in range(k)]
    splits, start = [], 0
    for size in sizes:
        val = order[start:start + size]
        train = torch.cat([order[:start], order[start + size:]])
        splits.append((train, val))
        start += size
    return splits


def accuracy_interval(correct: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval (low, high) for an accuracy of `correct` out of `total`.

    The range of true accuracies that would make the observed count unsurprising at the given
    `confidence`; unlike "p ± z·sqrt(p(1-p)/n)" it stays inside [0, 1] and is sound at 0 or n
    correct. Equals ``scipy.stats.binomtest(correct, total).proportion_ci(confidence, "wilson")``.

    Chapter 12 puts one around a test accuracy.
    """
    import statistics

    if not isinstance(total, int) or isinstance(total, bool) or total < 1:
        raise ValueError(f"total must be a whole number >= 1, got {total!r}")
    if not isinstance(correct, int) or isinstance(correct, bool) or not 0 <= correct <= total:
        raise ValueError(f"correct must be a whole number from 0 to total = {total}, got {correct!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence!r}")
    z = statistics.NormalDist().inv_cdf((1 + confidence) / 2)
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z / (1 + z * z / total) * (p * (1 - p) / total + z * z / (4 * total * total)) ** 0.5
    return max(0.0, centre - half), min(1.0, centre + half)
