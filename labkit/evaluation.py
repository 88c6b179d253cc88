"""Running a model over a data set: `predict` (every logit, in order) and `evaluate` (the mean
loss and metrics), plus the per-batch metrics that `evaluate` and `fit` add up.

The registry `METRICS` holds the per-batch metrics: each takes logits (B, C) and targets (B,)
and returns a 0-d tensor *on the same device*, so a loop can add them up without waiting for the
GPU (no ``.item()``). Chapter 02 first measures a model this way; `labkit.training.fit` measures
each epoch with the same pieces.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from .data import make_loader
from .device import get_device

__all__ = ["predict", "evaluate", "METRICS", "get_metric"]


def predict(
    model: nn.Module,
    data: Dataset | DataLoader,
    batch_size: int = 512,
    device: str | torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run `model` over every (x, y) of `data`; return (logits (N, C), targets (N,)) on the CPU.

    The model runs in eval mode (dropout off, batch norm frozen) under ``torch.no_grad()``,
    in the data's order. Afterwards the model is back in the train/eval mode *and* on the
    device it had before. `device` defaults to `labkit.device.get_device()`.
    `data` is a Dataset yielding (x, y) pairs, or a DataLoader yielding (x, y) batches.

    Chapter 02 predicts with it; 05, 07b and 07c reuse it.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if device is None:
        from .device import get_device

        device = get_device()
    device = torch.device(device)

    loader = data if isinstance(data, DataLoader) else make_loader(data, batch_size, shuffle=False)

    first_param = next(model.parameters(), None)
    original_device = first_param.device if first_param is not None else None
    # Remember every submodule's mode: a model may keep some layers (say, frozen batch
    # norm) in eval mode while the rest trains.
    modes = {module: module.training for module in model.modules()}
    all_logits, all_targets = [], []
    try:
        model.to(device)
        model.eval()
        with torch.no_grad():
            for batch in loader:
                if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                    raise ValueError(
                        "predict expects data that yields (x, y) pairs, got batches of type "
                        f"{type(batch).__name__}" + (f" with {len(batch)} items" if isinstance(batch, (tuple, list)) else "")
                    )
                x, y = batch
                logits = model(x.to(device, non_blocking=True))
                all_logits.append(logits.float().cpu())
                all_targets.append(torch.as_tensor(y).cpu())
    finally:
        for module, training in modes.items():
            module.training = training
        if original_device is not None and original_device != device:
            model.to(original_device)
    if not all_logits:
        raise ValueError("predict got an empty data set: there is nothing to run the model on")
    return torch.cat(all_logits), torch.cat(all_targets)


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
    """Average loss and metrics of `model` over `data` (in eval mode, without gradients).

    Chapter 02 measures a validation set with it.
    """
    device = get_device(device) if not isinstance(device, torch.device) else device
    if not isinstance(data, DataLoader):
        _check_pairs("data", data)
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


def _check_pairs(name: str, data: Any) -> None:
    """Stop with the fix unless ``data``'s examples are (x, y) pairs (it looks at one example only)."""
    fix = "Pair the inputs with their labels: TensorDataset(x, y)"
    if torch.is_tensor(data):
        raise TypeError(f"{name} is a bare tensor of shape {tuple(data.shape)}, without labels: fit and evaluate "
                        f"take a Dataset of (x, y) pairs. {fix}")
    if isinstance(data, TensorDataset):
        if len(data.tensors) != 2:
            shapes = ", ".join(str(tuple(t.shape)) for t in data.tensors)
            raise TypeError(f"{name} is a TensorDataset of {len(data.tensors)} tensor(s) ({shapes}), but fit and "
                            f"evaluate take (x, y) pairs. {fix}")
        return
    item = data[0]
    if not (isinstance(item, (tuple, list)) and len(item) == 2):
        what = (f"a {type(item).__name__} of shape {tuple(item.shape)}" if hasattr(item, "shape")
                else f"a {type(item).__name__} of {len(item)}" if isinstance(item, (tuple, list)) else repr(item)[:60])
        raise TypeError(f"{name}'s examples must be (x, y) pairs, but {name}[0] is {what}. "
                        f"Return (x, y) from __getitem__, or {fix[0].lower()}{fix[1:]}")


def batch_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Fraction of correct argmax predictions in a batch: logits (B, C) or (B, T, C),
    targets (B,) or (B, T); returns a 0-d float tensor on the logits' device."""
    return (logits.argmax(dim=-1) == targets).float().mean()


def batch_top5_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Fraction of samples whose target is among the 5 highest logits: logits (B, C),
    targets (B,); returns a 0-d float tensor. With fewer than 5 classes it is always 1."""
    k = min(5, logits.shape[-1])
    top = logits.topk(k, dim=-1).indices  # (B, k)
    return (top == targets.unsqueeze(-1)).any(dim=-1).float().mean()


METRICS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "accuracy": batch_accuracy,
    "top5_accuracy": batch_top5_accuracy,
}
"""Per-batch metrics by name: ``fn(logits (B, C), targets (B,)) -> 0-d tensor`` (a batch mean).
Add your own with ``METRICS["name"] = fn``."""


def get_metric(name_or_callable: str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
    """The per-batch metric function for a name in `METRICS`, or the callable itself."""
    if callable(name_or_callable):
        return name_or_callable
    if isinstance(name_or_callable, str):
        key = name_or_callable.strip().lower()
        if key in METRICS:
            return METRICS[key]
        known = ", ".join(repr(k) for k in sorted(METRICS))
        raise ValueError(
            f"unknown metric {name_or_callable!r}; known metrics are {known}, "
            "or pass a function fn(logits, targets) -> 0-d tensor"
        )
    raise TypeError(
        f"a metric must be a name (str) or a function fn(logits, targets), got {type(name_or_callable).__name__}"
    )
