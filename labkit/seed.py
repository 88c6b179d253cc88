"""Seeding: make a run repeat exactly (on the CPU) by fixing every random generator."""
from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import numpy as np
import torch

__all__ = ["forked_rngs", "seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed Python's `random`, NumPy and PyTorch (CPU and every GPU) with `seed`.

    On the CPU two runs with the same seed give the same numbers; GPU kernels may still
    differ in the last bits unless deterministic algorithms are switched on.

    Chapter 00 explains why; every notebook's first cell calls it.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a whole number >= 0, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)


@contextlib.contextmanager
def forked_rngs() -> Iterator[None]:
    """Inside: use or reseed any generator `seed_everything` seeds (Python's `random`, NumPy, PyTorch's
    CPU generator); on leaving, every one is as it was, and PYTHONHASHSEED too. A check that trains a
    model with ``fit(seed=...)`` runs in one, so the learner's notebook draws the same numbers after it.
    (GPU generators are left alone: the checks run on the CPU.)"""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    hash_seed = os.environ.get("PYTHONHASHSEED")
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        if hash_seed is None:
            os.environ.pop("PYTHONHASHSEED", None)
        else:
            os.environ["PYTHONHASHSEED"] = hash_seed
