"""Chapter 06c (sampling and the KV cache): its notebooks are wired to its checks, its widget is
the one the browser test moves, and the checks accept other correct styles of answer while
rejecting the classic mistakes.

The notebooks themselves are executed by nbval (`make nbval`); these tests only read them.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from labkit.course.checks import ch06c
from labkit.course.exercises import chapter_exercises, check
from labkit.gpt import filter_logits
from notebook_cells import cells as _cells, code_cells as _code_cells

REPO = Path(__file__).resolve().parent.parent
CHAPTER = REPO / "chapters" / "06c_sampling_and_kv_cache.ipynb"
SOLUTIONS = REPO / "solutions" / "06c_sampling_and_kv_cache_solutions.ipynb"
IDS = [ex.id for ex in chapter_exercises("06c")]


def test_chapter_has_exercises_06_6_to_06_8_06_12_06_16_and_06_17():
    assert IDS == ["06.6", "06.7", "06.8", "06.12", "06.16", "06.17"]


def test_06_17_chapter_and_solution_measure_what_the_check_recomputes():
    """Five copies of FLAT in one batch, 40 characters at temperature 2, one generator seeded 0, top_k 1 last:
    as `ch06c.distinct_texts`; without the cut the five samples differ, with it they are one text."""
    for path in (CHAPTER, SOLUTIONS):
        cell = next(c for c in _code_cells(path) if c.startswith("committed = prediction") and "top_k=1" in c)
        assert "prompts = torch.tensor([en.encode(FLAT)] * 5)" in cell and "for top_k in (None, 1):" in cell
        assert ("shakespeare.generate(prompts, 40, temperature=2.0, top_k=top_k, "
                "generator=torch.Generator().manual_seed(0))") in cell
    assert (ch06c.TOP_K_ONE_SAMPLES, ch06c.TOP_K_ONE_CHARACTERS) == (5, 40)
    assert ch06c.distinct_texts(top_k=None) == 5 and ch06c.distinct_texts() == 1


def test_06_16_chapter_and_solution_measure_what_the_check_recomputes():
    """The shipped Shakespeare model after FLAT, the temperature before the nucleus, top-p 0.9: as
    `ch06c.nucleus_size`; and a lower temperature does shrink the nucleus."""
    for path in (CHAPTER, SOLUTIONS):
        cell = next(c for c in _code_cells(path) if c.startswith("committed = prediction"))
        assert "logits = next_token_logits(shakespeare, en, FLAT)" in cell and "for temperature in (1.0, 0.5):" in cell
        assert "F.softmax(logits / temperature, dim=-1)" in cell and "top_p_probs(probs, 0.9)" in cell
    assert 'PEAKED, FLAT = "JULIET:\\nO Romeo, Romeo! wherefore art thou R", "ROMEO:\\n"' in "\n".join(_code_cells(CHAPTER))
    assert ch06c.nucleus_size(0.5) < ch06c.nucleus_size(1.0) - 1 < ch06c.nucleus_size(2.0)


def test_first_code_cell_seeds():
    assert "labkit.seed_everything(0)" in _code_cells(CHAPTER)[0]
    assert "labkit.seed_everything(0)" in _code_cells(SOLUTIONS)[0]


def test_result_assertions_keep_their_thresholds():
    source = "\n".join(_code_cells(CHAPTER))
    assert "assert abs(loss - recorded) < 0.1" in source
    assert "assert speedup > 1.5" in source
    assert "assert measured_bytes == formula_bytes" in source
    assert re.search(r"assert torch\.equal\(hf_greedy, our_greedy\)", source)
    assert 'labkit.compare("logits: our GPT vs Hugging Face\'s GPT2LMHeadModel"' in source


def test_one_widget_cell_is_tagged_for_the_browser_test_and_starts_with_temperature():
    tagged = [c for c in _cells(CHAPTER) if "browser-test" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    source = "".join(tagged[0]["source"])
    assert source.splitlines()[0] == "# NBVAL_IGNORE_OUTPUT"
    assert "widgets.interact(" in source
    # the browser test moves the first slider: it must be the temperature, which redraws the bars
    first_slider = re.search(r"(\w+)=widgets\.\w*Slider\(", source)
    assert first_slider and first_slider.group(1) == "temperature"
    function = re.search(r"widgets\.interact\(\s*(\w+)", source).group(1)
    body = next(c for c in _code_cells(CHAPTER) if f"def {function}(" in c)
    assert "plt.show()" in body, "the widget's function must redraw an image when a slider moves"


def test_chapter_loads_the_shipped_checkpoints_and_reads_nothing_from_the_network():
    source = "\n".join(_code_cells(CHAPTER))
    assert '"shakespeare_char", "tang_char"' in source
    assert "from_pretrained(" not in source, "the chapter runs offline: from_pretrained belongs in a markdown cell"


# --------------------------------------------------------------------------- the checks


def test_filter_logits_of_labkit_passes_both_filter_checks():
    """The chapter says filter_logits does what 06.6 and 06.7 ask: the checks must agree."""
    assert check("06.6", lambda logits, k: filter_logits(logits, top_k=k), show=False).passed
    assert check("06.7", lambda logits, p: filter_logits(logits, top_p=p), show=False).passed


def test_top_k_check_accepts_a_sort_based_answer():
    def top_k_filter(logits, k):
        k = min(k, logits.shape[-1])
        kth = logits.sort(dim=-1, descending=True).values[:, k - 1:k]
        return torch.where(logits >= kth, logits, torch.tensor(float("-inf")))

    assert check("06.6", top_k_filter, show=False).passed


def test_top_p_check_accepts_keeping_every_tied_token_at_the_boundary():
    assert check("06.7", ch06c._top_p_tie_inclusive, show=False).passed


def test_top_p_check_accepts_a_loop_over_rows():
    def top_p_filter(logits, p):
        out = logits.clone()
        for row in range(len(logits)):
            probs = torch.softmax(logits[row], dim=0)
            order = torch.argsort(probs, descending=True)
            total = 0.0
            for i in order.tolist():
                if total >= p and p < 1:
                    out[row, i] = float("-inf")
                total += probs[i].item()
        return out

    assert check("06.7", top_p_filter, show=False).passed


def test_top_p_rounding_mistake_gets_the_p_equals_one_hint():
    message = check("06.7", ch06c._top_p_rounding, show=False).message
    assert "p = 1" in message and "rounding" in message


def test_top_k_tie_mistake_gets_the_tie_hint():
    message = check("06.6", ch06c._top_k_exactly_k, show=False).message
    assert "tied" in message


def test_kv_cache_check_accepts_floats_and_numpy_numbers():
    import numpy as np

    assert check("06.8", lambda L, H, hs, T, B, b: float(2 * L * H * hs * T * B * b), show=False).passed
    assert check("06.8", lambda L, H, hs, T, B, b: np.prod([2, L, H, hs, T, B, b], dtype=np.int64), show=False).passed
    assert check("06.8", lambda L, H, hs, T, B, b: torch.tensor(2 * L * H * hs * T * B * b), show=False).passed


def test_kv_cache_reference_matches_a_real_cache():
    """The formula the check teaches counts exactly the bytes labkit's KVCache holds."""
    from labkit.gpt import GPT, GPTConfig, KVCache

    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("gpt-micro", vocab_size=11, n_layer=2)).eval()
    cache = KVCache(model.config.n_layer)
    with torch.no_grad():
        model(torch.zeros(3, 20, dtype=torch.long), cache)
    held = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
    c = model.config
    assert held == ch06c._reference_kv_cache_bytes(c.n_layer, c.n_head, c.n_embd // c.n_head, 20, 3, 4)




def test_min_p_reference_equals_transformers_min_p_warper():
    """06.12's reference keeps exactly the tokens Hugging Face's MinPLogitsWarper keeps (min_tokens_to_keep=1)."""
    logits_process = pytest.importorskip("transformers.generation.logits_process")
    for logits, min_p in ch06c._min_p_cases():
        if min_p == 0.0:  # transformers requires 0 <= min_p <= 1 too; 0 keeps everything in both
            continue
        theirs = logits_process.MinPLogitsWarper(min_p)(torch.zeros(len(logits), 1, dtype=torch.long), logits.clone())
        assert torch.equal(ch06c._reference_min_p_filter(logits, min_p), theirs), min_p


def test_min_p_keeps_few_tokens_where_the_model_is_sure_and_many_where_it_is_not():
    logits = torch.tensor([[8.0, 2.0, 1.0, 0.0], [1.0, 0.9, 0.8, 0.7]])
    kept = ch06c._reference_min_p_filter(logits, 0.1) != float("-inf")
    assert kept.sum(dim=-1).tolist() == [1, 4]
    assert check("06.12", ch06c._reference_min_p_filter, show=False).passed


def test_min_p_cuts_a_long_tail_that_top_p_must_take_in_as_the_solutions_say():
    """The solutions' example: two good tokens and 30 poor ones at temperature 1."""
    logits = torch.tensor([[4.0, 3.5] + [0.0] * 30])
    assert int((ch06c._reference_min_p_filter(logits, 0.1) != float("-inf")).sum()) == 2
    assert int((ch06c._reference_top_p_filter(logits, 0.9) != float("-inf")).sum()) > 15
