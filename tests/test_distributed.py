"""DDP: fit and train_lm under torchrun (2 CPU processes, gloo) equal one process with twice the batch.

Each case runs a small script twice — once as one plain process with batch 2B, once under
``torchrun --nproc_per_node=2`` with batch B per rank — and compares the trained weights.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent

SCRIPT = '''
import sys
import torch
from torch import nn
from torch.utils.data import TensorDataset
import labkit
from labkit import distributed
from labkit.gpt import GPT, GPTConfig

kind, batch, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
torch.manual_seed(0)


class StopAt(labkit.Callback):
    def __init__(self, step): self.step = step
    def on_epoch_end(self, state): state.stop = state.stop or state.step >= self.step


if kind == "fit":
    g = torch.Generator().manual_seed(1)
    x = torch.randn(96, 8, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 2))
    history = labkit.fit(model, TensorDataset(x, y), TensorDataset(x, y), epochs=3, lr=0.05, batch_size=batch,
                         optimizer="adam", seed=0, verbose=False)
else:
    stream = torch.arange(3000) % 23
    model = GPT(GPTConfig.preset("gpt-micro", vocab_size=23, block_size=16))
    kw = dict(steps=8, batch_size=batch, eval_every=4, eval_batches=1, verbose=False, peak_flops=1e11,
              accumulation_steps=2, checkpoint=sys.argv[4] if len(sys.argv) > 4 else None)
    if kind == "lm_interrupted":
        labkit.train_lm(model, stream, callbacks=[StopAt(4)], **kw)
        torch.manual_seed(5)
        model = GPT(GPTConfig.preset("gpt-micro", vocab_size=23, block_size=16))  # everything from the file
        kw["resume"] = True
    history = labkit.train_lm(model, stream, **kw)
if distributed.is_main():
    torch.save({"weights": model.state_dict(), "history": dict(history), "world": distributed.world_size()}, out)
distributed.exit_process(0)
'''


def run(tmp_path: Path, kind: str, batch: int, ranks: int, checkpoint: str = "") -> dict:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    out = tmp_path / f"{kind}-{ranks}.pt"
    launcher = ([sys.executable] if ranks == 1 else
                [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"])
    env = {**os.environ, "PYTHONPATH": str(REPO), "LABKIT_DEVICE": "cpu"}
    done = subprocess.run([*launcher, str(script), kind, str(batch), str(out), *([checkpoint] if checkpoint else [])],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = torch.load(out, weights_only=True)
    assert result["world"] == ranks
    return result


def assert_same_weights(a: dict, b: dict, atol: float) -> None:
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=atol, rtol=0, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.slow
def test_fit_on_two_ranks_equals_one_process_with_twice_the_batch(tmp_path):
    one = run(tmp_path, "fit", 24, ranks=1)
    two = run(tmp_path, "fit", 12, ranks=2)
    assert_same_weights(one["weights"], two["weights"], atol=1e-5)
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):  # measured over every rank's batches
        assert two["history"][key] == pytest.approx(one["history"][key], abs=1e-5), key


@pytest.mark.slow
def test_train_lm_on_two_ranks_equals_one_process_and_resumes_exactly(tmp_path):
    one = run(tmp_path, "lm", 8, ranks=1)
    two = run(tmp_path, "lm", 4, ranks=2, checkpoint=str(tmp_path / "straight.pt"))
    assert_same_weights(one["weights"], two["weights"], atol=1e-5)
    resumed = run(tmp_path, "lm_interrupted", 4, ranks=2, checkpoint=str(tmp_path / "run.pt"))
    assert_same_weights(two["weights"], resumed["weights"], atol=0)  # stopped at step 4 and resumed: the same run
    assert resumed["history"]["step"] == two["history"]["step"] == [0.0, 4.0, 8.0]
    from labkit.gpt import GPT, GPTConfig

    flops = GPT(GPTConfig.preset("gpt-micro", vocab_size=23, block_size=16)).flops_per_token(16)
    for result, ranks in ((one, 1), (two, 2)):  # every rank's tokens per second over every rank's peak (1e11 each)
        history = result["history"]
        for tokens_per_s, mfu in zip(history["tokens_per_s"][1:], history["mfu"][1:], strict=True):
            assert mfu == pytest.approx(tokens_per_s * flops / (ranks * 1e11)), f"{ranks} rank(s)"


def test_more_ranks_than_gpus_is_refused_with_the_fix(monkeypatch):
    """NCCL cannot put two ranks on one GPU: rank 1 on a 1-GPU machine is told what to do instead."""
    from labkit import distributed

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(RuntimeError, match=r"cuda:1, but this machine has 1 CUDA GPU: .*--nproc_per_node=1.*LABKIT_DEVICE=cpu"):
        distributed.init_from_env(torch.device("cuda"))
