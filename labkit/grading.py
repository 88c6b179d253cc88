"""Grading: run a folder of submitted notebooks and write a per-student, per-exercise score table.

    python -m labkit grade submissions/ --timeout 300 --out grades.csv

Every ``.ipynb`` under the folder is executed in a fresh kernel of this Python environment, in a
temporary copy with its old outputs cleared (so saved outputs cannot fake a ✓). Each
`labkit.check` call leaves a result (mime type ``application/vnd.labkit.check+json``) in the
outputs; those are read back and scored 1 (passed) or 0 (failed or never reached). A notebook
that raises or runs past its time limit keeps the scores of the checks that ran before, and
the table notes what stopped it.

The student is the first folder under the submissions folder (``subs/alice/05_cnn.ipynb`` →
alice), or the notebook's name when it sits directly in it (``subs/bob.ipynb`` → bob).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

__all__ = ["grade", "GradeTable", "StudentGrade", "NotebookRun", "run_notebook", "read_check_results", "main"]

CURRENT_ENV_KERNEL = "labkit-current-env"
"""Kernel name meaning: the Python running the grader (its venv, its labkit)."""

EXECUTED_MARK = "labkit_graded_copy"
"""Notebook metadata key set on the executed copies the grader keeps; such copies are never graded."""


# --------------------------------------------------------------------------- one notebook


@dataclass
class NotebookRun:
    """The outcome of executing one notebook: results by exercise id, and why it stopped early."""

    path: Path
    results: dict[str, bool]
    note: str = ""
    seconds: float = 0.0


def read_check_results(nb: Any) -> dict[str, bool]:
    """{exercise id: passed} from a notebook's outputs; when an exercise was checked twice, the last counts."""
    from labkit.exercises import MIME_TYPE

    results: dict[str, bool] = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            payload = output.get("data", {}).get(MIME_TYPE)
            if isinstance(payload, str):
                try:
                    payload = json.loads(payload)
                except ValueError:
                    continue
            if isinstance(payload, dict) and isinstance(payload.get("exercise"), str):
                results[payload["exercise"]] = payload.get("passed") is True
    return results


def _kernel_manager(kernel_name: str | None) -> Any:
    """A kernel manager for `kernel_name`, or for this very Python when it is None."""
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


def _kernel_env() -> dict[str, str]:
    """The grader's environment, plus the folder holding this labkit so the kernel imports the same one."""
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # torch's threads sleep, not spin, while waiting (see Makefile)
    root = str(Path(__file__).resolve().parent.parent)
    installed = {str(Path(p).resolve()) for k in ("purelib", "platlib") if (p := sysconfig.get_paths().get(k))}
    if root not in installed:
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        if root not in paths:
            env["PYTHONPATH"] = os.pathsep.join([root, *paths])
    return env


def run_notebook(
    path: str | Path,
    timeout: float = 300,
    kernel_name: str | None = None,
    executed_path: str | Path | None = None,
) -> NotebookRun:
    """Execute a copy of the notebook at `path` and collect its check results.

    timeout: seconds for all its cells together (kernel start-up not counted). The first cell
    that raises, or the time running out, stops the run; results before it still count.
    executed_path: where to save the executed copy (for looking at what went wrong).
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    path = Path(path)
    started = time.monotonic()
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as error:
        return NotebookRun(path, {}, f"could not read the notebook ({type(error).__name__}: {error})")
    for cell in nb.cells:  # never trust saved outputs
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None

    note = ""
    with tempfile.TemporaryDirectory(prefix="labkit-grade-") as workdir:
        nbformat.write(nb, Path(workdir) / path.name)
        client = NotebookClient(
            nb, km=_kernel_manager(kernel_name), timeout=max(1, math.ceil(timeout)),
            resources={"metadata": {"path": workdir}}, shutdown_kernel="immediate",
            # our own ipykernel: keep its start-up warnings (e.g. "running over TCP") off the grader's screen
            extra_arguments=[] if kernel_name else ["--IPKernelApp.log_level=ERROR"],
        )
        cell_number = 0
        try:
            with client.setup_kernel(cleanup_kc=True, env=_kernel_env()):
                deadline = time.monotonic() + timeout
                for index, cell in enumerate(nb.cells):
                    cell_number = index + 1
                    if cell.cell_type != "code":
                        continue
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise CellTimeoutError(f"no time left before cell {cell_number}")
                    client.timeout = max(1, math.ceil(remaining))
                    client.execute_cell(cell, index)
        except CellTimeoutError:
            note = f"timed out after {timeout:g} s (in cell {cell_number})"
        except CellExecutionError as error:
            evalue = str(error.evalue).strip().splitlines()[0] if str(error.evalue).strip() else ""
            note = f"stopped by {error.ename} in cell {cell_number}" + (f": {evalue}" if evalue else "")
        except DeadKernelError:
            note = f"the kernel died in cell {cell_number} (out of memory?)"
        except Exception as error:
            note = f"could not run the notebook ({type(error).__name__}: {error})"
    if executed_path is not None:
        nb.metadata[EXECUTED_MARK] = True  # so that grading a folder holding it skips it
        Path(executed_path).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, executed_path)
    return NotebookRun(path, read_check_results(nb), note, time.monotonic() - started)


# --------------------------------------------------------------------------- the table


@dataclass
class StudentGrade:
    """One row: a student's score (0 or 1) per exercise id, and notes on what went wrong."""

    student: str
    scores: dict[str, int]
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.scores.values())


@dataclass
class GradeTable:
    """Students × exercises: 1 = passed, 0 = failed or never reached; then total, percent, notes."""

    exercises: list[str]
    rows: list[StudentGrade]

    def percent(self, row: StudentGrade) -> float:
        return round(100 * row.total / len(self.exercises), 1) if self.exercises else 0.0

    def header(self) -> list[str]:
        return ["student", *self.exercises, "total", "percent", "notes"]

    def records(self) -> list[list[str]]:
        """The rows as strings, in `header()` order (what the CSV holds)."""
        return [
            [row.student, *(str(row.scores.get(e, 0)) for e in self.exercises),
             str(row.total), f"{self.percent(row):.1f}", "; ".join(row.notes)]
            for row in self.rows
        ]

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


def _student_of(notebook: Path, folder: Path) -> str:
    parts = notebook.relative_to(folder).parts
    return parts[0] if len(parts) > 1 else notebook.stem


def _is_graded_copy(path: Path) -> bool:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("metadata", {}).get(EXECUTED_MARK) is True
    except (OSError, ValueError, AttributeError):
        return False  # unreadable: let run_notebook report it


def _find_notebooks(folder: Path, skip: Path | None = None) -> list[Path]:
    found = []
    for path in sorted(folder.rglob("*.ipynb")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):  # .ipynb_checkpoints, hidden folders
            continue
        if skip is not None and path.resolve().is_relative_to(skip.resolve()):
            continue
        if _is_graded_copy(path):
            continue
        found.append(path)
    return found


def _exercise_columns(notebooks: list[Path], runs: list[NotebookRun]) -> list[str]:
    """Every exercise of every chapter the notebooks belong to (by file name "05_..." or by the checks run)."""
    from labkit.exercises import chapter_exercises

    chapters = {m.group(1) for nb in notebooks if (m := re.match(r"(\d{2})[a-z]?_", nb.name))}
    for run in runs:
        chapters |= {m.group(1) for e in run.results if (m := re.fullmatch(r"(\d{2})\.\d+", e))}
    return [ex.id for chapter in sorted(chapters) for ex in chapter_exercises(chapter)]


def grade(
    folder: str | Path,
    timeout: float = 300,
    out_csv: str | Path | None = None,
    kernel_name: str | None = None,
    executed_dir: str | Path | None = None,
    verbose: bool = False,
) -> GradeTable:
    """Execute every notebook under `folder` and score each student's exercises.

    timeout: seconds per notebook. out_csv: where to write the table (not written if None).
    kernel_name: a Jupyter kernel to use instead of this Python. executed_dir: keep the
    executed notebooks there, to see what a student's run printed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder of submissions at {folder}")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    notebooks = _find_notebooks(folder, skip=Path(executed_dir) if executed_dir else None)
    runs = []
    for notebook in notebooks:
        relative = notebook.relative_to(folder)
        executed = Path(executed_dir) / relative if executed_dir else None
        run = run_notebook(notebook, timeout=timeout, kernel_name=kernel_name, executed_path=executed)
        runs.append(run)
        if verbose:
            passed = sum(run.results.values())
            print(f"{relative}: {passed} of {len(run.results)} checks passed ({run.seconds:.1f} s)"
                  + (f" — {run.note}" if run.note else ""), flush=True)

    exercises = _exercise_columns(notebooks, runs)
    students: dict[str, StudentGrade] = {}
    for notebook, run in zip(notebooks, runs):
        student = _student_of(notebook, folder)
        row = students.setdefault(student, StudentGrade(student, {e: 0 for e in exercises}))
        for exercise_id, passed in run.results.items():
            if exercise_id in row.scores and passed:
                row.scores[exercise_id] = 1  # passed in any of the student's notebooks
        if run.note:
            row.notes.append(f"{notebook.name}: {run.note}")
    table = GradeTable(exercises, [students[name] for name in sorted(students)])
    if out_csv is not None:
        table.to_csv(out_csv)
    return table


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m labkit grade FOLDER [--timeout S] [--out FILE]`: grade and print the table.

    `argv` may start with the word "grade" or not.
    """
    import sys

    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in and args_in[0] == "grade" and not Path("grade").is_dir():
        args_in = args_in[1:]
    parser = argparse.ArgumentParser(
        prog="python -m labkit grade",
        description="Run every notebook under FOLDER and write a per-student, per-exercise score table (CSV).",
    )
    parser.add_argument("folder", type=Path, help="submissions: FOLDER/<student>/*.ipynb or FOLDER/<student>.ipynb")
    parser.add_argument("--timeout", type=float, default=300, metavar="S", help="seconds per notebook (default 300)")
    parser.add_argument("--out", type=Path, default=Path("grades.csv"), metavar="FILE",
                        help="CSV file to write (default grades.csv)")
    parser.add_argument("--kernel", default=None, metavar="NAME",
                        help="Jupyter kernel to run the notebooks with (default: this Python)")
    parser.add_argument("--keep-executed", type=Path, default=None, metavar="DIR",
                        help="save the executed notebooks in DIR")
    args = parser.parse_args(args_in)
    if not args.folder.is_dir():
        parser.error(f"no folder at {args.folder}")
    if not args.timeout > 0:
        parser.error(f"--timeout must be > 0 seconds, got {args.timeout:g}")
    if not _find_notebooks(args.folder, skip=args.keep_executed):
        print(f"no notebooks (.ipynb) found under {args.folder}", file=sys.stderr)
        return 1
    table = grade(args.folder, timeout=args.timeout, out_csv=args.out, kernel_name=args.kernel,
                  executed_dir=args.keep_executed, verbose=True)
    print()
    print(table)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
