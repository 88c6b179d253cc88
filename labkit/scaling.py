"""Scaling laws: a power law fitted to loss against compute, and the compute-optimal model size.

Chapter 11a measures them on the learner's own runs: a sweep of small GPTs, each evaluated as it
trains, gives loss against compute C ≈ 6·N·D (chapter 01); the lowest loss reached at each compute
(the *frontier*) falls on a straight line in log–log axes, L(C) = a · C^(−b); and the model size N
that reaches the frontier at each compute grows as N_opt(C) = k · C^e (Kaplan et al. 2020,
arXiv:2001.08361; Hoffmann et al. 2022, "Chinchilla", arXiv:2203.15556).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from labkit.estimates import training_flops

__all__ = ["PowerLaw", "fit_power_law", "frontier", "compute_optimal", "chinchilla_optimal"]


@dataclass(frozen=True)
class PowerLaw:
    """y = coefficient · x^exponent (a falling loss has a negative exponent)."""

    coefficient: float
    exponent: float

    def __call__(self, x: float | np.ndarray) -> float | np.ndarray:
        return self.coefficient * np.asarray(x, dtype=float) ** self.exponent

    def solve(self, y: float) -> float:
        """The x at which the law reaches y: x = (y / coefficient)^(1 / exponent)."""
        if self.exponent == 0:
            raise ValueError("a power law with exponent 0 is flat: it reaches one y only")
        return float((y / self.coefficient) ** (1 / self.exponent))


def _positive_array(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float).reshape(-1)
    if array.size < 2:
        raise ValueError(f"{name} needs at least 2 values to fit a line, got {array.size}")
    bad = ~np.isfinite(array) | (array <= 0)
    if bad.any():
        raise ValueError(f"{name} must be finite and > 0 (a power law is fitted in log space), "
                         f"got {array[bad][0]!r} at index {int(np.flatnonzero(bad)[0])}")
    return array


def fit_power_law(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> PowerLaw:
    """Least squares of log y on log x: y ≈ coefficient · x^exponent. x, y: (n,) positive.

    By hand: with u = log x, v = log y, the slope is cov(u, v) / var(u) and the intercept
    mean(v) − slope · mean(u); the slope is the exponent, e^intercept the coefficient. Equal to
    ``numpy.polyfit(log x, log y, 1)`` (tests/test_scaling.py).
    """
    xs, ys = _positive_array(x, "x"), _positive_array(y, "y")
    if xs.shape != ys.shape:
        raise ValueError(f"x and y must have the same length, got {xs.size} and {ys.size}")
    u, v = np.log(xs), np.log(ys)
    spread = float(((u - u.mean()) ** 2).sum())
    if spread == 0:
        raise ValueError("x holds one value only: a slope needs at least two different x")
    slope = float(((u - u.mean()) * (v - v.mean())).sum()) / spread
    intercept = float(v.mean() - slope * u.mean())
    return PowerLaw(coefficient=math.exp(intercept), exponent=slope)


def frontier(curves: dict[float, tuple[Sequence[float], Sequence[float]]],
             grid: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The lowest loss reached at each compute of ``grid``, and the model size that reaches it.

    ``curves`` maps a model size N to its run's (compute (m,), loss (m,)), compute increasing. A
    run's loss between two evaluations is interpolated linearly in log compute; a compute outside a
    run's range is not reached by that run. Returns (best loss (g,), best N (g,)); NaN where no run
    covers a compute.
    """
    if not curves:
        raise ValueError("curves is empty: pass {N: (compute, loss)} for at least one run")
    grid = np.asarray(grid, dtype=float).reshape(-1)
    if grid.size == 0 or not np.all(np.isfinite(grid) & (grid > 0)):
        raise ValueError(f"grid must hold computes that are finite and > 0, got {grid[:4]!r}")
    best_loss = np.full(len(grid), np.nan)
    best_n = np.full(len(grid), np.nan)
    for n, (compute, loss) in curves.items():
        c, lo = np.log(_positive_array(compute, f"compute of N={n}")), np.asarray(loss, dtype=float)
        if np.any(np.diff(c) <= 0):
            raise ValueError(f"the compute of N={n} must increase from one evaluation to the next")
        inside = (np.log(grid) >= c[0]) & (np.log(grid) <= c[-1])
        value = np.interp(np.log(grid), c, lo)
        better = inside & ~(value >= best_loss)                  # NaN best_loss: not covered yet
        best_loss[better], best_n[better] = value[better], n
    return best_loss, best_n


def compute_optimal(curves: dict[float, tuple[Sequence[float], Sequence[float]]],
                    grid: Sequence[float] | np.ndarray) -> tuple[PowerLaw, PowerLaw]:
    """Fit the frontier of ``curves`` over ``grid``: (loss law L(C), size law N_opt(C)).

    The first is the scaling law of loss with compute, the second says how big a model to train
    for a compute budget (Chinchilla's question). Computes where no run reaches are left out.
    """
    loss, best_n = frontier(curves, grid)
    covered = ~np.isnan(loss)
    if covered.sum() < 2:
        raise ValueError("fewer than 2 computes of grid are covered by the runs: choose a grid inside their range")
    grid = np.asarray(grid, dtype=float)[covered]
    return fit_power_law(grid, loss[covered]), fit_power_law(grid, best_n[covered])


def chinchilla_optimal(flops: float, tokens_per_parameter: float = 20.0) -> tuple[float, float]:
    """Chinchilla's rule of thumb: train N parameters on D = tokens_per_parameter · N tokens, so that
    C = 6·N·D = 6·r·N², N = √(C / 6r). Returns (N, D) for a budget of ``flops``."""
    if not (isinstance(flops, (int, float)) and math.isfinite(flops) and flops > 0):
        raise ValueError(f"flops must be a finite number > 0, got {flops!r}")
    if not (isinstance(tokens_per_parameter, (int, float)) and tokens_per_parameter > 0):
        raise ValueError(f"tokens_per_parameter must be > 0 (Chinchilla's is 20), got {tokens_per_parameter!r}")
    params = math.sqrt(flops / (6 * tokens_per_parameter))
    tokens = tokens_per_parameter * params
    assert math.isclose(training_flops(params, tokens), flops, rel_tol=1e-9)
    return params, tokens
