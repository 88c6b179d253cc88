"""The arithmetic of training on several devices (chapter 08b): how many bytes an all-reduce sends,
how many bytes of model state each device holds under ZeRO / FSDP, and what speed-up data
parallelism can reach when the gradients must cross a network.

These are models, not measurements: ``labkit.distributed`` runs the real thing (DDP under torchrun),
and chapter 08b measures it beside these formulas.
"""
from __future__ import annotations

__all__ = ["ring_all_reduce_bytes", "zero_bytes_per_device", "data_parallel_speedup", "STATE_BYTES"]

# bytes per parameter of a float32 training step with AdamW (chapter 08a): weights, gradients, m and v
STATE_BYTES: dict[str, int] = {"weights": 4, "gradients": 4, "optimizer": 8}


def ring_all_reduce_bytes(num_values: int, world: int, bytes_per_value: int = 4) -> float:
    """Bytes each of ``world`` ranks sends (and receives) in a ring all-reduce of ``num_values``
    numbers: a reduce-scatter then an all-gather, each (world - 1) steps of 1/world of the data,
    so 2 (world - 1) / world × the tensor's bytes. 0 with one rank."""
    if world < 1 or num_values < 0:
        raise ValueError(f"need world >= 1 and num_values >= 0, got world={world}, num_values={num_values}")
    return 2 * (world - 1) / world * num_values * bytes_per_value


def zero_bytes_per_device(num_parameters: int, devices: int, stage: int,
                          state_bytes: dict[str, int] | None = None) -> dict[str, float]:
    """Bytes of model state (weights, gradients, optimizer states; not activations) each of
    ``devices`` devices holds at ZeRO ``stage``: 0 is plain DDP (everything replicated), 1 shards the
    optimizer states, 2 also the gradients, 3 also the weights (what PyTorch's FSDP does).
    ``state_bytes`` gives the bytes per parameter of each part (default float32 + AdamW: 4, 4, 8;
    mixed precision as in the ZeRO paper is 2, 2, 12). Returns each part and the ``total``."""
    if stage not in (0, 1, 2, 3):
        raise ValueError(f"ZeRO stage must be 0, 1, 2 or 3, got {stage}")
    if devices < 1:
        raise ValueError(f"need at least one device, got {devices}")
    per = state_bytes or STATE_BYTES
    sharded = {"weights": stage >= 3, "gradients": stage >= 2, "optimizer": stage >= 1}
    parts = {part: num_parameters * per[part] / (devices if sharded[part] else 1) for part in ("weights", "gradients", "optimizer")}
    parts["total"] = sum(parts.values())
    return parts


def data_parallel_speedup(machines: int, step_seconds: float, gradient_bytes: float,
                          bandwidth_gbs: float, latency_s: float = 0.0) -> tuple[float, float]:
    """(speed-up, communication share of a step) of data parallelism over ``machines`` machines,
    each taking ``step_seconds`` to compute its own batch, then all-reducing ``gradient_bytes`` over a
    ring at ``bandwidth_gbs`` GB/s per link (plus ``latency_s`` per message, 2 (k - 1) messages).
    Nothing overlaps: DDP starts sending while backward still runs, so this is the pessimistic case."""
    if machines < 1 or step_seconds <= 0 or bandwidth_gbs <= 0:
        raise ValueError(f"need machines >= 1, step_seconds > 0 and bandwidth_gbs > 0, got "
                         f"{machines}, {step_seconds}, {bandwidth_gbs}")
    sent = 2 * (machines - 1) / machines * gradient_bytes
    communicate = sent / (bandwidth_gbs * 1e9) + 2 * (machines - 1) * latency_s
    step = step_seconds + communicate
    return machines * step_seconds / step, communicate / step
