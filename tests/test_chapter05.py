"""Chapter 05 (the articles' MLP and CNN): its notebooks are wired to its checks, and the checks
accept other correct styles of answer while leaving the notebook's random stream alone.

The notebooks themselves are executed by nbval (`make nbval`); these tests only read them.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from labkit.course.checks import ch05
from labkit.course.exercises import chapter_exercises, check

REPO = Path(__file__).resolve().parent.parent
CHAPTER = REPO / "chapters" / "05_practice_cnn.ipynb"
SOLUTIONS = REPO / "solutions" / "05_practice_cnn_solutions.ipynb"
IDS = [ex.id for ex in chapter_exercises("05")]


def _code_cells(path: Path) -> list[str]:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    return ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]


def _all_cells(path: Path) -> list[str]:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    return ["".join(cell["source"]) for cell in notebook["cells"]]


def test_chapter_has_three_to_six_exercises():
    assert 3 <= len(IDS) <= 6, IDS


def test_first_code_cell_seeds_and_offers_a_full_run():
    first = _code_cells(CHAPTER)[0]
    assert "labkit.seed_everything(0)" in first
    assert re.search(r"^FULL_RUN = False\b", first, re.MULTILINE)


def test_result_assertions_keep_their_thresholds():
    source = "\n".join(_code_cells(CHAPTER))
    assert re.search(r"assert cnn_mnist_acc >= 0\.98\b", source)
    assert re.search(r"assert cnn_fashion_acc >= 0\.90\b", source)


def test_widget_cell_is_marked_for_nbval_and_shows_the_panel():
    panel_cells = [c for c in _code_cells(CHAPTER) if "HyperparameterPanel(" in c]
    assert len(panel_cells) == 1
    cell = panel_cells[0]
    assert cell.splitlines()[0] == "# NBVAL_IGNORE_OUTPUT"
    assert cell.rstrip().splitlines()[-1].strip() == "panel"  # shown by Run All
    assert "panel.train(" not in "\n".join(_code_cells(CHAPTER)), "the browser test expects an untrained panel"


# --------------------------------------------------------------------------- the checks


class _FunctionalDeeperCNN(nn.Module):
    """A correct answer to 05.4 written with F.relu / F.max_pool2d instead of layer objects."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 32, 3), nn.Conv2d(32, 64, 3)
        self.hidden, self.out = nn.Linear(1600, 128), nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.out(F.relu(self.hidden(x.flatten(1))))


def test_deeper_cnn_check_accepts_a_functional_forward():
    assert check("05.4", _FunctionalDeeperCNN, show=False).passed


def test_deeper_cnn_parameter_count_is_computed_not_guessed():
    assert ch05.DEEPER_CNN_PARAMETERS == sum(p.numel() for p in ch05._reference_deeper_cnn().parameters()) == 225_034
    assert ch05.ARTICLES_CNN_PARAMETERS == sum(p.numel() for p in ch05._articles_cnn().parameters())


def _numpy_style_normalize(images, mean, std):
    return torch.from_numpy(((images.numpy() / 255.0 - mean) / std).astype("float32"))[:, None]


def test_normalize_check_accepts_another_correct_style():
    assert check("05.1", _numpy_style_normalize, show=False).passed


def test_shift_check_accepts_a_padding_answer():
    def shift(images, dx, dy):
        height, width = images.shape[-2:]
        padded = F.pad(images, (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0)))
        top, left = max(-dy, 0), max(-dx, 0)
        return padded[..., top:top + height, left:left + width]

    assert check("05.3", shift, show=False).passed


def test_class_scores_check_accepts_tensors():
    def class_scores(cm, c):
        cm = cm.double()
        precision = torch.nan_to_num(cm[c, c] / cm[:, c].sum())
        recall = torch.nan_to_num(cm[c, c] / cm[c, :].sum())
        return precision, recall, torch.nan_to_num(2 * precision * recall / (precision + recall))

    assert check("05.5", class_scores, show=False).passed


