"""The roofline: how fast an operation can run, given how much arithmetic it does per byte (chapter 08a).

An operation that does F floating-point operations and moves Q bytes to and from memory has an
**arithmetic intensity** I = F / Q (FLOP per byte). A machine that computes at most P FLOP/s and
moves at most W bytes/s can then run it at no more than

    min(P, W · I)        (Williams, Waterman and Patterson, 2009, "Roofline")

Below the *ridge point* I = P / W an operation waits for memory (memory-bound: elementwise
work, LayerNorm, the optimizer); above it, for arithmetic (compute-bound: large matrix
products). ``P`` is what `labkit.machine.matmul_gflops` measures, ``W`` what `copy_bandwidth_gbs` measures.

    >>> matmul_intensity(1024, 1024, 1024)          # (1024, 1024) @ (1024, 1024) in float32
    170.66666666666666
    >>> attainable_gflops(0.25, peak_gflops=140, bandwidth_gbs=16)   # an elementwise add: memory-bound
    4.0
"""
from __future__ import annotations

import time

import torch

__all__ = ["matmul_intensity", "attainable_gflops", "ridge_point", "copy_bandwidth_gbs"]


def _positive(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    return float(value)


def matmul_intensity(m: int, k: int, n: int, bytes_per_value: int = 4) -> float:
    """FLOP per byte of the product (m, k) @ (k, n): 2·m·k·n operations (a multiply and an add per
    term) over reading both operands and writing the result once, (m·k + k·n + m·n) values."""
    for value, name in ((m, "m"), (k, "k"), (n, "n"), (bytes_per_value, "bytes_per_value")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a whole number ≥ 1, got {value!r}")
    return 2 * m * k * n / (bytes_per_value * (m * k + k * n + m * n))


def attainable_gflops(intensity: float, peak_gflops: float, bandwidth_gbs: float) -> float:
    """The roofline: the most GFLOP/s an operation of ``intensity`` FLOP/byte can reach on a machine
    that computes at ``peak_gflops`` and moves ``bandwidth_gbs`` GB/s: min(peak, bandwidth · intensity)."""
    return min(_positive(peak_gflops, "peak_gflops"),
               _positive(bandwidth_gbs, "bandwidth_gbs") * _positive(intensity, "intensity"))


def ridge_point(peak_gflops: float, bandwidth_gbs: float) -> float:
    """The intensity (FLOP/byte) where the two roofs meet: below it memory limits, above it arithmetic."""
    return _positive(peak_gflops, "peak_gflops") / _positive(bandwidth_gbs, "bandwidth_gbs")


def copy_bandwidth_gbs(megabytes: float = 256, tries: int = 5, device: torch.device | str = "cpu") -> float:
    """Measured memory bandwidth in GB/s (10⁹ bytes/s): copy a float32 buffer of ``megabytes`` MB into
    another ``tries`` times and keep the fastest (other programs can only slow a try down). A copy
    reads and writes every byte once, so it moves 2 × the buffer. Use a buffer far larger than the
    caches (tens of MB at least), or this measures the cache, not the memory."""
    device = torch.device(device)
    numbers = int(_positive(megabytes, "megabytes") * 1e6 // 4)
    source = torch.ones(numbers, device=device)
    target = torch.empty_like(source)
    best = 0.0
    for _ in range(max(1, tries) + 1):  # the first copy also touches fresh memory: a warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        target.copy_(source)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, 2 * source.nbytes / (time.perf_counter() - start) / 1e9)
    return best
