"""Checks for chapter 06a (project practice II, part 1: tokens, embeddings and attention).

The stub cells in ``chapters/06a_tokens_and_attention.ipynb``::

    def merge(ids, pair, new_id):
        raise NotImplementedError  # TODO: a new list where every `pair` (left to right) became new_id
    check("06.1", merge)

    def causal_attention(q, k, v):
        raise NotImplementedError  # TODO: queries, keys (T, d) and values (T, d_v) -> outputs (T, d_v)
    check("06.2", causal_attention)

    def gpt_parameter_count(vocab_size, block_size, n_layer, n_embd):
        raise NotImplementedError  # TODO: a formula (an int), without building a model
    check("06.3", gpt_parameter_count)

    def sliding_window_attention(q, k, v, window):
        raise NotImplementedError  # TODO: like causal_attention, but query i sees only keys i - window + 1 … i
    check("06.13", sliding_window_attention)

    prediction = ...  # TODO: "a", "b" or "c": decide, run this cell, THEN run the measurement below
    ...               # the measurement cell: committed = prediction, then the similarities, printed
    measured = ...     # TODO: the mean cosine similarity of neighbouring positions, printed above
    explanation = ...  # TODO: "a", "b" or "c"
    check("06.14", dict(committed=committed, prediction=prediction, measured=measured, explanation=explanation))

Every check runs in well under a second and leaves the notebook's random stream alone.
"""
from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from labkit.course.checks.predict import PredictMeasureExplain
from labkit.course.exercises import Hint, close, exercise, expect_callable, expect_tensor, same_shape


def _not_done(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError  # what an untouched stub function does


# --------------------------------------------------------------------------- 06.1 the BPE merge step


def _reference_merge(ids: Sequence[int], pair: tuple[int, int], new_id: int) -> list[int]:
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)  # the pair becomes one new token
            i += 2              # both of its ids are used up
        else:
            out.append(ids[i])
            i += 1
    return out


def _random_ids(n: int, high: int, seed: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, high, (n,), generator=generator).tolist()


# (ids, pair, new_id, what the case is about)
_MERGE_CASES: list[tuple[list[int], tuple[int, int], int, str]] = [
    ([1, 2, 3, 1, 2], (1, 2), 4, "the example of the chapter"),
    ([101, 32, 116, 104, 101, 32, 116, 104], (116, 104), 256, "byte ids, two occurrences"),
    ([3, 1, 2], (1, 2), 9, "the pair at the very end"),
    ([1, 2, 3], (1, 2), 9, "the pair at the start, one id after it"),
    ([2, 1, 2, 1], (1, 2), 9, "the pair in the middle"),
    ([2, 1], (1, 2), 9, "the pair in the other order: (2, 1) is not (1, 2)"),
    ([5, 5, 5], (5, 5), 9, "three equal ids: the pair (5, 5) overlaps itself"),
    ([5, 5, 5, 5], (5, 5), 9, "four equal ids"),
    ([7], (7, 7), 8, "a single id"),
    ([], (1, 2), 3, "no ids at all"),
    ([1, 2], (1, 2), 256, "nothing but the pair"),
    (_random_ids(300, 4, seed=6), (1, 3), 4, "300 random ids between 0 and 3"),
]


def _as_id_list(value: Any, what: str) -> list[int]:
    if isinstance(value, torch.Tensor):
        raise Hint(f"{what} should be a list of ints, got a tensor; build a Python list (out = [] … out.append(…))")
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise Hint(f"{what} should be a list of ints, got {type(value).__name__}"
                   + (" (did you forget to return the list?)" if value is None else ""))
    bad = [x for x in value if isinstance(x, bool) or not isinstance(x, numbers.Integral)]
    if bad:
        raise Hint(f"{what} should hold ints only, got {bad[0]!r} ({type(bad[0]).__name__}) in it")
    return [int(x) for x in value]


def _check_merge(merge: Callable) -> None:
    expect_callable(merge, "merge")
    for ids, pair, new_id, about in _MERGE_CASES:
        given = list(ids)
        what = f"merge({_show(ids)}, {pair}, {new_id})"
        got = _as_id_list(merge(given, pair, new_id), what)
        if given != ids:
            raise Hint(f"{what} changed the list you passed in; build a new list (out = []) and leave `ids` alone: "
                       "the caller still needs it")
        expected = _reference_merge(ids, pair, new_id)
        if got == expected:
            continue
        start = f"{what} ({about}) gave {_show(got)}, expected {_show(expected)}: "
        a, b = pair
        if expected and got == expected[:-1]:
            raise Hint(start + "the last id went missing. A loop that stops at len(ids) - 1 never reaches it: "
                       "loop while i < len(ids), and check i + 1 < len(ids) before looking at a pair")
        if got == _merge_first_only(ids, pair, new_id):
            raise Hint(start + "only the first occurrence was replaced; replace every one of them")
        if got == _merge_right_to_left(ids, pair, new_id):
            raise Hint(start + "you merged from the right. BPE merges left to right: in [5, 5, 5] the pair (5, 5) "
                       "at positions 0-1 wins, so the result is [9, 5]")
        if got == _merge_keeps_second(ids, pair, new_id):
            raise Hint(start + "the second id of each merged pair is still there: after a merge, skip both ids (i += 2)")
        if got == _merge_unordered(ids, pair, new_id):
            raise Hint(start + f"you merged ({b}, {a}) too. Order matters: only {a} followed by {b} is the pair")
        if len(got) < len(expected) and a == b:
            raise Hint(start + "an id was used in two pairs. Each id can join only one pair: "
                       "after merging positions i and i + 1, continue at i + 2")
        raise Hint(start + "walk along the list with an index i: if ids[i], ids[i + 1] is the pair, append new_id and "
                   "move on by 2, otherwise append ids[i] and move on by 1")


def _show(ids: Sequence[int], limit: int = 8) -> str:
    ids = list(ids)
    return str(ids) if len(ids) <= limit else "[" + ", ".join(map(str, ids[:limit])) + f", … ({len(ids)} ids)]"


def _merge_first_only(ids: Sequence[int], pair: tuple[int, int], new_id: int) -> list[int]:
    ids = list(ids)
    for i in range(len(ids) - 1):
        if (ids[i], ids[i + 1]) == pair:
            return ids[:i] + [new_id] + ids[i + 2:]
    return ids


def _merge_right_to_left(ids: Sequence[int], pair: tuple[int, int], new_id: int) -> list[int]:
    return _reference_merge(list(ids)[::-1], (pair[1], pair[0]), new_id)[::-1]


def _merge_keeps_second(ids: Sequence[int], pair: tuple[int, int], new_id: int) -> list[int]:
    out = []
    for i, x in enumerate(ids):
        out.append(new_id if i + 1 < len(ids) and (x, ids[i + 1]) == pair else x)
    return out


def _merge_unordered(ids: Sequence[int], pair: tuple[int, int], new_id: int) -> list[int]:
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) in (pair, pair[::-1]):  # either order
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _merge_drops_last(ids: Sequence[int], pair: tuple[int, int], new_id: int) -> list[int]:
    out, i = [], 0
    while i < len(ids) - 1:  # never looks at the last id on its own
        if (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _merge_in_place(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    i = 0
    while i < len(ids) - 1:
        if (ids[i], ids[i + 1]) == pair:
            ids[i:i + 2] = [new_id]
        i += 1
    return ids


exercise(
    "06.1",
    title="The BPE merge step",
    reference=lambda: _reference_merge,
    stub=lambda: _not_done,
    wrong=[
        lambda: _merge_first_only,
        lambda: _merge_right_to_left,
        lambda: _merge_keeps_second,
        lambda: _merge_unordered,
        lambda: _merge_drops_last,
        lambda: _merge_in_place,
        lambda: lambda ids, pair, new_id: torch.tensor(_reference_merge(ids, pair, new_id)),  # a tensor
        lambda: lambda ids, pair, new_id: print(_reference_merge(ids, pair, new_id)),         # printed, not returned
    ],
)(_check_merge)


# --------------------------------------------------------------------------- 06.2 causal attention, one head


def _reference_causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    T, d = q.shape[-2], q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)                             # (T, T): query i · key j
    future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(diagonal=1)  # j > i
    weights = F.softmax(scores.masked_fill(future, float("-inf")), dim=-1)       # each row sums to 1
    return weights @ v                                                           # (T, d_v)


def _attention_variant(q, k, v, *, scale: float | str = "sqrt d", mask: str = "future", softmax_dim: int = -1,
                       zero_after: bool = False, fill: float = float("-inf")) -> torch.Tensor:
    """Attention with one thing changed, to recognise a learner's mistake. scale: "sqrt d", "d" or a number."""
    T, d = q.shape[-2], q.shape[-1]
    scores = q @ k.transpose(-2, -1) / ({"sqrt d": math.sqrt(d), "d": d}[scale] if isinstance(scale, str) else scale)
    ones = torch.ones(T, T, dtype=torch.bool)
    hidden = {"future": ones.triu(1), "past": ones.tril(-1), "none": torch.zeros_like(ones)}[mask]
    if zero_after:
        return F.softmax(scores, dim=softmax_dim).masked_fill(hidden, 0.0) @ v
    return F.softmax(scores.masked_fill(hidden, fill), dim=softmax_dim) @ v


_ATTENTION_MISTAKES: list[tuple[dict[str, Any], str]] = [
    (dict(mask="none"), "every position also looks at later positions: mask the future. Set the scores of keys "
                        "j > i to -inf before the softmax (torch.ones(T, T).triu(1) marks them)"),
    (dict(mask="past"), "each position looks at itself and the *later* positions, the future: the mask is the wrong "
                        "way round. Hide keys j > i (above the diagonal: .triu(diagonal=1))"),
    (dict(scale=1.0), "the scores are not scaled: divide q @ kᵀ by √d, d = q.shape[-1]"),
    (dict(scale="d"), "you divided the scores by d; divide by √d (math.sqrt(d))"),
    (dict(softmax_dim=0), "the softmax runs down the columns: each *row* (one query's weights over the keys) must sum "
                          "to 1, so use softmax(..., dim=-1)"),
    (dict(zero_after=True), "you zeroed the future after the softmax, so the weights of a row no longer sum to 1. "
                            "Mask before the softmax, with -inf: softmax turns -inf into a weight of exactly 0"),
    (dict(fill=0.0), "the masked scores were set to 0, but exp(0) = 1: the future still gets weight. "
                     "Fill them with float('-inf') instead"),
]


def _check_causal_attention(causal_attention: Callable) -> str:
    expect_callable(causal_attention, "causal_attention")
    generator = torch.Generator().manual_seed(62)
    note = "exact"
    for T, d, d_v in ((1, 8, 6), (2, 8, 6), (7, 8, 6), (16, 4, 5), (33, 16, 16)):
        q, k, v = (torch.randn(T, n, generator=generator) * 2 for n in (d, d, d_v))
        before = [t.clone() for t in (q, k, v)]
        what = f"causal_attention(q, k, v) with T={T}, d={d}, d_v={d_v}"
        got = expect_tensor(causal_attention(q, k, v), what)
        if not all(torch.equal(a, b) for a, b in zip((q, k, v), before)):
            raise Hint(f"{what} changed q, k or v in place (such as q /= …); compute new tensors instead")
        if tuple(got.shape) == (T, T) and d_v != T:
            raise Hint(f"{what} returned shape ({T}, {T}): those are the attention weights. "
                       "The output is the weighted sum of the values: weights @ v, shape (T, d_v)")
        same_shape(got, (T, d_v), what)
        expected = _reference_causal_attention(q, k, v)
        if torch.allclose(got, expected, atol=1e-5, rtol=1e-4):
            note = close(got, expected, atol=1e-5, what=what)
            continue
        if T == 1:
            raise Hint(f"{what}: with one token there is only itself to look at (weight 1), so the output must "
                       "equal v; check the softmax and the weighted sum (weights @ v)")
        for kwargs, hint in _ATTENTION_MISTAKES:
            if torch.allclose(got, _attention_variant(q, k, v, **kwargs), atol=1e-5, rtol=1e-4):
                raise Hint(f"{what}: {hint}")
        return close(got, expected, atol=1e-5, what=what)
    return note


exercise(
    "06.2",
    title="Causal self-attention, one head",
    reference=lambda: _reference_causal_attention,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda q, k, v: _attention_variant(q, k, v, mask="none"),
        lambda: lambda q, k, v: _attention_variant(q, k, v, mask="past"),
        lambda: lambda q, k, v: _attention_variant(q, k, v, scale=1.0),
        lambda: lambda q, k, v: _attention_variant(q, k, v, scale="d"),
        lambda: lambda q, k, v: _attention_variant(q, k, v, softmax_dim=0),
        lambda: lambda q, k, v: _attention_variant(q, k, v, zero_after=True),
        lambda: lambda q, k, v: _attention_variant(q, k, v, fill=0.0),
        lambda: lambda q, k, v: F.softmax(q @ k.T / math.sqrt(q.shape[-1]), dim=-1),  # the weights, not the output
        lambda: _attention_scaling_q_in_place,
    ],
)(_check_causal_attention)


def _attention_scaling_q_in_place(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    q /= math.sqrt(q.shape[-1])
    return _attention_variant(q, k, v, scale=1.0)


# --------------------------------------------------------------------------- 06.3 counting a GPT's parameters


def _reference_parameter_count(vocab_size: int, block_size: int, n_layer: int, n_embd: int) -> int:
    C = n_embd
    embeddings = vocab_size * C + block_size * C  # token and position embeddings (lm_head is tied to wte)
    attention = (C * 3 * C + 3 * C) + (C * C + C)  # c_attn (q, k, v at once) and c_proj, with biases
    mlp = (C * 4 * C + 4 * C) + (4 * C * C + C)   # c_fc and c_proj, with biases
    layer_norms = 2 * (2 * C)                     # ln_1 and ln_2: a weight and a bias each
    return embeddings + n_layer * (attention + mlp + layer_norms) + 2 * C  # + the final LayerNorm ln_f


# (vocab_size, block_size, n_layer, n_embd): small enough to build in a few milliseconds
_COUNT_CONFIGS = [(65, 32, 1, 16), (69, 64, 2, 24), (300, 16, 3, 48), (1000, 128, 2, 64)]
GPT2_PARAMETERS = 124_439_808  # GPT-2 small, 50257 tokens, 1024 positions, 12 layers, 768 channels


def _labkit_count(vocab_size: int, block_size: int, n_layer: int, n_embd: int) -> int:
    from labkit.gpt import GPT, GPTConfig

    with torch.random.fork_rng(devices=[]):
        config = GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_head=1, n_embd=n_embd)
        return GPT(config).num_parameters()


def _as_count(value: Any, what: str) -> int:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise Hint(f"{what} should be a number (an int), got {type(value).__name__} {value!r:.60}")
    if not float(value).is_integer():
        raise Hint(f"{what} is {value}, not a whole number: a parameter count is an int")
    return value if isinstance(value, int) else int(float(value))


def _check_parameter_count(gpt_parameter_count: Callable) -> str:
    expect_callable(gpt_parameter_count, "gpt_parameter_count")
    cases = [(config, _labkit_count(*config)) for config in _COUNT_CONFIGS]
    cases.append(((50257, 1024, 12, 768), GPT2_PARAMETERS))
    for (V, T, L, C), expected in cases:
        what = f"gpt_parameter_count(vocab_size={V}, block_size={T}, n_layer={L}, n_embd={C})"
        got = _as_count(gpt_parameter_count(V, T, L, C), what)
        if got == expected:
            continue
        diff = got - expected
        start = f"{what} is {got:,}, labkit's GPT has {expected:,} (a difference of {diff:+,}): "
        known = {
            V * C: "you counted the output layer lm_head (V × C) as well, but it shares its weight with the token "
                   "embedding (weight tying): count that matrix once",
            -T * C: "the position embedding is missing: block_size × n_embd",
            -V * C: "the token embedding is missing: vocab_size × n_embd (the same matrix is the output layer)",
            -L * 9 * C: "the biases of the four Linear layers are missing: 3C + C + 4C + C per block",
            -(L * 4 * C + 2 * C): "the LayerNorms are missing: each has a weight and a bias of n_embd numbers; two per "
                                  "block, plus the final one",
            -2 * C: "the final LayerNorm ln_f (2 × n_embd) is missing",
            -L * 4 * C: "the two LayerNorms of each block (2 × 2 × n_embd) are missing",
            -(L * 13 * C + 2 * C): "the biases and the LayerNorms are missing: GPT-2 has biases in every Linear and "
                                   "LayerNorm",
            -L * (6 * C * C + 3 * C): "the MLP looks too narrow: its hidden layer is 4 × n_embd wide "
                                      "(c_fc: C → 4C, c_proj: 4C → C)",
            -L * (2 * C * C + 2 * C): "attention looks too small: c_attn makes queries, keys and values at once, "
                                      "C → 3C, then c_proj is C → C",
            -L * (C * C + C): "attention's output projection c_proj (C × C + C) is missing",
        }
        if L > 1 and expected - got == (L - 1) * (12 * C * C + 13 * C):
            raise Hint(start + "it looks like one block was counted; multiply a block's parameters by n_layer")
        if diff in known:
            raise Hint(start + known[diff])
        raise Hint(start + "add up, per block, ln_1, attention (c_attn C → 3C and c_proj C → C), ln_2 and the MLP "
                   "(c_fc C → 4C, c_proj 4C → C), each Linear with a bias; then the embeddings and ln_f")
    return f"GPT-2 small: {GPT2_PARAMETERS:,} parameters"


exercise(
    "06.3",
    title="Count a GPT's parameters",
    reference=lambda: _reference_parameter_count,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda V, T, L, C: _reference_parameter_count(V, T, L, C) + V * C,         # untied lm_head
        lambda: lambda V, T, L, C: _reference_parameter_count(V, T, L, C) - T * C,         # no position embedding
        lambda: lambda V, T, L, C: _reference_parameter_count(V, T, L, C) - L * 9 * C,     # no biases
        lambda: lambda V, T, L, C: _reference_parameter_count(V, T, L, C) - L * 4 * C - 2 * C,  # no LayerNorms
        lambda: lambda V, T, L, C: V * C + T * C + L * 12 * C * C,                          # the textbook 12·L·C²
        lambda: lambda V, T, L, C: _reference_parameter_count(V, T, 1, C),                  # one block
        lambda: lambda V, T, L, C: _reference_parameter_count(V, T, L, C) - L * (6 * C * C + 3 * C),  # MLP 1×
        lambda: lambda V, T, L, C: float(_reference_parameter_count(V, T, L, C)) + 0.5,     # not whole
    ],
)(_check_parameter_count)


# --------------------------------------------------------------------------- 06.13 sliding-window attention


def _window_mask(T: int, window: int, *, extra: int = 0, future: bool = False) -> torch.Tensor:
    """(T, T) True where key j is hidden from query i: outside i - window + 1 - extra ≤ j ≤ i
    (with future=True the future is not hidden, a learner's mistake)."""
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    hidden = j <= i - window - extra
    return hidden if future else hidden | (j > i)


def _window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int, **mistake: Any) -> torch.Tensor:
    T, d = q.shape[-2], q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)                             # (T, T)
    return F.softmax(scores.masked_fill(_window_mask(T, window, **mistake), float("-inf")), dim=-1) @ v


def _reference_sliding_window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int) -> torch.Tensor:
    return _window_attention(q, k, v, window)


def _check_sliding_window_attention(sliding_window_attention: Callable) -> str:
    expect_callable(sliding_window_attention, "sliding_window_attention")
    generator = torch.Generator().manual_seed(613)
    for T, window in ((7, 3), (16, 4), (1, 1), (6, 1), (12, 12), (9, 20), (33, 8)):
        q, k, v = (torch.randn(T, 8, generator=generator) * 2 for _ in range(3))
        before = [t.clone() for t in (q, k, v)]
        what = f"sliding_window_attention(q, k, v, window={window}) with T={T}"
        got = expect_tensor(sliding_window_attention(q, k, v, window), what)
        if not all(torch.equal(a, b) for a, b in zip((q, k, v), before)):
            raise Hint(f"{what} changed q, k or v in place; compute new tensors instead")
        same_shape(got, (T, 8), what)
        expected = _reference_sliding_window_attention(q, k, v, window)
        if torch.allclose(got, expected, atol=1e-5, rtol=1e-4):
            continue
        mistakes = [
            (_reference_causal_attention(q, k, v), "that is plain causal attention: the window changes nothing. "
             f"Also hide the keys more than window - 1 positions back (j ≤ i - window), so each query sees at most "
             f"{window} keys, itself included"),
            (_window_attention(q, k, v, window, extra=1), f"each query sees {window + 1} keys: one too many. The "
             "window counts the query itself: keys i - window + 1 … i"),
            (_window_attention(q, k, v, window, extra=-1) if window > 1 else expected,
             f"each query sees {window - 1} keys: one too few. The window counts the query itself: keys "
             "i - window + 1 … i"),
            (_window_attention(q, k, v, window, future=True), "the window hides the distant past but the future "
             "is visible: keep the causal mask (j > i hidden) as well"),
        ]
        for variant, hint in mistakes:
            if not torch.allclose(variant, expected, atol=1e-5) and torch.allclose(got, variant, atol=1e-5, rtol=1e-4):
                raise Hint(f"{what}: {hint}")
        return close(got, expected, atol=1e-5, what=what)
    return "each query sees itself and the window - 1 keys before it"


exercise(
    "06.13",
    title="Sliding-window causal attention",
    reference=lambda: _reference_sliding_window_attention,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda q, k, v, window: _reference_causal_attention(q, k, v),               # ignores the window
        lambda: lambda q, k, v, window: _window_attention(q, k, v, window, extra=1),        # window + 1 keys
        lambda: lambda q, k, v, window: _window_attention(q, k, v, window, extra=-1),       # window - 1 keys
        lambda: lambda q, k, v, window: _window_attention(q, k, v, window, future=True),    # future visible
        lambda: lambda q, k, v, window: F.softmax(                                          # mask after softmax
            q @ k.T / math.sqrt(q.shape[-1]), dim=-1).masked_fill(_window_mask(len(q), window), 0.0) @ v,
    ],
)(_check_sliding_window_attention)


# --------------------------------------------------------------------------- 06.14 where positions end up


@functools.cache
def position_similarities(name: str = "shakespeare_char") -> dict[str, float]:
    """Mean cosine similarity of the shipped model's position vectors (its `wpe` table, (T, C)): of
    neighbours (i, i + 1), of positions 32 or more apart, and of as many random vectors of the same
    size (what the table started from). Reads the checkpoint; leaves the notebook's random stream alone."""
    from labkit.checkpoints import CHECKPOINTS_DIR, load_checkpoint

    with torch.random.fork_rng(devices=[]):  # building the model draws its initial weights
        model = load_checkpoint(CHECKPOINTS_DIR / name)[0]
    table = F.normalize(model.transformer.wpe.weight.detach(), dim=-1)  # (T, C), unit rows
    similarity = table @ table.T                                          # (T, T) cosines
    T = len(table)
    generator = torch.Generator().manual_seed(0)
    random = F.normalize(torch.randn(table.shape, generator=generator), dim=-1)
    return {"neighbours": torch.diagonal(similarity, 1).mean().item(),
            "far": similarity[torch.ones(T, T, dtype=torch.bool).triu(32)].mean().item(),
            "random": torch.diagonal(random @ random.T, 1).mean().item()}


def _kind(similarity: float) -> str:
    return "b" if similarity >= 0.2 else "c" if similarity <= -0.2 else "a"


POSITIONS = PredictMeasureExplain(
    predictions={
        "a": "about 0, as for two random vectors: nothing in training ties position 7 to position 8",
        "b": "clearly positive (0.2 or more): neighbouring positions end up alike",
        "c": "clearly negative (-0.2 or less): training pushes neighbours apart, so that the model can tell them apart",
    },
    explanations={
        "a": "text seen from position i or from i + 1 looks almost the same, so what the model must know about the "
             "two positions is nearly the same and their gradients pull their vectors the same way; positions far "
             "apart need different things",
        "b": "the table started as sine waves, as in the original Transformer, so neighbours were alike from the start",
        "c": "any two vectors of 192 numbers point roughly the same way; the similarity says nothing about training",
    },
    measure=lambda: position_similarities()["neighbours"],
    predicted=_kind,
    explained=lambda similarity: "a" if similarity >= 0.2 else "none",
    what="the mean cosine similarity of neighbouring position vectors",
    wrong_explanations={
        "b": "labkit's GPT, like GPT-2, starts its position table random (nn.Embedding), not as sine waves; "
             "the random vectors printed beside the measurement show where it started",
        "c": "look at the random vectors printed beside the measurement: two random vectors of 192 numbers are "
             "nearly orthogonal (similarity about 0)",
    },
    misreadings=(
        (lambda value, true: math.isclose(value, position_similarities()["far"], rel_tol=0.02, abs_tol=0.005),
         "that is the similarity of positions 32 or more apart; `measured` is the neighbours'"),
        (lambda value, true: math.isclose(value, position_similarities()["random"], rel_tol=0.02, abs_tol=0.005),
         "that is the similarity of random vectors; `measured` is the trained model's neighbours'"),
    ),
    abs_tol=0.002,
)

POSITIONS.register(
    "06.14", "Predict, measure, explain: where the positions end up", module=__name__,
    wrong_measurements=(lambda: position_similarities()["far"], lambda: position_similarities()["random"]),
)
