"""labkit.scaling (chapter 11a): the power-law fit equals numpy's and SciPy's, the frontier and the
compute-optimal size are found on runs whose answer is known, and bad input gets a clear error."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import curve_fit

from labkit import scaling
from labkit.estimates import training_flops


def test_fit_equals_numpy_polyfit_in_log_space():
    rng = np.random.default_rng(0)
    x = np.logspace(9, 13, 12)
    y = 7.3 * x ** -0.071 * np.exp(rng.normal(0, 0.01, x.size))
    law = scaling.fit_power_law(x, y)
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
    assert law.exponent == pytest.approx(slope, rel=1e-10)
    assert law.coefficient == pytest.approx(math.exp(intercept), rel=1e-10)


def test_fit_equals_scipy_curve_fit_on_the_log_model():
    x = np.logspace(10, 14, 9)
    y = 4.0 * x ** -0.05 * (1 + 0.002 * np.sin(np.arange(9)))
    law = scaling.fit_power_law(x, y)
    (log_a, b), _ = curve_fit(lambda u, log_a, b: log_a + b * u, np.log(x), np.log(y))
    assert law.exponent == pytest.approx(b, rel=1e-6)
    assert law.coefficient == pytest.approx(math.exp(log_a), rel=1e-6)


def test_an_exact_power_law_is_recovered_and_solved():
    law = scaling.fit_power_law([1, 10, 100, 1000], [2.0, 1.0, 0.5, 0.25])
    assert law.exponent == pytest.approx(math.log10(0.5))
    assert law.coefficient == pytest.approx(2.0)
    assert law.solve(0.5) == pytest.approx(100)
    assert law(1000) == pytest.approx(0.25)


def test_frontier_picks_the_lowest_run_at_each_compute():
    small = (np.array([1e3, 1e4, 1e5]), np.array([3.0, 2.0, 1.8]))
    large = (np.array([4e3, 4e4, 4e5]), np.array([3.5, 1.9, 1.2]))
    loss, best = scaling.frontier({10.0: small, 40.0: large}, [1e3, 1e4, 1e5, 4e5, 1e6])
    assert best[0] == 10 and loss[0] == 3.0            # only the small run reaches 1e3
    assert best[2] == 40 and loss[2] < 1.8             # the large one is lower by then
    assert best[3] == 40 and loss[3] == 1.2
    assert np.isnan(loss[4]) and np.isnan(best[4])     # no run reaches 1e6


def test_compute_optimal_recovers_a_planted_size_law():
    """Runs built from L(N, D) = E + A/N^α + B/D^β with α = β: the optimum then grows as C^0.5."""
    def loss(n, d):
        return 1.0 + 400 / n ** 0.34 + 400 / d ** 0.34
    curves = {}
    for n in np.logspace(4, 7, 25):
        tokens = np.logspace(4, 10, 60)
        curves[float(n)] = (np.array([training_flops(n, d) for d in tokens]), loss(n, tokens))
    grid = np.logspace(10, 13, 9)                       # optimum N ≈ √(C/6): 4e4 … 1.3e6, inside the runs
    loss_law, size_law = scaling.compute_optimal(curves, grid)
    assert size_law.exponent == pytest.approx(0.5, abs=0.05)
    assert loss_law.exponent < 0


def test_chinchilla_rule():
    n, d = scaling.chinchilla_optimal(5.76e23)             # Chinchilla's budget: ~70B params, ~1.4T tokens
    assert n == pytest.approx(6.9e10, rel=0.02) and d == pytest.approx(20 * n)


@pytest.mark.parametrize("x, y, message", [
    ([1, 2, 3], [1, -2, 3], "y must be finite and > 0"),
    ([1], [1], "at least 2"),
    ([1, 2], [1, 2, 3], "same length"),
    ([5, 5], [1, 2], "one value"),
])
def test_bad_input_is_named(x, y, message):
    with pytest.raises(ValueError, match=message):
        scaling.fit_power_law(x, y)


def test_bad_budget_is_named():
    with pytest.raises(ValueError, match="flops must be"):
        scaling.chinchilla_optimal(-1.0)
