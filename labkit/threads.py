"""How many CPU threads PyTorch should use when other programs share the cores (the course's
plumbing; measured in ``benchmarks/omp_wait.py``).

PyTorch runs each CPU operation on a team of OpenMP threads (GNU libgomp in the pip wheels), and
every operation ends with the team waiting for its slowest member. How a thread waits decides
how fast a small model trains:

- spinning (libgomp's default: about 300,000 checks, then sleep) wakes at once, so a quiet
  machine runs at full speed; but when another program holds a core, a spinning thread spends its
  time slice waiting for a teammate that is not running: nanoGPT's CPU recipe took up to 33× longer
  per step beside a second training process here;
- sleeping at once (``OMP_WAIT_POLICY=PASSIVE``) is safe beside anything, but pays a wake-up at
  every operation: the same recipe 1.9× slower on a quiet machine.

The course takes a third way. Threads spin briefly (the Makefile's ``GOMP_SPINCOUNT``, `SPIN_ENV`:
long enough to cover the gap between two operations, short enough that a wasted spin costs
little), and when a Jupyter kernel imports labkit, `choose_threads` watches the machine for a
moment (``/proc/stat``'s busy time minus this process's own) and gives PyTorch the cores other
programs leave free. One thread has no teammate to wait for, so a busy machine costs no spinning.

The count is chosen once per kernel and then held: PyTorch's results can differ in the last bits
with the number of threads, and the chapters check that a loop written by hand and labkit's end
with *identical* weights, so the count must not change between the two. Where ``/proc/stat`` does
not exist (macOS, Windows) nothing changes. (torch is imported where it is used, so that launchers
can read `SPIN_ENV` without loading it.)
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["SPIN_ENV", "CpuSample", "choose_threads", "install", "others_cores", "read_cpu_sample", "threads_for"]

# libgomp's spin count between operations: about as fast as spinning without limit on a quiet
# machine, and at most a few times slower than PASSIVE when the machine became busy after the
# threads were chosen (benchmarks/omp_wait.py). The Makefile exports the same value (a test checks it).
SPIN_ENV: dict[str, str] = {"GOMP_SPINCOUNT": "10000"}


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds the whole machine has been busy (``busy``, all cores together), this process's
    own CPU seconds (``own``), and the wall clock (``wall``), at one moment."""

    busy: float
    own: float
    wall: float


def read_cpu_sample() -> CpuSample | None:
    """The machine's busy time from ``/proc/stat`` (user, nice, system, irq, softirq and steal: the
    hypervisor's share counts as taken), this process's from `os.times`; None without ``/proc/stat``."""
    try:
        with open("/proc/stat", "rb") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if len(fields) < 9 or fields[0] != b"cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    ticks = os.sysconf("SC_CLK_TCK")
    own = os.times()
    return CpuSample(busy=(user + nice + system + irq + softirq + steal) / ticks,
                     own=own.user + own.system, wall=time.monotonic())


def others_cores(before: CpuSample, after: CpuSample) -> float:
    """How many cores other programs kept busy, on average, between two samples (≥ 0)."""
    wall = after.wall - before.wall
    if wall <= 0:
        return 0.0
    return max(0.0, (after.busy - before.busy) - (after.own - before.own)) / wall


def threads_for(others: float, cores: int, most: int, slack: float = 0.4) -> int:
    """Threads to use when other programs keep ``others`` cores busy on a machine of ``cores``:
    the cores they leave free, counting a core as taken once they use more than ``slack`` of it
    (a browser's flicker does not halve the speed), between 1 and ``most``."""
    taken = max(0, math.ceil(others - slack))
    return max(1, min(most, cores - taken))


def choose_threads(window: float = 0.3, *, most: int | None = None, cores: int | None = None,
                   read: Callable[[], CpuSample | None] = read_cpu_sample) -> int:
    """Watch the machine for ``window`` seconds, then set PyTorch's thread count to the cores other
    programs left free (`threads_for`), at most ``most`` (default: the count now, which honours
    ``OMP_NUM_THREADS``). Returns the count; without ``/proc/stat`` it is left as it is. ``read`` is
    for tests."""
    import torch

    current = torch.get_num_threads()
    before = read()
    if before is None:
        return current
    time.sleep(window)
    after = read()
    if after is None:
        return current
    wanted = threads_for(others_cores(before, after), cores or os.cpu_count() or 1, most or current)
    if wanted != current:
        torch.set_num_threads(wanted)
    return wanted


_CHOSEN: int | None = None


def install() -> int | None:
    """In a Jupyter (IPython) kernel, `choose_threads` once (``import labkit`` calls this); the
    count chosen, or None outside IPython or when it was chosen already."""
    global _CHOSEN
    import sys

    if _CHOSEN is not None or "IPython" not in sys.modules:  # not under IPython: do not import it to find out
        return None
    from IPython import get_ipython

    if get_ipython() is None:
        return None
    _CHOSEN = choose_threads()
    return _CHOSEN
