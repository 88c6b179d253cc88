"""Chapter 06a (tokens, embeddings and attention): its notebooks are wired to its checks, and the
checks accept other correct styles of answer while leaving the notebook's random stream alone.

The notebooks themselves are executed by nbval (`make nbval`); these tests only read them.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from labkit.course.checks import ch06a
from labkit.course.exercises import chapter_exercises, check
from labkit.gpt import GPT, GPTConfig
from labkit.tokenizers import merge as labkit_merge
from notebook_cells import cells as _cells, code_cells as _code_cells

REPO = Path(__file__).resolve().parent.parent
CHAPTER = REPO / "chapters" / "06a_tokens_and_attention.ipynb"
SOLUTIONS = REPO / "solutions" / "06a_tokens_and_attention_solutions.ipynb"
IDS = [ex.id for ex in chapter_exercises("06a")]


def test_notebook_has_its_exercises_and_only_those():
    assert IDS == ["06.1", "06.2", "06.3", "06.13", "06.14"]


def test_first_code_cell_seeds():
    assert "labkit.seed_everything(0)" in _code_cells(CHAPTER)[0]


def test_no_development_leftovers():
    for path in (CHAPTER, SOLUTIONS):
        assert "DEVELOPMENT ONLY" not in "\n".join(_code_cells(path)), f"{path.name} still points at a development setting"


def test_exactly_one_browser_test_cell_and_it_redraws_a_figure_from_sliders():
    tagged = [c for c in _cells(CHAPTER) if "browser-test" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    source = "".join(tagged[0]["source"])
    assert source.splitlines()[0] == "# NBVAL_IGNORE_OUTPUT"
    first_control = source.index("widgets.")
    assert source[first_control:].startswith("widgets.IntSlider"), "the first control must be a slider"
    assert "plt.show()" in source and "interact(" in source


def test_chapter_loads_the_shipped_shakespeare_model():
    source = "\n".join(_code_cells(CHAPTER))
    assert 'CHECKPOINTS / "shakespeare_char"' in source or 'load_pretrained("shakespeare_char")' in source


# --------------------------------------------------------------------------- the checks


def test_merge_reference_is_labkits_merge():
    for ids, pair, new_id, _ in ch06a._MERGE_CASES:
        assert ch06a._reference_merge(ids, pair, new_id) == labkit_merge(ids, pair, new_id)


def test_merge_check_accepts_labkits_merge_and_a_tuple_answer():
    assert check("06.1", labkit_merge, show=False).passed

    def merge_as_tuple(ids, pair, new_id):
        out, skip = [], False
        for i, x in enumerate(ids):
            if skip:
                skip = False
            elif i + 1 < len(ids) and (x, ids[i + 1]) == tuple(pair):
                out.append(new_id)
                skip = True
            else:
                out.append(x)
        return tuple(out)

    assert check("06.1", merge_as_tuple, show=False).passed


def test_causal_attention_check_accepts_pytorchs_fused_attention_and_a_batched_answer():
    def fused(q, k, v):
        return F.scaled_dot_product_attention(q[None], k[None], v[None], is_causal=True)[0]

    def with_tril_mask(q, k, v):
        T = q.shape[0]
        weights = (q @ k.T) / q.shape[-1] ** 0.5
        weights = weights.masked_fill(torch.tril(torch.ones(T, T)) == 0, float("-inf"))
        return torch.softmax(weights, dim=1) @ v

    assert check("06.2", fused, show=False).passed
    assert check("06.2", with_tril_mask, show=False).passed
    q, k, v = torch.randn(3, 2, 4, 9, 8).unbind(0)  # a batch of heads: the reference works unchanged
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.allclose(ch06a._reference_causal_attention(q, k, v), expected, atol=1e-5)


def test_parameter_count_reference_matches_labkit_gpt_including_gpt2_on_the_meta_device():
    for V, T, L, C, H in [(65, 32, 1, 16, 2), (69, 256, 6, 192, 6), (4096, 256, 6, 256, 8), (50257, 1024, 12, 768, 12)]:
        with torch.device("meta"):
            model = GPT(GPTConfig(vocab_size=V, block_size=T, n_layer=L, n_head=H, n_embd=C))
        assert ch06a._reference_parameter_count(V, T, L, C) == model.num_parameters()
    assert ch06a.GPT2_PARAMETERS == ch06a._reference_parameter_count(50257, 1024, 12, 768)


def test_parameter_count_check_accepts_a_sum_over_parts_and_numpy_style_numbers():
    def by_parts(vocab_size, block_size, n_layer, n_embd):
        C = n_embd
        linear = lambda n_in, n_out: n_in * n_out + n_out  # noqa: E731
        block = 2 * 2 * C + linear(C, 3 * C) + linear(C, C) + linear(C, 4 * C) + linear(4 * C, C)
        return vocab_size * C + block_size * C + n_layer * block + 2 * C

    assert check("06.3", by_parts, show=False).passed
    assert check("06.3", lambda *a: float(by_parts(*a)), show=False).passed
    assert check("06.3", lambda *a: torch.tensor(by_parts(*a)), show=False).passed


def test_hints_name_the_mistake():
    message = check("06.2", lambda q, k, v: ch06a._attention_variant(q, k, v, scale=1.0), show=False).message
    assert "√d" in message
    message = check("06.3", lambda V, T, L, C: ch06a._reference_parameter_count(V, T, L, C) + V * C, show=False).message
    assert "tying" in message


def test_sliding_window_reference_equals_pytorchs_attention_with_the_same_mask():
    """06.13's reference = F.scaled_dot_product_attention with a banded causal mask; window ≥ T = causal."""
    g = torch.Generator().manual_seed(0)
    for T, window in ((10, 3), (10, 1), (7, 7), (5, 9)):
        q, k, v = (torch.randn(T, 8, generator=g) for _ in range(3))
        i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
        theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=(j <= i) & (j > i - window))
        assert torch.allclose(ch06a._reference_sliding_window_attention(q, k, v, window), theirs, atol=1e-5)
        if window >= T:
            assert torch.allclose(ch06a._reference_sliding_window_attention(q, k, v, window),
                                  ch06a._reference_causal_attention(q, k, v), atol=1e-6)
