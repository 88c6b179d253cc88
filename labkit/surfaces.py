"""2-D loss surfaces (损失曲面) as data, and races of optimizers across them.

A `Surface` is a function f(x, y) of two parameters with a window to look at it, a known
minimum and a starting point. f works on torch tensors, element by element, so the same
function draws a contour plot on a (H, W) grid and gives a gradient by autograd at one point:

    bowl = SURFACES["bowl"]
    path = run_optimizer(bowl, lambda params: torch.optim.SGD(params, lr=0.1), steps=50)   # (51, 2)
    plot_paths(bowl, {"GD": path})

`race` runs several optimizers from the same start; `plot_paths` draws every path on the
filled contours. Chapter 03 races GD, momentum, RMSProp and Adam; chapter 04 uses the same
pictures to show that the negative gradient points downhill, across the contour lines.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from matplotlib.typing import LegendLocType  # the locations legend() accepts

__all__ = ["Surface", "SURFACES", "run_optimizer", "race", "plot_paths", "plot_surface_3d", "surface_grid",
           "PATH_COLOURS", "LINE_COLOURS"]

PathTensor = torch.Tensor  # (T, 2): one (x, y) row per step, the start first


@dataclass(frozen=True)
class Surface:
    """A loss surface z = f(x, y) over a window, with a minimum and a starting point.

    f: maps tensors x, y of the same shape to z of that shape (works on grids and on 0-d tensors
       that require grad). minimum: the (x, y) of the lowest point (one of them, if several).
    lr_gd, lr_adam: learning rates that work here for GD/momentum and for RMSProp/Adam; their
       units differ (GD's step is lr·gradient, Adam's is about lr), so one number cannot suit both.
    log_levels: draw contour levels on a log scale (for surfaces whose values span decades).
    """

    name: str
    f: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    minimum: tuple[float, float]
    start: tuple[float, float]
    log_levels: bool = False
    lr_gd: float = 0.1
    lr_adam: float = 0.1
    steps: int = 100
    description: str = ""

    def __call__(self, x: torch.Tensor | float, y: torch.Tensor | float) -> torch.Tensor:
        return self.f(torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64))

    def gradient(self, x: float, y: float) -> torch.Tensor:
        """(∂f/∂x, ∂f/∂y) at one point, by autograd: a tensor of shape (2,)."""
        point = torch.tensor([x, y], dtype=torch.float64, requires_grad=True)
        (grad,) = torch.autograd.grad(self.f(point[0], point[1]), point)
        return grad


def _bowl(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 0.5 * x**2 + y**2


def _ravine(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 0.05 * x**2 + 2.0 * y**2


def _rosenbrock(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def _saddle(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 0.5 * x**2 + 0.25 * y**4 - 0.5 * y**2


SURFACES: dict[str, Surface] = {
    "bowl": Surface(
        "bowl", _bowl, xlim=(-3.0, 3.0), ylim=(-3.0, 3.0), minimum=(0.0, 0.0), start=(-2.5, 2.5),
        lr_gd=0.1, lr_adam=0.1, steps=60,
        description="f = x²/2 + y²: a gently elliptical bowl; every method gets there"),
    "ravine": Surface(
        "ravine", _ravine, xlim=(-10.0, 10.0), ylim=(-3.0, 3.0), minimum=(0.0, 0.0), start=(-9.0, 2.0),
        lr_gd=0.4, lr_adam=0.3, steps=100,
        description="f = 0.05x² + 2y²: 40× steeper across than along; GD zig-zags and crawls"),
    "rosenbrock": Surface(
        "rosenbrock", _rosenbrock, xlim=(-2.0, 2.0), ylim=(-1.0, 3.0), minimum=(1.0, 1.0), start=(-1.2, 1.0),
        log_levels=True, lr_gd=1e-3, lr_adam=0.1, steps=300,
        description="f = (1-x)² + 100(y-x²)²: a curved, flat-bottomed valley; finding it is easy, following it is not"),
    "saddle": Surface(
        "saddle", _saddle, xlim=(-2.5, 2.5), ylim=(-1.8, 1.8), minimum=(0.0, 1.0), start=(-2.0, 0.01),
        lr_gd=0.1, lr_adam=0.05, steps=100,
        description="f = x²/2 + y⁴/4 - y²/2: a saddle point at (0, 0), minima at (0, ±1); starts almost on the ridge"),
}


def _surface(surface: Surface | str) -> Surface:
    if isinstance(surface, Surface):
        return surface
    if surface in SURFACES:
        return SURFACES[surface]
    raise KeyError(f"no surface named {surface!r}; choose one of {sorted(SURFACES)}")


def run_optimizer(surface: Surface | str, make_optimizer: Callable[[list[torch.Tensor]], Any], steps: int,
                  start: tuple[float, float] | None = None) -> PathTensor:
    """Let an optimizer walk down `surface`; return its path, a (steps + 1, 2) float64 tensor.

    make_optimizer(params) builds the optimizer for one parameter tensor of shape (2,) holding
    (x, y), e.g. ``lambda params: torch.optim.Adam(params, lr=0.1)`` or ``labkit.optimizers.Adam``.
    Row 0 is the start. If the walk diverges (a coordinate beyond 1e6, or not a number), the
    rows after that stay NaN, so the path simply ends in a plot.
    """
    surface = _surface(surface)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a whole number >= 0, got {steps!r}")
    start = surface.start if start is None else start
    if len(start) != 2:
        raise ValueError(f"start must be a point (x, y), got {start!r}")
    point = torch.tensor([float(start[0]), float(start[1])], dtype=torch.float64, requires_grad=True)
    optimizer = make_optimizer([point])
    path = torch.full((steps + 1, 2), math.nan, dtype=torch.float64)
    path[0] = point.detach()
    for t in range(1, steps + 1):
        optimizer.zero_grad()
        surface.f(point[0], point[1]).backward()
        optimizer.step()
        now = point.detach()
        if not torch.isfinite(now).all():
            break
        path[t] = now
        if now.abs().max() > 1e6:
            break
    return path


def race(surface: Surface | str, optimizers: Mapping[str, Callable[[list[torch.Tensor]], Any]], steps: int,
         start: tuple[float, float] | None = None) -> dict[str, PathTensor]:
    """Run every optimizer from the same start: {name: path (steps + 1, 2)}, ready for `plot_paths`."""
    return {name: run_optimizer(surface, make, steps, start) for name, make in optimizers.items()}


def surface_grid(surface: Surface | str, n: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The surface sampled on an n × n grid over its window: X, Y, Z, each an (n, n) array."""
    surface = _surface(surface)
    xs = torch.linspace(*surface.xlim, n, dtype=torch.float64)
    ys = torch.linspace(*surface.ylim, n, dtype=torch.float64)
    X, Y = torch.meshgrid(xs, ys, indexing="xy")
    with torch.no_grad():
        Z = surface.f(X, Y)
    return X.numpy(), Y.numpy(), Z.numpy()


def _levels(Z: np.ndarray, levels: int, log_levels: bool) -> np.ndarray:
    low, high = float(Z.min()), float(Z.max())
    if not log_levels:
        return np.linspace(low, high, levels)
    span = high - low
    return low + np.concatenate([[0.0], np.geomspace(span * 1e-4, span, levels - 1)])


PATH_COLOURS = ["#ff7f0e", "#f5f5f5", "#ff4fd8", "#00e5ff", "#d62728", "#bcbd22", "#8c564b", "#2ca02c"]
"""Path colours that stand out on the dark blue-green contours, in the order of the paths."""
LINE_COLOURS = ["#ff7f0e", "#555555", "#ff4fd8", "#00acc1", "#d62728", "#bcbd22", "#8c564b", "#2ca02c"]
"""The same colours for plots on a white background (e.g. loss curves of the same race)."""


def plot_paths(surface: Surface | str, paths: Mapping[str, torch.Tensor | np.ndarray] | None = None,
               ax: Axes | None = None, levels: int = 30, log_levels: bool | None = None,
               title: str | None = None, figsize: tuple[float, float] = (6.5, 5.0),
               legend_loc: LegendLocType = "best") -> Figure:
    """Filled contours of `surface` with each path (T, 2) drawn on top; returns the Figure.

    Each path gets a line with small dots (one per step), a white square at its start and a big dot at
    its end; the legend gives its final loss. The star marks the minimum. Draws into `ax` when
    given (for side-by-side panels), otherwise into a new figure.
    """
    surface = _surface(surface)
    log_levels = surface.log_levels if log_levels is None else log_levels
    if ax is None:
        from labkit.plots import new_figure

        ax = new_figure(figsize).add_subplot()
    X, Y, Z = surface_grid(surface)
    contour_levels = _levels(Z, levels, log_levels)
    ax.contourf(X, Y, Z, levels=contour_levels, cmap="viridis")
    ax.contour(X, Y, Z, levels=contour_levels, colors="white", linewidths=0.3, alpha=0.5)
    ax.plot(*surface.minimum, marker="*", markersize=16, color="gold", markeredgecolor="black",
            linestyle="none", label="minimum", zorder=5)
    for i, (name, path) in enumerate((paths or {}).items()):
        p = path.detach().cpu().numpy() if isinstance(path, torch.Tensor) else np.asarray(path, dtype=float)
        if p.ndim != 2 or p.shape[1] != 2:
            raise ValueError(f"path {name!r} should have shape (T, 2), got {p.shape}")
        finite = p[np.isfinite(p).all(axis=1)]
        if len(finite) == 0:
            continue
        end = finite[-1]
        inside = surface.xlim[0] <= end[0] <= surface.xlim[1] and surface.ylim[0] <= end[1] <= surface.ylim[1]
        diverged = len(finite) < len(p) or not inside
        final = "left the picture" if diverged else f"f = {float(surface(end[0], end[1])):.3g}"
        colour = PATH_COLOURS[i % len(PATH_COLOURS)]
        ax.plot(finite[:, 0], finite[:, 1], "-", color=colour, linewidth=1.6, marker="o", markersize=2.2,
                label=f"{name}: {final}", zorder=4)
        ax.plot(*finite[0], marker="s", markersize=8, markerfacecolor="white", markeredgecolor="black",
                markeredgewidth=1.2, zorder=6)
        ax.plot(*end, marker="o", markersize=7, color=colour, markeredgecolor="black", zorder=6)
    ax.set_xlim(*surface.xlim)
    ax.set_ylim(*surface.ylim)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(title if title is not None else surface.name)
    ax.legend(loc=legend_loc, fontsize=8, framealpha=0.85)
    from labkit.plots import root_figure

    return root_figure(ax.figure)


def plot_surface_3d(surface: Surface | str, paths: Mapping[str, torch.Tensor] | None = None,
                    figsize: tuple[float, float] = (6.5, 5.0), n: int = 80) -> Figure:
    """The surface as a 3-D landscape (z up), with optional paths lifted onto it."""
    from labkit.plots import new_figure

    surface = _surface(surface)
    fig = new_figure(figsize)
    ax = fig.add_subplot(projection="3d")
    X, Y, Z = surface_grid(surface, n)
    shown = np.log1p(Z - Z.min()) if surface.log_levels else Z
    ax.plot_surface(X, Y, shown, cmap="viridis", alpha=0.8, linewidth=0)
    for i, (name, path) in enumerate((paths or {}).items()):
        p = path.detach().cpu().numpy()
        p = p[np.isfinite(p).all(axis=1)]
        z = surface(torch.from_numpy(p[:, 0]), torch.from_numpy(p[:, 1])).numpy()
        z = np.log1p(z - Z.min()) if surface.log_levels else z
        ax.plot(p[:, 0], p[:, 1], z, color=PATH_COLOURS[i % len(PATH_COLOURS)], linewidth=2, label=name)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_zlabel("log(1 + f − min f)" if surface.log_levels else "f(x, y)")
    ax.set_title(surface.name)
    if paths:
        ax.legend(fontsize=8)
    return fig
