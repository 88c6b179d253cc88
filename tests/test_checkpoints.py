"""The checkpoints the course ships (checkpoints/<name>/): complete, small enough, loadable through
`labkit.load_pretrained`, and they are the weights whose validation loss meta.json records: the
training script's own evaluation, run again on the loaded model, gives that number back."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
import torch

from labkit.gpt import SHIPPED, load_pretrained
from labkit.lm import estimate_loss

REPO = Path(__file__).resolve().parent.parent
FILES = ("config.json", "model.safetensors", "tokenizer.json", "meta.json", "history.csv", "loss.png")


@pytest.mark.parametrize("name", SHIPPED)
def test_checkpoint_is_complete_and_at_most_25_mb(name):
    directory = REPO / "checkpoints" / name
    for file in FILES:
        assert (directory / file).is_file(), f"checkpoints/{name}/{file} is missing"
    assert (directory / "model.safetensors").stat().st_size <= 25 * 2**20
    meta = json.loads((directory / "meta.json").read_text())
    assert meta["command"].startswith("python tools/train_checkpoints.py")
    with open(directory / "history.csv") as f:
        last = list(csv.DictReader(f))[-1]
    assert int(float(last["step"])) == meta["steps"]
    assert float(last["val_loss"]) == pytest.approx(meta["final_val_loss"], abs=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_loaded_weights_give_the_recorded_validation_loss(name):
    sys.path.insert(0, str(REPO / "tools"))
    try:
        from train_checkpoints import corpus, RECIPES
    finally:
        sys.path.remove(str(REPO / "tools"))
    model, tokenizer, meta = load_pretrained(name)
    _, val_text = corpus(RECIPES[name]["corpus"])
    val = torch.tensor(tokenizer.encode(val_text), dtype=torch.long)
    loss = estimate_loss(model, val, batch_size=meta["settings"]["batch_size"], block_size=model.config.block_size,
                         batches=20)
    # the same fixed windows the training script evaluated; float sums may differ in the last digits
    assert loss == pytest.approx(meta["final_val_loss"], abs=2e-3), (name, loss, meta["final_val_loss"])


def test_shakespeare_meets_the_course_target_and_every_checkpoint_trained_within_an_hour_on_a_cpu():
    # issue 4: character-level Shakespeare at validation loss ≤ 1.55 (nanoGPT's GPU baseline: 1.47),
    # and a CPU-trained checkpoint takes at most an hour of training
    meta = json.loads((REPO / "checkpoints" / "shakespeare_char" / "meta.json").read_text())
    assert meta["final_val_loss"] <= 1.55
    for name in SHIPPED:
        meta = json.loads((REPO / "checkpoints" / name / "meta.json").read_text())
        if meta["device"].startswith("cpu"):
            assert meta["training_seconds"] <= 3600, f"{name} trained {meta['training_seconds'] / 60:.0f} min on a CPU"
