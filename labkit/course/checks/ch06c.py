"""Checks for chapter 06c (using a pretrained GPT: sampling and the KV cache).

The stub cells in ``chapters/06c_sampling_and_kv_cache.ipynb``::

    def top_k_filter(logits, k):
        raise NotImplementedError  # TODO: logits (B, V) -> (B, V), all but the k largest of each row set to -inf
    check("06.6", top_k_filter)

    def top_p_filter(logits, p):
        raise NotImplementedError  # TODO: logits (B, V) -> (B, V), outside each row's nucleus set to -inf
    check("06.7", top_p_filter)

    def kv_cache_bytes(n_layer, n_head, head_size, seq_len, batch, bytes_per_value):
        raise NotImplementedError  # TODO: bytes of all the cached keys and values
    check("06.8", kv_cache_bytes)

    def min_p_filter(logits, min_p):
        raise NotImplementedError  # TODO: logits (B, V) -> (B, V), tokens with p < min_p * (row's max p) set to -inf
    check("06.12", min_p_filter)

    prediction = ...  # TODO: "a", "b" or "c": decide BEFORE you run the next cell
    committed = prediction  # the measurement cell's first line
    measured = ...     # TODO: how many characters top-p 0.9 keeps at temperature 0.5, printed above
    explanation = ...  # TODO: "a", "b" or "c"
    check("06.16", dict(committed=committed, prediction=prediction, measured=measured, explanation=explanation))

    prediction = ...  # TODO: "a", "b" or "c": decide BEFORE you run the next cell
    committed = prediction  # the measurement cell's first line
    measured = ...     # TODO: how many different texts the five samples are, printed above
    explanation = ...  # TODO: "a", "b" or "c"
    check("06.17", dict(committed=committed, prediction=prediction, measured=measured, explanation=explanation))

Every check runs in well under a second and leaves the notebook's random stream alone
(the test logits come from their own seeded generator); 06.16's runs the shipped Shakespeare model
once on a 7-character prompt, 06.17's samples 5 × 40 characters from it (each then cached).
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch

from labkit.course.checks.predict import PredictMeasureExplain
from labkit.course.exercises import Hint, exercise, expect_callable, expect_number, expect_tensor, same_shape

NEG_INF = float("-inf")


def _not_done(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError  # what an untouched stub function does


def _test_logits(rows: int, vocab: int, seed: int, scale: float = 2.0) -> torch.Tensor:
    """Seeded logits (rows, vocab) without ties, from their own generator."""
    return torch.randn(rows, vocab, generator=torch.Generator().manual_seed(seed)) * scale


def _call_filter(fn: Callable, logits: torch.Tensor, arg: float, name: str, what: str) -> torch.Tensor:
    """fn(logits, arg) as a float tensor of logits' shape; Hints for a changed input or a wrong shape."""
    before = logits.clone()
    got = expect_tensor(fn(logits, arg), what)
    if not torch.equal(logits, before):
        raise Hint(f"{name} changed the logits you passed in; return a new tensor instead "
                   "(logits.masked_fill(...) rather than logits[...] = ..., or start from logits.clone())")
    if got.ndim == 2 and got.shape[0] == logits.shape[0] and got.shape[1] < logits.shape[1]:
        raise Hint(f"{what} has shape {tuple(got.shape)}: you returned only the kept values. Return the whole "
                   f"(B, V) row, {tuple(logits.shape)}, with the tokens that may not be picked set to -inf, so that "
                   "each position still stands for the same token id")
    same_shape(got, tuple(logits.shape), what)
    if not got.is_floating_point():
        raise Hint(f"{what} has dtype {got.dtype}; it should hold logits (floats), with -inf where a token is removed")
    return got.detach().float()


def _kept_logits_are_unchanged(got: torch.Tensor, logits: torch.Tensor, what: str, keep_top: str = "") -> torch.Tensor:
    """The boolean mask of kept tokens; Hints when removed tokens are not -inf or kept ones changed."""
    probabilities = torch.softmax(logits, dim=-1)
    if (got >= 0).all() and torch.allclose(got.sum(dim=-1), torch.ones(len(got)), atol=1e-4):
        raise Hint(f"{what} looks like probabilities (each row sums to 1): return logits instead, the original "
                   "values for the kept tokens and -inf for the others; sampling applies the softmax afterwards")
    if torch.isnan(got).any():
        raise Hint(f"{what} contains NaN; removed tokens should be -inf (float('-inf')), kept ones their logits")
    kept = got != NEG_INF
    if not kept.any(dim=-1).all():
        row = int((~kept.any(dim=-1)).nonzero()[0])
        raise Hint(f"every token of row {row} was removed (all -inf): nothing is left to sample. The most likely "
                   "token must always be kept" + keep_top)
    changed = kept & ~torch.isclose(got, logits, atol=1e-5, rtol=1e-5)
    in_sorted_order = logits.sort(dim=-1, descending=True).values
    if changed.any() and torch.allclose(got[kept], in_sorted_order[kept], atol=1e-5):
        raise Hint(f"{what} is in sorted order (largest first): position j must still hold token j. "
                   "Decide what to remove on the sorted values, then map that back to the original positions "
                   "(mask.scatter(-1, order, mask) with the order that sort returned)")
    if changed.any():
        i, j = (int(x) for x in changed.nonzero()[0])
        value = got[i, j].item()
        if value == 0 or (value < -1e3 and math.isfinite(value)):
            raise Hint(f"token {j} of row {i} is {value:g}, neither its logit ({logits[i, j].item():.3f}) nor -inf. "
                       "Mark a removed token with float('-inf'): then softmax gives it probability exactly 0"
                       + (" (0 is a perfectly ordinary logit, not a removal)" if value == 0 else ""))
        if torch.isclose(got[i, j], probabilities[i, j], atol=1e-6):
            raise Hint(f"token {j} of row {i} holds its probability, {value:.4f}, not its logit: keep the logits "
                       "themselves for the kept tokens")
        raise Hint(f"token {j} of row {i} was kept but changed from {logits[i, j].item():.4f} to {value:.4f}: "
                   "leave the kept logits exactly as they were, only set the others to -inf")
    return kept


# --------------------------------------------------------------------------- 06.6 top-k


def _reference_top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    if k >= logits.shape[-1]:
        return logits.clone()
    kth_largest = torch.topk(logits, k, dim=-1).values[:, [-1]]  # (B, 1)
    return logits.masked_fill(logits < kth_largest, NEG_INF)


def _check_top_k(got: torch.Tensor, logits: torch.Tensor, k: int, what: str) -> None:
    kept = _kept_logits_are_unchanged(got, logits, what, keep_top=(
        ": keep the k largest logits of *each row* (one threshold for the whole batch can empty a row)"))
    expected = _reference_top_k_filter(logits, k) != NEG_INF
    if torch.equal(kept, expected):
        return
    row = int((kept != expected).any(dim=-1).nonzero()[0])
    n_kept, n_expected = int(kept[row].sum()), int(expected[row].sum())
    smallest = torch.topk(logits[row], min(k, logits.shape[-1]), largest=False).indices
    if n_kept == n_expected and set(kept[row].nonzero().flatten().tolist()) == set(smallest.tolist()):
        raise Hint(f"in row {row} you kept the {k} *smallest* logits; keep the {k} largest "
                   "(torch.topk returns the largest by default)")
    ties = int((logits[row] == logits[row][expected[row]].min()).sum()) > 1
    if ties and n_kept < n_expected:
        raise Hint(f"row {row} has tied logits at the k-th place: {what} kept {n_kept} tokens, but every logit ≥ the "
                   f"k-th largest should stay ({n_expected} of them). Compare with the k-th largest value "
                   "(logits < kth → -inf) instead of keeping exactly k positions")
    if n_kept != n_expected:
        raise Hint(f"in row {row} you kept {n_kept} tokens, expected {n_expected} (k = {k}): "
                   "keep the logits ≥ the k-th largest one of *their own row* "
                   "(torch.topk(logits, k, dim=-1).values[:, [-1]] is each row's k-th largest, shape (B, 1))")
    raise Hint(f"in row {row} you kept the wrong tokens: keep the {k} with the largest logits of that row")


def _check_top_k_filter(top_k_filter: Callable) -> str:
    expect_callable(top_k_filter, "top_k_filter")
    logits = _test_logits(4, 12, seed=6)
    logits[3] = logits[3] - 3  # a row far below the others: a threshold over the whole batch would fail here
    for k in (3, 1, 5):
        got = _call_filter(top_k_filter, logits, k, "top_k_filter", f"top_k_filter(logits, k={k})")
        _check_top_k(got, logits, k, f"top_k_filter(logits, k={k})")
    tied = torch.tensor([[1.0, 3.0, 3.0, 0.5, 3.0, 2.0], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    for k in (2, 3):
        got = _call_filter(top_k_filter, tied, k, "top_k_filter", f"top_k_filter(tied logits, k={k})")
        _check_top_k(got, tied, k, f"top_k_filter({tied.tolist()}, k={k})")
    for k in (12, 20):
        got = _call_filter(top_k_filter, logits, k, "top_k_filter", f"top_k_filter(logits, k={k}) with V = 12")
        if not torch.equal(got, logits):
            raise Hint(f"with k = {k} ≥ V = 12 every token should be kept and the logits come back unchanged")
    return "ties at the k-th place kept, k ≥ V keeps everything"


def _top_k_exactly_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keeps exactly k positions with scatter: right without ties, wrong with them."""
    k = min(k, logits.shape[-1])
    top = torch.topk(logits, k, dim=-1)
    return torch.full_like(logits, NEG_INF).scatter(-1, top.indices, top.values)


def _top_k_smallest(logits: torch.Tensor, k: int) -> torch.Tensor:
    if k >= logits.shape[-1]:
        return logits.clone()
    kth_smallest = torch.topk(logits, k, dim=-1, largest=False).values[:, [-1]]
    return logits.masked_fill(logits > kth_smallest, NEG_INF)


def _top_k_over_the_batch(logits: torch.Tensor, k: int) -> torch.Tensor:
    if k >= logits.shape[-1]:
        return logits.clone()
    kth = torch.topk(logits.flatten(), k).values[-1]  # one threshold for all rows
    return logits.masked_fill(logits < kth, NEG_INF)


def _top_k_in_place(logits: torch.Tensor, k: int) -> torch.Tensor:
    if k < logits.shape[-1]:
        logits[logits < torch.topk(logits, k, dim=-1).values[:, [-1]]] = NEG_INF
    return logits


exercise(
    "06.6",
    title="Top-k filtering",
    reference=lambda: _reference_top_k_filter,
    stub=lambda: _not_done,
    wrong=[
        lambda: _top_k_exactly_k,                                                          # drops ties
        lambda: _top_k_over_the_batch,                                                     # one k for the batch
        lambda: _top_k_in_place,                                                           # changes its input
        lambda: _top_k_smallest,                                                           # the k smallest
        lambda: lambda logits, k: _reference_top_k_filter(logits, k + 1),                 # off by one
        lambda: lambda logits, k: torch.where(_reference_top_k_filter(logits, k) == NEG_INF, 0.0, logits),  # 0
        lambda: lambda logits, k: torch.softmax(_reference_top_k_filter(logits, k), dim=-1),  # probabilities
        lambda: lambda logits, k: torch.topk(logits, min(k, logits.shape[-1]), dim=-1).values,  # only the values
    ],
)(_check_top_k_filter)


# --------------------------------------------------------------------------- 06.7 top-p (nucleus)


def _reference_top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    if p >= 1:  # everything: a float32 cumulative sum may reach 1.0 before the last token
        return logits.clone()
    sorted_probs, order = torch.softmax(logits, dim=-1).sort(dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs  # probability of the more likely tokens
    remove_sorted = mass_before >= p  # the nucleus already holds p without this token
    remove = remove_sorted.scatter(-1, order, remove_sorted)  # back to the vocabulary's order
    return logits.masked_fill(remove, NEG_INF)


def _nucleus_bounds(logits: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(must keep, may keep) for each token of (B, V) logits, computed in float64.

    A token may be kept if the tokens strictly more likely than it hold less than p; it must be
    kept if that is true even counting the tokens as likely as it (so that ties at the boundary
    may be kept all, or only as many as needed)."""
    probs = torch.softmax(logits.double(), dim=-1)
    more_likely = (probs[:, None, :] > probs[:, :, None]).double()        # [b, i, j]: j more likely than i
    at_least_as_likely = (probs[:, None, :] >= probs[:, :, None]).double() - torch.eye(probs.shape[-1]).double()
    mass_above = (more_likely * probs[:, None, :]).sum(-1)
    mass_above_or_tied = (at_least_as_likely * probs[:, None, :]).sum(-1)
    tolerance = 1e-6
    if p >= 1:
        everything = torch.ones_like(probs, dtype=torch.bool)
        return everything, everything
    return mass_above_or_tied < p - tolerance, mass_above < p + tolerance


def _check_top_p(got: torch.Tensor, logits: torch.Tensor, p: float, what: str) -> None:
    kept = _kept_logits_are_unchanged(got, logits, what, keep_top=(
        ", even when its probability alone is above p: the nucleus includes the token that makes the sum cross p"))
    must, may = _nucleus_bounds(logits, p)
    probs = torch.softmax(logits.double(), dim=-1)
    for row in range(len(logits)):
        mass = probs[row][kept[row]].sum().item()
        top = int(probs[row].argmax())
        if not kept[row, top]:
            raise Hint(f"row {row}: the most likely token (id {top}) was removed; it is always in the nucleus")
        if p >= 1 and not kept[row].all():
            raise Hint(f"with p = {p} every token should be kept, but {int((~kept[row]).sum())} of row {row} were "
                       "removed. With p = 1 there is nothing to cut; note that a float32 cumulative sum can reach "
                       "1.0 before the last token (rounding), so treat p ≥ 1 as 'keep everything'")
        least_kept = probs[row][kept[row]].min()
        if (~kept[row] & (probs[row] > least_kept)).any():
            raise Hint(f"row {row}: a token was removed while a less likely one was kept. The nucleus is made of "
                       "the *most* likely tokens; if you sorted, map the decision back to the original token ids "
                       "(mask.scatter(-1, order, mask))")
        if mass < p - 1e-6 and kept[row].sum() < len(kept[row]):
            below = (probs[row] > probs[row][kept[row]].min()).sum().item()
            raise Hint(f"row {row}: the kept tokens hold probability {mass:.3f}, less than p = {p}. The nucleus is "
                       "the smallest set of most likely tokens whose probabilities add up to *at least* p: include "
                       "the token that makes the sum cross p (keep a token when the mass *before* it is < p)"
                       + (" — here that is only the most likely token" if below == 0 and mass > 0 else ""))
        if not (kept[row] <= may[row]).all():
            extra = int((kept[row] & ~may[row]).sum())
            raise Hint(f"row {row}: {extra} token(s) too many were kept for p = {p}: once the more likely tokens "
                       "hold p, the rest are removed. Work with probabilities (softmax), sorted from the most likely, "
                       "and their cumulative sum")
        if not (must[row] <= kept[row]).all():
            raise Hint(f"row {row}: a token that belongs to the nucleus of p = {p} was removed")


_TOP_P_CASES: list[tuple[str, torch.Tensor, float]] = [
    ("random logits", _test_logits(4, 12, seed=7), 0.9),
    ("random logits", _test_logits(4, 12, seed=8), 0.5),
    ("one token above p", torch.tensor([[4.0, 1.0, 0.5, 0.0, -1.0], [0.0, 4.0, 1.0, 0.5, -1.0]]), 0.6),
    ("ties", torch.tensor([[0.0, 0.0, 0.0, 0.0], [2.0, 1.0, 1.0, 1.0]]), 0.5),
    ("p = 1", torch.tensor([[10.0, 9.0, 0.0, -5.0, -10.0, -20.0], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]]), 1.0),
]


def _check_top_p_filter(top_p_filter: Callable) -> str:
    expect_callable(top_p_filter, "top_p_filter")
    for case, logits, p in _TOP_P_CASES:
        what = f"top_p_filter({case}, p={p})"
        got = _call_filter(top_p_filter, logits, p, "top_p_filter", what)
        _check_top_p(got, logits, p, what)
    return "checked on random logits, a dominant token, ties and p = 1"


def _top_p_tie_inclusive(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Another correct answer: keep a token if the tokens strictly more likely than it hold < p."""
    probs = torch.softmax(logits, dim=-1)
    mass_above = torch.stack([(probs * (probs > probs[..., [i]])).sum(-1) for i in range(probs.shape[-1])], dim=-1)
    return logits.masked_fill(mass_above >= p, NEG_INF) if p < 1 else logits.clone()


def _top_p_cumsum_at_most_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    sorted_probs, order = torch.softmax(logits, dim=-1).sort(dim=-1, descending=True)
    remove_sorted = sorted_probs.cumsum(dim=-1) > p  # forgets the token that crosses p
    return logits.masked_fill(remove_sorted.scatter(-1, order, remove_sorted), NEG_INF)


def _top_p_without_unsorting(logits: torch.Tensor, p: float) -> torch.Tensor:
    sorted_logits, _ = logits.sort(dim=-1, descending=True)
    sorted_probs = torch.softmax(sorted_logits, dim=-1)
    remove = sorted_probs.cumsum(dim=-1) - sorted_probs >= p
    return sorted_logits.masked_fill(remove, NEG_INF)  # still in sorted order


def _top_p_rounding(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Right except for p = 1, where float32 rounding removes the least likely tokens."""
    sorted_probs, order = torch.softmax(logits, dim=-1).sort(dim=-1, descending=True)
    remove_sorted = sorted_probs.cumsum(dim=-1) - sorted_probs >= p
    return logits.masked_fill(remove_sorted.scatter(-1, order, remove_sorted), NEG_INF)


exercise(
    "06.7",
    title="Top-p (nucleus) filtering",
    reference=lambda: _reference_top_p_filter,
    stub=lambda: _not_done,
    wrong=[
        lambda: _top_p_cumsum_at_most_p,                                                       # misses the crossing token
        lambda: _top_p_without_unsorting,                                                      # sorted order
        lambda: _top_p_rounding,                                                               # p = 1
        lambda: lambda logits, p: logits.masked_fill(torch.softmax(logits, -1) < p, NEG_INF),  # a probability floor
        lambda: lambda logits, p: torch.where(_reference_top_p_filter(logits, p) == NEG_INF, 0.0, logits),  # 0
        lambda: lambda logits, p: torch.softmax(_reference_top_p_filter(logits, p), dim=-1),  # probabilities
    ],
)(_check_top_p_filter)


# --------------------------------------------------------------------------- 06.8 KV cache size


def _reference_kv_cache_bytes(n_layer: int, n_head: int, head_size: int, seq_len: int, batch: int,
                              bytes_per_value: int) -> int:
    # a key and a value (2) per layer, head, channel of the head, position and sequence
    return 2 * n_layer * n_head * head_size * seq_len * batch * bytes_per_value


_KV_CASES = [  # (description, arguments)
    ("GPT-2 124M, 1024 tokens, float32", (12, 12, 64, 1024, 1, 4)),
    ("GPT-2 124M, 1024 tokens, batch 8, bfloat16", (12, 12, 64, 1024, 8, 2)),
    ("a char model: 6 layers, 6 heads of 32, 256 tokens, float32", (6, 6, 32, 256, 1, 4)),
    ("GPT-3 175B, 2048 tokens, float16", (96, 96, 128, 2048, 1, 2)),
]


def _check_kv_cache_bytes(kv_cache_bytes: Callable) -> str:
    expect_callable(kv_cache_bytes, "kv_cache_bytes")
    for description, args in _KV_CASES:
        n_layer, n_head, head_size, seq_len, batch, bytes_per_value = args
        what = f"kv_cache_bytes{args} ({description})"
        got = expect_number(kv_cache_bytes(*args), what, " of bytes")
        expected = _reference_kv_cache_bytes(*args)
        if math.isclose(got, expected, rel_tol=1e-9):
            continue
        ratio = got / expected
        hints = [
            (0.5, "half the right size: the cache keeps two tensors per layer, the keys *and* the values"),
            (1.5, "1.5 times the right size: only keys and values are cached; a step needs the query of the new "
                  "token only, so queries are never kept"),
            (8, "8 times too much: that is bits, not bytes; bytes_per_value is already in bytes"),
            (seq_len, "seq_len times too much: the cache grows linearly with the sequence (one key and one value "
                      "per token); seq_len² is the size of the attention-score matrix, which is not kept"),
            (1 / n_head, f"{n_head} times too small: each of the n_head heads has its own keys and values "
                         "(together n_head × head_size = n_embd channels per token)"),
            (1 / head_size, f"{head_size} times too small: each key and each value has head_size numbers per head"),
            (1 / batch, f"{batch} times too small: every sequence of the batch has its own cache"),
            (1 / n_layer, f"{n_layer} times too small: every layer keeps its own keys and values"),
        ]
        for factor, message in hints:
            if factor != 1 and math.isclose(ratio, factor, rel_tol=1e-9):
                raise Hint(f"{what} gave {got:,.0f}: {message}")
        raise Hint(f"{what} should be {expected:,} bytes, got {got:,.0f}. Count the numbers kept: a key and a value "
                   "for every layer, head, channel of a head, position and sequence of the batch")
    return f"GPT-2 124M at 1024 tokens in float32: {_reference_kv_cache_bytes(*_KV_CASES[0][1]) / 2**20:.0f} MiB"


exercise(
    "06.8",
    title="The size of a KV cache",
    reference=lambda: _reference_kv_cache_bytes,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda L, H, hs, T, B, b: L * H * hs * T * B * b,            # keys only
        lambda: lambda L, H, hs, T, B, b: 3 * L * H * hs * T * B * b,        # queries too
        lambda: lambda L, H, hs, T, B, b: 2 * L * H * hs * T * B * b * 8,    # bits
        lambda: lambda L, H, hs, T, B, b: 2 * L * H * hs * T * T * B * b,    # the score matrix
        lambda: lambda L, H, hs, T, B, b: 2 * L * hs * T * B * b,            # one head
        lambda: lambda L, H, hs, T, B, b: 2 * L * H * hs * T * b,            # no batch
        lambda: lambda L, H, hs, T, B, b: f"{2 * L * H * hs * T * B * b / 2**20:.0f} MiB",  # text, not a number
    ],
)(_check_kv_cache_bytes)


# --------------------------------------------------------------------------- 06.12 min-p (a variation of top-p)


def _reference_min_p_filter(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    probs = torch.softmax(logits, dim=-1)                                  # (B, V)
    threshold = min_p * probs.max(dim=-1, keepdim=True).values             # (B, 1): relative to each row's top
    return logits.masked_fill(probs < threshold, NEG_INF)


def _min_p_cases() -> list[tuple[torch.Tensor, float]]:
    peaked = _test_logits(3, 50, seed=12, scale=4.0)   # one token far ahead in most rows
    flat = _test_logits(3, 50, seed=13, scale=0.5)     # many tokens close together
    return [(peaked, 0.1), (flat, 0.1), (peaked, 0.5), (flat, 0.8), (torch.cat([peaked, flat]), 0.05),
            (flat, 0.0), (peaked, 1.0)]


def _check_min_p_filter(min_p_filter: Callable) -> str:
    expect_callable(min_p_filter, "min_p_filter")
    kept_counts: list[int] = []
    for logits, min_p in _min_p_cases():
        what = f"min_p_filter(logits {tuple(logits.shape)}, min_p={min_p})"
        got = _call_filter(min_p_filter, logits, min_p, "min_p_filter", what)
        kept = _kept_logits_are_unchanged(got, logits, what)
        want = _reference_min_p_filter(logits, min_p) != NEG_INF
        if torch.equal(kept, want):
            kept_counts.append(int(kept[0].sum()))
            continue
        probs = torch.softmax(logits, dim=-1)
        if torch.equal(kept, probs >= min_p):
            raise Hint(f"{what}: you compared each probability with min_p itself. min-p scales the threshold by "
                       "the row's most likely token: keep p ≥ min_p × max(p), so a confident row keeps few tokens "
                       "and an unsure one many")
        if torch.equal(kept, probs >= min_p * probs.max()):
            raise Hint(f"{what}: the threshold must come from each row's own most likely token "
                       "(max(dim=-1, keepdim=True)), not from the largest probability of the whole batch")
        if torch.equal(kept, logits >= min_p * logits.max(dim=-1, keepdim=True).values):
            raise Hint(f"{what}: you scaled the logits, not the probabilities. Take the softmax first; "
                       "in logits the rule reads logit ≥ max logit + log(min_p)")
        row = int((kept != want).any(dim=-1).nonzero()[0])
        raise Hint(f"{what}: row {row} keeps {int(kept[row].sum())} tokens, expected {int(want[row].sum())}: "
                   "keep the tokens whose probability is at least min_p times the row's largest probability")
    return f"on the test rows min_p = 0.1 kept {kept_counts[0]} of 50 tokens where one was far ahead, " \
           f"{kept_counts[1]} where they were close"


exercise(
    "06.12",
    title="Min-p filtering",
    reference=lambda: _reference_min_p_filter,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda logits, m: logits.masked_fill(torch.softmax(logits, -1) < m, NEG_INF),          # absolute
        lambda: lambda logits, m: logits.masked_fill(                                                  # batch max
            torch.softmax(logits, -1) < m * torch.softmax(logits, -1).max(), NEG_INF),
        lambda: lambda logits, m: logits.masked_fill(                                                  # logits scaled
            logits < m * logits.max(dim=-1, keepdim=True).values, NEG_INF),
        lambda: lambda logits, m: logits.masked_fill_(                                                 # in place
            torch.softmax(logits, -1) < m * torch.softmax(logits, -1).max(-1, keepdim=True).values, NEG_INF),
        lambda: lambda logits, m: torch.softmax(_reference_min_p_filter(logits, m), dim=-1),           # probabilities
        lambda: lambda logits, m: logits.masked_fill(                                                  # kept the tail
            torch.softmax(logits, -1) >= m * torch.softmax(logits, -1).max(-1, keepdim=True).values, NEG_INF),
    ],
)(_check_min_p_filter)


# --------------------------------------------------------------------------- 06.16 the nucleus at a lower temperature


@functools.cache
def nucleus_size(temperature: float, p: float = 0.9) -> int:
    """How many characters top-p ``p`` keeps after "ROMEO:\\n" (the chapter's FLAT prompt) for the shipped
    `shakespeare_char` model, its logits divided by ``temperature`` first (as `GPT.generate` does). As the
    measurement cell of 06.16 computes it."""
    from labkit.checkpoints import CHECKPOINTS_DIR, load_checkpoint

    with torch.random.fork_rng(devices=[]):
        model, tokenizer, _ = load_checkpoint(CHECKPOINTS_DIR / "shakespeare_char")
    with torch.no_grad():
        logits = model(torch.tensor([tokenizer.encode("ROMEO:\n")]))[0, -1, :]  # (V,)
    sorted_probs = torch.softmax(logits / temperature, dim=-1).sort(descending=True).values
    return int((sorted_probs.cumsum(dim=0) < p).sum()) + 1


def _nucleus_kind(size: float) -> str:
    at_one = nucleus_size(1.0)
    return "a" if abs(size - at_one) <= 1 else "b" if size < at_one else "c"


COLD_NUCLEUS = PredictMeasureExplain(
    predictions={
        "a": "about as many as at temperature 1 (within one character)",
        "b": "fewer characters",
        "c": "more characters",
    },
    explanations={
        "a": "dividing the logits by a temperature below 1 stretches the gaps between them: after the softmax the "
             "likeliest characters hold more of the probability, so fewer of them are needed to reach a mass of 0.9",
        "b": "top-p counts probability mass, and the temperature does not change which characters are likely, so "
             "the nucleus stays the same",
        "c": "a lower temperature makes the model less sure, spreading the probability over more characters",
    },
    measure=lambda: float(nucleus_size(0.5)),
    predicted=_nucleus_kind,
    explained=lambda size: "a" if size < nucleus_size(1.0) - 1 else "none",
    what="the number of characters top-p 0.9 keeps at temperature 0.5",
    wrong_explanations={
        "b": "the order of the characters stays, but their probabilities do not: look at the likeliest one's "
             "probability at each temperature (printed)",
        "c": "a lower temperature makes the model *more* sure: the likeliest character's probability went up "
             "(printed)",
    },
    misreadings=(
        (lambda value, true: value == nucleus_size(1.0),
         "that is the nucleus at temperature 1; `measured` is the one at temperature 0.5"),
    ),
    rel_tol=0.0,
    abs_tol=0.4,
)

COLD_NUCLEUS.register(
    "06.16", "Predict, measure, explain: the nucleus at a lower temperature", module=__name__,
    wrong_measurements=(lambda: float(nucleus_size(1.0)),),
)


# --------------------------------------------------------------------------- 06.17 top-k 1 at a high temperature

TOP_K_ONE_SAMPLES, TOP_K_ONE_CHARACTERS = 5, 40


@functools.cache
def distinct_texts(top_k: int | None = 1, temperature: float = 2.0) -> int:
    """How many different texts a batch of `TOP_K_ONE_SAMPLES` copies of "ROMEO:\n" (the chapter's FLAT
    prompt) continues into: `TOP_K_ONE_CHARACTERS` characters each from the shipped `shakespeare_char`
    model, sampled with ``temperature`` and ``top_k`` (generator seeded 0). As the measurement cell of
    06.17 computes it; the notebook's random stream is left alone (the generator is the cell's own)."""
    from labkit.checkpoints import CHECKPOINTS_DIR, load_checkpoint

    with torch.random.fork_rng(devices=[]):
        model, tokenizer, _ = load_checkpoint(CHECKPOINTS_DIR / "shakespeare_char")
    prompts = torch.tensor([tokenizer.encode("ROMEO:\n")] * TOP_K_ONE_SAMPLES)   # (5, 7)
    out = model.generate(prompts, TOP_K_ONE_CHARACTERS, temperature=temperature, top_k=top_k,
                         generator=torch.Generator().manual_seed(0))
    return len({tuple(row.tolist()) for row in out})


TOP_K_ONE = PredictMeasureExplain(
    predictions={
        "a": "one: the five samples are the same text",
        "b": "two to four different texts",
        "c": "five different texts",
    },
    explanations={
        "a": "top-k 1 leaves one finite logit, and the softmax of a single logit is 1 whatever the temperature "
             "divided it by: every step takes the likeliest character, as greedy decoding does",
        "b": "temperature 2 flattens the distribution so much that the second likeliest character sometimes "
             "wins the cut, but not often",
        "c": "each sample draws its own characters, and at temperature 2 they are nearly equally likely",
    },
    measure=lambda: float(distinct_texts()),
    predicted=lambda count: "a" if count == 1 else "c" if count == TOP_K_ONE_SAMPLES else "b",
    explained=lambda count: "a" if count == 1 else "none",
    what="the number of different texts among the five samples with top_k=1 at temperature 2",
    wrong_explanations={
        "b": "the cut comes after the temperature, and dividing every logit by 2 keeps their order: the same "
             "character survives the cut at every step (its probability after the cut is printed)",
        "c": "each sample does draw its own characters, but a draw from a distribution with one character in "
             "it always gives that character",
    },
    misreadings=(
        (lambda value, true: value == TOP_K_ONE_SAMPLES,
         "five different texts is what temperature 2 writes without the cut; `measured` is the count with "
         "top_k=1 (the last line the measurement cell printed)"),
    ),
    rel_tol=0.0,
    abs_tol=0.0,
)

TOP_K_ONE.register(
    "06.17", "Predict, measure, explain: top-k 1 at a high temperature", module=__name__,
    wrong_measurements=(lambda: float(distinct_texts(top_k=None)),),
)
