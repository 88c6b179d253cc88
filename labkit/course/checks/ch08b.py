"""Checks for chapter 08b (practice: scaling, part 2: training on several processes).

The stub cells in ``chapters/08b_distributed.ipynb``::

    def all_reduce_bytes(num_values, world, bytes_per_value):
        raise NotImplementedError  # TODO: bytes each rank sends in a ring all-reduce
    check("08.5", all_reduce_bytes)

    def zero_bytes(num_parameters, devices, stage):
        raise NotImplementedError  # TODO: bytes of weights + gradients + AdamW states per device at ZeRO stage 0–3
    check("08.6", zero_bytes)

    def predict_speedup(machines, step_seconds, gradient_bytes, bandwidth_gbs):
        raise NotImplementedError  # TODO: data parallelism's speed-up when the all-reduce does not overlap
    check("08.7", predict_speedup)

Every check runs in well under a second and draws no random numbers.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from labkit.course.exercises import Hint, exercise, expect_callable, expect_number
from labkit.parallelism import data_parallel_speedup, ring_all_reduce_bytes, zero_bytes_per_device


def _not_done(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError  # what an untouched stub function does


def _close(got: float, want: float) -> bool:
    return math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9)


# --------------------------------------------------------------------------- 08.5 ring all-reduce bytes

_ALL_REDUCE_CASES = [(1_000_000, 2, 4), (124_000_000, 8, 2), (3_000, 3, 4), (10, 1, 4), (7_000_000_000, 64, 2)]


def _all_reduce_variants(n: int, world: int, b: int) -> dict[str, float]:
    data = n * b
    return {
        "that is twice the tensor: the ring sends 2·(N − 1)/N of it, which is less than twice": 2 * data,
        "that is the reduce-scatter alone: the all-gather that follows sends as much again": (world - 1) / world * data,
        "that is sending the whole tensor to each of the other ranks (the naive all-reduce), which "
        "the ring avoids": (world - 1) * data,
        "that is the tensor's size: a ring sends 2·(N − 1)/N of it": data,
        "count bytes, not numbers: multiply by bytes_per_value": 2 * (world - 1) / world * n,
    }


def _check_all_reduce_bytes(all_reduce_bytes: Callable) -> str:
    expect_callable(all_reduce_bytes, "all_reduce_bytes")
    for n, world, b in _ALL_REDUCE_CASES:
        want = ring_all_reduce_bytes(n, world, b)
        got = expect_number(all_reduce_bytes(n, world, b), f"all_reduce_bytes({n}, {world}, {b})", " (bytes)")
        if _close(got, want):
            continue
        for hint, wrong in _all_reduce_variants(n, world, b).items():
            if _close(got, wrong) and not _close(wrong, want):
                raise Hint(f"for {n:,} numbers of {b} bytes on {world} ranks you get {got:,.0f} bytes: {hint}")
        raise Hint(f"for {n:,} numbers of {b} bytes on {world} ranks you get {got:,.0f} bytes, expected "
                   f"{want:,.0f}: a reduce-scatter then an all-gather, each N − 1 steps of 1/N of the tensor")
    return f"the ring's bytes per rank for {len(_ALL_REDUCE_CASES)} sizes, from 1 to 64 ranks"


exercise(
    "08.5",
    title="Bytes a ring all-reduce sends",
    reference=lambda: ring_all_reduce_bytes,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda n, w, b: 2 * n * b,
        lambda: lambda n, w, b: (w - 1) / w * n * b,
        lambda: lambda n, w, b: (w - 1) * n * b,
        lambda: lambda n, w, b: 2 * (w - 1) / w * n,
        lambda: lambda n, w, b: [n, w, b],  # not one number
    ],
)(_check_all_reduce_bytes)


# --------------------------------------------------------------------------- 08.6 ZeRO bytes per device

_ZERO_CASES = [(n, d, s) for n in (7_000_000_000, 1_000_000) for d in (1, 8, 64) for s in (0, 1, 2, 3)]


def _reference_zero_bytes(num_parameters: int, devices: int, stage: int) -> float:
    return zero_bytes_per_device(num_parameters, devices, stage)["total"]


def _zero_variants(n: int, d: int, stage: int) -> dict[str, float]:
    def with_parts(w: float, g: float, o: float, sharded: int) -> float:   # sharded: how many parts, in order o, g, w
        parts = [o, g, w]
        return sum(p / d if k < sharded else p for k, p in enumerate(parts)) * n
    return {
        "AdamW keeps two numbers per parameter (m and v), 8 bytes in float32": with_parts(4, 4, 4, stage),
        "the stages add up: stage 1 shards the optimizer states, stage 2 also the gradients, stage 3 also "
        "the weights": {0: 16 * n, 1: (4 + 4 + 8 / d) * n, 2: (4 + 4 / d + 8) * n, 3: (4 / d + 4 + 8) * n}[stage],
        "sharding divides by the number of devices; it does not remove the part": {0: 16 * n, 1: 8 * n,
                                                                                  2: 4 * n, 3: 0.0}[stage],
        "stage 0 is plain DDP: every device holds all 16 bytes per parameter": 16 * n / d,
    }


def _check_zero_bytes(zero_bytes: Callable) -> str:
    expect_callable(zero_bytes, "zero_bytes")
    for n, d, stage in _ZERO_CASES:
        want = _reference_zero_bytes(n, d, stage)
        got = expect_number(zero_bytes(n, d, stage), f"zero_bytes({n}, {d}, {stage})", " (bytes)")
        if _close(got, want):
            continue
        for hint, wrong in _zero_variants(n, d, stage).items():
            if _close(got, wrong) and not _close(wrong, want):
                raise Hint(f"for {n:,} parameters on {d} devices at stage {stage} you get {got:,.0f} bytes: {hint}")
        raise Hint(f"for {n:,} parameters on {d} devices at stage {stage} you get {got:,.0f} bytes, expected "
                   f"{want:,.0f}: weights 4, gradients 4, AdamW 8 bytes per parameter; each sharded part is "
                   "divided by the number of devices")
    return f"bytes per device for {len(_ZERO_CASES)} cases (2 model sizes, 1–64 devices, stages 0–3)"


exercise(
    "08.6",
    title="ZeRO: model state per device",
    reference=lambda: _reference_zero_bytes,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda n, d, s: (4 / d if s >= 3 else 4) * n + (4 / d if s >= 2 else 4) * n + (4 / d if s >= 1 else 4) * n,
        lambda: lambda n, d, s: 16 * n / d,
        lambda: lambda n, d, s: {0: 16, 1: 8, 2: 4, 3: 0}[s] * n,
        lambda: lambda n, d, s: ({0: 16, 1: 4 + 4 + 8 / d, 2: 4 + 4 / d + 8, 3: 4 / d + 4 + 8}[s]) * n,
    ],
)(_check_zero_bytes)


# --------------------------------------------------------------------------- 08.7 predicted speed-up

# (machines, step seconds, gradient bytes, GB/s): the course GPT on Ethernet, GPT-2 small and a 7B model
_SPEEDUP_CASES = [(2, 0.08, 12e6, 1.25), (8, 0.3, 124e6 * 4, 12.5), (64, 2.0, 7e9 * 2, 50.0), (1, 0.1, 1e9, 1.0),
                  (16, 0.05, 1e8, 0.125)]


def _speedup_variants(k: int, step: float, grad: float, bw: float) -> dict[str, float]:
    ring = 2 * (k - 1) / k * grad / (bw * 1e9)
    return {
        "the ring sends 2·(k − 1)/k × the gradient bytes, not the gradient bytes once":
            k * step / (step + grad / (bw * 1e9)) if k > 1 else 1.0,
        "GB/s means 10⁹ bytes per second (a network's Gbit/s is 8 times less)": k * step / (step + ring * 8),
        "k machines do k batches in the time of one step plus the all-reduce: multiply by k": step / (step + ring),
        "the all-reduce's time adds to the step: k · step / (step + all-reduce)": float(k),
    }


def _check_predict_speedup(predict_speedup: Callable) -> str:
    expect_callable(predict_speedup, "predict_speedup")
    for k, step, grad, bw in _SPEEDUP_CASES:
        want = data_parallel_speedup(k, step, grad, bw)[0]
        got = expect_number(predict_speedup(k, step, grad, bw), f"predict_speedup({k}, {step}, {grad:g}, {bw})",
                            " (the speed-up)")
        if math.isclose(got, want, rel_tol=1e-4):
            continue
        where = f"{k} machines, {step} s per step, {grad:,.0f} gradient bytes, {bw} GB/s"
        for hint, wrong in _speedup_variants(k, step, grad, bw).items():
            if math.isclose(got, wrong, rel_tol=1e-4) and not math.isclose(wrong, want, rel_tol=1e-4):
                raise Hint(f"for {where} you get {got:.3f}: {hint}")
        raise Hint(f"for {where} you get {got:.4g}, expected {want:.4g}: one step of compute, then a ring "
                   "all-reduce of 2(k − 1)/k × the gradient bytes at the bandwidth; k batches in that time")
    return f"the speed-up for {len(_SPEEDUP_CASES)} cases, from 1 to 64 machines"


exercise(
    "08.7",
    title="Predict data parallelism's speed-up",
    reference=lambda: lambda k, step, grad, bw: data_parallel_speedup(k, step, grad, bw)[0],
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda k, step, grad, bw: k * step / (step + grad / (bw * 1e9)) if k > 1 else 1.0,
        lambda: lambda k, step, grad, bw: k * step / (step + 2 * (k - 1) / k * grad / (bw * 1e9) * 8),
        lambda: lambda k, step, grad, bw: step / (step + 2 * (k - 1) / k * grad / (bw * 1e9)),
        lambda: lambda k, step, grad, bw: float(k),
        lambda: lambda k, step, grad, bw: data_parallel_speedup(k, step, grad, bw),  # the pair, not the speed-up
    ],
)(_check_predict_speedup)
