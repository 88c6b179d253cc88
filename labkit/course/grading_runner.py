"""Runs one submission's notebook for the grader, and says what happened as it happens.

`labkit.course.grading` starts this file as a script (so it imports no labkit, torch or matplotlib), in
its own session, once per notebook::

    python -c RUNPY grading_runner.py JOB_FILE EVENT_FD

It stays outside the sandbox: it starts the sandboxed kernel (the command in the job file), talks
to it over Unix sockets in the run's connection folder, runs the code cells one by one under one
time limit for them all, and writes one JSON object per line to EVENT_FD, a pipe to the grader
that the kernel does not inherit:

    {"kernel": PID}                     the kernel started
    {"cell": K}                         cell K (1-based, counting every cell) starts
    {"check": PAYLOAD, "cell": K}       a check result the kernel displayed, as it arrived
    {"end": STATUS, "cell": K, "note": TEXT}   STATUS: graded, error, timeout, crashed

The grader believes none of it blindly: check results count only if their signature verifies
(`labkit.course.grading_kernel.sign`), and a runner that dies or hangs is killed and reported. The
runner is a child subreaper, and kills every process left under it before it exits.
"""
from __future__ import annotations

import asyncio
import ctypes
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG, _PR_SET_CHILD_SUBREAPER = 1, 36

KERNEL_PRELUDE = """\
import ctypes, os, resource, signal, sys
ctypes.CDLL(None).prctl(1, signal.SIGKILL)                 # PR_SET_PDEATHSIG: die with the runner
if os.getppid() != int(sys.argv[1]):                       # the runner died before that took effect
    os._exit(1)
limit = int(sys.argv[2])
if limit > 0:
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
try:                                                       # first in line for the out-of-memory killer
    with open("/proc/self/oom_score_adj", "w") as file:
        file.write("1000")
except OSError:
    pass
os.execvp(sys.argv[3], sys.argv[3:])
"""
"""`python -I -S -c KERNEL_PRELUDE PARENT_PID MEMORY_BYTES COMMAND...` runs COMMAND so that it gets
SIGKILL when PARENT_PID ends, may hold at most MEMORY_BYTES of data (RLIMIT_DATA, for it and each
process it starts; 0: no limit), and is the first process the kernel's out-of-memory killer ends."""


def descendants(pid: int) -> list[int]:
    """Every living process under `pid` (children, their children, ...), from /proc ([] without /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as file:
                fields = file.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def kill_descendants(pid: int | None = None) -> None:
    """SIGKILL every process under `pid` (default: this one), until none is left, and reap them."""
    pid = os.getpid() if pid is None else pid
    for _ in range(50):
        left = descendants(pid)
        if not left:
            return
        for child in left:
            try:
                os.kill(child, signal.SIGKILL)
            except OSError:
                pass
        if pid == os.getpid():
            for child in left:
                try:
                    os.waitpid(child, os.WNOHANG)
                except ChildProcessError:
                    pass
        time.sleep(0.02)


def _kernel_manager(job: dict[str, Any]) -> Any:
    """An AsyncKernelManager that starts the job's command, over Unix sockets in the job's folder."""
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    # the kernel (or the sandbox holding it) is killed by the system the moment this runner ends, and
    # runs under the grader's memory limit
    argv = list(job["kernel_argv"])
    if sys.platform.startswith("linux"):
        argv = [sys.executable, "-I", "-S", "-c", KERNEL_PRELUDE, str(os.getpid()), str(job.get("memory_bytes", 0)), *argv]

    class GradingSpecs(KernelSpecManager):
        def get_kernel_spec(self, name: str) -> Any:
            return KernelSpec(argv=argv, display_name="labkit grading", language="python", env={})

    ipc = Path(job["ipc_dir"])
    return AsyncKernelManager(kernel_name="labkit-grading", kernel_spec_manager=GradingSpecs(),
                              transport="ipc", ip=str(ipc / "k"), connection_file=str(ipc / "kernel.json"))


def _client_class(mime_type: str, emit: Callable[[dict[str, Any]], None]) -> Any:
    from nbclient import NotebookClient

    class Client(NotebookClient):
        """Reports every check result the moment its message arrives (before clear_output can hide it)."""

        def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
            if msg.get("msg_type") in ("display_data", "execute_result", "update_display_data"):
                data = (msg.get("content") or {}).get("data") or {}
                if mime_type in data:
                    emit({"check": data[mime_type], "cell": cell_index + 1})
            return super().process_message(msg, cell, cell_index)

    return Client


async def run(job: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Execute the job's notebook; returns the "end" event (also for a kernel that never started)."""
    import nbformat
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(job["notebook"], as_version=4)
    km = _kernel_manager(job)
    client = _client_class(job["mime_type"], emit)(
        nb, km=km, timeout=max(1, math.ceil(job["timeout"])), startup_timeout=int(job["startup_timeout"]),
        resources={"metadata": {"path": job["workdir"]}}, shutdown_kernel="immediate",
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
    )
    cell_number = 0
    try:
        async with client.async_setup_kernel(env=job["kernel_env"]):
            if km.provisioner is not None and getattr(km.provisioner, "process", None) is not None:
                emit({"kernel": km.provisioner.process.pid})
            deadline = time.monotonic() + job["timeout"]
            for index, cell in enumerate(nb.cells):
                cell_number = index + 1
                if cell.cell_type != "code":
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CellTimeoutError(f"no time left before cell {cell_number}")
                client.timeout = max(1, math.ceil(remaining))
                emit({"cell": cell_number})
                await client.async_execute_cell(cell, index)
        end = {"end": "graded", "cell": cell_number, "note": ""}
    except CellTimeoutError:
        end = {"end": "timeout", "cell": cell_number, "note": f"timed out after {job['timeout']:g} s"}
    except CellExecutionError as error:
        evalue = str(error.evalue).strip().splitlines()[0] if str(error.evalue).strip() else ""
        end = {"end": "error", "cell": cell_number, "note": f"stopped by {error.ename}" + (f": {evalue}" if evalue else "")}
    except DeadKernelError:
        end = {"end": "crashed", "cell": cell_number, "note": "the kernel died (killed, out of memory, or ended itself)"}
    except Exception as error:  # the kernel did not start, or the connection broke
        text = str(error).strip().splitlines()[0] if str(error).strip() else ""
        where = "the kernel did not start" if cell_number == 0 else "the run broke off"
        end = {"end": "crashed", "cell": cell_number, "note": f"{where} ({type(error).__name__}{': ' + text if text else ''})"}
    if job.get("executed"):
        nbformat.write(nb, job["executed"])
    return end


def main(argv: list[str]) -> int:
    """`grading_runner.py JOB_FILE EVENT_FD`: run the job, stream events, kill what is left."""
    # nbformat -> jsonschema imports rfc3987_syntax, whose grammar takes ~2.5 s to build, for an IRI
    # format check no notebook needs: leave it out (jsonschema skips that check when it is missing)
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    fd = int(argv[1])
    os.set_inheritable(fd, False)  # the kernel must not get the grader's pipe
    events = os.fdopen(fd, "w", buffering=1, encoding="utf-8")

    def emit(event: dict[str, Any]) -> None:
        events.write(json.dumps(event) + "\n")
        events.flush()

    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # if the grader dies, so does this run
        if os.getppid() != int(job["grader_pid"]):
            return 1
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # orphans of the kernel come to us, not to init
    try:
        emit(asyncio.run(run(job, emit)))
    finally:
        kill_descendants()
        events.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
