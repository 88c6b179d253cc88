"""The training loop every chapter uses: `fit(model, train_data, val_data, ...)`.

The loop itself is short; everything optional (progress bar, live plot, early stopping,
checkpoints, gradient clipping, learning-rate schedules) hangs off it as a callback
(see `labkit.callbacks`). `fit` returns a Keras-style `History` of per-epoch lists.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler, TensorDataset

from .device import get_device
from .metrics import get_metric
from .seed import seed_everything

__all__ = ["fit", "evaluate", "History", "FitState", "make_loader", "ShapeError", "LabelError"]


class ShapeError(ValueError):
    """The model cannot take the data's shape (which layer, which shapes)."""


class LabelError(ValueError):
    """A label does not fit the loss (for example class 10 for a model with 10 outputs)."""


class History(dict):
    """Per-epoch results, Keras-style: ``history["val_loss"]`` is a list with one value per epoch.

    `stop_reason` says why training ended early (early stopping, the stop button, a loss
    that became NaN), or is None when every epoch ran.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stop_reason: str | None = None

    def append(self, logs: dict[str, float]) -> None:
        for key, value in logs.items():
            self.setdefault(key, []).append(value)

    @property
    def epochs(self) -> int:
        """How many epochs finished."""
        return len(next(iter(self.values()), []))

    def last(self) -> dict[str, float]:
        """The last epoch's values."""
        return {key: values[-1] for key, values in self.items() if values}

    def plot(self, metrics: Sequence[str] | None = None):
        """Loss curves (train and validation) beside the other metrics; returns the Figure."""
        from .plots import plot_history

        return plot_history(self, metrics=metrics)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v:.4g}" for k, v in self.last().items() if k != "epoch_time")
        note = f" — stopped: {self.stop_reason}" if self.stop_reason else ""
        return f"History({self.epochs} epochs: {shown}{note})"


@dataclass
class FitState:
    """What callbacks see: the model, the optimizer, where training is, and the history so far."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device
    epochs: int
    steps_per_epoch: int
    history: History
    has_validation: bool
    epoch: int = 0  # the current epoch, counting from 0
    step: int = 0  # optimizer steps taken so far, over all epochs
    loss: float = math.nan  # the last batch's loss
    stop: bool = False  # a callback sets this to end training after the current epoch
    logs: dict[str, float] = field(default_factory=dict)  # this epoch's results so far
    period: str = "epoch"  # what one round of training is called in progress bars and plots


def make_loader(data: Dataset, batch_size: int, shuffle: bool, generator: torch.Generator | None = None) -> DataLoader:
    """A DataLoader; for a `TensorDataset` it slices whole batches at once, which is much faster
    than collating examples one by one."""
    if isinstance(data, TensorDataset):
        order = RandomSampler(data, generator=generator) if shuffle else SequentialSampler(data)
        # `generator` is passed on too, so both paths draw the same shuffling order.
        return DataLoader(data, batch_size=None, sampler=BatchSampler(order, batch_size, drop_last=False), generator=generator)
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=generator)


def _batch_size(x: Any) -> int:
    return len(x[0]) if isinstance(x, (list, tuple)) else len(x)


def _to(x: Any, device: torch.device) -> Any:
    if isinstance(x, (list, tuple)):
        return type(x)(_to(v, device) for v in x)
    return x.to(device, non_blocking=True)


def _metric_table(metrics: Iterable[str | Callable] | dict[str, Callable]) -> dict[str, Callable]:
    """Metric names to functions ``fn(logits (B, C), targets (B,)) -> 0-d tensor``."""
    if isinstance(metrics, dict):
        return dict(metrics)
    return {m if isinstance(m, str) else getattr(m, "__name__", "metric"): get_metric(m) for m in metrics}


def evaluate(
    model: nn.Module,
    data: Dataset | DataLoader,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    metrics: Iterable[str | Callable] | dict[str, Callable] = ("accuracy",),
    *,
    batch_size: int = 512,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Average loss and metrics of `model` over `data` (in eval mode, without gradients)."""
    device = get_device(device) if not isinstance(device, torch.device) else device
    loader = data if isinstance(data, DataLoader) else make_loader(data, batch_size, shuffle=False)
    loss_fn = loss_fn or nn.functional.cross_entropy
    metric_fns = _metric_table(metrics)
    was_training = model.training
    model.eval()
    totals = {"loss": torch.zeros((), device=device), **{k: torch.zeros((), device=device) for k in metric_fns}}
    seen = 0
    with torch.no_grad():
        for x, y in loader:
            x, y = _to(x, device), _to(y, device)
            out = model(x)
            n = _batch_size(y)
            totals["loss"] += loss_fn(out, y) * n
            for name, fn in metric_fns.items():
                totals[name] += fn(out, y) * n
            seen += n
    model.train(was_training)
    return {name: (total / max(seen, 1)).item() for name, total in totals.items()}


def fit(
    model: nn.Module,
    train_data: Dataset,
    val_data: Dataset | None = None,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    optimizer: str | Callable[..., torch.optim.Optimizer] = "adam",
    weight_decay: float = 0.0,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    metrics: Sequence[str | Callable] | None = None,
    callbacks: Sequence[Any] = (),
    device: torch.device | str | None = None,
    seed: int | None = None,
    verbose: bool = True,
) -> History:
    """Train `model` on `train_data` for `epochs` epochs and return its `History`.

    `train_data` / `val_data` yield ``(x, y)`` pairs; the default loss is cross-entropy on
    logits (B, C) against class labels (B,), with accuracy as metric. `optimizer` is
    "adam", "adamw", "sgd" (momentum 0.9), or ``callable(params, lr=..., weight_decay=...)``.
    `verbose` adds a progress bar and a live plot (in a notebook) to `callbacks`.
    The stop button (KeyboardInterrupt) ends training cleanly: the history so far is returned.
    """
    from .callbacks import CallbackList, default_callbacks

    _check_arguments(epochs=epochs, lr=lr, batch_size=batch_size, train_data=train_data, val_data=val_data)
    device = device if isinstance(device, torch.device) else get_device(device)
    if seed is not None:
        seed_everything(seed)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    model.to(device)
    train_loader = make_loader(train_data, batch_size, shuffle=True, generator=generator)
    val_loader = make_loader(val_data, max(batch_size, 256), shuffle=False) if val_data is not None else None
    opt = _make_optimizer(optimizer, model, lr, weight_decay)
    if metrics is None:  # accuracy for classification losses; none for, say, regression
        metrics = ("accuracy",) if loss_fn is None or isinstance(loss_fn, nn.CrossEntropyLoss) else ()
    metric_fns = _metric_table(metrics)
    loss_fn = loss_fn or nn.functional.cross_entropy

    history = History()
    state = FitState(model, opt, device, epochs, len(train_loader), history, val_loader is not None)
    hooks = CallbackList([*default_callbacks(verbose, callbacks), *callbacks])
    _check_first_batch(model, train_data, loss_fn, device)
    hooks.on_fit_start(state)
    try:
        for state.epoch in range(epochs):
            start = time.perf_counter()
            hooks.on_epoch_start(state)
            state.logs = _train_one_epoch(state, train_loader, loss_fn, metric_fns, hooks)
            if state.stop:  # the loss became NaN / inf: the epoch did not finish
                break
            if val_loader is not None:
                val = evaluate(model, val_loader, loss_fn, metric_fns, device=device)
                state.logs.update({f"val_{k}": v for k, v in val.items()})
            state.logs["lr"] = opt.param_groups[0]["lr"]
            state.logs["epoch_time"] = time.perf_counter() - start
            history.append(state.logs)
            hooks.on_epoch_end(state)
            if state.stop:
                break
    except KeyboardInterrupt:
        history.stop_reason = (
            f"interrupted (stop button) during epoch {state.epoch + 1}; "
            f"the history of the {history.epochs} finished epochs is kept"
        )
        print(f"⏹ training {history.stop_reason}.")
    finally:
        hooks.on_fit_end(state)
    return history


def _train_one_epoch(state: FitState, loader: DataLoader, loss_fn, metric_fns: dict, hooks) -> dict[str, float]:
    """One pass over the training data; returns the epoch's mean loss and metrics."""
    model, opt, device = state.model, state.optimizer, state.device
    model.train()
    totals = {"loss": 0.0, **{name: torch.zeros((), device=device) for name in metric_fns}}
    seen = 0
    for x, y in loader:
        x, y = _to(x, device), _to(y, device)
        out = model(x)
        loss = _compute_loss(loss_fn, out, y)
        state.loss = loss.item()
        if not math.isfinite(state.loss):
            state.stop = True
            state.history.stop_reason = (
                f"the loss became {state.loss} at step {state.step + 1} (epoch {state.epoch + 1}); "
                f"training stopped before that step changed the weights. The learning rate "
                f"({opt.param_groups[0]['lr']:g}) is probably too high: try one 10 times smaller."
            )
            print("⚠ " + state.history.stop_reason)
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        hooks.on_after_backward(state)
        opt.step()
        state.step += 1
        n = _batch_size(y)
        seen += n
        totals["loss"] += state.loss * n
        with torch.no_grad():
            for name, fn in metric_fns.items():
                totals[name] += fn(out.detach(), y) * n
        hooks.on_batch_end(state)
    return {f"train_{k}": float(v) / max(seen, 1) for k, v in totals.items()}


def _compute_loss(loss_fn, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """`loss_fn(out, y)`, turning torch's out-of-range-label errors into a LabelError."""
    try:
        return loss_fn(out, y)
    except (IndexError, RuntimeError) as error:
        if out.ndim == 2 and not y.is_floating_point() and y.numel() and (y.min() < 0 or y.max() >= out.shape[1]):
            raise LabelError(
                f"labels must be class numbers 0..{out.shape[1] - 1} for a model with {out.shape[1]} outputs, "
                f"but a batch has labels from {int(y.min())} to {int(y.max())}. Give the last layer as many "
                f"outputs as there are classes, or fix the labels."
            ) from None
        raise error


def _check_arguments(*, epochs, lr, batch_size, train_data, val_data) -> None:
    for name, value, kind in (("epochs", epochs, int), ("batch_size", batch_size, int), ("lr", lr, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
            raise TypeError(f"{name} must be a {'whole number' if kind is int else 'number'}, got {value!r}")
        if not value > 0 or (kind is float and not math.isfinite(value)):
            what = "learning rate (lr)" if name == "lr" else name
            raise ValueError(f"{what} must be > 0, got {value!r}")
    for name, data in (("train_data", train_data), ("val_data", val_data)):
        if data is None and name == "val_data":
            continue
        try:
            size = len(data)
        except TypeError:
            raise TypeError(f"{name} must be a Dataset with a length, got {type(data).__name__}") from None
        if size == 0:
            raise ValueError(f"{name} is empty (0 examples): check how it was built or split")


def _make_optimizer(optimizer, model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (all are frozen): unfreeze some before fit()")
    if callable(optimizer):
        return optimizer(params, lr=lr, weight_decay=weight_decay)
    choices = {
        "adam": lambda: torch.optim.Adam(params, lr=lr, weight_decay=weight_decay),
        "adamw": lambda: torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay),
        "sgd": lambda: torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay),
    }
    if optimizer not in choices:
        raise ValueError(f"unknown optimizer {optimizer!r}: use one of {sorted(choices)} or a callable")
    return choices[optimizer]()


def _check_first_batch(model: nn.Module, data: Dataset, loss_fn, device: torch.device) -> None:
    """Run one small batch through the model to turn shape and label mistakes into clear errors."""
    x, y = next(iter(make_loader(data, 2, shuffle=False)))
    x, y = _to(x, device), _to(y, device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = _forward_naming_layers(model, x)
    model.train(was_training)
    if isinstance(data, TensorDataset) and out.ndim == 2 and not y.is_floating_point() and loss_fn in (nn.functional.cross_entropy,):
        labels = data.tensors[-1]
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= out.shape[1]:
            raise LabelError(
                f"labels must be class numbers 0..{out.shape[1] - 1} for a model with {out.shape[1]} outputs, "
                f"but train_data has labels from {low} to {high}. Give the last layer as many outputs "
                f"as there are classes, or fix the labels."
            )
    _compute_loss(loss_fn, out, y)


def _forward_naming_layers(model: nn.Module, x: Any) -> torch.Tensor:
    """`model(x)`; if it fails on a shape, raise a ShapeError naming the layer and the shapes."""
    open_layers: list[tuple[str, nn.Module, tuple]] = []
    last_done: list[tuple[str, tuple]] = []

    def enter(name):
        return lambda module, inputs: open_layers.append((name, module, inputs))

    def leave(name):
        def hook(module, inputs, output):
            open_layers.pop()
            last_done[:] = [(name, tuple(output.shape) if torch.is_tensor(output) else ())]
        return hook

    leaves = [(name, m) for name, m in model.named_modules() if not list(m.children())]
    handles = [m.register_forward_pre_hook(enter(name)) for name, m in leaves]
    handles += [m.register_forward_hook(leave(name)) for name, m in leaves]
    try:
        return model(x)
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[0]
        data_shape = tuple(x.shape) if torch.is_tensor(x) else "?"
        if open_layers:
            name, module, inputs = open_layers[-1]
            got = tuple(inputs[0].shape) if inputs and torch.is_tensor(inputs[0]) else "?"
            raise ShapeError(
                f"layer '{name}' ({module}) cannot take an input of shape {got} "
                f"(the data's batches have shape {data_shape}). {_shape_hint(module, got)}\n"
                f"PyTorch said: {first_line}"
            ) from None
        where = f"after layer '{last_done[0][0]}' produced shape {last_done[0][1]}" if last_done else "before any layer ran"
        raise ShapeError(
            f"the model's forward() failed {where} (the data's batches have shape {data_shape}).\n"
            f"PyTorch said: {first_line}"
        ) from None
    finally:
        for handle in handles:
            handle.remove()


def _shape_hint(module: nn.Module, got: Any) -> str:
    if isinstance(module, nn.Linear) and isinstance(got, tuple):
        hint = f"It expects {module.in_features} features in the last dimension, got {got[-1]}."
        if len(got) > 2:
            hint += " Did you forget nn.Flatten() before it?"
        return hint
    if isinstance(module, nn.modules.conv._ConvNd) and isinstance(got, tuple):
        return (
            f"It expects {module.in_channels} channels as (batch, channels, height, width); "
            f"add a channel dimension (x.unsqueeze(1)) or fix in_channels."
        )
    return "Check this layer's sizes against the shape it receives."
