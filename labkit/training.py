"""The training loop every chapter uses: `fit(model, train_data, val_data, ...)`.

`fit` feeds the training core (`labkit.loop`, shared with `train_lm`) one period per epoch —
every batch of the shuffled training set, one optimizer step each — and measures at each
epoch's end: the running mean of the training loss and metrics over the epoch (taken while
the weights were still changing), then the loss and metrics on the validation set. Everything
optional (progress bar, live plot, early stopping, checkpoints, gradient clipping,
learning-rate schedules) hangs off it as a callback (see `labkit.callbacks`). `fit` returns a
Keras-style `History` of per-epoch lists.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from . import distributed
from .callbacks import Callback, CallbackList, default_callbacks
from .data import make_loader
from .device import get_device
from .evaluation import _batch_size, _check_pairs, _metric_table, _to, evaluate  # fit measures with evaluate
from .loop import History, TrainState, make_optimizer, run_periods
from .seed import seed_everything

__all__ = ["fit", "History", "FitState", "make_loader", "ShapeError", "LabelError", "DtypeError"]

FitState = TrainState  # the name chapters and callbacks have used for what fit keeps


class ShapeError(ValueError):
    """The model cannot take the data's shape (which layer, which shapes)."""


class LabelError(ValueError):
    """A label does not fit the loss (for example class 10 for a model with 10 outputs)."""


class DtypeError(TypeError):
    """The data's number type does not fit the model (for example uint8 pixels into a float32 layer)."""


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
    eval_train: bool = False,
) -> History:
    """Train `model` on `train_data` for `epochs` epochs and return its `History`.

    `train_data` / `val_data` yield ``(x, y)`` pairs; the default loss is cross-entropy on
    logits (B, C) against class labels (B,), with accuracy as metric. `optimizer` is
    "adam", "adamw", "sgd" (momentum 0.9), or ``callable(params, lr=..., weight_decay=...)``.
    `verbose` adds a progress bar and a live plot (in a notebook) to `callbacks`.

    What "train" means: by default ``train_loss`` and ``train_accuracy`` are *running means*
    over the epoch's batches, each batch scored by the weights it was about to change — free,
    but they lag the model, most of all in the first epoch (whose first batches meet a random
    model), and any augmentation or dropout makes them harder still. Validation is measured
    at the epoch's end, in eval mode. ``eval_train=True`` measures the training set the same
    way, after each epoch (one more forward pass over it): ``train_*`` are then those numbers,
    comparable with ``val_*``, and the running means are kept as ``running_*`` (chapter 02).
    The stop button (KeyboardInterrupt) ends training cleanly: the history so far is returned.

    Chapter 02 writes this loop by hand first; 00 uses it, and 03–07 reuse it.
    """
    _check_arguments(epochs=epochs, lr=lr, batch_size=batch_size, train_data=train_data, val_data=val_data)
    device = distributed.init_from_env(device if isinstance(device, torch.device) else get_device(device))
    if seed is not None:
        seed_everything(seed)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    model.to(device)
    train_loader = make_loader(train_data, batch_size, shuffle=True, generator=generator,
                               rank=distributed.rank(), world=distributed.world_size())  # under DDP: this rank's share
    net = distributed.wrap(model, device)  # under DDP it averages the gradients over the ranks
    val_loader = make_loader(val_data, max(batch_size, 256), shuffle=False) if val_data is not None else None
    opt = make_optimizer(optimizer, model, lr, weight_decay)
    if metrics is None:  # accuracy for classification losses; none for, say, regression
        metrics = ("accuracy",) if loss_fn is None or isinstance(loss_fn, nn.CrossEntropyLoss) else ()
    metric_fns = _metric_table(metrics)
    loss_fn = loss_fn or nn.functional.cross_entropy

    state = FitState(model, opt, device, epochs, len(train_loader), History(), val_loader is not None)
    running = _RunningMetrics(metric_fns, device)
    hooks = CallbackList([running, *default_callbacks(verbose and distributed.is_main(), callbacks), *callbacks])
    _check_first_batch(model, train_data, loss_fn, metric_fns, device)

    def compute_loss(batch: Any) -> torch.Tensor:
        x, y = _to(batch[0], device), _to(batch[1], device)
        state.output = net(x)
        state.batch = (x, y)
        return _compute_loss(loss_fn, state.output, y)

    train_eval_loader = make_loader(train_data, max(batch_size, 256), shuffle=False) if eval_train else None

    def measure() -> dict[str, float]:
        logs = running.means()
        if train_eval_loader is not None:  # the running means keep another name; train_* as val_* is measured
            logs = {k.replace("train_", "running_", 1): v for k, v in logs.items()}
            logs.update({f"train_{k}": v for k, v in evaluate(model, train_eval_loader, loss_fn, metric_fns, device=device).items()})
        if val_loader is not None:
            logs.update({f"val_{k}": v for k, v in evaluate(model, val_loader, loss_fn, metric_fns, device=device).items()})
        logs["lr"] = opt.param_groups[0]["lr"]
        logs["epoch_time"] = time.perf_counter() - state.period_start
        return logs

    def interrupted(state: TrainState) -> str:
        return (f"interrupted (stop button) during epoch {state.epoch + 1}; "
                f"the history of the {state.history.epochs} finished epochs is kept")

    model.train()
    epochs_of_batches = (([batch] for batch in train_loader) for _ in range(epochs))
    return run_periods(state, hooks, epochs_of_batches, compute_loss, measure, interrupted=interrupted)


class _RunningMetrics(Callback):
    """fit's training loss and metrics: running means over the epoch's batches, each batch's
    taken with the weights it was trained from (so they lag the weights at the epoch's end)."""

    def __init__(self, metric_fns: dict[str, Callable], device: torch.device) -> None:
        self.metric_fns, self.device = metric_fns, device

    def on_epoch_start(self, state: TrainState) -> None:
        state.model.train()
        self.totals: dict[str, Any] = {"loss": 0.0, **{k: torch.zeros((), device=self.device) for k in self.metric_fns}}
        self.seen = 0

    def on_batch_end(self, state: TrainState) -> None:
        y = state.batch[1]
        n = _batch_size(y)
        self.seen += n
        self.totals["loss"] += state.loss * n
        with torch.no_grad():
            for name, fn in self.metric_fns.items():
                self.totals[name] += fn(state.output.detach(), y) * n

    def means(self) -> dict[str, float]:
        """The epoch's means (over every rank's batches, under DDP)."""
        names = list(self.totals)
        sums = distributed.total([float(self.totals[k]) for k in names] + [float(self.seen)], self.device)
        seen = max(sums[-1], 1)
        return {f"train_{k}": value / seen for k, value in zip(names, sums)}


def _compute_loss(loss_fn, out: torch.Tensor, y: torch.Tensor, where: str = "a batch",
                  labels_shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """`loss_fn(out, y)`, turning torch's errors about the labels into a LabelError that says what to
    do. ``where`` names the labels' source ("train_data", or "a batch"), ``labels_shape`` their shape."""
    try:
        return loss_fn(out, y)
    except (IndexError, RuntimeError) as error:
        shape = tuple(labels_shape or y.shape)
        if out.ndim == 2 and not y.is_floating_point() and y.numel() and (y.min() < 0 or y.max() >= out.shape[1]):
            raise LabelError(
                f"labels must be class numbers 0..{out.shape[1] - 1} for a model with {out.shape[1]} outputs, "
                f"but a batch has labels from {int(y.min())} to {int(y.max())}. Give the last layer as many "
                f"outputs as there are classes, or fix the labels."
            ) from None
        if out.ndim == 2 and y.ndim == 2 and len(y) == len(out) and y.shape[1] == 1 < out.shape[1]:
            raise LabelError(
                f"labels must be class numbers of shape (N,), one per example, but {where} has labels of shape "
                f"{shape}. Remove the extra dimension when you build the dataset: y.squeeze(1)."
            ) from None
        if out.ndim == 2 and y.shape == out.shape and not y.is_floating_point():
            raise LabelError(
                f"labels must be class numbers of shape (N,), but {where} has one-hot labels of shape {shape} "
                f"(one column per class). Turn them into class numbers: y.argmax(dim=1)."
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
        if torch.is_tensor(data):  # a tensor has a length too, but its rows are not (x, y) pairs
            _check_pairs(name, data)
        try:
            size = len(data)
        except TypeError:
            raise TypeError(f"{name} must be a Dataset with a length, got {type(data).__name__}") from None
        if size == 0:
            raise ValueError(f"{name} is empty (0 examples): check how it was built or split")
        _check_pairs(name, data)


def _check_first_batch(model: nn.Module, data: Dataset, loss_fn, metric_fns: dict[str, Callable],
                       device: torch.device) -> None:
    """Run one small batch through the model, the loss and the metrics, to turn shape, number-type
    and label mistakes into clear errors before training starts (once per `fit`, not per step)."""
    x, y = next(iter(make_loader(data, 2, shuffle=False)))
    x, y = _to(x, device), _to(y, device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = _forward_naming_layers(model, x)
    model.train(was_training)
    labels_shape = tuple(data.tensors[-1].shape) if isinstance(data, TensorDataset) else None
    where = "train_data" if labels_shape else "a batch"
    if isinstance(data, TensorDataset) and out.ndim == 2 and not y.is_floating_point() and loss_fn in (nn.functional.cross_entropy,):
        labels = data.tensors[-1]
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= out.shape[1]:
            raise LabelError(
                f"labels must be class numbers 0..{out.shape[1] - 1} for a model with {out.shape[1]} outputs, "
                f"but train_data has labels from {low} to {high}. Give the last layer as many outputs "
                f"as there are classes, or fix the labels."
            )
    _compute_loss(loss_fn, out, y, where, labels_shape)
    for name, fn in metric_fns.items():
        try:
            fn(out, y)
        except (RuntimeError, ValueError, IndexError):
            if out.ndim == 2 and y.shape == out.shape:  # soft or one-hot labels: the loss took them, the metric cannot
                raise LabelError(
                    f"the metric {name!r} compares predicted classes with class numbers of shape (N,), but {where} "
                    f"has labels of shape {labels_shape or tuple(y.shape)} (one column per class: one-hot or "
                    f"probabilities). Give class numbers, y.argmax(dim=1), or train without the metric: metrics=()."
                ) from None
            raise


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
            received = inputs[0] if inputs and torch.is_tensor(inputs[0]) else None
            hint = _dtype_hint(module, received)
            if hint and received is not None:  # (a hint needs the input it is about)
                batches = getattr(x, "dtype", received.dtype)
                also = f" (the data's batches are {batches})" if batches != received.dtype else ""
                raise DtypeError(
                    f"layer '{name}' ({module}) computes in {hint[0]}, but it receives {received.dtype}{also}. "
                    f"{hint[1]}\nPyTorch said: {first_line}"
                ) from None
            got = tuple(received.shape) if received is not None else "?"
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


def _dtype_hint(module: nn.Module, received: torch.Tensor | None) -> tuple[torch.dtype, str] | None:
    """(the layer's number type, what to do) when the layer failed on its input's number type, else None."""
    weight = next((p for p in module.parameters(recurse=False) if p.is_floating_point()), None)
    if received is None or weight is None or received.dtype == weight.dtype:
        return None
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        if not received.is_floating_point():
            return None
        return torch.int64, "An embedding looks up whole-number ids: convert them with x.long()."
    convert = "x.float()" if weight.dtype == torch.float32 else f"x.to({weight.dtype})"
    if received.dtype == torch.uint8:
        return weight.dtype, (f"Convert the bytes (0..255, as images are stored) when you build the dataset: "
                              f"{convert} / 255, which also scales them to 0..1.")
    if not received.is_floating_point():
        return weight.dtype, (f"Convert the inputs when you build the dataset: {convert} (whole numbers that are "
                              "token ids need an nn.Embedding as the first layer instead).")
    return weight.dtype, f"Convert the inputs when you build the dataset: {convert}."


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
