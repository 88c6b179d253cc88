"""Data parallelism across processes with PyTorch's own engine (DDP), started by ``torchrun``.

Every process (a *rank*) holds a copy of the model, trains on its own share of each batch, and
before every optimizer step the gradients are averaged over the ranks (an all-reduce), so all
copies take the same step and stay identical. With W ranks and a batch of B per rank, one step
sees W·B examples: the same step one process takes with a batch of W·B (tests/test_distributed.py
proves it to 1e-5). Chapter 08b measures what it costs and when it pays.

``fit`` and ``train_lm`` need no change: started under ``torchrun --nproc_per_node=W script.py``
they find the environment torchrun sets (RANK, WORLD_SIZE, …), join the process group (gloo
on CPUs, NCCL on CUDA GPUs), shard the data, and leave progress bars, plots, samples and
checkpoint files to rank 0. In a notebook or a plain ``python script.py`` nothing changes.
"""
from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Iterator
from typing import NoReturn

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

__all__ = ["init_from_env", "rank", "world_size", "is_main", "barrier", "mean", "total", "wrap", "Shard", "exit_process"]


def init_from_env(device: torch.device) -> torch.device:
    """Join the process group torchrun describes in the environment (once per process), and
    return the device this rank trains on (its own GPU, ``cuda:LOCAL_RANK``, on a GPU machine).
    Without torchrun's environment (WORLD_SIZE unset or 1) it does nothing."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    if device.type == "cuda":
        local_rank, gpus = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
        if local_rank >= gpus:  # NCCL cannot put two ranks on one GPU ("Duplicate GPU detected")
            raise RuntimeError(
                f"rank {os.environ.get('RANK', local_rank)} was started for GPU cuda:{local_rank}, but this machine "
                f"has {gpus} CUDA GPU{'s' if gpus != 1 else ''}: start torchrun with --nproc_per_node={gpus} "
                "(one process per GPU), or set LABKIT_DEVICE=cpu to train every rank on the CPU (gloo)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        atexit.register(_leave)
    return device


def _leave() -> None:
    """Leave the process group (registered to run when the program ends)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def exit_process(code: int = 0) -> NoReturn:
    """End this process with exit status `code`: the last line of a script torchrun starts.

    Under torchrun it leaves the process group, flushes the output and ends at once, skipping
    C++'s teardown: there a rank that had finished sometimes aborts ("terminate called without
    an active exception", SIGABRT, in about one run in five on a busy 2-core machine here, with
    gloo), and torchrun then reports the whole run failed. Without torchrun: ``sys.exit(code)``."""
    if world_size() == 1:
        sys.exit(code)
    _leave()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def world_size() -> int:
    """How many ranks train together (1 without torchrun)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank, 0 … world_size() - 1 (0 without torchrun)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """Rank 0: the one that shows progress, draws plots and writes files."""
    return rank() == 0


def barrier() -> None:
    """Wait until every rank gets here (nothing with one rank). Before a resume reads the
    checkpoint file: rank 0 alone writes it, and another rank must not read an older one."""
    if world_size() > 1:
        dist.barrier()


def mean(value: float, device: torch.device) -> float:
    """The mean of ``value`` over all ranks (the value itself with one rank)."""
    if world_size() == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / world_size()


def total(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sums of ``values`` over all ranks."""
    if world_size() == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """The model to run forward passes with: ``DistributedDataParallel(model)`` when several ranks
    train (it averages the gradients during backward), the model itself otherwise."""
    if world_size() == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


class Shard(Sampler[int]):
    """Rank r's share of another sampler's order: positions r, r + W, r + 2W, … of it, cut to the
    same length on every rank (so that every rank takes the same number of steps). Every rank
    draws the same order from an identically seeded generator, so together the ranks' batches
    of B are exactly one process's batches of W·B."""

    def __init__(self, order: Sampler[int], rank: int, world: int) -> None:
        self.order, self.rank, self.world = order, rank, world

    def __len__(self) -> int:
        return len(self.order) // self.world  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[int]:
        indices = list(self.order)
        return iter(indices[self.rank : len(self) * self.world : self.world])
