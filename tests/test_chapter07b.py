"""Chapter 07b (the GPT as a classifier, LoRA): its notebooks are wired to its checks, its widget is
the one the browser test moves, and its result assertions keep their thresholds; checks 07.4–07.6 (last-token
pooling, LoRA as a module, merging) accept other correct styles of answer and reject the classic mistakes
with the right hint.

The notebooks themselves are executed by nbval (`make nbval`); these tests only read them.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from labkit.course.checks import ch07b
from labkit.course.exercises import chapter_exercises, check
from labkit.finetune import LoRALinear
from notebook_cells import cells as _cells, code_cells as _code_cells

REPO = Path(__file__).resolve().parent.parent
CHAPTER = REPO / "chapters" / "07b_classification_and_lora.ipynb"
SOLUTIONS = REPO / "solutions" / "07b_classification_and_lora_solutions.ipynb"
IDS = [ex.id for ex in chapter_exercises("07b")]


def test_notebook_has_exercises_07_4_to_07_6_and_07_15_and_only_those():
    assert IDS == ["07.4", "07.5", "07.6", "07.15"]


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
    margin = re.search(r'assert acc\["full"\] >= acc\["head only"\] \+ (0\.\d+)\b', source)
    assert margin and float(margin.group(1)) >= 0.04, "full fine-tuning must beat head only by 4 points"
    assert 'assert acc["LoRA r=8"] > acc["head only"] + 0.01' in source
    assert 'assert results[lang, "LoRA r=8"]["trainable"] < 0.05 * results[lang, "LoRA r=8"]["total"]' in source
    # Issue 5's other two targets (pretrained beats from scratch by 3 points in both languages; LoRA r=8
    # within 2 points of full) are NOT met with the shipped base_bpe, and the notebook prints the
    # measured gaps instead of asserting them, and its prose gives them with three seeds.
    assert 'gain = acc["full"] - acc["from scratch"]' in source


def test_a_bag_of_words_yardstick_is_measured_on_the_same_tokens():
    cells = _code_cells(CHAPTER)
    bow = next(c for c in cells if "def bag_of_words(idx):" in c)
    assert 'data[lang]["train"]' in bow and 'results[lang, "bag of words"]' in bow
    assert "scatter_(1, idx, 1.0)" in bow and "marks[:, PAD] = 0" in bow


def test_the_window_and_pooling_are_chosen_on_validation_data_not_on_the_test_set():
    cells = _code_cells(CHAPTER)
    probe = next(c for c in cells if "WINDOW, POOLING = max(" in c)
    chosen = probe.split("WINDOW, POOLING = max(")
    assert '"val", window]' in chosen[0] and '"test"' not in chosen[0]
    assert "probe[lang, choice[0], choice[1]]" in chosen[1].splitlines()[0]
    assert 'for window in ("start", "end")' in chosen[0] and 'for kind in ("last", "mean")' in chosen[0]
    assert "keep=window" in "\n".join(cells)  # the windows are encode_batch's two cuts


def test_every_training_run_uses_the_fused_adamw():
    source = "\n".join(_code_cells(CHAPTER))
    assert source.count("labkit.fit(") == source.count("optimizer=fused_adamw") == 3
    assert "fused=fused" in source and 'optimizer="adamw"' not in source


def test_07_15_chapter_and_solution_measure_what_the_check_recomputes():
    """The measurement cell of 07.15 builds the models and the batch as `ch07b.memory_share` does."""
    for path in (CHAPTER, SOLUTIONS):
        cell = next(c for c in _code_cells(path) if c.startswith("committed = prediction"))
        assert "torch.randint(0, PAD, (batch_size, 32), generator=torch.Generator().manual_seed(0))" in cell
        assert 'pooling="mean"' in cell and "lora_classifier(rank=8" in cell
        assert 'parts["LoRA r=8"]["total"] / parts["full"]["total"]' in cell and "for batch_size in (16, 64)" in cell
    source = "\n".join(_code_cells(CHAPTER))
    assert 'LORA_TARGETS = ("c_attn", "c_proj", "c_fc")' in source
    assert tuple(eval(source.split("LORA_ALSO_TRAINS = ")[1].split("  #")[0])) == ch07b.LORA_ALSO_TRAINS
    assert ch07b.LORA_TARGETS == ("c_attn", "c_proj", "c_fc")


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
    # The widget opens on rank 8, which the four-method experiment already trained: drawing it costs
    # nothing when the chapter runs (07b's 5-minute budget); each new rank the slider reaches trains once.
    # (The browser test runs only the setup cells: there rank 8 trains first, then the next rank.)
    assert "options=[1, 2, 4, 8, 16, 32, 64], value=8" in source and "def explore_rank(rank=8," in source
    assert 'result(language, f"LoRA r={rank}")' in source and '"LoRA r=8"' in "".join(
        "".join(c["source"]) for c in _cells(CHAPTER) if 'METHODS = [' in "".join(c["source"]))


# --------------------------------------------------------------------------- the checks


def test_last_token_pool_check_accepts_a_loop_and_gather():
    def with_a_loop(hidden, idx, pad_id):
        rows = []
        for h, ids in zip(hidden, idx):
            n = int((ids != pad_id).sum())
            rows.append(h[n - 1])
        return torch.stack(rows)

    def with_gather(hidden, idx, pad_id):
        last = ((idx != pad_id).sum(1) - 1)[:, None, None].expand(-1, 1, hidden.shape[2])
        return hidden.gather(1, last).squeeze(1)

    assert check("07.4", with_a_loop, show=False).passed
    assert check("07.4", with_gather, show=False).passed


def test_last_token_pool_hint_names_the_padding_column_and_the_off_by_one():
    assert "last *column*" in check("07.4", lambda h, i, p: h[:, -1], show=False).message
    off_by_one = lambda h, i, p: h[torch.arange(len(h)), (i != p).sum(1).clamp(max=h.shape[1] - 1)]  # noqa: E731
    assert "off by one" in check("07.4", off_by_one, show=False).message


def test_lora_check_accepts_nn_linear_factors_initialised_like_the_paper():
    class LinearFactors(nn.Module):  # A and B as parameters, initialised like Kaiming, written with F.linear
        def __init__(self, base, rank, alpha):
            super().__init__()
            base.weight.requires_grad = False
            base.bias.requires_grad = False
            self.base, self.rank, self.alpha = base, rank, alpha
            self.A = nn.Parameter(torch.empty(rank, base.in_features))
            nn.init.kaiming_uniform_(self.A, a=5 ** 0.5)
            self.B = nn.Parameter(torch.zeros(base.out_features, rank))

        def forward(self, x):
            update = nn.functional.linear(nn.functional.linear(x, self.A), self.B)
            return self.base(x) + update * self.alpha / self.rank

    assert check("07.5", LinearFactors, show=False).passed


def test_lora_hints_say_why_b_starts_at_zero_and_a_does_not():
    assert "initialise B with zeros" in check("07.5", ch07b._RandomB, show=False).message
    assert "never learns" in check("07.5", ch07b._BothZero, show=False).message
    assert "alpha / rank" in check("07.5", ch07b._ScaledByAlpha, show=False).message


def test_merge_check_accepts_a_copy_of_the_base_layer():
    import copy

    def via_copy(lora):
        merged = copy.deepcopy(lora.base)
        with torch.no_grad():
            merged.weight += lora.delta_weight()
        return merged

    assert check("07.6", via_copy, show=False).passed


def test_merge_reference_equals_labkits_merged_layer():
    torch.manual_seed(3)
    lora = LoRALinear(nn.Linear(4, 6), rank=2, alpha=3)
    with torch.no_grad():
        lora.lora_B.weight.normal_()
    x = torch.randn(5, 4)
    torch.testing.assert_close(ch07b._reference_merge(lora)(x), lora.merged()(x))




def test_the_browser_stand_in_chooses_what_the_committed_run_chose():
    """The browser slice replaces the linear probes that choose the window and pooling by their choice:
    it must be the one the committed run printed."""
    import json

    from notebook_cells import stand_in

    cell = next(c for c in json.loads(CHAPTER.read_text())["cells"]
                if "".join(c["source"]).startswith("encoded = {(lang, split, window)"))
    printed = "".join("".join(o.get("text", "")) for o in cell["outputs"] if o.get("output_type") == "stream")
    chosen = re.search(r"the (start|end) of each review, '(last|mean)' pooling", printed)
    assert chosen, "the cell should print its choice of window and pooling"
    assert f'WINDOW, POOLING = "{chosen.group(1)}", "{chosen.group(2)}"' in stand_in(cell)
