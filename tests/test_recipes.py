"""`python -m labkit train <recipe>`: the shipped recipes as a command, on one process and under torchrun."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from labkit import recipes

REPO = Path(__file__).resolve().parent.parent
SHORT = ["tang_char", "--steps", "2", "--batch-size", "4", "--eval-batches", "1"]


def train(tmp_path: Path, tag: str, ranks: int = 1, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    launcher = ([sys.executable] if ranks == 1 else
                [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"])
    command = [*launcher, "-m", "labkit", "train", *SHORT, *extra,
               "--run-dir", str(tmp_path / f"run-{tag}"), "--out", str(tmp_path / f"out-{tag}")]
    env = {**os.environ, "PYTHONPATH": str(REPO), "LABKIT_DEVICE": "cpu", "MPLBACKEND": "Agg"}
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_train_writes_a_checkpoint_and_two_ranks_train_the_same_weights(tmp_path):
    one = train(tmp_path, "one")
    assert one.returncode == 0, one.stdout[-2000:] + one.stderr[-3000:]
    folder = tmp_path / "out-one" / "tang_char"
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["steps"] == 2 and meta["settings"]["batch_size"] == 4 and "ranks" not in meta
    assert meta["command"].startswith("python -m labkit train tang_char")
    for file in ("model.safetensors", "history.csv", "loss.png"):
        assert (folder / file).is_file(), file

    two = train(tmp_path, "two", ranks=2)
    assert two.returncode == 0, two.stdout[-2000:] + two.stderr[-3000:]
    meta_two = json.loads((tmp_path / "out-two" / "tang_char" / "meta.json").read_text())
    assert meta_two["ranks"] == 2 and meta_two["settings"]["batch_size"] == 4  # the global batch, 2 a rank
    weights_one = load_file(folder / "model.safetensors")
    weights_two = load_file(tmp_path / "out-two" / "tang_char" / "model.safetensors")
    assert weights_one.keys() == weights_two.keys()
    for name, value in weights_one.items():
        torch.testing.assert_close(weights_two[name], value, atol=1e-5, rtol=0, msg=name)
    assert meta_two["final_val_loss"] == pytest.approx(meta["final_val_loss"], abs=1e-4)


@pytest.mark.slow
def test_a_batch_that_does_not_split_over_the_ranks_is_refused_with_the_fix(tmp_path):
    odd = train(tmp_path, "odd", ranks=2, extra=("--batch-size", "5"))
    assert odd.returncode != 0
    assert "does not split over 2 ranks" in odd.stderr and "--batch-size" in odd.stderr, odd.stderr[-2000:]


def test_unknown_recipe_and_bad_numbers_are_refused(capsys):
    names = "base_bpe, instruct_bpe, shakespeare_char, shakespeare_char_tiny, tang_char, tang_char_tiny"
    with pytest.raises(ValueError, match=f"the recipes are {names}"):
        recipes.train("gpt5")
    with pytest.raises(SystemExit):
        recipes.main(["tang_char", "--steps", "0"])
    assert "--steps must be at least 1, got 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown corpus 'wiki'"):
        recipes.corpus("wiki")


def test_the_tools_script_reads_the_same_recipes():
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import train_checkpoints
    finally:
        sys.path.remove(str(REPO / "tools"))
    assert train_checkpoints.RECIPES is recipes.RECIPES
