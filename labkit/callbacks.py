"""Callbacks: what hangs off the training loop (progress bar, live plot, early stopping, ...).

A callback overrides any of the hooks below; `fit` calls them in order. Each receives the
`FitState` (model, optimizer, epoch, step, history, and a `stop` flag it may set).

    on_fit_start → (on_epoch_start → (on_after_backward → on_batch_end)* → on_epoch_end)* → on_fit_end
"""
from __future__ import annotations

import copy
import io
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from . import distributed
from .loop import atomic_save

if TYPE_CHECKING:
    from .loop import TrainState as FitState

__all__ = [
    "Callback",
    "ProgressBar",
    "LivePlot",
    "EarlyStopping",
    "BestCheckpoint",
    "GradientClipping",
    "LRScheduler",
    "Throttle",
    "in_notebook",
]


def in_notebook() -> bool:
    """True inside a Jupyter kernel (JupyterLab, nbclient, nbval), False in a plain script."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in shell.config


class Callback:
    """Base class: every hook does nothing until a subclass overrides it.

    Chapter 06b writes one (the events `fit` and `train_lm` call).
    """

    def on_fit_start(self, state: FitState) -> None: ...
    def on_epoch_start(self, state: FitState) -> None: ...
    def on_after_backward(self, state: FitState) -> None: ...
    def on_batch_end(self, state: FitState) -> None: ...
    def on_epoch_end(self, state: FitState) -> None: ...
    def on_fit_end(self, state: FitState) -> None: ...


class CallbackList(Callback):
    """Calls each hook on every callback, in order. `on_fit_end` always reaches them all."""

    def __init__(self, callbacks: Sequence[Callback]) -> None:
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be labkit Callback objects, got {cb!r}")
        self.callbacks = list(callbacks)
        # Bind the hooks once: the per-batch ones run thousands of times.
        for hook in ("on_fit_start", "on_epoch_start", "on_after_backward", "on_batch_end", "on_epoch_end"):
            methods = [getattr(cb, hook) for cb in self.callbacks if getattr(type(cb), hook) is not getattr(Callback, hook)]
            setattr(self, hook, _chain(methods))

    def on_fit_end(self, state: FitState) -> None:
        errors = []
        for cb in self.callbacks:
            try:
                cb.on_fit_end(state)
            except Exception as error:  # keep going so that every callback can clean up
                errors.append(error)
        if errors:
            raise errors[0]


def _chain(methods: list[Callable[[Any], None]]) -> Callable[[Any], None]:
    if not methods:
        return lambda state: None
    if len(methods) == 1:
        return methods[0]

    def call_all(state: Any) -> None:
        for method in methods:
            method(state)

    return call_all


# History keys that are bookkeeping, not results: left out of progress lines and metric panels.
_NOT_METRICS = ("lr", "epoch_time", "step", "time", "tokens_per_s", "mfu")


def _format_logs(logs: dict[str, float]) -> str:
    shown = "  ".join(f"{k} {v:.4f}" for k, v in logs.items() if k not in _NOT_METRICS)
    if "step" in logs:
        shown = f"step {int(logs['step'])}  " + shown
    if logs.get("tokens_per_s", 0) > 0:  # a language-model run: its speed too
        shown += f"  {logs['tokens_per_s']:,.0f} tok/s  MFU {logs['mfu']:.0%}"
    return shown


class Throttle:
    """Says yes at most once every ``interval`` seconds — and, once a run is long, at most once
    every ``relative`` × the time since the first yes — so that a display's refreshes stay few
    however fast the steps come and however long the run lasts: with ``interval`` 1 s and
    ``relative`` 0.01, 100 in the first 100 s and about 100 · ln(t / 100 s) after that (≈ 210 in
    5 minutes, ≈ 460 in an hour). ``clock`` is replaceable for tests."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic, relative: float = 0.0) -> None:
        if not interval >= 0 or not relative >= 0:
            raise ValueError(f"a refresh interval must be ≥ 0 seconds, got {interval!r} (relative {relative!r})")
        self.interval, self.relative, self.clock = interval, relative, clock
        self.first = self.last = -math.inf

    def ready(self) -> bool:
        """True (and the clock restarts) when enough time has passed since the last True."""
        now = self.clock()
        if self.first == -math.inf:
            self.first = now
        elif now - self.last < max(self.interval, self.relative * (now - self.first)):
            return False
        self.last = now
        return True

    def reset(self) -> None:
        self.first = self.last = -math.inf


# A notebook's outputs travel to the browser (and to nbval) as messages on the kernel's IOPub
# channel. A bar redrawn ten times a second during a two-minute cell sent ~1,700 of them; past
# ZeroMQ's queue limit (1,000 messages a socket) the newest are dropped, the cell's end with them.
NOTEBOOK_REFRESH_S = 1.0  # the progress bar: at most one message a second …
NOTEBOOK_PLOT_REFRESH_S = 2.0  # the live plot: at most one figure every two seconds …
REFRESH_RELATIVE = 0.01  # … and, in a long run, at most one per 1% (bar) or 2% (plot) of the time so far


class ProgressBar(Callback):
    """One progress bar over all the steps of the run, showing the epoch and the latest loss.

    In a terminal it is a `tqdm` bar that also prints one line of results per epoch. In a
    notebook it is one line of output redrawn in place at most once every ``min_interval``
    seconds (and, in a long run, every 1% of the time so far: see `Throttle`), and once more
    when training ends: however fast the steps and however long the run, the bar sends a few
    hundred messages at most, and the saved notebook shows the finished bar as plain text.

    Chapter 00 shows it (`fit`'s default); 07a and 07c drive one by hand.
    """

    def __init__(self, min_interval: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.min_interval, self.clock = min_interval, clock
        self.bar: Any = None
        self.handle: Any = None

    def on_fit_start(self, state: FitState) -> None:
        self.total = state.total_steps
        self.notebook = in_notebook()
        interval = self.min_interval if self.min_interval is not None else (NOTEBOOK_REFRESH_S if self.notebook else 0.5)
        self.throttle = Throttle(interval, self.clock, relative=REFRESH_RELATIVE if self.notebook else 0.0)
        self.initial, self.start = state.step, self.clock()
        self.description, self.postfix = f"{state.period} 1/{state.epochs}", ""
        if self.notebook:
            from IPython.display import display

            self.throttle.ready()  # the first line is drawn now
            self.handle = display({"text/plain": self._line(state.step)}, raw=True, display_id=True)
        else:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=state.step, unit="step", mininterval=interval)

    def _line(self, n: int, postfix: str | None = None) -> str:
        from tqdm import tqdm

        return tqdm.format_meter(n, self.total, self.clock() - self.start, prefix=self.description, unit="step",
                                 postfix=postfix, initial=self.initial, bar_format="{l_bar}{bar:24}{r_bar}")

    def _describe(self, state: FitState) -> None:
        self.description = f"{state.period} {state.epoch + 1}/{state.epochs}  loss {state.loss:.4f}"

    def on_batch_end(self, state: FitState) -> None:
        if self.notebook:
            if self.throttle.ready():
                self._describe(state)
                self.handle.update({"text/plain": self._line(state.step, self.postfix)}, raw=True)
            return
        self.bar.update(1)
        if self.throttle.ready():
            self._describe(state)
            self.bar.set_description(self.description, refresh=False)

    def on_epoch_end(self, state: FitState) -> None:
        self.postfix = _format_logs(state.history.last())
        if self.notebook:
            if self.throttle.ready():
                self.handle.update({"text/plain": self._line(state.step, self.postfix)}, raw=True)
            return
        self.bar.set_postfix_str(self.postfix, refresh=True)
        self.bar.write(f"{state.period} {state.epoch + 1}/{state.epochs}  {self.postfix}")

    def on_fit_end(self, state: FitState) -> None:
        if self.notebook:
            if self.handle is not None:
                self.description = f"{state.period} {state.history.epochs}/{state.epochs}"
                self.handle.update({"text/plain": self._line(state.step)}, raw=True)
            return
        if self.bar is None:
            return
        self.bar.close()
        if state.history.stop_reason:
            print(f"stopped: {state.history.stop_reason}")


class LivePlot(Callback):
    """Loss and metric curves redrawn in place as training goes (one figure, not one per epoch).

    It redraws after an epoch at most once every ``min_interval`` seconds (and, in a long run,
    every 2% of the time so far), and always shows the last epoch when training ends: a run of many quick epochs sends a few figures, not
    one per epoch. By default it draws into the notebook cell's output; pass an
    `ipywidgets.Image` as `image` to draw into a widget instead (the hyperparameter panel
    does). In a plain script it does nothing: use `history.plot()` after training.

    Chapter 00 shows it (`fit`'s default live plot).
    """

    def __init__(self, image: Any = None, metrics: Sequence[str] | None = None, figsize: tuple[float, float] = (10, 3.6),
                 dpi: int = 80, min_interval: float = NOTEBOOK_PLOT_REFRESH_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.image = image
        self.dpi = dpi
        self.metrics = metrics
        self.figsize = figsize
        self.throttle = Throttle(min_interval, clock, relative=2 * REFRESH_RELATIVE)
        self.handle: Any = None

    def on_fit_start(self, state: FitState) -> None:
        from matplotlib.figure import Figure

        self.enabled = self.image is not None or in_notebook()
        self.figure = Figure(figsize=self.figsize, layout="constrained") if self.enabled else None
        self.handle = None
        self.throttle.reset()
        self.drawn = 0  # how many epochs the figure on show has

    def on_epoch_end(self, state: FitState) -> None:
        if self.enabled and self.throttle.ready():
            self._draw(state)

    def on_fit_end(self, state: FitState) -> None:
        if self.enabled and state.history.epochs and (self.drawn != state.history.epochs or state.history.stop_reason):
            self._draw(state)

    def _draw(self, state: FitState) -> None:
        from .plots import draw_history

        fig = self.figure
        if fig is None:  # not enabled (on_fit_start made no figure): nothing to draw on
            return
        self.drawn = state.history.epochs
        fig.clear()
        shown = self.metrics if self.metrics is not None else [k for k in state.history if k not in _NOT_METRICS]
        n_panels = 2 if any(not k.endswith("loss") for k in shown) else 1
        axes = fig.subplots(1, n_panels, squeeze=False)[0]
        draw_history(list(axes), state.history, metrics=self.metrics)
        title = f"{state.period} {state.history.epochs}/{state.epochs}   " + _format_logs(state.history.last())
        if state.history.stop_reason:
            title += "\n(stopped: " + state.history.stop_reason.split(";")[0] + ")"
        fig.suptitle(title, fontsize=9)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=self.dpi)
        png = buffer.getvalue()
        if self.image is not None:
            self.image.value = png
            return
        from IPython.display import Image, display

        # A PNG (not the Figure itself) so that it shows without any matplotlib backend set up,
        # is replaced in place by every redraw, and stays in the saved notebook.
        if self.handle is None:
            self.handle = display(Image(data=png, format="png"), display_id=True)
        else:
            self.handle.update(Image(data=png, format="png"))


def _better(mode: str, min_delta: float) -> Callable[[float, float], bool]:
    if mode == "min":
        return lambda new, best: new < best - min_delta
    return lambda new, best: new > best + min_delta


def _mode_for(monitor: str, mode: str) -> str:
    if mode == "auto":
        return "min" if "loss" in monitor else "max"
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")
    return mode


def _require_monitored(state: FitState, monitor: str, who: str) -> None:
    if monitor.startswith("val_") and not state.has_validation:
        raise ValueError(f"{who} watches {monitor!r}, but fit() got no val_data: pass val_data, or monitor='train_loss'")


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved for `patience` epochs; optionally restore the best weights.

    Chapter 02 stops on it (overfitting, early stopping).
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 3, min_delta: float = 0.0, mode: str = "auto",
                 restore_best: bool = True) -> None:
        if patience < 1:
            raise ValueError(f"patience must be >= 1 epoch, got {patience}")
        self.monitor, self.patience, self.min_delta, self.restore_best = monitor, patience, min_delta, restore_best
        self.mode = _mode_for(monitor, mode)
        self.is_better = _better(self.mode, min_delta)
        self.best_state: dict[str, Any] | None = None

    def on_fit_start(self, state: FitState) -> None:
        _require_monitored(state, self.monitor, "EarlyStopping")
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch, self.wait, self.best_state = -1, 0, None

    def on_epoch_end(self, state: FitState) -> None:
        value = state.history[self.monitor][-1]
        if self.is_better(value, self.best):
            self.best, self.best_epoch, self.wait = value, state.epoch, 0
            if self.restore_best:
                self.best_state = copy.deepcopy(state.model.state_dict())
            return
        self.wait += 1
        if self.wait >= self.patience:
            state.stop = True
            state.history.stop_reason = (
                f"early stopping: {self.monitor} did not improve for {self.patience} epochs "
                f"(best {self.best:.4f} at epoch {self.best_epoch + 1})"
            )

    def on_fit_end(self, state: FitState) -> None:
        if self.restore_best and self.best_state is not None and self.best_epoch != state.history.epochs - 1:
            state.model.load_state_dict(self.best_state)


class BestCheckpoint(Callback):
    """Keep the weights of the best epoch by `monitor`: in memory, and in `path` if one is given.

    At the end of training (also after the stop button) the model gets the best weights back.
    The file holds a plain ``state_dict``: load it with ``torch.load(path, weights_only=True)``.

    Chapter 02 motivates it (keep the weights of the best validation epoch).
    """

    def __init__(self, path: str | os.PathLike | None = None, monitor: str = "val_loss", mode: str = "auto", restore: bool = True) -> None:
        self.path = Path(path) if path is not None else None
        self.monitor, self.restore = monitor, restore
        self.mode = _mode_for(monitor, mode)
        self.is_better = _better(self.mode, 0.0)
        self.best_state: dict[str, Any] | None = None

    def on_fit_start(self, state: FitState) -> None:
        _require_monitored(state, self.monitor, "BestCheckpoint")
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch, self.best_state = -1, None

    def on_epoch_end(self, state: FitState) -> None:
        value = state.history[self.monitor][-1]
        if not self.is_better(value, self.best):
            return
        self.best, self.best_epoch = value, state.epoch
        self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in state.model.state_dict().items()}
        if self.path is not None:
            if distributed.is_main():  # under DDP every rank holds the same weights: one writes
                atomic_save(self.best_state, self.path)

    def on_fit_end(self, state: FitState) -> None:
        if self.restore and self.best_state is not None:
            state.model.load_state_dict(self.best_state)


class GradientClipping(Callback):
    """Rescale the gradients so that their global norm is at most `max_norm` (before each step).

    Chapter 06b derives clipping by the global norm (梯度裁剪).
    """

    def __init__(self, max_norm: float = 1.0) -> None:
        if not max_norm > 0:
            raise ValueError(f"max_norm must be > 0, got {max_norm}")
        self.max_norm = max_norm

    def on_fit_start(self, state: FitState) -> None:
        self.params = [p for p in state.model.parameters() if p.requires_grad]

    def on_after_backward(self, state: FitState) -> None:
        torch.nn.utils.clip_grad_norm_(self.params, self.max_norm)


class LRScheduler(Callback):
    """A learning-rate schedule: `make(optimizer, total_steps)` returns a torch scheduler,
    stepped after every batch (``every="step"``) or every epoch (``every="epoch"``).

    >>> LRScheduler(lambda opt, total: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=total))

    Chapter 05 schedules the learning rate with it; 07a reuses it.
    """

    def __init__(self, make: Callable[[torch.optim.Optimizer, int], Any], every: str = "step") -> None:
        if every not in ("step", "epoch"):
            raise ValueError(f"every must be 'step' or 'epoch', got {every!r}")
        self.make, self.every = make, every

    def on_fit_start(self, state: FitState) -> None:
        total = state.total_steps if self.every == "step" else state.epochs  # what the run plans
        self.scheduler = self.make(state.optimizer, total)

    def on_batch_end(self, state: FitState) -> None:
        if self.every == "step":
            self.scheduler.step()

    def on_epoch_end(self, state: FitState) -> None:
        if self.every == "epoch":
            self.scheduler.step()


def default_callbacks(verbose: bool, given: Sequence[Callback] = (), plot_metrics: Sequence[str] | None = None) -> list[Callback]:
    """What ``verbose=True`` adds to a run: a progress bar and, in a notebook, a live plot (of
    ``plot_metrics``; ``[]`` draws the loss panel only) — each unless `given` (the caller's
    callbacks) already has one."""
    if not verbose:
        return []
    defaults: list[Callback] = []
    if not any(isinstance(cb, ProgressBar) for cb in given):
        defaults.append(ProgressBar())
    if not any(isinstance(cb, LivePlot) for cb in given):
        defaults.append(LivePlot(metrics=plot_metrics))
    return defaults
