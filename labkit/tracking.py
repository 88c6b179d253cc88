"""Experiment tracking: a callback that writes TensorBoard event files as `fit` or `train_lm` runs,
and a reader that gets the logged numbers back.

    history = labkit.fit(model, train, val, epochs=3, lr=1e-3, batch_size=64,
                         callbacks=[TensorBoardLogger("runs/mlp")])
    # then, in a terminal:  tensorboard --logdir runs   (and open http://localhost:6006)

Every row the run adds to its `History` (each epoch of `fit`, each evaluation of `train_lm`) is
written as scalars ``history/<name>`` at the run's step; with ``every_batch=True`` each batch's
training loss is written too (``batch/loss``). Chapter 10 builds and reads it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .callbacks import Callback

if TYPE_CHECKING:
    from .loop import TrainState

__all__ = ["TensorBoardLogger", "read_scalars"]


class TensorBoardLogger(Callback):
    """Write a run's history (and optionally each batch's loss) to TensorBoard event files in ``logdir``.

    ``logdir``: the run's folder (give each run its own, under one parent folder that
    ``tensorboard --logdir`` shows side by side). ``hparams``: settings to write once as text.
    """

    def __init__(self, logdir: str | os.PathLike, every_batch: bool = False, hparams: dict[str, Any] | None = None) -> None:
        if not isinstance(logdir, (str, os.PathLike)) or not str(logdir):
            raise ValueError(f"logdir must be a folder path, got {logdir!r}")
        self.logdir = Path(logdir)
        self.every_batch = every_batch
        self.hparams = dict(hparams or {})
        self.writer: Any = None

    def on_fit_start(self, state: TrainState) -> None:
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

        self.writer = SummaryWriter(log_dir=str(self.logdir))
        if self.hparams:
            table = "\n".join(f"| {k} | {v} |" for k, v in self.hparams.items())
            self.writer.add_text("hparams", "| setting | value |\n|---|---|\n" + table, 0)

    def on_batch_end(self, state: TrainState) -> None:
        if self.every_batch and self.writer is not None:
            self.writer.add_scalar("batch/loss", float(state.loss), state.step)

    def on_epoch_end(self, state: TrainState) -> None:
        if self.writer is None:
            return
        row = state.history.last()
        step = int(row.get("step", state.step))
        for name, value in row.items():
            if name != "step":
                self.writer.add_scalar(f"history/{name}", float(value), step)
        self.writer.flush()

    def on_fit_end(self, state: TrainState) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def read_scalars(logdir: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the event files of ``logdir``: tag → [(step, value), …] in the order written.

    Read with TensorBoard's own ``EventAccumulator`` (what the TensorBoard page reads)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    path = Path(logdir)
    if not path.is_dir() or not any(p.name.startswith("events.out.tfevents") for p in path.iterdir()):
        raise FileNotFoundError(f"no TensorBoard event files in {path}: pass the folder a TensorBoardLogger wrote "
                                "(its logdir), after the run")
    accumulator = EventAccumulator(str(path), size_guidance={"scalars": 0})  # 0: keep every value
    accumulator.Reload()
    return {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()["scalars"]}
