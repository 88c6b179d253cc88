"""labkit.tracking: TensorBoardLogger writes what fit and train_lm put in their History, and
TensorBoard's own reader (EventAccumulator) finds those values again."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from labkit.gpt import GPT, GPTConfig
from labkit.lm import train_lm
from labkit.tracking import TensorBoardLogger, read_scalars
from labkit.training import fit

pytest.importorskip("tensorboard")


def _data(n: int = 96, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return TensorDataset(x, (x[:, 0] > 0).long())


def test_fit_history_is_read_back_from_the_event_files(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    history = fit(model, _data(), _data(32, 1), epochs=3, lr=1e-2, batch_size=32, seed=0, verbose=False,
                  callbacks=[TensorBoardLogger(tmp_path / "run", every_batch=True, hparams={"lr": 1e-2})])
    scalars = read_scalars(tmp_path / "run")
    for name in ("train_loss", "val_loss", "val_accuracy"):
        steps, values = zip(*scalars[f"history/{name}"])
        assert list(steps) == [3, 6, 9]  # 96 samples / 32 per batch: 3 steps an epoch
        assert all(math.isclose(v, h, rel_tol=1e-6) for v, h in zip(values, history[name]))
    assert [step for step, _ in scalars["batch/loss"]] == list(range(1, 10))


@pytest.mark.slow
def test_train_lm_history_is_read_back_at_its_steps(tmp_path):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16))
    tokens = torch.arange(400) % 11
    history = train_lm(model, tokens[:300], tokens[300:], steps=6, batch_size=4, eval_every=3, eval_batches=2,
                       peak_flops=1e11, verbose=False, callbacks=[TensorBoardLogger(tmp_path / "lm")])
    scalars = read_scalars(tmp_path / "lm")
    steps, values = zip(*scalars["history/val_loss"])
    assert list(steps) == [int(s) for s in history["step"]] == [0, 3, 6]
    assert all(math.isclose(v, h, rel_tol=1e-6) for v, h in zip(values, history["val_loss"]))
    assert "history/step" not in scalars


def test_reading_a_folder_without_events_says_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match="no TensorBoard event files"):
        read_scalars(tmp_path)
    with pytest.raises(ValueError, match="logdir must be a folder path"):
        TensorBoardLogger("")
