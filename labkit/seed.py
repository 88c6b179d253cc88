"""Seeding: make a run repeat exactly (on the CPU) by fixing every random generator."""
from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["seed_everything"]


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
