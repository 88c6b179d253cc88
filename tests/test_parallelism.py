"""labkit.parallelism (chapter 08b): the ring all-reduce's bytes equal a ring simulated step by step,
ZeRO's bytes per device follow its stages, and the speed-up model has the right limits."""
from __future__ import annotations

import math

import pytest
import torch

from labkit.parallelism import data_parallel_speedup, ring_all_reduce_bytes, zero_bytes_per_device


def simulated_ring_all_reduce(tensors: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[int]]:
    """A ring all-reduce written out: W ranks, each tensor cut into W chunks; a reduce-scatter of W - 1
    steps, then an all-gather of W - 1 steps. Returns every rank's result and the numbers each rank sent."""
    world = len(tensors)
    chunks = [list(t.clone().tensor_split(world)) for t in tensors]
    sent = [0] * world
    for step in range(world - 1):                       # reduce-scatter: rank r sends chunk (r - step) onwards
        outgoing = [(r, (r - step) % world, chunks[r][(r - step) % world].clone()) for r in range(world)]
        for r, c, data in outgoing:
            chunks[(r + 1) % world][c] += data
            sent[r] += data.numel()
    for step in range(world - 1):                       # all-gather: rank r passes its finished chunk on
        outgoing = [(r, (r + 1 - step) % world, chunks[r][(r + 1 - step) % world].clone()) for r in range(world)]
        for r, c, data in outgoing:
            chunks[(r + 1) % world][c] = data
            sent[r] += data.numel()
    return [torch.cat(c) for c in chunks], sent


@pytest.mark.parametrize("world", [1, 2, 3, 4, 8])
def test_ring_bytes_equal_a_simulated_ring(world):
    n = 96                                              # divisible by every world size here
    tensors = [torch.randn(n, generator=torch.Generator().manual_seed(r)) for r in range(world)]
    results, sent = simulated_ring_all_reduce(tensors)
    total = torch.stack(tensors).sum(0)
    for result in results:
        torch.testing.assert_close(result, total)
    assert all(s * 4 == ring_all_reduce_bytes(n, world) for s in sent)


def test_ring_bytes_stay_below_twice_the_tensor():
    assert ring_all_reduce_bytes(10, 1) == 0
    assert ring_all_reduce_bytes(1000, 2) == 4000
    assert ring_all_reduce_bytes(1000, 1000, 2) < 2 * 2000
    with pytest.raises(ValueError, match="world >= 1"):
        ring_all_reduce_bytes(10, 0)


def test_zero_stages_shard_one_more_part_each():
    n, d = 7_000_000_000, 8
    totals = [zero_bytes_per_device(n, d, s)["total"] for s in range(4)]
    assert totals == [16 * n, (8 + 8 / d) * n, (4 + 12 / d) * n, 16 * n / d]
    assert all(zero_bytes_per_device(n, 1, s)["total"] == 16 * n for s in range(4))   # one device: nothing to shard
    mixed = zero_bytes_per_device(n, 64, 3, {"weights": 2, "gradients": 2, "optimizer": 12})
    assert mixed["total"] == 16 * n / 64 and mixed["optimizer"] == 12 * n / 64
    with pytest.raises(ValueError, match="stage must be 0, 1, 2 or 3"):
        zero_bytes_per_device(n, d, 4)


def test_speedup_limits():
    assert data_parallel_speedup(1, 0.1, 1e9, 1.0) == (1.0, 0.0)                 # one machine sends nothing
    speed, share = data_parallel_speedup(8, 0.3, 0.0, 1.0)
    assert speed == 8 and share == 0                                            # nothing to send: k×
    speed, share = data_parallel_speedup(2, 1.0, 1e9, 1.0)                      # 1 s of compute, 1 s of all-reduce
    assert math.isclose(speed, 1.0) and math.isclose(share, 0.5)
    slow = data_parallel_speedup(16, 0.3, 124e6 * 4, 0.125)[0]
    fast = data_parallel_speedup(16, 0.3, 124e6 * 4, 100.0)[0]
    assert slow < 1 < fast < 16
    with pytest.raises(ValueError, match="bandwidth_gbs > 0"):
        data_parallel_speedup(2, 0.1, 1e6, 0.0)
