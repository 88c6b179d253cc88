"""Chapter 06b (pretraining a GPT): its notebooks are wired to its checks, the checks agree with
labkit's own training code and accept other correct styles of answer, and they leave the
notebook's random stream alone.

The notebooks themselves are executed by nbval (`make nbval`); these tests only read them.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from labkit.course.checks import ch06b
from labkit.course.exercises import chapter_exercises, check
from labkit.gpt import GPT, GPTConfig
from labkit.lm import configure_optimizer, lr_at
from notebook_cells import cells as _cells, code_cells as _code_cells

REPO = Path(__file__).resolve().parent.parent
CHAPTER = REPO / "chapters" / "06b_pretraining.ipynb"
SOLUTIONS = REPO / "solutions" / "06b_pretraining_solutions.ipynb"
IDS = [ex.id for ex in chapter_exercises("06b")]


def test_the_notebook_has_exercises_06_4_06_5_and_06_15():
    assert IDS == ["06.4", "06.5", "06.15"]


def test_06_15_chapter_and_solution_measure_what_the_check_recomputes():
    """The chapter's measurement cell is the solution's (whose run the check verifies against
    `ch06b.untrained_losses`), from the batch on: the same batch, seeds and stds."""
    def measurement(path):
        cell = next(c for c in _code_cells(path) if c.startswith("committed = prediction") and "untrained" in c)
        return cell[cell.index("x_val, y_val = get_batch("):]
    chapter = measurement(CHAPTER)
    assert chapter == measurement(SOLUTIONS)
    assert "torch.Generator().manual_seed(0)" in chapter and "for std in (0.02, 1.0):" in chapter
    losses = ch06b.untrained_losses()
    assert losses["std 0.02"] < losses["ln V"] + 0.1 < 3 * losses["ln V"] <= losses["std 1"]


def test_first_code_cell_seeds_and_offers_a_full_run():
    first = _code_cells(CHAPTER)[0]
    assert "labkit.seed_everything(0)" in first
    assert re.search(r"^FULL_RUN = False\b", first, re.MULTILINE)


def test_result_assertions_keep_their_thresholds():
    source = "\n".join(_code_cells(CHAPTER))
    assert re.search(r"assert shakespeare_val <= 1\.9\b", source)
    assert re.search(r"assert abs\(untrained_loss - math\.log\(V\)\) < 0\.1\b", source)
    assert re.search(r"assert len\(real_speakers\) >= 2 and real_words >= 0\.6\b", source)
    assert re.search(r"assert tang_val <= 5\.9\b", source)
    assert re.search(r"assert regular >= 0\.8\b", source)
    assert 'assert resumed[key] == straight[key]' in source
    assert "assert same," in source  # the loop written out ends with train_lm's weights


def test_default_run_lengths_are_the_tuned_ones():
    source = "\n".join(_code_cells(CHAPTER))
    assert re.search(r"^STEPS = \d+ if FULL_RUN else 1200$", source, re.MULTILINE)
    assert re.search(r"^TANG_STEPS = \d+ if FULL_RUN else 800$", source, re.MULTILINE)


def test_the_tang_run_is_the_shipped_checkpoints_recipe():
    """Section 4 trains its first steps live and continues from `tang_char_tiny` when its settings are
    the recipe's: the notebook's settings, model and call must be the ones the recipe runs, or the
    continuation would be another run's weights (the notebook's own check compares the validation
    loss at the live steps' end)."""
    from labkit.checkpoints import load_pretrained
    from labkit.recipes import RECIPES

    source = "\n".join(_code_cells(CHAPTER))
    match = re.search(r"^TANG = (dict\(.*\))$", source, re.MULTILINE)
    assert match, "06b's Tang settings should be one line: TANG = dict(...)"
    notebook_settings = eval(match.group(1).replace("TANG_STEPS", "800"), {"dict": dict})
    recipe = RECIPES["tang_char_tiny"]
    assert recipe["cpu"]["train"] == notebook_settings and recipe["corpus"] == "tang_poems"
    assert recipe["tokenizer"] == "char"
    model, tokenizer, meta = load_pretrained("tang_char_tiny")
    assert model.config == GPTConfig.preset("char-tiny", vocab_size=tokenizer.vocab_size)
    assert meta["settings"] == {**notebook_settings, "eval_batches": 10}
    assert "LIVE_STEPS = 300 if same_run else TANG_STEPS" in source
    assert meta["steps"] == 800 and 300 % notebook_settings["eval_every"] == 0  # the live run ends on an evaluation
    assert "tang_model = shipped_tang" in source and 'continue_shipped_run("tang_char_tiny", LIVE_STEPS,' in source


def test_the_shakespeare_run_is_the_shipped_checkpoints_recipe():
    """Section 3.6 does the same with `shakespeare_char_tiny`: its first 500 steps live, the rest shipped."""
    from labkit.checkpoints import load_pretrained
    from labkit.recipes import RECIPES

    source = "\n".join(_code_cells(CHAPTER))
    values = {}
    for pattern in (r"^STEPS = \d+ if FULL_RUN else (?P<STEPS>\d+)$", r"^BATCH_SIZE = (?P<BATCH_SIZE>\d+)$",
                    r"^LR, WARMUP = (?P<LR>[\d.e-]+), (?P<WARMUP>\d+)$"):
        match = re.search(pattern, source, re.MULTILINE)
        assert match, f"06b should set its run's settings on a line of the form {pattern}"
        values.update({key: float(value) if key == "LR" else int(value) for key, value in match.groupdict().items()})
    match = re.search(r"^RUN = (dict\(.*\))$", source, re.MULTILINE)
    assert match, "06b's Shakespeare settings should be one line: RUN = dict(...)"
    notebook_settings = eval(match.group(1), {"dict": dict, **values})
    recipe = RECIPES["shakespeare_char_tiny"]
    assert recipe["cpu"]["train"] == notebook_settings and recipe["corpus"] == "shakespeare"
    assert recipe["tokenizer"] == "char"
    model, tokenizer, meta = load_pretrained("shakespeare_char_tiny")
    assert model.config == GPTConfig.preset("char-tiny", vocab_size=tokenizer.vocab_size)
    assert meta["settings"] == notebook_settings and meta["steps"] == values["STEPS"]
    assert "LIVE_STEPS = 500 if same_run else STEPS" in source and 500 % notebook_settings["eval_every"] == 0
    assert "model = shipped_model" in source and 'continue_shipped_run("shakespeare_char_tiny", LIVE_STEPS,' in source


def test_exactly_one_browser_test_cell_whose_first_slider_redraws_a_figure():
    tagged = [c for c in _cells(CHAPTER) if "browser-test" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    source = "".join(tagged[0]["source"])
    assert source.splitlines()[0] == "# NBVAL_IGNORE_OUTPUT"
    assert "widgets.interact(" in source and "plt.show()" in source
    first_slider = re.search(r"\w+=widgets\.(\w+)\(", source)
    assert first_slider and first_slider.group(1) == "FloatLogSlider"  # the learning rate comes first


def test_widget_and_training_cells_are_marked_for_nbval():
    for source in _code_cells(CHAPTER):
        shows_widgets = "widgets.interact(" in source or ("train_lm(" in source and "verbose=False" not in source)
        if shows_widgets:
            assert source.splitlines()[0] == "# NBVAL_IGNORE_OUTPUT", source[:200]


# --------------------------------------------------------------------------- the checks agree with labkit


def test_lr_check_reference_is_labkits_schedule():
    for max_lr, warmup, total, min_lr in ch06b._SCHEDULES + [(6e-4, 2000, 60000, 6e-5)]:
        for step in list(range(0, total + 3, max(1, total // 97))) + [warmup - 1, warmup, total - 1, total]:
            if step < 0:
                continue
            ours = ch06b._reference_lr_schedule(step, max_lr, warmup, total, min_lr)
            assert math.isclose(ours, lr_at(step, max_lr=max_lr, total_steps=total, warmup_steps=warmup, min_lr=min_lr))


@pytest.mark.parametrize("model", [
    GPT(GPTConfig.preset("gpt-micro", vocab_size=11)),
    GPT(GPTConfig.preset("char-tiny", vocab_size=69)),
    nn.Sequential(nn.Embedding(7, 6), nn.Linear(6, 6, bias=False), nn.LayerNorm(6, bias=False), nn.Linear(6, 3)),
], ids=["gpt-micro", "char-tiny", "plain"])
def test_weight_decay_check_expects_configure_optimizers_groups(model):
    name_of = {id(p): name for name, p in model.named_parameters()}
    groups = configure_optimizer(model, lr=1e-3).param_groups
    decay = {name_of[id(p)] for p in groups[0]["params"]}
    no_decay = {name_of[id(p)] for p in groups[1]["params"]}
    assert groups[0]["weight_decay"] > 0 and groups[1]["weight_decay"] == 0
    assert ch06b._expected_groups(model) == (decay, no_decay)


# --------------------------------------------------------------------------- other correct styles


def _lr_schedule_with_torch(step, max_lr, warmup, total, min_lr):
    if step < warmup:
        return torch.tensor(max_lr * (step + 1) / warmup)
    progress = torch.tensor(min(1.0, (step - warmup) / max(1, total - warmup)), dtype=torch.float64)
    return min_lr + 0.5 * (1 + torch.cos(torch.pi * progress)) * (max_lr - min_lr)  # a 0-d tensor


def _lr_schedule_with_numpy(step, max_lr, warmup, total, min_lr):
    warm = max_lr * (step + 1) / warmup if warmup else max_lr
    progress = np.clip((step - warmup) / max(1, total - warmup), 0.0, 1.0)
    decayed = min_lr + 0.5 * (1 + np.cos(np.pi * progress)) * (max_lr - min_lr)
    return np.where(step < warmup, warm, decayed)[()]  # a NumPy float


@pytest.mark.parametrize("answer", [_lr_schedule_with_torch, _lr_schedule_with_numpy], ids=["torch", "numpy"])
def test_lr_check_accepts_other_correct_styles(answer):
    result = check("06.4", answer, show=False)
    assert result.passed, result.message


def _groups_as_sets_with_ndim(model):
    params = dict(model.named_parameters())
    return {n for n, p in params.items() if p.ndim > 1}, {n for n, p in params.items() if p.ndim <= 1}


def _groups_from_the_optimizer(model):
    name_of = {id(p): name for name, p in model.named_parameters()}
    groups = configure_optimizer(model, lr=1e-3).param_groups
    return tuple([name_of[id(p)] for p in group["params"]] for group in groups)


@pytest.mark.parametrize("answer", [_groups_as_sets_with_ndim, _groups_from_the_optimizer], ids=["sets", "optimizer"])
def test_weight_decay_check_accepts_other_correct_styles(answer):
    result = check("06.5", answer, show=False)
    assert result.passed, result.message


def test_lr_check_rejects_a_rate_in_the_wrong_unit():
    result = check("06.4", lambda step, max_lr, warmup, total, min_lr: 1000 * lr_at(
        step, max_lr=max_lr, total_steps=total, warmup_steps=warmup, min_lr=min_lr), show=False)
    assert not result.passed and "should be" in result.message


def test_weight_decay_check_names_the_missing_parameter():
    def forgets_the_last(model):
        decay, no_decay = ch06b._reference_weight_decay_groups(model)
        return decay, no_decay[:-1]

    result = check("06.5", forgets_the_last, show=False)
    assert not result.passed and "is in neither list" in result.message


