"""Checks for chapter 08c (practice: scaling, part 3: pruning and quantization).

The stub cells in ``chapters/08c_pruning_and_quantization.ipynb``::

    def magnitude_mask(weight, amount):
        raise NotImplementedError  # TODO: 0.0 at the round(amount · numel) smallest |w|, 1.0 elsewhere
    check("08.8", magnitude_mask)

    def quantize_int8(weight):
        raise NotImplementedError  # TODO: (q int8 (out, in), scale float32 (out,)) with w ≈ q · scale per row
    check("08.9", quantize_int8)

    def q4_1_round_trip(weight):
        raise NotImplementedError  # TODO: weight stored as GGUF's Q4_1 blocks and read back, float32
    check("08.10", q4_1_round_trip)

    def predicted_time_ratio(out_features, sparsity, structured):
        raise NotImplementedError  # TODO: pruned time / dense time for a dense product on a CPU
    check("08.11", predicted_time_ratio)

Notebook 08b has 08.5–08.7. Every check runs in well under a second and
leaves the notebook's random stream alone.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from labkit import compress
from labkit.course.exercises import Hint, exercise, expect_callable, expect_number


def _not_done(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError  # what an untouched stub function does


def _weights(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)            # a private stream: the notebook's stays put
    return torch.randn(shape, generator=generator) * torch.rand(shape[0], *([1] * (len(shape) - 1)), generator=generator)


def _expect_tensor(value: Any, what: str, shape: tuple[int, ...]) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise Hint(f"{what} should return a torch.Tensor, got {type(value).__name__}")
    if tuple(value.shape) != shape:
        raise Hint(f"{what} should have shape {shape}, got {tuple(value.shape)}")
    return value


# --------------------------------------------------------------------------- 08.8 magnitude mask

_MASK_CASES = [((64, 48), 0.5), ((8, 3, 3, 3), 0.3), ((128, 10), 0.9), ((20, 20), 0.0), ((7, 5), 0.33)]


def _reference_magnitude_mask(weight: torch.Tensor, amount: float) -> torch.Tensor:
    return compress.magnitude_mask(weight, amount)


def _check_magnitude_mask(magnitude_mask: Callable) -> str:
    expect_callable(magnitude_mask, "magnitude_mask")
    for seed, (shape, amount) in enumerate(_MASK_CASES):
        weight = _weights(seed, shape)
        layer = nn.Module()                                      # no nn.Linear: its initialisation draws random numbers
        layer.weight = nn.Parameter(weight.clone())
        prune.l1_unstructured(layer, "weight", amount=amount)
        want = layer.weight_mask
        got = _expect_tensor(magnitude_mask(weight.clone(), amount), f"magnitude_mask(weight {shape}, {amount})", shape)
        got = got.float()
        if torch.equal(got, want):
            continue
        where = f"for a weight of shape {shape} and amount {amount}"
        zeros, expected = int((got == 0).sum()), int((want == 0).sum())
        if torch.equal(got, 1 - want):
            raise Hint(f"{where} your mask is the opposite: 0.0 marks a pruned weight, 1.0 a kept one")
        if zeros != expected:
            if zeros == int(amount * weight.numel()) != expected:
                raise Hint(f"{where} you prune {zeros} weights, prune prunes round(amount × numel) = {expected}: round, don't truncate")
            raise Hint(f"{where} you prune {zeros} weights; amount {amount} of {weight.numel()} is {expected}")
        kept_small = (got == 1) & (want == 0)
        if kept_small.any() and (weight[kept_small] < 0).all():
            raise Hint(f"{where} you kept negative weights that are large in size but small in value: rank by |w|")
        raise Hint(f"{where} you prune the right number of weights but not the smallest |w|: "
                   f"{int((got != want).sum())} entries differ from prune.l1_unstructured's mask")
    return f"the same masks as torch.nn.utils.prune.l1_unstructured for {len(_MASK_CASES)} weights"


exercise(
    "08.8",
    title="Magnitude pruning mask",
    reference=lambda: _reference_magnitude_mask,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda w, a: 1 - compress.magnitude_mask(w, a),
        lambda: _by_value,
        lambda: _truncating,
        lambda: lambda w, a: (w.abs() > w.abs().mean()).float(),
    ],
)(_check_magnitude_mask)


def _by_value(weight: torch.Tensor, amount: float) -> torch.Tensor:
    """Wrong: ranks by value, not by size, so large negative weights go first."""
    k = round(amount * weight.numel())
    mask = torch.ones_like(weight)
    if k:
        mask.view(-1)[torch.topk(weight.reshape(-1), k, largest=False).indices] = 0.0
    return mask


def _truncating(weight: torch.Tensor, amount: float) -> torch.Tensor:
    """Wrong: int() instead of round() for the number to prune."""
    k = int(amount * weight.numel())
    mask = torch.ones_like(weight)
    if k:
        mask.view(-1)[torch.topk(weight.abs().reshape(-1), k, largest=False).indices] = 0.0
    return mask


# --------------------------------------------------------------------------- 08.9 int8 per channel

_INT8_SHAPES = [(32, 64), (10, 7), (128, 192)]


def _reference_quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return compress.quantize_int8_per_channel(weight)


def _check_quantize_int8(quantize_int8: Callable) -> str:
    expect_callable(quantize_int8, "quantize_int8")
    for seed, shape in enumerate(_INT8_SHAPES):
        weight = _weights(100 + seed, shape)
        answer = quantize_int8(weight.clone())
        if not (isinstance(answer, tuple) and len(answer) == 2):
            raise Hint(f"quantize_int8 should return a pair (q, scale), got {type(answer).__name__}")
        q, scale = answer
        where = f"for a weight of shape {shape}"
        q = _expect_tensor(q, "q", shape)
        if q.dtype != torch.int8:
            raise Hint(f"{where} q is {q.dtype}: store the integers as torch.int8 (that is where the 4× saving is)")
        if isinstance(scale, torch.Tensor) and scale.numel() == 1:
            raise Hint(f"{where} you return one scale for the whole matrix; per channel means one per row: shape ({shape[0]},)")
        scale = _expect_tensor(scale, "scale", (shape[0],)).float()
        amax = weight.abs().amax(dim=1)
        if (scale > amax / 126.9).any():
            raise Hint(f"{where} some scales are larger than max|w| / 127 for their row: the integers then use "
                       "only part of −128 … 127; scale = max|w| / 127.5 (or / 127) puts the row's largest weight at the end")
        error = (q.float() * scale[:, None] - weight).abs()
        if (error > scale[:, None] / 2 + 1e-6).any():
            raise Hint(f"{where} some weights are more than half a step (scale / 2) from q · scale: round w / scale "
                       "to the nearest integer, and check that nothing is clipped (the scale is too small)")
    return f"per-row int8 for {len(_INT8_SHAPES)} matrices: every weight within half a step"


def _per_tensor(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scale = weight.abs().max() / 127.5
    return torch.clamp(torch.round(weight / scale), -128, 127).to(torch.int8), scale


def _too_many_levels(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scale = weight.abs().amax(dim=1) / 255                       # uses 0 … 255: clips at 127
    return torch.clamp(torch.round(weight / scale[:, None]), -128, 127).to(torch.int8), scale


exercise(
    "08.9",
    title="int8 weights, one scale per row",
    reference=lambda: _reference_quantize_int8,
    stub=lambda: _not_done,
    wrong=[
        lambda: _per_tensor,
        lambda: _too_many_levels,
        lambda: lambda w: (torch.round(w / (w.abs().amax(dim=1, keepdim=True) / 127.5)), w.abs().amax(dim=1) / 127.5),
        lambda: lambda w: (torch.trunc(w / (w.abs().amax(dim=1, keepdim=True) / 127)).to(torch.int8), w.abs().amax(dim=1) / 127),
    ],
)(_check_quantize_int8)


# --------------------------------------------------------------------------- 08.10 Q4_1 round trip

_Q4_SHAPES = [(4, 64), (3, 32), (16, 96)]


def _reference_q4_1_round_trip(weight: torch.Tensor) -> torch.Tensor:
    return compress.round_trip(weight, "q4_1")


def _check_q4_1_round_trip(q4_1_round_trip: Callable) -> str:
    expect_callable(q4_1_round_trip, "q4_1_round_trip")
    for seed, shape in enumerate(_Q4_SHAPES):
        weight = _weights(200 + seed, shape)
        want = compress.round_trip(weight, "q4_1")
        got = _expect_tensor(q4_1_round_trip(weight.clone()), f"q4_1_round_trip(weight {shape})", shape).float()
        if torch.equal(got, want):
            continue
        where = f"for a weight of shape {shape}"
        gap = (got - want).abs().max().item()
        if gap < 2e-3 * weight.abs().max().item():
            raise Hint(f"{where} you are within {gap:.1e} of gguf's values, not equal: d and m are stored as float16 "
                       "(d.half().float(), m.half().float()) before w = d · q + m; and q = trunc((w − m) · (1 / d) + 0.5)")
        if torch.equal(got, _blocks_down_columns(weight)):
            raise Hint(f"{where} your blocks run down the columns: a block is 32 consecutive weights of a *row*")
        levels = int(torch.unique(got[0, :32]).numel())
        if levels > 16:
            raise Hint(f"{where} the first block holds {levels} different values; 4 bits allow 16 (q in 0 … 15)")
        raise Hint(f"{where} your values differ from gguf's Q4_1 by up to {gap:.3g}: per block of 32, "
                   "d = (max − min) / 15, m = min, q = round((w − m) / d), w ≈ d · q + m")
    return f"the same values as gguf's Q4_1 quantize + dequantize for {len(_Q4_SHAPES)} matrices"


def _blocks_down_columns(weight: torch.Tensor) -> torch.Tensor:
    if weight.shape[0] % 32:
        return torch.full_like(weight, math.nan)
    return compress.round_trip(weight.T.contiguous(), "q4_1").T


def _no_float16(weight: torch.Tensor) -> torch.Tensor:
    blocks = weight.reshape(-1, 32)
    low, high = blocks.min(dim=1, keepdim=True).values, blocks.max(dim=1, keepdim=True).values
    d = (high - low) / 15
    return (torch.trunc((blocks - low) / d + 0.5).clamp(0, 15) * d + low).reshape(weight.shape)


exercise(
    "08.10",
    title="GGUF's Q4_1, read back",
    reference=lambda: _reference_q4_1_round_trip,
    stub=lambda: _not_done,
    wrong=[
        lambda: _no_float16,
        lambda: lambda w: compress.round_trip(w, "int8"),
        lambda: lambda w: compress.round_trip(w * 1.01, "q4_1"),
    ],
)(_check_q4_1_round_trip)


# --------------------------------------------------------------------------- 08.11 predict the speed-up

_TIME_CASES = [(4096, 0.5, False), (4096, 0.5, True), (4096, 0.9, False), (4096, 0.75, True), (10, 0.33, True),
               (768, 0.0, True), (100, 0.95, False)]


def _reference_predicted_time_ratio(out_features: int, sparsity: float, structured: bool) -> float:
    if not structured:
        return 1.0                                               # a dense kernel multiplies zeros too
    return (out_features - round(sparsity * out_features)) / out_features   # fewer rows: proportionally less work


def _check_predicted_time_ratio(predicted_time_ratio: Callable) -> str:
    expect_callable(predicted_time_ratio, "predicted_time_ratio")
    for out_features, sparsity, structured in _TIME_CASES:
        call = f"predicted_time_ratio({out_features}, {sparsity}, structured={structured})"
        got = expect_number(predicted_time_ratio(out_features, sparsity, structured), call, " (pruned time / dense time)")
        want = _reference_predicted_time_ratio(out_features, sparsity, structured)
        if math.isclose(got, want, rel_tol=1e-9):
            continue
        if not structured and math.isclose(got, 1 - sparsity, rel_tol=1e-9):
            raise Hint(f"{call}: you expect zeros to save time. A dense product multiplies every entry, zero or not: "
                       "look at section 1.5's table")
        if structured and math.isclose(got, 1.0):
            raise Hint(f"{call}: structured pruning makes a smaller matrix: fewer rows, less work")
        if structured and math.isclose(got, sparsity, rel_tol=1e-9):
            raise Hint(f"{call}: sparsity is the share removed; the time follows the share kept")
        if structured and math.isclose(got, 1 - sparsity, rel_tol=1e-9):
            raise Hint(f"{call}: {out_features} rows: only whole rows can go, round(sparsity × {out_features}) of them")
        raise Hint(f"{call}: expected {want:.4g}, got {got:.4g}")
    return "the time a dense CPU kernel needs after each kind of pruning, predicted"


exercise(
    "08.11",
    title="Predict, measure, explain: what pruning buys in time",
    reference=lambda: _reference_predicted_time_ratio,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda n, s, structured: 1 - s,
        lambda: lambda n, s, structured: 1.0,
        lambda: lambda n, s, structured: s if structured else 1.0,
        lambda: lambda n, s, structured: (1 - s) if structured else 1.0,
    ],
)(_check_predicted_time_ratio)
