"""Checks for chapter 11b (the future, part 2: privacy, bias and interpretability).

The stub cells in ``chapters/11b_privacy_bias_interpretability.ipynb``::

    def my_exposure(canary_score, candidate_scores):
        raise NotImplementedError  # TODO: log2(number of candidates) − log2(rank of the canary)
    check("11.4", my_exposure)

    def my_clip(grads, max_norm):
        raise NotImplementedError  # TODO: each row of grads (B, P) scaled to norm ≤ max_norm
    check("11.5", my_clip)

    prediction = ...  # TODO: "a", "b" or "c": decide BEFORE you run the next cell
    measured = ...     # TODO: the ratio the measurement cell printed
    explanation = ...  # TODO: "a", "b" or "c"
    check("11.6", dict(committed=committed, prediction=prediction, measured=measured, explanation=explanation))

Notebook 11a has 11.1–11.3. Every check runs in well under a second and leaves the notebook's
random stream alone (its inputs come from private generators).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from labkit import privacy
from labkit.course.checks.predict import PredictMeasureExplain
from labkit.course.exercises import Hint, exercise, expect_callable, expect_number


def _not_done(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError  # what an untouched stub function does


# --------------------------------------------------------------------------- 11.4 exposure

def _exposure_cases() -> list[tuple[float, torch.Tensor]]:
    generator = torch.Generator().manual_seed(114)              # a private stream: the notebook's stays put
    scores = -torch.rand(10_000, generator=generator, dtype=torch.float64) * 30
    ordered = scores.sort(descending=True).values
    return [(float(ordered[0]), scores), (float(ordered[99]), scores), (float(ordered[4999]), scores),
            (float(ordered[-1]), scores), (-1.0, torch.tensor([-1.0, -1.0, -2.0, -3.0], dtype=torch.float64))]


def _check_exposure(my_exposure: Callable) -> str:
    expect_callable(my_exposure, "my_exposure")
    for canary, scores in _exposure_cases():
        got = expect_number(my_exposure(canary, scores.clone()), "my_exposure(canary_score, candidate_scores)")
        want = privacy.exposure(canary, scores)
        if math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9):
            continue
        n = scores.numel()
        rank = 1 + int((scores > canary).sum())
        where = f"for a canary ranked {rank} of {n}"
        if math.isclose(got, math.log2(n) - math.log2(n - rank + 1), abs_tol=1e-9):
            raise Hint(f"{where} you ranked from the least likely: rank 1 is the candidate with the *highest* log-likelihood")
        if math.isclose(got, math.log(n) - math.log(rank), abs_tol=1e-9):
            raise Hint(f"{where} exposure is in bits: use log2, not the natural log")
        if math.isclose(got, math.log2(rank), abs_tol=1e-9) or math.isclose(got, -want, abs_tol=1e-9):
            raise Hint(f"{where} exposure = log2 |R| − log2 rank: a canary ranked first has the most exposure")
        if math.isclose(got, math.log2(n) - math.log2(rank - 1 + 1e-300), abs_tol=1e-6) or rank == 1 and math.isinf(got):
            raise Hint(f"{where} rank counts from 1: rank = 1 + the number of candidates scored higher")
        raise Hint(f"{where} you return {got:.4f}; log2 {n} − log2 {rank} = {want:.4f}. Ties with the canary "
                   "do not push it down: rank = 1 + the number of candidates scored strictly higher")
    return "exposures equal labkit.privacy.exposure's for five rankings, ties included"


exercise(
    "11.4",
    title="The exposure of a canary",
    reference=lambda: privacy.exposure,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda c, s: math.log2(len(s)) - math.log2(1 + int((torch.as_tensor(s) < c).sum())),
        lambda: lambda c, s: math.log(len(s)) - math.log(1 + int((torch.as_tensor(s) > c).sum())),
        lambda: lambda c, s: math.log2(len(s)) - math.log2(1 + int((torch.as_tensor(s) >= c).sum()) - 1 + 1),
        lambda: lambda c, s: math.log2(1 + int((torch.as_tensor(s) > c).sum())),
    ],
)(_check_exposure)


# --------------------------------------------------------------------------- 11.5 per-example clipping

_CLIP_CASES = [((16, 50), 1.0), ((5, 7), 0.1), ((32, 3), 10.0)]


def _grads(seed: int, shape: tuple[int, int]) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    sizes = torch.logspace(-2, 2, shape[0])[torch.randperm(shape[0], generator=generator)]
    return torch.randn(shape, generator=generator) * sizes[:, None]


def _check_clip(my_clip: Callable) -> str:
    expect_callable(my_clip, "my_clip")
    for seed, (shape, c) in enumerate(_CLIP_CASES):
        grads = _grads(seed, shape)
        got = my_clip(grads.clone(), c)
        where = f"for gradients {shape} and C = {c:g}"
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != shape:
            raise Hint(f"{where} return a tensor of the same shape {shape}, got {type(got).__name__} "
                       f"{tuple(getattr(got, 'shape', ()))}")
        want = privacy.clip_per_example(grads, c)
        if torch.allclose(got, want, rtol=1e-5, atol=1e-7):
            continue
        total = grads.norm()
        if torch.allclose(got, grads * min(1.0, c / total.item()), rtol=1e-5, atol=1e-7):
            raise Hint(f"{where} you clipped the whole batch by one norm (as clip_grad_norm_ does): DP-SGD clips "
                       "each example's row by its own norm")
        norms = got.norm(dim=1)
        if (norms > c * (1 + 1e-4)).any():
            raise Hint(f"{where} some rows are longer than C after clipping (largest {norms.max():.4g})")
        short = grads.norm(dim=1) < c
        if not torch.allclose(got[short], grads[short], rtol=1e-5, atol=1e-7):
            raise Hint(f"{where} rows already shorter than C changed: scale by min(1, C / ‖g‖), never up")
        raise Hint(f"{where} your rows differ from g · min(1, C / ‖g‖) by up to {(got - want).abs().max():.3g}")
    return f"each row scaled to norm ≤ C, shorter rows untouched, for {len(_CLIP_CASES)} batches"


exercise(
    "11.5",
    title="Per-example clipping",
    reference=lambda: privacy.clip_per_example,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda g, c: g * min(1.0, c / g.norm().item()),
        lambda: lambda g, c: g * (c / g.norm(dim=1, keepdim=True)),
        lambda: lambda g, c: g.clamp(-c, c),
        lambda: lambda g, c: g * (c / g.norm(dim=0, keepdim=True)).clamp(max=1.0),
    ],
)(_check_clip)


# --------------------------------------------------------------------------- 11.6 predict, measure, explain

def noise_ratio(small: int = 64, large: int = 256, max_norm: float = 1.0, sigma: float = 1.0) -> float:
    """Standard deviation of DP-SGD's noise on the mean gradient at batch ``small`` over that at ``large``
    (zero gradients, 20 000 parameters, a private generator): the measurement of exercise 11.6."""
    generator = torch.Generator().manual_seed(116)
    spread = []
    for batch in (small, large):
        spread.append(privacy.noisy_mean_gradient(torch.zeros(batch, 20_000), max_norm, sigma, generator).std().item())
    return spread[0] / spread[1]


def _prediction(value: float) -> str:
    return "c" if value > 3 else "b" if value > 1.5 else "a"


NOISE = PredictMeasureExplain(
    predictions={
        "a": "about 1: the noise σ·C is the same whatever the batch",
        "b": "about 2: noise shrinks with the square root of the batch, like any average",
        "c": "about 4: four times the batch, a quarter of the noise on the mean",
    },
    explanations={
        "a": "the noise is added to each example's gradient, so it averages out like the examples do",
        "b": "the noise N(0, (σC)²) is added once, to the *sum* of the clipped gradients; the mean divides "
             "that sum by B, so the noise on the mean has standard deviation σC / B",
        "c": "a larger batch takes fewer steps per epoch, so less noise is added per epoch",
    },
    measure=noise_ratio,
    predicted=_prediction,
    explained=lambda value: "b" if value > 3 else "a",
    what="the ratio of the noise's standard deviation at batch 64 to that at batch 256",
    wrong_explanations={
        "a": "if each example carried its own noise, averaging B of them would shrink it by √B only: a ratio of 2, "
             "not what you measured",
        "c": "the measurement is one step at each batch size: steps per epoch do not enter it",
    },
    rel_tol=0.03,
    misreadings=(
        (lambda value, true: math.isclose(value, 1 / true, rel_tol=0.05), "that is the inverse: batch 64's noise "
         "divided by batch 256's"),
    ),
)

NOISE.register("11.6", "Predict, measure, explain: DP noise and the batch size", module=__name__,
               wrong_measurements=(lambda: 1 / noise_ratio(), lambda: 2.0))
