"""How fast is this machine? Measured, not looked up (chapters 00 and 01).

`matmul_gflops` times matrix multiplies on a device and dtype; chapter 00's `doctor` reports it,
chapter 01 turns it into training-time estimates, 06b and 08a compare it with what training
reaches (`labkit.roofline` pairs it with memory bandwidth). `fastest_dtype` uses it (`dtype_rates`) to choose
between float32 and bfloat16 for running a model (chapter 07e): bf16 halves the memory everywhere,
but it is faster only where the hardware has bf16 instructions; elsewhere it can be several
times slower.
"""
from __future__ import annotations

import time

import torch

__all__ = ["dtype_rates", "fastest_dtype", "matmul_gflops"]


_MEASURED: dict[tuple[str, str, int], float] = {}


def matmul_gflops(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, size: int = 1024, seconds: float = 0.5) -> float:
    """Measured matrix-multiply speed in GFLOP/s: multiplies two (size, size) matrices for about
    `seconds` (in five windows, keeping the fastest) and counts 2·size³ floating-point operations
    per product; where a single product takes a window's time or more, that product is the
    measurement. Cached per process (per device, dtype and size)."""
    device = torch.device(device)
    key = (str(device), str(dtype), size)
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
    start = time.perf_counter()
    a @ b
    sync()
    one = time.perf_counter() - start
    if one >= seconds / 5:
        # One product fills a window by itself (bf16 without bf16 instructions: seconds per product):
        # it is the measurement, and five windows of two would take a dozen products.
        _MEASURED[key] = 2 * size**3 / one / 1e9
        return _MEASURED[key]
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


def dtype_rates(device: torch.device | str = "cpu", size: int = 512) -> dict[torch.dtype, float]:
    """GFLOP/s of (size, size) products on ``device`` in float32 and, where the device runs it at
    all, bfloat16: what `fastest_dtype` compares (about 0.2 s each, cached by `matmul_gflops`)."""
    from .device import supports_bf16

    device = torch.device(device)
    dtypes = [torch.float32] + ([torch.bfloat16] if supports_bf16(device) else [])
    return {dtype: matmul_gflops(device, dtype, size=size, seconds=0.2) for dtype in dtypes}


def fastest_dtype(device: torch.device | str = "cpu", *, size: int = 512, margin: float = 1.2) -> torch.dtype:
    """torch.bfloat16 where (size, size) bf16 products measure at least ``margin`` times the float32
    rate on ``device`` (`dtype_rates`), else torch.float32. On a GPU with bf16 support bf16 wins by
    far; on a CPU it depends on the chip: with AVX-512 BF16 (or AMX) it is about 2× faster, without
    it the products fall back to slow code (about 1 GFLOP/s on some machines, against 100+ for
    float32). Chapter 07e runs SmolLM2 in the dtype this returns and prints the rates.
    """
    from .device import supports_bf16

    if not supports_bf16(torch.device(device)):
        return torch.float32
    rates = dtype_rates(device, size)
    return torch.bfloat16 if rates[torch.bfloat16] >= margin * rates[torch.float32] else torch.float32
