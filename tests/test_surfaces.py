"""labkit.surfaces: surfaces as data, optimizer paths, and the race pictures."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from labkit import optimizers
from labkit.surfaces import SURFACES, Surface, plot_paths, plot_surface_3d, race, run_optimizer, surface_grid

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.py


def test_the_promised_surfaces_exist():
    assert {"bowl", "rosenbrock", "saddle", "ravine"} <= set(SURFACES)
    for name, surface in SURFACES.items():
        assert surface.name == name and surface.description


@pytest.mark.parametrize("name", SURFACES)
def test_f_works_on_grids_and_with_autograd(name):
    surface = SURFACES[name]
    X, Y, Z = surface_grid(surface, n=50)
    assert X.shape == Y.shape == Z.shape == (50, 50)
    assert np.isfinite(Z).all()
    assert X.min() == surface.xlim[0] and Y.max() == surface.ylim[1]
    grad_at_minimum = surface.gradient(*surface.minimum)
    assert grad_at_minimum.shape == (2,)
    assert torch.allclose(grad_at_minimum, torch.zeros(2, dtype=torch.float64), atol=1e-12)
    assert float(surface(*surface.minimum)) <= Z.min() + 1e-9
    grad_at_start = surface.gradient(*surface.start)
    assert grad_at_start.abs().max() > 1e-3, "the start should not be a stationary point"


def test_gradient_by_autograd_matches_the_formula():
    g = SURFACES["rosenbrock"].gradient(-1.2, 1.0)
    x, y = -1.2, 1.0
    expected = [-2 * (1 - x) - 400 * x * (y - x**2), 200 * (y - x**2)]
    assert g.tolist() == pytest.approx(expected)


def test_path_shape_and_start():
    bowl = SURFACES["bowl"]
    path = run_optimizer(bowl, lambda p: torch.optim.SGD(p, lr=0.1), steps=25)
    assert path.shape == (26, 2) and path.dtype == torch.float64
    assert path[0].tolist() == list(bowl.start)
    other = run_optimizer("bowl", lambda p: optimizers.Adam(p, lr=0.1), steps=3, start=(1.0, -2.0))
    assert other[0].tolist() == [1.0, -2.0] and other.shape == (4, 2)
    assert run_optimizer(bowl, lambda p: optimizers.GD(p, lr=0.1), steps=0).shape == (1, 2)


def test_gradient_descent_finds_the_bowls_minimum():
    bowl = SURFACES["bowl"]
    path = run_optimizer(bowl, lambda p: optimizers.GD(p, lr=bowl.lr_gd), steps=200)
    assert torch.allclose(path[-1], torch.tensor(bowl.minimum, dtype=torch.float64), atol=1e-3)
    losses = bowl(path[:, 0], path[:, 1])
    assert (losses[1:] <= losses[:-1]).all(), "a small enough step on a bowl always goes down"


@pytest.mark.parametrize("name", SURFACES)
def test_suggested_learning_rates_make_progress(name):
    surface = SURFACES[name]
    paths = race(surface, {"GD": lambda p: optimizers.GD(p, lr=surface.lr_gd),
                           "Adam": lambda p: optimizers.Adam(p, lr=surface.lr_adam)}, surface.steps)
    start = float(surface(*surface.start))
    for name_, path in paths.items():
        assert torch.isfinite(path).all(), f"{name_} diverged on {name}"
        assert float(surface(*path[-1])) < start - 0.5 * (start - float(surface(*surface.minimum)))


def test_labkit_and_torch_optimizers_walk_the_same_path():
    rosenbrock = SURFACES["rosenbrock"]
    ours = run_optimizer(rosenbrock, lambda p: optimizers.Adam(p, lr=0.05), steps=100)
    theirs = run_optimizer(rosenbrock, lambda p: torch.optim.Adam(p, lr=0.05), steps=100)
    assert torch.allclose(ours, theirs, atol=1e-10)


def test_divergence_leaves_nan_rows():
    path = run_optimizer("bowl", lambda p: optimizers.GD(p, lr=1.5), steps=100)  # y is multiplied by -2 each step
    finite = torch.isfinite(path).all(dim=1)
    assert finite[0] and not finite[-1]
    first_bad = int((~finite).nonzero()[0])
    assert finite[:first_bad].all() and not finite[first_bad:].any()


def test_saddle_gradient_descent_escapes_only_when_nudged():
    saddle = SURFACES["saddle"]
    on_ridge = run_optimizer(saddle, lambda p: optimizers.GD(p, lr=0.1), steps=200, start=(-2.0, 0.0))
    assert abs(on_ridge[-1, 0]) < 1e-6 and on_ridge[-1, 1] == 0.0  # stuck on the saddle point
    nudged = run_optimizer(saddle, lambda p: optimizers.GD(p, lr=0.1), steps=200)
    assert abs(float(nudged[-1, 1]) - 1.0) < 1e-3


def test_plot_paths_draws_each_path_with_a_legend():
    paths = race("ravine", {"GD": lambda p: optimizers.GD(p, lr=0.4),
                            "Adam": lambda p: optimizers.Adam(p, lr=0.3)}, steps=30)
    fig = plot_paths("ravine", paths, title="race")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == "minimum" and labels[1].startswith("GD: f = ") and labels[2].startswith("Adam: f = ")
    assert ax.get_xlim() == SURFACES["ravine"].xlim and ax.get_title() == "race"
    gd_line = next(line for line in ax.lines if line.get_label().startswith("GD"))
    assert np.allclose(gd_line.get_xydata(), paths["GD"].numpy())


def test_plot_paths_marks_diverged_paths_and_accepts_an_axis():
    from labkit.plots import new_figure

    fig = new_figure((8, 4))
    left, right = fig.subplots(1, 2)
    diverged = run_optimizer("bowl", lambda p: optimizers.GD(p, lr=1.5), steps=40)
    assert plot_paths("bowl", {"GD": diverged}, ax=left) is fig
    assert "left the picture" in left.get_legend().get_texts()[1].get_text()
    plot_paths("rosenbrock", {"path": np.array([[-1.2, 1.0], [0.0, 0.0]])}, ax=right)  # log levels, NumPy path
    with pytest.raises(ValueError, match=r"should have shape \(T, 2\)"):
        plot_paths("bowl", {"bad": torch.zeros(5, 3)})
    with pytest.raises(KeyError, match="choose one of"):
        plot_paths("himmelblau")


def test_plot_surface_3d():
    path = run_optimizer("saddle", lambda p: optimizers.Adam(p, lr=0.05), steps=20)
    fig = plot_surface_3d("saddle", {"Adam": path})
    assert isinstance(fig, Figure) and fig.axes[0].name == "3d"
    assert isinstance(plot_surface_3d(SURFACES["rosenbrock"]), Figure)


def test_run_optimizer_errors():
    with pytest.raises(ValueError, match="steps must be a whole number >= 0, got -1"):
        run_optimizer("bowl", lambda p: optimizers.GD(p, lr=0.1), steps=-1)
    with pytest.raises(ValueError, match=r"start must be a point \(x, y\)"):
        run_optimizer("bowl", lambda p: optimizers.GD(p, lr=0.1), steps=1, start=(1.0,))
    custom = Surface("tilted", lambda x, y: (x - 1) ** 2 + (y + 2) ** 2, (-3, 3), (-3, 3), (1.0, -2.0), (0.0, 0.0))
    assert math.isclose(float(run_optimizer(custom, lambda p: optimizers.GD(p, lr=0.25), 40)[-1, 1]), -2.0, abs_tol=1e-6)
