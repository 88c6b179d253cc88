"""How fast is this machine? Measured, not looked up (chapters 00 and 01).

`matmul_gflops` times matrix multiplies on a device and dtype; chapter 00's `doctor` reports it,
chapter 01 turns it into training-time estimates, 06b and 08a compare it with what training
reaches (`labkit.roofline` pairs it with memory bandwidth).
"""
from __future__ import annotations

import time

import torch

__all__ = ["matmul_gflops"]


_MEASURED: dict[tuple[str, str], float] = {}


def matmul_gflops(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, size: int = 1024, seconds: float = 0.5) -> float:
    """Measured matrix-multiply speed in GFLOP/s: multiplies two (size, size) matrices for about
    `seconds` (in five windows, keeping the fastest) and counts 2·size³ floating-point operations
    per product. Cached per process."""
    device = torch.device(device)
    key = (str(device), str(dtype))
    if key in _MEASURED:
        return _MEASURED[key]
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()
        elif device.type == "mps":
            torch.mps.synchronize()

    a @ b  # warm-up: the first call pays for kernel selection
    sync()
    # Several short windows, keeping the fastest: other programs can only slow a window down,
    # so the fastest one is the fairest measure of what this device can do.
    best = 0.0
    for _ in range(5):
        runs, start = 0, time.perf_counter()
        while True:
            a @ b
            runs += 1
            if runs % 2 == 0:
                sync()
                elapsed = time.perf_counter() - start
                if elapsed >= seconds / 5:
                    break
        best = max(best, 2 * size**3 * runs / elapsed / 1e9)
    _MEASURED[key] = best
    return best
