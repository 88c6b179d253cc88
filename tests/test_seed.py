"""labkit.seed: seed_everything repeats a run; forked_rngs gives every generator back as it was."""
from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from labkit.seed import forked_rngs, seed_everything


def _draws() -> tuple[torch.Tensor, np.ndarray, float]:
    return torch.randn(4), np.random.rand(4), random.random()


def _same(a: tuple[torch.Tensor, np.ndarray, float], b: tuple[torch.Tensor, np.ndarray, float]) -> bool:
    return torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_seed_everything_repeats_every_generator():
    seed_everything(3)
    first = _draws()
    seed_everything(3)
    assert _same(_draws(), first)
    with pytest.raises(ValueError, match="whole number"):
        seed_everything(-1)


def test_forked_rngs_puts_back_every_generator_even_after_reseeding_them_all():
    seed_everything(5)
    expected = _draws()
    seed_everything(5)
    hash_seed = os.environ.get("PYTHONHASHSEED")
    with forked_rngs():
        seed_everything(123)  # what fit(seed=...) does
        _draws()
    assert _same(_draws(), expected)
    assert os.environ.get("PYTHONHASHSEED") == hash_seed


def test_forked_rngs_puts_them_back_when_the_block_raises():
    seed_everything(5)
    expected = _draws()
    seed_everything(5)
    with pytest.raises(RuntimeError), forked_rngs():
        seed_everything(9)
        raise RuntimeError("a check that fails half-way")
    assert _same(_draws(), expected)
