"""Chapter 07b (the GPT as a classifier, LoRA): its notebooks are wired to its checks, its widget is
the one the browser test moves, and its result assertions keep their thresholds. (The checks'
own tests are already in tests/test_chapter07b.py.)

The notebooks themselves are executed by nbval (`make nbval`); these tests only read them.
"""
from __future__ import annotations

import re
from pathlib import Path

from labkit.exercises import chapter_exercises
from notebook_cells import cells as _cells, code_cells as _code_cells

REPO = Path(__file__).resolve().parent.parent
CHAPTER = REPO / "chapters" / "07b_classification_and_lora.ipynb"
SOLUTIONS = REPO / "solutions" / "07b_classification_and_lora_solutions.ipynb"
IDS = [ex.id for ex in chapter_exercises("07b")]


def test_notebook_has_exercises_07_4_to_07_6_and_only_those():
    assert IDS == ["07.4", "07.5", "07.6"]


def test_first_code_cell_seeds_and_offers_a_full_run():
    first = _code_cells(CHAPTER)[0]
    assert "labkit.seed_everything(0)" in first
    assert re.search(r"^FULL_RUN = False\b", first, re.MULTILINE)
    assert "labkit.seed_everything(0)" in _code_cells(SOLUTIONS)[0]


def test_the_classifier_and_lora_are_built_by_hand_before_labkit_is_used():
    cells = _code_cells(CHAPTER)
    pooled = next(i for i, c in enumerate(cells) if "pooled = hidden[torch.arange(len(idx)), lengths - 1]" in c)
    classifier = next(i for i, c in enumerate(cells) if "GPTClassifier(base" in c)
    assert pooled <= classifier
    assert "assert torch.allclose(classifier(idx), logits" in cells[classifier]
    by_hand = next(i for i, c in enumerate(cells) if "def lora_forward(x):" in c)
    source = cells[by_hand]
    assert source.index("def lora_forward") < source.index("LoRALinear(layer")
    assert "assert torch.equal(lora_forward(x), layer(x))" in source  # B = 0: the pretrained layer exactly
    assert "assert torch.allclose(lora(x), lora_forward(x)" in source and "merged = lora.merged()" in source


def test_result_assertions_keep_their_thresholds():
    source = "\n".join(_code_cells(CHAPTER))
    margin = re.search(r"assert gain >= (0\.\d+)\b", source)
    assert margin and float(margin.group(1)) >= 0.03, "fine-tuning must beat from scratch by a stated margin"
    assert 'assert acc["LoRA r=8"] > acc["head only"] + 0.01' in source
    assert 'assert acc["full"] - acc["LoRA r=8"] <= 0.02' in source, "LoRA r=8 within 2 points of full (issue 5)"
    assert 'assert results[lang, "LoRA r=8"]["trainable"] < 0.05 * results[lang, "LoRA r=8"]["total"]' in source


def test_pooling_is_chosen_on_validation_data_not_on_the_test_set():
    cells = _code_cells(CHAPTER)
    probe = next(c for c in cells if "POOLING = max(" in c)
    assert 'data[lang]["val"]' in probe and '"test"' not in probe.split("POOLING = max(")[1]


def test_the_experiment_compares_four_methods_on_both_languages():
    source = "\n".join(_code_cells(CHAPTER))
    assert 'METHODS = ["head only", "full", "LoRA r=8", "from scratch"]' in source
    assert 'LANGUAGES = {"English": "rotten_tomatoes", "Chinese": "chinese_reviews"}' in source
    assert "training_memory(" in source and "parameter_counts(model)" in source
    assert "plot_confusion_matrix" in source


def test_exactly_one_browser_test_cell_and_it_redraws_a_figure_from_a_rank_slider():
    tagged = [c for c in _cells(CHAPTER) if "browser-test" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    source = "".join(tagged[0]["source"])
    assert source.splitlines()[0] == "# NBVAL_IGNORE_OUTPUT"
    first_control = source.index("widgets.", source.index("interact("))
    assert re.match(r"widgets\.SelectionSlider\(", source[first_control:]), "the first control must be a slider"
    assert "plt.show()" in source
    # The browser test moves the slider one step right (4 -> 8): rank 8 was trained by the experiment
    # above, so the figure redraws at once; rank 4 trains when the cell runs.
    assert "options=[1, 2, 4, 8, 16, 32, 64], value=4" in source
    assert 'rank_results = {(lang, 8): results[lang, "LoRA r=8"]' in source
