"""The kernel the grader starts for a submission: ipykernel, plus a result channel the notebook cannot forge.

The grader's runner starts this file as a script inside the sandbox (`labkit.course.sandbox`), so it
runs before any of the submission's code and without importing labkit, torch or matplotlib:

1. it reads the run's id and secret key from ``kernel.key`` beside the connection file, and
   deletes that file (the key is then only in this process's memory, in a closure);
2. it puts a channel module into ``sys.modules[CHANNEL]``; `labkit.course.exercises.check` finds it
   there and lets it judge each answer: the channel runs the registered check itself and signs
   (run id, sequence number, exercise, passed) with HMAC-SHA256 (`sign`);
3. it starts ipykernel.

The signature travels inside the displayed check result (`labkit.course.exercises.MIME_TYPE`); the
grader counts only results whose signature verifies with the key it made for this run. Output
the notebook prints or displays itself carries no valid signature: the grader calls that
tampering. What this cannot stop is code in the submission that reaches into this process's
memory or rewrites labkit's checks inside its own kernel (see docs/grading.md).
"""
from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import os
import sys
import types
from pathlib import Path
from typing import Any

__all__ = ["CHANNEL", "KEY_FILE", "sign", "main"]

CHANNEL = "_labkit_grader"
"""Name in sys.modules of the channel a grading kernel installs (absent in any other kernel)."""

KEY_FILE = "kernel.key"
"""File beside the kernel's connection file: {"run": id, "key": hex}; the kernel deletes it at start."""


def sign(key: bytes, run: str, seq: int, exercise: str, passed: bool) -> str:
    """HMAC-SHA256 (hex) of one check result of one run: what the grader recomputes to verify it."""
    message = json.dumps([run, seq, exercise, passed], separators=(",", ":")).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _channel(run: str, key: bytes) -> types.ModuleType:
    """The module labkit.course.exercises.check asks to judge answers; the key lives only in its closure."""
    counter = itertools.count(1)

    def judge(exercise_id: Any, answer: Any) -> Any:
        """Check `answer` with the registered check and return the CheckResult, signed."""
        from labkit.course.exercises import _run_check

        result = _run_check(exercise_id, answer)
        seq = next(counter)
        result.signature = {"run": run, "seq": seq, "mac": sign(key, run, seq, result.exercise, result.passed is True)}
        return result

    module = types.ModuleType(CHANNEL, "The grader's result channel (see labkit/course/grading_kernel.py).")
    module.judge = judge  # type: ignore[attr-defined]
    return module


def main(argv: list[str]) -> None:
    """Read and delete the key, install the channel, then run ipykernel with `argv` (``-f CONNECTION_FILE``)."""
    if "-f" not in argv or argv.index("-f") + 1 >= len(argv):
        raise SystemExit(f"grading_kernel.py: expected -f CONNECTION_FILE, got {argv}")
    key_path = Path(argv[argv.index("-f") + 1]).parent / KEY_FILE
    try:
        secret = json.loads(key_path.read_text(encoding="utf-8"))
        key_path.unlink()
        sys.modules[CHANNEL] = _channel(str(secret["run"]), bytes.fromhex(secret["key"]))
    except (OSError, ValueError, KeyError) as error:
        raise SystemExit(f"grading_kernel.py: no usable key at {key_path} ({type(error).__name__}: {error}); "
                         "this kernel is started by `python -m labkit grade`, not by hand") from None
    del secret
    # ipykernel would watch JPY_PARENT_PID and, seeing PID 1 as its parent inside the sandbox's PID
    # namespace, exit at once; the runner and the sandbox end this kernel instead.
    os.environ.pop("JPY_PARENT_PID", None)
    for variable in ("HOME", "IPYTHONDIR", "MPLCONFIGDIR", "TMPDIR"):
        if folder := os.environ.get(variable):
            os.makedirs(folder, exist_ok=True)
    sys.argv = [sys.argv[0], *argv]
    from ipykernel.kernelapp import launch_new_instance

    launch_new_instance()


if __name__ == "__main__":
    main(sys.argv[1:])
