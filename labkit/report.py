"""The classification report: per-class precision, recall, F1 and support, as a table.

The numbers come from `labkit.metrics`; this module lays them out, as fixed-width text (Chinese
class names take two columns) or as an HTML table in a notebook. Same numbers as scikit-learn's
``classification_report`` with ``zero_division=0``.
"""
from __future__ import annotations

import html
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .metrics import _check_pair, precision_recall_f1

__all__ = ["Report", "classification_report"]


def _width(text: str) -> int:
    """How many monospace columns `text` takes (Chinese characters take two)."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad_left(text: str, width: int) -> str:
    return " " * max(0, width - _width(text)) + text


@dataclass
class Report:
    """A classification report: per-class precision / recall / F1 / support and the averages.

    Print it for a fixed-width table, or leave it as a notebook cell's last value for an
    HTML table. The per-class numbers are tensors (C,) in the same order as `class_names`.
    """

    class_names: list[str]
    precision: torch.Tensor
    recall: torch.Tensor
    f1: torch.Tensor
    support: torch.Tensor
    accuracy: float
    macro: dict[str, float]
    weighted: dict[str, float]
    digits: int = 2

    def as_dict(self) -> dict[str, Any]:
        """Plain Python numbers: ``{class_name: {"precision", "recall", "f1", "support"}, ...,
        "accuracy": float, "macro avg": {...}, "weighted avg": {...}}``."""
        total = int(self.support.sum())
        out: dict[str, Any] = {}
        for i, name in enumerate(self.class_names):
            out[name] = {
                "precision": float(self.precision[i]),
                "recall": float(self.recall[i]),
                "f1": float(self.f1[i]),
                "support": int(self.support[i]),
            }
        out["accuracy"] = self.accuracy
        out["macro avg"] = {**self.macro, "support": total}
        out["weighted avg"] = {**self.weighted, "support": total}
        return out

    def _rows(self) -> list[tuple[str, list[str]]]:
        """(row name, [precision, recall, f1, support] as text) for every table row."""
        fmt = f"{{:.{self.digits}f}}".format
        total = int(self.support.sum())
        rows = [
            (name, [fmt(float(p)), fmt(float(r)), fmt(float(f)), str(int(s))])
            for name, p, r, f, s in zip(self.class_names, self.precision, self.recall, self.f1, self.support)
        ]
        rows.append(("accuracy", ["", "", fmt(self.accuracy), str(total)]))
        for name, avg in (("macro avg", self.macro), ("weighted avg", self.weighted)):
            rows.append((name, [fmt(avg["precision"]), fmt(avg["recall"]), fmt(avg["f1"]), str(total)]))
        return rows

    def __str__(self) -> str:
        headers = ["precision", "recall", "f1-score", "support"]
        rows = self._rows()
        name_width = max(_width(name) for name, _ in rows)
        col = max(len(h) for h in headers) + 1
        lines = [" " * name_width + "".join(h.rjust(col) for h in headers), ""]
        n_classes = len(self.class_names)
        for i, (name, cells) in enumerate(rows):
            if i == n_classes:
                lines.append("")  # blank line between the classes and the summary rows
            lines.append(_pad_left(name, name_width) + "".join(c.rjust(col) for c in cells))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        headers = ["", "precision", "recall", "f1-score", "support"]
        head = "".join(f"<th>{h}</th>" for h in headers)
        body = []
        n_classes = len(self.class_names)
        for i, (name, cells) in enumerate(self._rows()):
            style = ' style="border-top: 2px solid #888"' if i == n_classes else ""
            tds = "".join(f'<td style="text-align:right">{c}</td>' for c in cells)
            body.append(f"<tr{style}><th style=\"text-align:left\">{html.escape(name)}</th>{tds}</tr>")
        return (
            '<table class="labkit-report">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        )


def classification_report(
    targets: Any, preds: Any, class_names: Sequence[str] | None = None, digits: int = 2
) -> Report:
    """Per-class precision, recall, F1 and support, plus accuracy, macro and weighted averages.

    `targets` (N,) labels; `preds` (N,) labels or (N, C) logits; `class_names` one name per
    class, in label order (label 0 first). Without names, classes are named "0", "1", ...
    up to the largest label seen. Same numbers as scikit-learn's ``classification_report``
    with ``zero_division=0``.

    Chapter 05 prints one for each CNN.
    """
    t, p = _check_pair(targets, preds)
    if class_names is None:
        class_names = [str(i) for i in range(int(max(t.max(), p.max())) + 1)]
    class_names = [str(name) for name in class_names]
    num_classes = len(class_names)
    per_class = precision_recall_f1(t, p, num_classes, average=None)
    return Report(
        class_names=class_names,
        precision=per_class["precision"].cpu(),
        recall=per_class["recall"].cpu(),
        f1=per_class["f1"].cpu(),
        support=per_class["support"].cpu(),
        accuracy=(t == p).double().mean().item(),
        macro=precision_recall_f1(t, p, num_classes, average="macro"),
        weighted=precision_recall_f1(t, p, num_classes, average="weighted"),
        digits=digits,
    )
