"""Grading: run a folder of submitted notebooks, each in a sandbox, and write a per-student score table.

    python -m labkit grade submissions/ --timeout 300 --out grades.csv

A student is the first folder under the submissions folder (``subs/alice/05_cnn.ipynb`` → alice),
or the notebook's name when it sits directly in it (``subs/bob.ipynb`` → bob). Every notebook is
read once at the start of the batch (so a submission cannot change another one before it runs),
then run on its own:

* in a fresh private folder holding only a copy of it, with its saved outputs cleared;
* by a runner process in its own session (`labkit/course/grading_runner.py`), which starts the kernel
  inside the strongest sandbox this machine has (`labkit.course.sandbox`: bubblewrap, Linux
  namespaces, or — said loudly at the start and in every row — none);
* under one time limit for all its code cells, and a hard limit for the whole run;
* and afterwards every process it started is killed, whatever happened.

Scores come only from the grader's own channel: the kernel judges each ``check(...)`` answer
with the registered check and signs the result with a key made for this run
(`labkit.course.grading_kernel`); the grader counts a result only if the signature verifies. A check
result the notebook displays or prints itself has no valid signature: the notebook is marked
*tampered* and scores 0. So is a notebook whose code names labkit's private grading machinery.

Each student's row is appended to the CSV (and flushed to disk) as soon as their notebooks have
run, with a status: graded, error at cell k, timed out at cell k, crashed at cell k, not a
notebook, or tampered. A rerun skips the students already in the file (``--regrade`` grades
them again), so a grader that was stopped loses nothing it had finished.
See docs/grading.md for the instructor's guide: what is isolated, and what is not.
"""
from __future__ import annotations

import argparse
import csv
import hmac
import io
import json
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..threads import SPIN_ENV
from .grading_kernel import KEY_FILE, sign
from .sandbox import Isolation, View, course_read_only_paths, detect, run_script_argv

__all__ = ["grade", "GradeTable", "StudentGrade", "NotebookRun", "run_notebook", "verified_results", "main",
           "default_memory_gib", "STATUSES"]

CURRENT_ENV_KERNEL = "labkit-current-env"
"""Kernel name meaning: the Python running the grader (its venv, its labkit)."""

EXECUTED_MARK = "labkit_graded_copy"
"""Notebook metadata key set on the executed copies the grader keeps; such copies are never graded."""

RUN_MARK = "LABKIT_GRADING_RUN"
"""Environment variable carrying a run's id into every process of that run (to find and kill them)."""

STATUSES = ("graded", "error", "timed out", "crashed", "not a notebook", "tampered")
"""What happened to a notebook, least to most serious; a student's row shows the most serious."""

CHECK_MIME_TYPE = "application/vnd.labkit.check+json"
"""labkit.course.exercises.MIME_TYPE (a test keeps the two equal), here so that grading does not import torch."""

_OUT_OF_MEMORY = ("can't allocate memory", "Cannot allocate memory", "MemoryError", "Unable to allocate")
"""What an allocation refused under the memory limit says (torch's allocator, Python, NumPy)."""

MAX_NOTEBOOK_BYTES = 100_000_000
"""A submission larger than this is refused as not a notebook (its outputs are cleared anyway)."""

_HERE = Path(__file__).resolve().parent
_KERNEL_SCRIPT = _HERE / "grading_kernel.py"
_RUNNER_SCRIPT = _HERE / "grading_runner.py"
_RUN_FOLDER_PREFIX = "labkit-grade-"
_GRACE_SECONDS = 30.0  # beyond kernel start-up and the notebook's own limit, before the runner is killed

# Names in a submission's code that only an attempt on the grader would use (see docs/grading.md).
_TAMPER_PATTERN = re.compile(
    r"vnd\.labkit|_labkit_grader|_GRADER_CHANNEL|grading_kernel|grading_runner|\b_run_check\b|\b_REGISTRY\b|\b_SESSION\b"
)


# --------------------------------------------------------------------------- the memory limit
def default_memory_gib() -> float:
    """Half of this machine's memory, in GiB: how much one notebook's kernel may hold unless told
    otherwise (0.0 where the machine does not say how much it has: no limit)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0.0
    return round(total / 2 / 2**30, 1)


def _memory_bytes(memory_gib: float | None) -> int:
    """`memory_gib` (None: `default_memory_gib`, 0: no limit) as a byte count for the runner."""
    gib = default_memory_gib() if memory_gib is None else memory_gib
    if isinstance(gib, bool) or not isinstance(gib, (int, float)) or not gib >= 0:
        raise ValueError(f"memory must be a number of GiB ≥ 0 (0: no limit), got {memory_gib!r}")
    return int(gib * 2**30)


# --------------------------------------------------------------------------- one notebook


@dataclass
class NotebookRun:
    """What running one notebook gave: verified results by exercise id, its status and why.

    status: one of `STATUSES`; cell: the cell (1-based, counting every cell) where an error, the
    time limit or a crash stopped it; note: what happened, in words.
    """

    path: Path
    results: dict[str, bool]
    note: str = ""
    seconds: float = 0.0
    status: str = "graded"
    cell: int | None = None

    def describe(self) -> str:
        """The status as the CSV shows it: "graded", "timed out at cell 3", "tampered", ..."""
        if self.status in ("error", "timed out", "crashed") and self.cell:
            return f"{self.status} at cell {self.cell}"
        return self.status


def verified_results(payloads: Iterable[tuple[Any, int | None]], run: str, key: bytes) -> tuple[dict[str, bool], list[str]]:
    """{exercise id: passed} from the check results a run displayed, counting only those the
    grading kernel signed for this run (the last one per exercise counts); and where unsigned or
    wrongly signed results appeared ("cell 3: ..."), each a sign of forgery.

    payloads: (the JSON of a displayed result, the cell it came from).
    """
    latest: dict[str, tuple[int, bool]] = {}
    forged: list[str] = []
    for payload, cell in payloads:
        if isinstance(payload, str):
            try:
                payload = json.loads(payload)
            except ValueError:
                payload = None
        where = f"cell {cell}" if cell else "a cell"
        if not isinstance(payload, dict):
            forged.append(f"{where}: a check result that is not a JSON object")
            continue
        exercise, passed, stamp = payload.get("exercise"), payload.get("passed"), payload.get("grader")
        if not isinstance(stamp, dict):
            forged.append(f"{where}: a check result for {exercise!r} that the grader did not sign")
            continue
        seq, mac = stamp.get("seq"), stamp.get("mac")
        valid = (stamp.get("run") == run and isinstance(seq, int) and isinstance(mac, str) and isinstance(exercise, str)
                 and isinstance(passed, bool) and hmac.compare_digest(sign(key, run, seq, exercise, passed), mac))
        if not valid:
            forged.append(f"{where}: a check result for {exercise!r} with a wrong signature")
            continue
        if seq > latest.get(exercise, (0, False))[0]:
            latest[exercise] = (seq, passed)
    return {exercise: passed for exercise, (_, passed) in latest.items()}, forged


def _read_notebook(source: bytes) -> tuple[Any, str]:
    """(the notebook, "") or (None, why it is not one)."""
    import nbformat

    if len(source) > MAX_NOTEBOOK_BYTES:
        return None, f"{len(source) / 1e6:.0f} MB, over the {MAX_NOTEBOOK_BYTES / 1e6:.0f} MB a notebook may have"
    try:
        nb = nbformat.reads(source.decode("utf-8"), as_version=4)
    except Exception as error:  # not UTF-8, not JSON, not nbformat
        text = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        return None, f"cannot be read as a notebook ({type(error).__name__}{': ' + text if text else ''})"
    if not isinstance(nb.get("cells"), list) or not all(isinstance(c, dict) and "cell_type" in c for c in nb.cells):
        return None, "has no list of cells"
    return nb, ""


def _tamper_marks(nb: Any) -> list[str]:
    """Where the notebook's code names the grader's private machinery: ["cell 2: _run_check", ...]."""
    marks = []
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") == "code":
            names = sorted(set(_TAMPER_PATTERN.findall(str(cell.get("source", "")))))
            if names:
                marks.append(f"cell {index + 1}: {', '.join(names)}")
    return marks


def _kernel_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The grader's environment, plus the folder holding this labkit so the kernel imports the same one.

    (For kernels run outside the grader's sandbox, e.g. by tests; sandboxed kernels get `_sandbox_env`.)"""
    env = dict(os.environ)
    for name, value in SPIN_ENV.items():  # how torch's threads wait for each other (see labkit.threads)
        env.setdefault(name, value)
    root = str(_HERE.parent.parent)  # the folder holding labkit/ (this file is labkit/course/grading.py)
    installed = {str(Path(p).resolve()) for k in ("purelib", "platlib") if (p := sysconfig.get_paths().get(k))}
    if root not in installed:
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        if root not in paths:
            env["PYTHONPATH"] = os.pathsep.join([root, *paths])
    env.update(extra or {})
    return env


_ENV_KEPT = re.compile(r"PATH|LANG|LANGUAGE|LC_\w+|TZ|PYTHONPATH|PYTHONHASHSEED|OMP_\w+|GOMP_\w+|MKL_\w+|OPENBLAS_\w+|"
                       r"LABKIT_DATA_DIR|LABKIT_DEVICE|KERAS_BACKEND")


def _sandbox_env(tmp: Path, run: str) -> dict[str, str]:
    """A sandboxed kernel's environment: the grader's, less anything not on a short list (tokens,
    credentials, the grader's own paths), with HOME and every cache in the run's private `tmp`."""
    env = {k: v for k, v in _kernel_env().items() if _ENV_KEPT.fullmatch(k)}
    env.update({
        "HOME": str(tmp / "home"), "TMPDIR": str(tmp), "IPYTHONDIR": str(tmp / "ipython"),
        "MPLCONFIGDIR": str(tmp / "matplotlib"), "JUPYTER_CONFIG_DIR": str(tmp / "jupyter"),
        "JUPYTER_DATA_DIR": str(tmp / "jupyter"), "JUPYTER_RUNTIME_DIR": str(tmp / "jupyter"),
        "PYTHONDONTWRITEBYTECODE": "1", RUN_MARK: run,
    })
    return env


def _kernel_manager(kernel_name: str | None) -> Any:
    """A kernel manager for `kernel_name`, or for this very Python when it is None (unsandboxed:
    for tests and tools that run a trusted notebook; the grader does not use it)."""
    import ipykernel.kernelspec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    class CurrentEnvKernelSpecManager(KernelSpecManager):
        def get_kernel_spec(self, name: str) -> Any:
            if name == CURRENT_ENV_KERNEL:
                return self.kernel_spec_class(resource_dir=ipykernel.kernelspec.RESOURCES,
                                              **ipykernel.kernelspec.get_kernel_dict())
            return super().get_kernel_spec(name)

    return AsyncKernelManager(kernel_name=kernel_name or CURRENT_ENV_KERNEL,
                              kernel_spec_manager=CurrentEnvKernelSpecManager())


def _remove_stale_run_folders() -> None:
    """Delete the run folders that graders which are no longer running left behind (killed mid-run)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{_RUN_FOLDER_PREFIX}*-*"):
        pid = folder.name[len(_RUN_FOLDER_PREFIX):].split("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists() and folder.owner() == _user_name():
            shutil.rmtree(folder, ignore_errors=True)


def _user_name() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def _marked_processes(run: str) -> list[int]:
    """Processes whose environment carries this run's mark (they or their parents were started by it)."""
    needle = f"{RUN_MARK}={run}".encode() + b"\0"
    found = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/environ", "rb") as file:
                    if needle in file.read() + b"\0":
                        found.append(int(entry))
            except OSError:
                continue
    return found


def _end_run(runner: subprocess.Popen[bytes], run: str, kernel_pid: int | None) -> None:
    """Kill the runner's process group, the kernel's, and every process marked with this run."""
    for group in (runner.pid, kernel_pid):
        if group:
            try:
                os.killpg(group, signal.SIGKILL)
            except OSError:
                pass
    try:
        runner.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    for _ in range(50):
        left = _marked_processes(run)
        if not left:
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.05)


@dataclass
class _Supervised:
    events: list[dict[str, Any]] = field(default_factory=list)
    overran: bool = False
    exit_code: int | None = None
    log: str = ""


def _supervise(folder: Path, job: dict[str, Any], run: str, limit: float) -> _Supervised:
    """Start the runner on `job`, collect its events until it ends or `limit` seconds pass; then
    end everything the run started."""
    (folder / "job.json").write_text(json.dumps(job), encoding="utf-8")
    read_end, write_end = os.pipe()
    out = _Supervised()
    log_path = folder / "runner.log"
    try:
        with open(log_path, "wb") as log:
            runner = subprocess.Popen(
                run_script_argv(_RUNNER_SCRIPT, str(folder / "job.json"), str(write_end)),
                pass_fds=(write_end,), start_new_session=True, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, cwd=folder, env={**os.environ, RUN_MARK: run},
            )
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    kernel_pid = None
    try:
        deadline, buffer = time.monotonic() + limit, b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                out.overran = True
                break
            ready, _, _ = select.select([read_end], [], [], min(remaining, 1.0))
            if not ready:
                continue
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    out.events.append(event)
                    if isinstance(event.get("kernel"), int):
                        kernel_pid = event["kernel"]
    finally:
        os.close(read_end)
        _end_run(runner, run, kernel_pid)
        out.exit_code = runner.returncode
        out.log = log_path.read_text(encoding="utf-8", errors="replace") if log_path.exists() else ""
    return out


def _last_cell(events: list[dict[str, Any]]) -> int | None:
    cells = [e["cell"] for e in events if isinstance(e.get("cell"), int) and "check" not in e]
    return cells[-1] if cells else None


def _run_submission(source: bytes, name: str, timeout: float, isolation: Isolation,
                    executed_path: Path | None = None, startup_timeout: float = 120,
                    memory_bytes: int = 0) -> NotebookRun:
    """Run one submitted notebook (its bytes; `name` is its file name) in `isolation`, its kernel
    holding at most `memory_bytes` of data (0: no limit)."""
    import nbformat

    started = time.monotonic()
    nb, problem = _read_notebook(source)
    if nb is None:
        return NotebookRun(Path(name), {}, problem, 0.0, "not a notebook")
    for cell in nb.cells:  # never trust saved outputs
        if cell.get("cell_type") == "code":
            cell.outputs, cell.execution_count = [], None
    run, key = secrets.token_hex(8), secrets.token_bytes(32)
    limit = startup_timeout + timeout + _GRACE_SECONDS
    # mode 0700: only this user (and the sandbox) see it; the name says whose it is (`_remove_stale_run_folders`)
    folder = Path(tempfile.mkdtemp(prefix=f"{_RUN_FOLDER_PREFIX}{os.getpid()}-"))
    try:
        work, ipc, scratch, tmp = folder / "work", folder / "ipc", folder / "root", folder / "tmp"
        for sub in (work, ipc, scratch, tmp):
            sub.mkdir(mode=0o700)
        notebook = work / (name if name.endswith(".ipynb") else "submission.ipynb")
        nbformat.write(nb, notebook)
        key_file = ipc / KEY_FILE  # the kernel reads and deletes it before any of the notebook's code runs
        key_file.touch(mode=0o600)
        key_file.write_text(json.dumps({"run": run, "key": key.hex()}), encoding="utf-8")
        view = View(workdir=work, scratch=scratch, writable=[ipc], read_only=course_read_only_paths(),
                    tmp_bytes=memory_bytes)  # its /tmp and /dev/shm are in memory: no more than the limit each
        job = {
            "notebook": str(notebook), "workdir": str(work), "ipc_dir": str(ipc),
            "kernel_argv": isolation.wrap(run_script_argv(_KERNEL_SCRIPT, "-f", "{connection_file}"), view),
            "kernel_env": _sandbox_env(Path("/tmp") if isolation.name != "none" else tmp, run),
            "timeout": timeout, "startup_timeout": startup_timeout,
            "executed": str(folder / "executed.ipynb") if executed_path else None,
            "mime_type": CHECK_MIME_TYPE, "grader_pid": os.getpid(), "memory_bytes": memory_bytes,
        }
        supervised = _supervise(folder, job, run, limit)
        if executed_path and (folder / "executed.ipynb").exists():
            executed = nbformat.read(folder / "executed.ipynb", as_version=4)
            executed.metadata[EXECUTED_MARK] = True  # so that grading a folder holding it skips it
            executed_path.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(executed, executed_path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    results, forged = verified_results(((e["check"], e.get("cell")) for e in supervised.events if "check" in e), run, key)
    outcome = _outcome(Path(name), supervised, results, limit)
    if memory_bytes and outcome.status in ("error", "crashed") and any(m in outcome.note for m in _OUT_OF_MEMORY):
        outcome.note += f" (over the grader's memory limit of {memory_bytes / 2**30:g} GiB a notebook: --memory)"
    outcome.seconds = time.monotonic() - started
    return _mark_tampering(outcome, _tamper_marks(nb), forged)


def _outcome(path: Path, supervised: _Supervised, results: dict[str, bool], limit: float) -> NotebookRun:
    """What the runner's events say happened, with the (verified) `results`."""
    events = supervised.events
    end = next((e for e in reversed(events) if "end" in e), None)
    if supervised.overran:
        return NotebookRun(path, results, f"ran past the hard limit of {limit:g} s and was killed", 0.0,
                           "timed out", _last_cell(events))
    if end is None:
        return NotebookRun(path, results, "the run was ended from inside: its runner process died "
                           f"(exit {supervised.exit_code})", 0.0, "crashed", _last_cell(events))
    kind = {"graded": "graded", "error": "error", "timeout": "timed out"}.get(str(end["end"]), "crashed")
    note = str(end.get("note", ""))
    if kind == "crashed" and not end.get("cell"):  # it never started: the runner's last words say why
        tail = [line for line in supervised.log.strip().splitlines() if line.strip()][-3:]
        note += (": " + " | ".join(tail)) if tail else ""
    return NotebookRun(path, results, note, 0.0, kind, end.get("cell") if kind != "graded" else None)


def _mark_tampering(outcome: NotebookRun, marks: list[str], forged: list[str]) -> NotebookRun:
    """Status "tampered", scores gone, and the evidence in the note, if the run showed check results
    the grader did not sign (`forged`) or its code names the grader's private machinery (`marks`)."""
    evidence = [f"{m} (names the grader's private machinery)" for m in marks] + forged
    if evidence:
        outcome.note = "; ".join(["scores set to 0: " + "; ".join(evidence[:5])] + ([outcome.note] if outcome.note else []))
        outcome.results, outcome.status = {}, "tampered"
    return outcome


def run_notebook(
    path: str | Path,
    timeout: float = 300,
    executed_path: str | Path | None = None,
    isolation: Isolation | str = "auto",
    startup_timeout: float = 120,
    memory_gib: float | None = None,
) -> NotebookRun:
    """Run the notebook at `path` in a sandbox (`labkit.course.sandbox`) and collect its verified results.

    timeout: seconds for all its code cells together (kernel start-up not counted; that has
    `startup_timeout`). The first cell that raises, or the time running out, stops the run;
    results before it still count. executed_path: where to save the executed copy.
    isolation: an `Isolation`, or "auto", "bwrap", "unshare", "none". memory_gib: the most data
    its kernel (and each process it starts) may hold, in GiB; None: half of this machine's
    memory (`default_memory_gib`); 0: no limit.
    """
    path = Path(path)
    memory_bytes = _memory_bytes(memory_gib)
    level = isolation if isinstance(isolation, Isolation) else detect(isolation)
    try:
        source = path.read_bytes()
    except OSError as error:
        return NotebookRun(path, {}, f"cannot be read ({type(error).__name__}: {error})", 0.0, "not a notebook")
    run = _run_submission(source, path.name, timeout, level, Path(executed_path) if executed_path else None,
                          startup_timeout, memory_bytes)
    run.path = path
    return run


# --------------------------------------------------------------------------- the table


@dataclass
class StudentGrade:
    """One row: a student's score (0 or 1) per exercise id, the status, the isolation it ran in, notes."""

    student: str
    scores: dict[str, int]
    notes: list[str] = field(default_factory=list)
    status: str = "graded"
    isolation: str = ""

    @property
    def total(self) -> int:
        return sum(self.scores.values())


@dataclass
class GradeTable:
    """Students × exercises: 1 = passed, 0 = failed or never reached; then total, percent, status, isolation, notes."""

    exercises: list[str]
    rows: list[StudentGrade]

    def percent(self, row: StudentGrade) -> float:
        return round(100 * row.total / len(self.exercises), 1) if self.exercises else 0.0

    def header(self) -> list[str]:
        return ["student", *self.exercises, "total", "percent", "status", "isolation", "notes"]

    def record(self, row: StudentGrade) -> list[str]:
        """One row as strings, in `header()` order (what the CSV holds)."""
        return [row.student, *(str(row.scores.get(e, 0)) for e in self.exercises), str(row.total),
                f"{self.percent(row):.1f}", row.status, row.isolation, "; ".join(row.notes)]

    def records(self) -> list[list[str]]:
        """The rows as strings, in `header()` order."""
        return [self.record(row) for row in self.rows]

    def to_csv(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(self.header())
            writer.writerows(self.records())
        return path

    def __str__(self) -> str:
        table = [self.header(), *self.records()]
        widths = [max(len(r[i]) for r in table) for i in range(len(table[0]) - 1)]
        return "\n".join(
            ("  ".join(cell.ljust(width) for cell, width in zip(r, widths)) + "  " + r[-1]).rstrip() for r in table
        )

    def _repr_html_(self) -> str:
        import html

        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.header())
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in self.records())
        return f"<table><tr>{head}</tr>{body}</table>"


def _csv_line(fields: Sequence[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(fields)
    return buffer.getvalue()


class _GradeFile:
    """The CSV, written a row at a time: each row is one write, flushed and synced to disk at once.

    An existing file with the same columns is resumed: its complete rows are kept and those
    students are not graded again (except those named in `regrade`; `regrade=True`: everyone).
    """

    def __init__(self, path: Path, table: GradeTable, regrade: bool | Sequence[str]) -> None:
        self.path, self.table = path, table
        self.done: dict[str, StudentGrade] = {}
        header = table.header()
        if path.exists() and regrade is not True:
            with open(path, newline="", encoding="utf-8") as file:
                rows = list(csv.reader(file))
            if rows and rows[0] != header:
                raise ValueError(
                    f"{path} holds a table with the columns {', '.join(rows[0]) or '(none)'}, but these submissions "
                    f"need {', '.join(header)}: pass --regrade to grade everyone again into it, or --out another file")
            again = set(regrade or [])
            for fields in rows[1:]:
                if len(fields) == len(header) and fields[0] not in again:  # a cut-off last row is graded again
                    self.done[fields[0]] = self._parse(fields)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = _csv_line(header) + "".join(_csv_line(table.record(r)) for r in self.done.values())
        partial = path.with_name(path.name + ".partial")
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)

    def _parse(self, fields: list[str]) -> StudentGrade:
        exercises = self.table.exercises
        scores = {e: int(v) if v.isdigit() else 0 for e, v in zip(exercises, fields[1:1 + len(exercises)])}
        status, isolation, notes = fields[-3], fields[-2], fields[-1]
        return StudentGrade(fields[0], scores, notes.split("; ") if notes else [], status, isolation)

    def append(self, row: StudentGrade) -> None:
        with open(self.path, "a", newline="", encoding="utf-8") as file:
            file.write(_csv_line(self.table.record(row)))
            file.flush()
            os.fsync(file.fileno())


def _student_of(notebook: Path, folder: Path) -> str:
    parts = notebook.relative_to(folder).parts
    return parts[0] if len(parts) > 1 else notebook.stem


def _is_graded_copy(path: Path) -> bool:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("metadata", {}).get(EXECUTED_MARK) is True
    except (OSError, ValueError, AttributeError):
        return False  # unreadable: let the grader report it


def _find_notebooks(folder: Path, skip: Path | None = None) -> list[Path]:
    found = []
    for path in sorted(folder.rglob("*.ipynb")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):  # .ipynb_checkpoints, hidden folders
            continue
        if skip is not None and path.resolve().is_relative_to(skip.resolve()):
            continue
        if not path.is_file() or _is_graded_copy(path):
            continue
        found.append(path)
    return found


_CHECK_CALL = re.compile(r"""check\(\s*['"](\d{2})\.\d+['"]""")


def _exercise_columns(notebooks: dict[Path, bytes]) -> list[str]:
    """Every exercise of every chapter the notebooks belong to: by file name ("05_..."), or by the
    exercise ids their code checks (``check("05.1", ...)``); known before anything runs."""
    chapters = {m.group(1) for nb in notebooks if (m := re.match(r"(\d{2})[a-z]?_", nb.name))}
    for source in notebooks.values():
        nb, _ = _read_notebook(source)
        for cell in nb.cells if nb is not None else []:
            if cell.get("cell_type") == "code":
                chapters |= set(_CHECK_CALL.findall(str(cell.get("source", ""))))
    if not chapters:
        return []
    from labkit.course.exercises import chapter_exercises  # imports torch: only when there are exercises

    return [ex.id for chapter in sorted(chapters) for ex in chapter_exercises(chapter)]


def _student_row(student: str, runs: list[NotebookRun], exercises: list[str], isolation: Isolation) -> StudentGrade:
    row = StudentGrade(student, {e: 0 for e in exercises}, isolation=isolation.name)
    for run in runs:
        for exercise_id, passed in run.results.items():
            if exercise_id in row.scores and passed:
                row.scores[exercise_id] = 1  # passed in any of the student's notebooks
        if run.note or run.status != "graded":
            row.notes.append(f"{run.path.name}: {run.describe()}" + (f": {run.note}" if run.note else ""))
    worst = max(runs, key=lambda r: STATUSES.index(r.status))
    if worst.status == "tampered":
        row.scores = {e: 0 for e in exercises}
    row.status = worst.describe() + (f" ({worst.path.name})" if len(runs) > 1 and worst.status != "graded" else "")
    return row


def grade(
    folder: str | Path,
    timeout: float = 300,
    out_csv: str | Path | None = None,
    executed_dir: str | Path | None = None,
    verbose: bool = False,
    isolation: str = "auto",
    regrade: bool | Sequence[str] = False,
    startup_timeout: float = 120,
    memory_gib: float | None = None,
) -> GradeTable:
    """Run every notebook under `folder`, each in its own sandbox, and score each student's exercises.

    timeout: seconds per notebook for its code cells. out_csv: the CSV, written a row per student
    as each finishes; if it exists with the same columns, students already in it are skipped
    (regrade=True grades everyone again, regrade=["ann"] only those). executed_dir: keep the
    executed notebooks there. isolation: "auto" (the strongest that works), "bwrap", "unshare"
    or "none" (see `labkit.course.sandbox`); a level that does not work here raises RuntimeError.
    memory_gib: the most data one notebook's kernel (and each process it starts) may hold, in GiB;
    None: half of this machine's memory (`default_memory_gib`); 0: no limit. A notebook that asks
    for more gets an allocation error in its cell, and the batch goes on.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder of submissions at {folder}: give the folder holding one folder "
                                "(or one .ipynb) per student")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    memory_bytes = _memory_bytes(memory_gib)
    level = detect(isolation)
    if os.path.isdir("/proc"):
        _remove_stale_run_folders()
    paths = _find_notebooks(folder, skip=Path(executed_dir) if executed_dir else None)
    sources: dict[Path, bytes] = {}
    for path in paths:  # read every submission now, before any of them runs
        try:
            sources[path] = path.read_bytes()
        except OSError as error:
            sources[path] = f"unreadable: {error}".encode()
    table = GradeTable(_exercise_columns(sources), [])
    grade_file = _GradeFile(Path(out_csv), table, regrade) if out_csv is not None else None
    done = grade_file.done if grade_file else {}
    if verbose:
        print(f"isolation: {level}", flush=True)
        print(f"memory: at most {memory_bytes / 2**30:g} GiB a notebook (--memory)" if memory_bytes
              else "memory: no limit (--memory 0)", flush=True)
    students: dict[str, list[Path]] = {}
    for path in paths:
        students.setdefault(_student_of(path, folder), []).append(path)
    for student in sorted(set(students) | set(done)):
        if student in done:
            table.rows.append(done[student])
            if verbose and student in students:
                print(f"{student}: already in {out_csv}, not graded again (--regrade to grade again)", flush=True)
            continue
        runs = []
        for path in students[student]:
            relative = path.relative_to(folder)
            executed = Path(executed_dir) / relative if executed_dir else None
            try:
                run = _run_submission(sources[path], path.name, timeout, level, executed, startup_timeout,
                                      memory_bytes)
            except Exception as error:  # the grader's own failure: say so, and go on with the batch
                run = NotebookRun(path, {}, f"the grader could not run it ({type(error).__name__}: {error})",
                                  0.0, "crashed")
            run.path = path
            runs.append(run)
            if verbose:
                passed = sum(run.results.values())
                print(f"{relative}: {run.describe()}, {passed} of {len(run.results)} checks passed "
                      f"({run.seconds:.1f} s)" + (f" — {run.note}" if run.note else ""), flush=True)
        row = _student_row(student, runs, table.exercises, level)
        table.rows.append(row)
        if grade_file is not None:
            grade_file.append(row)
    return table


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m labkit grade FOLDER [--timeout S] [--memory GIB] [--out FILE] [--isolation LEVEL] [--regrade [NAME...]]`.

    `argv` may start with the word "grade" or not.
    """
    import sys

    # nbformat -> jsonschema imports rfc3987_syntax, whose grammar takes ~2.5 s to build, for an IRI
    # format check no notebook needs (jsonschema skips that check when the module is missing)
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in and args_in[0] == "grade" and not Path("grade").is_dir():
        args_in = args_in[1:]
    parser = argparse.ArgumentParser(
        prog="python -m labkit grade",
        description="Run every notebook under FOLDER, each in its own sandbox, and write a per-student, "
                    "per-exercise score table (CSV), a row as each student finishes. See docs/grading.md.",
    )
    parser.add_argument("folder", type=Path, help="submissions: FOLDER/<student>/*.ipynb or FOLDER/<student>.ipynb")
    parser.add_argument("--timeout", type=float, default=300, metavar="S",
                        help="seconds for each notebook's code cells (default 300)")
    parser.add_argument("--out", type=Path, default=Path("grades.csv"), metavar="FILE",
                        help="CSV file to write; an existing one is resumed (default grades.csv)")
    parser.add_argument("--regrade", nargs="*", metavar="STUDENT", default=None,
                        help="grade again the students already in --out: all of them, or those named")
    parser.add_argument("--isolation", default="auto", choices=["auto", "bwrap", "unshare", "none"],
                        help="sandbox for the notebooks (default auto: the strongest that works here)")
    parser.add_argument("--keep-executed", type=Path, default=None, metavar="DIR",
                        help="save the executed notebooks in DIR")
    parser.add_argument("--memory", type=float, default=None, metavar="GIB",
                        help="the most memory one notebook may hold, in GiB (default: half of this machine's, "
                             f"{default_memory_gib():g} here; 0: no limit)")
    args = parser.parse_args(args_in)
    if not args.folder.is_dir():
        parser.error(f"no folder at {args.folder}: give the folder of submissions")
    if not args.timeout > 0:
        parser.error(f"--timeout must be > 0 seconds, got {args.timeout:g}")
    if args.memory is not None and not args.memory >= 0:
        parser.error(f"--memory must be a number of GiB ≥ 0 (0: no limit), got {args.memory:g}")
    if not _find_notebooks(args.folder, skip=args.keep_executed):
        print(f"no notebooks (.ipynb) found under {args.folder}", file=sys.stderr)
        return 1
    regrade: bool | list[str] = False if args.regrade is None else (args.regrade or True)
    try:
        table = grade(args.folder, timeout=args.timeout, out_csv=args.out, executed_dir=args.keep_executed,
                      verbose=True, isolation=args.isolation, regrade=regrade, memory_gib=args.memory)
    except (RuntimeError, ValueError) as error:
        print(f"python -m labkit grade: {error}", file=sys.stderr)
        return 2
    print()
    print(table)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
