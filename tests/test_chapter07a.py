"""Chapter 07a (transfer learning on images): its notebooks are wired to its checks, its widget is
the one the browser test moves, and the checks accept other correct styles of answer while
rejecting the classic mistakes.

The notebooks themselves are executed by nbval (`make nbval`); these tests only read them.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from labkit.course.checks import ch07a
from labkit.course.exercises import chapter_exercises, check
from labkit.finetune import freeze, parameter_counts, unfreeze
from notebook_cells import cells as _cells, code_cells as _code_cells

REPO = Path(__file__).resolve().parent.parent
CHAPTER = REPO / "chapters" / "07a_transfer_learning.ipynb"
SOLUTIONS = REPO / "solutions" / "07a_transfer_learning_solutions.ipynb"
IDS = [ex.id for ex in chapter_exercises("07a")]


def test_notebook_has_exercises_07_1_to_07_3_and_07_17_and_only_those():
    assert IDS == ["07.1", "07.2", "07.3", "07.17"]


def test_07_17_chapter_and_solution_measure_what_the_check_recomputes():
    """The same CNN, seed, noise images, optimizer, zeroing and freezing as `ch07a.frozen_drift`; the chapter's
    `build_cnn` is the check's `chapter_cnn`."""
    for path in (CHAPTER, SOLUTIONS):
        cell = next(c for c in _code_cells(path) if c.startswith("committed = prediction"))
        for line in ("torch.manual_seed(0)\ncnn = build_cnn()",
                     "torch.rand(20, 1, 28, 28, generator=torch.Generator().manual_seed(0))",
                     "y = torch.arange(20) % 10", "torch.optim.Adam(cnn.parameters(), lr=1e-3)",
                     "optimizer.zero_grad(set_to_none=False)", "before = distance_moved(5)",
                     'freeze(cnn, ["block1"])', "frozen = distance_moved(5)", "{frozen / before:.4f}"):
            assert line in cell, (path.name, line)
    build = next(c for c in _code_cells(CHAPTER) if c.startswith("def build_cnn("))
    torch.manual_seed(0)
    namespace: dict = {"nn": nn, "OrderedDict": __import__("collections").OrderedDict,
                       "trainable_summary": lambda model: ""}
    exec(build.replace("print(", "(lambda *a: None)("), namespace)
    torch.manual_seed(0)
    theirs = namespace["build_cnn"]()
    torch.manual_seed(0)
    mine = ch07a.chapter_cnn()
    assert str(theirs) == str(mine)
    assert all(torch.equal(a, b) for a, b in zip(theirs.state_dict().values(), mine.state_dict().values()))


def test_07_17_a_frozen_weight_keeps_moving_only_while_its_grad_is_a_tensor_of_zeros():
    assert 0.05 < ch07a.frozen_drift() < 0.95
    assert ch07a.frozen_drift(set_to_none=True) == 0.0


def test_first_code_cell_seeds_and_offers_a_full_run():
    first = _code_cells(CHAPTER)[0]
    assert "labkit.seed_everything(0)" in first
    assert re.search(r"^FULL_RUN = False\b", first, re.MULTILINE)
    assert "labkit.seed_everything(0)" in _code_cells(SOLUTIONS)[0]


@pytest.mark.skipif(not (REPO / "labkit" / "checks" / "ch07.py").exists(),
                    reason="labkit/course/checks/ch07.py does not exist yet: the notebooks import ch07a themselves")
def test_no_development_leftovers():
    for path in (CHAPTER, SOLUTIONS):
        assert "DEVELOPMENT ONLY" not in "\n".join(_code_cells(path)), f"{path.name} still points at a development setting"


def test_freezing_is_built_by_hand_before_labkit_is_used():
    cells = _code_cells(CHAPTER)
    by_hand = next(i for i, c in enumerate(cells) if "requires_grad = False" in c)
    with_labkit = next(i for i, c in enumerate(cells) if re.search(r"^freeze\(", c, re.MULTILINE))
    assert by_hand < with_labkit
    proof = "\n".join(cells[by_hand:with_labkit])
    assert "torch.equal" in proof and "assert changed == p.requires_grad" in proof  # frozen weights did not move
    assert "parameter_counts(model_2) ==" in cells[with_labkit]  # labkit's counts match the hand-made ones


def test_result_assertions_keep_their_thresholds():
    source = "\n".join(_code_cells(CHAPTER))
    assert re.search(r"assert fashion_accuracy >= 0\.85\b", source)
    assert re.search(r"assert extraction_gain >= 0\.015\b", source)
    assert re.search(r'assert accuracy\[many, "from scratch"\] >= 0\.94\b', source)
    assert re.search(r'assert abs\(accuracy\[many, "fine-tune all"\] - accuracy\[many, "from scratch"\]\) < 0\.015\b', source)
    assert re.search(r'assert accuracy\[many, "head only"\] < accuracy\[many, "from scratch"\] - 0\.05\b', source)


def test_experiment_covers_few_to_many_labels_and_plots_on_a_log_axis():
    source = "\n".join(_code_cells(CHAPTER))
    assert "N_LABELS = [20, 50, 100, 300, 1000, 3000]" in source
    assert 'ax.set_xscale("log")' in source
    for name in ("head only", "frozen convs", "fine-tune all", "from scratch"):
        assert f'"{name}"' in source


def test_exactly_one_browser_test_cell_and_it_redraws_a_figure_from_sliders():
    tagged = [c for c in _cells(CHAPTER) if "browser-test" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    source = "".join(tagged[0]["source"])
    assert source.splitlines()[0] == "# NBVAL_IGNORE_OUTPUT"
    first_control = source.index("widgets.", source.index("interact("))
    assert re.match(r"widgets\.(Selection|Int)Slider\(", source[first_control:]), "the first control must be a slider"
    assert "plt.show()" in source
    # The browser test moves the first slider one step right (50 -> 100 labels): both were trained by the
    # experiment above, so the figure redraws at once.
    assert "options=[20, 50, 100, 200, 500, 1000], value=50" in source


# --------------------------------------------------------------------------- the checks


def test_check_models_have_the_chapters_layout():
    model = ch07a.small_cnn(hidden=24, num_classes=3)
    assert [name for name, _ in model.named_children()] == ["block1", "block2", "fc", "head"]
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 3)
    assert model.head.in_features == 24


def test_freeze_all_but_check_accepts_labkit_finetune_and_module_switches():
    def with_labkit(model, keep):
        freeze(model)
        unfreeze(model, keep)
        return parameter_counts(model)["trainable"]

    def with_modules(model, keep):
        model.requires_grad_(False)
        for part in keep:
            getattr(model, part).requires_grad_(True)
        return torch.tensor(sum(p.numel() for p in model.parameters() if p.requires_grad))

    assert check("07.1", with_labkit, show=False).passed
    assert check("07.1", with_modules, show=False).passed


def test_freeze_all_but_hint_names_the_state_left_over_from_before():
    message = check("07.1", ch07a._freeze_only, show=False).message
    assert "switch the kept parts ON" in message
    message = check("07.1", ch07a._count_tensors, show=False).message
    assert "numel" in message


def test_new_head_check_accepts_a_copy_and_a_zero_initialised_head():
    def on_a_copy(model, num_classes):
        model = copy.deepcopy(model)
        model.head = nn.Linear(model.head.in_features, num_classes)
        return model

    def zero_head(model, num_classes):
        head = nn.Linear(model.head.in_features, num_classes)
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        model.head = head
        return model

    assert check("07.2", on_a_copy, show=False).passed
    assert check("07.2", zero_head, show=False).passed


def test_new_head_hint_says_replace_not_stack():
    message = check("07.2", ch07a._stacked_head, show=False).message
    assert "still holds the old head" in message


def test_param_groups_check_accepts_generators_and_identity_sets():
    def with_generators(model, body_lr, head_lr):
        head_ids = {id(p) for p in model.head.parameters()}
        return [
            {"params": (p for p in model.parameters() if p.requires_grad and id(p) not in head_ids), "lr": body_lr},
            {"params": (p for p in model.head.parameters() if p.requires_grad), "lr": head_lr},
        ]

    assert check("07.3", with_generators, show=False).passed


def test_param_groups_reference_builds_an_optimizer_that_trains_the_head_faster():
    model = ch07a.small_cnn()
    model.block1.requires_grad_(False)
    optimizer = torch.optim.SGD(ch07a._reference_param_groups(model, body_lr=0.1, head_lr=1.0))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.ones_like(p) if p.requires_grad else None
    optimizer.step()
    for name, p in model.named_parameters():
        step = (before[name] - p.detach()).abs().max().item()
        expected = 0.0 if name.startswith("block1.") else 1.0 if name.startswith("head.") else 0.1
        assert step == pytest.approx(expected), name


