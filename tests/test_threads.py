"""labkit.threads: the arithmetic, the choice on made-up CPU counters, what the counters measure
beside a real busy process, and the spin setting every way of starting the course uses."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from labkit import threads
from labkit.threads import CpuSample, choose_threads, others_cores, threads_for

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("others", "cores", "most", "expected"), [
    (0.0, 2, 2, 2), (0.3, 2, 2, 2),          # a flicker of other work: keep both cores
    (0.5, 2, 2, 1), (1.0, 2, 2, 1), (1.4, 2, 2, 1),
    (3.0, 2, 2, 1),                          # never fewer than one thread
    (1.0, 8, 8, 7), (2.6, 8, 8, 5),
    (0.0, 8, 4, 4),                          # never more than `most`
])
def test_threads_for_leaves_the_cores_others_use(others, cores, most, expected):
    assert threads_for(others, cores, most) == expected


def test_others_cores_subtracts_this_process():
    before = CpuSample(busy=100.0, own=10.0, wall=50.0)
    after = CpuSample(busy=103.0, own=11.0, wall=52.0)  # 3 CPU-seconds busy in 2 s, 1 of them ours
    assert others_cores(before, after) == pytest.approx(1.0)
    assert others_cores(after, after) == 0.0
    assert others_cores(before, CpuSample(busy=100.5, own=11.0, wall=51.0)) == 0.0  # never negative


class FakeCounters:
    """A CPU-counter reader whose other programs use ``others`` cores; one second per read."""

    def __init__(self, others: float) -> None:
        self.others, self.busy, self.wall = others, 0.0, 0.0

    def __call__(self) -> CpuSample:
        self.busy += self.others
        self.wall += 1.0
        return CpuSample(busy=self.busy, own=0.0, wall=self.wall)


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(("others", "expected"), [(0.0, 2), (0.2, 2), (1.0, 1), (2.0, 1)])
def test_choose_threads_sets_the_cores_others_leave(restore_threads, others, expected):
    torch.set_num_threads(2)
    assert choose_threads(0.0, cores=2, read=FakeCounters(others)) == expected
    assert torch.get_num_threads() == expected


def test_choose_threads_never_exceeds_the_count_it_starts_with(restore_threads):
    torch.set_num_threads(1)  # e.g. OMP_NUM_THREADS=1
    assert choose_threads(0.0, cores=8, read=FakeCounters(0.0)) == 1


def test_choose_threads_without_counters_changes_nothing(restore_threads):
    torch.set_num_threads(2)
    assert choose_threads(0.0, cores=2, read=lambda: None) == 2


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="the governor reads Linux's /proc/stat")
def test_the_counters_see_a_busy_process():
    burner = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 3\nwhile time.time() < end: pass"])
    try:
        time.sleep(0.5)
        before = threads.read_cpu_sample()
        time.sleep(1.0)
        after = threads.read_cpu_sample()
    finally:
        burner.kill()
        burner.wait()
    assert before is not None and after is not None
    used = others_cores(before, after)
    assert used >= 0.7, f"a process spinning on one core measured as {used:.2f} cores of other work"
    assert threads_for(used, os.cpu_count() or 1, os.cpu_count() or 1) <= max(1, (os.cpu_count() or 1) - 1)


def test_install_chooses_once_in_jupyter_only(monkeypatch):
    calls = []
    monkeypatch.setattr(threads, "choose_threads", lambda: calls.append(1) or 1)
    monkeypatch.setattr(threads, "_CHOSEN", None)
    monkeypatch.setattr("IPython.get_ipython", lambda: None)
    assert threads.install() is None and calls == []  # a script or a test: nothing changes
    monkeypatch.setattr("IPython.get_ipython", lambda: object())
    assert threads.install() == 1 and threads.install() is None and calls == [1]  # a kernel: once


def test_every_launcher_uses_the_same_spin_setting():
    ((name, value),) = threads.SPIN_ENV.items()
    makefile = (REPO / "Makefile").read_text()
    assert re.search(rf"^export {name} \?= {value}$", makefile, re.M), f"the Makefile should export {name}={value}"
    assert "OMP_WAIT_POLICY" not in re.sub(r"#.*", "", makefile)
    for launcher in ("tools/execute_notebooks.py", "labkit/course/grading.py"):
        text = (REPO / launcher).read_text()
        assert "SPIN_ENV" in text and "PASSIVE" not in re.sub(r"#.*", "", text), launcher
