"""How many CPU threads PyTorch should use while other programs share the cores (the course's
plumbing; measured in ``benchmarks/omp_wait.py``).

PyTorch runs each CPU operation on a team of OpenMP threads (GNU libgomp in the pip wheels), and
every operation ends with the team waiting for its slowest member. How a thread waits decides
how fast a small model trains:

- spinning (libgomp's default: about 300,000 checks, then sleep) wakes at once, so a quiet
  machine runs at full speed; but when another program holds a core, a spinning thread spends its
  time slice waiting for a teammate that is not running: nanoGPT's CPU recipe took **35×** longer
  per step beside a second training process here;
- sleeping at once (``OMP_WAIT_POLICY=PASSIVE``) is safe beside anything, but pays a wake-up at
  every operation: the same recipe **1.9×** slower on a quiet machine.

The course takes a third way. Threads spin briefly (the Makefile's ``GOMP_SPINCOUNT``, `SPIN_ENV`:
long enough to cover the gap between two operations, short enough that a wasted spin costs
little), and `ThreadGovernor` gives PyTorch as many threads as other programs leave cores free,
measured every ``interval`` seconds from the kernel's CPU accounting (``/proc/stat``, minus this
process's own time). One thread has no teammate to wait for, so a busy machine costs no spinning.
In Jupyter (`install`, which ``import labkit`` calls) the governor is asked before every cell
and at every step of the training core; in plain scripts and tests it is off unless `enable`d.

Where ``/proc/stat`` does not exist (macOS, Windows) the governor does nothing. A thread count set
by hand (``torch.set_num_threads``) is left alone: the governor only changes a count it set itself.
(torch is imported where it is used, so that launchers can read `SPIN_ENV` without loading it.)
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["SPIN_ENV", "CpuSample", "ThreadGovernor", "adapt_threads", "enable", "install", "read_cpu_sample"]

# libgomp's spin count between operations: about as fast as spinning without limit on a quiet
# machine, and at most a few times slower than PASSIVE beside a busy one even before the governor
# reacts (benchmarks/omp_wait.py). The Makefile exports the same value (a test checks it).
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


class ThreadGovernor:
    """Keeps ``torch.get_num_threads()`` at the number of cores other programs leave free.

    Call it often (every training step): it reads the CPU counters at most once per ``interval``
    seconds and otherwise returns at once. ``most`` is the ceiling (default: PyTorch's thread count
    when the governor first runs, which honours ``OMP_NUM_THREADS``). ``read`` is for tests.
    """

    def __init__(self, *, interval: float = 0.5, most: int | None = None,
                 cores: int | None = None, read: Callable[[], CpuSample | None] = read_cpu_sample) -> None:
        self.interval, self.read = interval, read
        self.most, self.cores = most, cores or os.cpu_count() or 1
        self.last: CpuSample | None = None
        self.threads: int | None = None  # the count this governor set or found; None before the first call
        self.changes = 0

    def __call__(self) -> int:
        """Re-measure if ``interval`` has passed; set and return the thread count."""
        import torch

        current = torch.get_num_threads()
        if self.threads is None:
            self.threads = current
            self.most = self.most or current
        elif current != self.threads:  # set by hand since: not the governor's to change
            return current
        if self.last is not None and time.monotonic() - self.last.wall < self.interval:
            return current
        sample = self.read()
        if sample is None:
            return current
        if self.last is not None:
            assert self.most is not None
            wanted = threads_for(others_cores(self.last, sample), self.cores, self.most)
            if wanted != current:
                torch.set_num_threads(wanted)
                self.threads, self.changes = wanted, self.changes + 1
        self.last = sample
        return torch.get_num_threads()


_GOVERNOR = ThreadGovernor()
_GOVERNOR_ON = False


def adapt_threads() -> int:
    """The course-wide `ThreadGovernor`, once `enable` or `install` has turned it on (until then it
    changes nothing: scripts and tests keep the thread count they start with). The training core
    calls it at every step; any loop of many small operations may."""
    if not _GOVERNOR_ON:
        import torch

        return torch.get_num_threads()
    return _GOVERNOR()


def enable() -> None:
    """Turn the course-wide governor on (`benchmarks/omp_wait.py` does, for a script)."""
    global _GOVERNOR_ON
    _GOVERNOR_ON = True


def install() -> bool:
    """In Jupyter (IPython), turn the governor on and ask it before every cell too (a
    ``pre_run_cell`` hook); elsewhere do nothing. True when the hook is in place; installing twice
    adds one hook. ``import labkit`` calls it."""
    import sys

    if "IPython" not in sys.modules:  # not running under IPython: do not import it just to find out
        return False
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        return False
    if _on_cell not in shell.events.callbacks["pre_run_cell"]:
        shell.events.register("pre_run_cell", _on_cell)
    enable()
    adapt_threads()
    return True


def _on_cell(*_: object) -> None:
    adapt_threads()
