"""The training core that `fit` (chapter 02 onwards) and `train_lm` (chapter 06b) share.

Both are the same loop: take optimizer steps, and every so often stop to measure. What one
round between two measurements is called is all that differs — an *epoch* of a data set for
`fit`, ``eval_every`` steps of a token stream for `train_lm` — so both hand this core their
*periods* (each an iterable that yields, per optimizer step, the micro-batches of that step)
and a ``measure`` function, and the core does the rest, once:

    on_fit_start
    (on_epoch_start → (forward + backward per micro-batch → on_after_backward → optimizer step
                       → on_batch_end)* → measure → on_epoch_end)*
    on_fit_end  (always: after the last period, a stop, a NaN loss or the stop button)

What lives here and nowhere else: gradient accumulation (the loss of each of ``k`` micro-batches
is divided by ``k`` before its backward pass, so the gradients add up to the mean's), mixed
precision (``autocast``), the NaN/inf stop (before that step changes a weight), the stop button
(KeyboardInterrupt ends training cleanly and keeps the history), the run's `History`, the
optimizer builder and atomic file saves. Callbacks (`labkit.callbacks`) do everything optional.

Shapes are whatever the caller's ``compute_loss`` takes: a batch in, a 0-d loss tensor out.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import distributed

__all__ = ["History", "TrainState", "run_periods", "optimizer_step", "make_optimizer", "atomic_save"]


class History(dict):
    """Per-period results, Keras-style: ``history["val_loss"]`` is a list with one value per epoch
    (or per evaluation, for `train_lm`).

    `stop_reason` says why training ended early (early stopping, the stop button, a loss
    that became NaN), or is None when every period ran.

    Chapter 02 reads it (what `fit` returns); 07c fills one by hand.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stop_reason: str | None = None

    def append(self, logs: dict[str, float]) -> None:
        for key, value in logs.items():
            self.setdefault(key, []).append(value)

    @property
    def epochs(self) -> int:
        """How many periods (epochs, or evaluations) finished."""
        return len(next(iter(self.values()), []))

    def last(self) -> dict[str, float]:
        """The last period's values."""
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
class TrainState:
    """What callbacks see: the model, the optimizer, where training is, and the history so far.

    A callback may set ``stop``: training then ends after the current step, and the period
    it was in is still measured (EarlyStopping sets it after a measurement, so no step is lost).
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device
    epochs: int  # how many periods the run plans
    steps_per_epoch: int
    history: History
    has_validation: bool
    epoch: int = 0  # the current period, counting from 0
    step: int = 0  # optimizer steps taken so far, over all periods
    loss: float = math.nan  # the last step's loss (the mean over its micro-batches)
    stop: bool = False
    logs: dict[str, float] = field(default_factory=dict)  # the last measurement
    period: str = "epoch"  # what one period is called in progress bars and plots
    total_steps: int = 0  # the optimizer steps the run plans (schedules plan by it); 0: epochs × steps_per_epoch
    output: Any = None  # the last micro-batch's model output and batch, for callbacks that
    batch: Any = None  #   measure as training goes (fit's running accuracy)
    period_start: float = 0.0  # time.perf_counter() when the current period started
    period_time: float = 0.0  # seconds spent in optimizer steps in the current period (not measuring)
    period_steps: int = 0  # optimizer steps taken in the current period

    def __post_init__(self) -> None:
        if not self.total_steps:
            self.total_steps = self.epochs * self.steps_per_epoch


def optimizer_step(state: TrainState, micro_batches: Sequence[Any], compute_loss: Callable[[Any], torch.Tensor],
                   hooks: Any, autocast: torch.dtype | None = None) -> bool:
    """One optimizer step over ``micro_batches`` (gradient accumulation when there are several).

    Each micro-batch's loss is divided by their number before its backward pass, so that the
    gradients add up to those of the mean loss. Under DDP the loss reported is the ranks' mean. If that loss is NaN or infinite, the step is
    not taken (no weight changes), ``state.stop`` is set with the reason, and False is returned.
    """
    optimizer = state.optimizer
    optimizer.zero_grad(set_to_none=True)
    k, total = len(micro_batches), 0.0
    for batch in micro_batches:
        with _autocast(state.device, autocast):
            loss = compute_loss(batch)
            if k > 1:
                loss = loss / k
        loss.backward()
        total += loss.item()
        state.batch = batch
    total = distributed.mean(total, state.device)  # over the ranks (DDP), so that all stop together
    state.loss = total
    if not math.isfinite(total):
        optimizer.zero_grad(set_to_none=True)
        state.stop = True
        state.history.stop_reason = _why_not_finite(state, total, micro_batches)
        print("⚠ " + state.history.stop_reason)
        return False
    hooks.on_after_backward(state)
    optimizer.step()
    state.step += 1
    return True


def _why_not_finite(state: TrainState, total: float, micro_batches: Sequence[Any]) -> str:
    """Why the loss is NaN or inf, looked for only once it is: NaN/inf in the batch itself, the
    model's output before any step (then the learning rate cannot be the cause), or else a step
    too large (the learning rate)."""
    where = f" (epoch {state.epoch + 1})" if state.period == "epoch" else ""
    head = f"the loss became {total} at step {state.step + 1}{where}; training stopped before that step changed the weights."
    in_data = _not_finite_in(micro_batches)
    if in_data:
        return (f"{head} The batch itself holds {in_data}: the data is the cause, not the learning rate. Find the "
                "examples with torch.isnan(x) / torch.isinf(x) and fix or drop them (torch.nan_to_num replaces them).")
    if state.step == 0:
        output = state.output
        if torch.is_tensor(output) and not bool(torch.isfinite(output.detach()).all()):
            found = "the model's output already holds NaN or inf for this batch of finite data: look in forward() "
            found += "for a log or sqrt of a negative number or 0, a division by 0, or huge initial weights."
        else:
            found = ("the data is finite, so the model's forward() or the loss function made it (a log of 0: "
                     "cross-entropy takes logits, not probabilities).")
        return f"{head} No weight had changed yet, so the learning rate is not the cause: {found}"
    return (f"{head} The learning rate ({state.optimizer.param_groups[0]['lr']:g}) is probably too high: "
            f"try one 10 times smaller.")


def _not_finite_in(micro_batches: Sequence[Any]) -> str:
    """"3 NaN/inf value(s) in its inputs (x)", or "" when every float in the batches is finite."""
    counts: dict[str, int] = {}
    for batch in micro_batches:
        parts = batch if isinstance(batch, (list, tuple)) else [batch]
        names = ["inputs (x)", "labels (y)"] if len(parts) == 2 else [f"part {i}" for i in range(len(parts))]
        for name, part in zip(names, parts):
            for t in part if isinstance(part, (list, tuple)) else [part]:
                if torch.is_tensor(t) and t.is_floating_point():
                    counts[name] = counts.get(name, 0) + int((~torch.isfinite(t)).sum())
    return " and ".join(f"{n} NaN/inf value(s) in its {name}" for name, n in counts.items() if n)


def run_periods(
    state: TrainState,
    hooks: Any,
    periods: Iterable[Iterable[Sequence[Any]]],
    compute_loss: Callable[[Any], torch.Tensor],
    measure: Callable[[], dict[str, float]],
    *,
    autocast: torch.dtype | None = None,
    measure_first: bool = False,
    interrupted: Callable[[TrainState], str],
) -> History:
    """The loop: for each period, its optimizer steps, then ``measure()`` (a row of the history).

    ``periods`` yields one iterable per period, which yields the micro-batches of each step.
    ``measure_first`` measures before any training (the loss of a random model). After the
    stop button (KeyboardInterrupt), ``interrupted(state)`` says what was kept.
    """
    history = state.history
    hooks.on_fit_start(state)
    try:
        if measure_first:
            _measure(state, hooks, measure)
        for steps in periods:
            if state.stop:
                break
            state.epoch = history.epochs  # periods count from 0
            state.period_start, state.period_steps = time.perf_counter(), 0
            hooks.on_epoch_start(state)
            start, finite = time.perf_counter(), True
            for micro_batches in steps:
                finite = optimizer_step(state, micro_batches, compute_loss, hooks, autocast)
                if not finite:
                    break
                state.period_steps += 1
                hooks.on_batch_end(state)
                if state.stop:
                    break
            if not finite:
                break  # the loss became NaN / inf: this period has nothing to measure
            state.period_time = time.perf_counter() - start
            _measure(state, hooks, measure)
    except KeyboardInterrupt:
        history.stop_reason = interrupted(state)
        print(f"⏹ training {history.stop_reason}.")
    finally:
        hooks.on_fit_end(state)
    return history


def _measure(state: TrainState, hooks: Any, measure: Callable[[], dict[str, float]]) -> None:
    state.logs = measure()
    state.history.append(state.logs)
    hooks.on_epoch_end(state)


def _autocast(device: torch.device, dtype: torch.dtype | None):
    """Mixed precision in ``dtype`` (e.g. torch.bfloat16), or full precision when None or torch.float32
    (what `labkit.fastest_dtype()` returns where bf16 does not pay; autocast itself would warn at it)."""
    if dtype is None or dtype == torch.float32:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=dtype)


def make_optimizer(optimizer: str | Callable[..., torch.optim.Optimizer], model: nn.Module, lr: float,
                   weight_decay: float = 0.0, *, decay_matrices_only: bool = False,
                   betas: tuple[float, float] | None = None, fused: bool | None = None) -> torch.optim.Optimizer:
    """The optimizer over the model's trainable parameters: "adam", "adamw", "sgd" (momentum 0.9),
    or ``callable(params, lr=..., weight_decay=...)``.

    ``fused`` picks Adam's fused kernel, which updates every tensor in one pass; None: on a CUDA GPU
    only. It rounds differently from the default kernel (about 1e-7 after a few steps), and on a CPU
    it is a little faster (benchmarks/nanogpt_recipe.py times it at nanoGPT's recipe).

    ``decay_matrices_only`` makes two groups, as GPT-2 and nanoGPT do (chapter 06b): weight decay
    on matrices (Linear and Embedding weights, ≥ 2-D), none on biases and norm gains (1-D).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (all are frozen): unfreeze some before training")
    groups: Any = params
    if decay_matrices_only:
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    if callable(optimizer):
        return optimizer(groups, lr=lr, weight_decay=weight_decay)
    extra: dict[str, Any] = {} if betas is None else {"betas": betas}
    # On a CUDA GPU, Adam's fused kernel updates every tensor in one launch (PyTorch's default there,
    # "foreach", takes several). On a CPU the default stays unless asked, so that the course's runs keep
    # their numbers (train_lm asks for it with compile=True).
    if fused is None:
        fused = all(p.is_cuda for p in params)
    adam_extra = {**extra, "fused": True} if fused else extra
    choices: dict[str, Callable[[], torch.optim.Optimizer]] = {
        "adam": lambda: torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay, **adam_extra),
        "adamw": lambda: torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, **adam_extra),
        "sgd": lambda: torch.optim.SGD(groups, lr=lr, momentum=0.9, weight_decay=weight_decay),
    }
    if optimizer not in choices:
        raise ValueError(f"unknown optimizer {optimizer!r}: use one of {sorted(choices)} or a callable")
    return choices[optimizer]()


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file, then rename it over ``path``: an interrupted save never
    leaves a half-written checkpoint behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    torch.save(obj, partial)
    os.replace(partial, path)
