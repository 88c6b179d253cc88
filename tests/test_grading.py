"""Grading: each notebook runs sandboxed, scores come only from signed checks, the batch always
finishes, and the CSV is written a row at a time and resumed.

The adversarial submissions below are what a student trying to cheat or to break the batch
would hand in (issue 16): forged check output, reading the grades, writing outside its folder,
rewriting another submission, leaving a process behind, killing its parent. They run in the
strongest sandbox this machine has (bubblewrap in CI), and the ones that the "none" level does
not stop are also run there, to pin down what that level does and does not do.
"""
from __future__ import annotations

import base64
import csv
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from labkit.course import grading, grading_runner, sandbox
from labkit.course.exercises import MIME_TYPE, chapter_exercises
from labkit.course.grading import GradeTable, NotebookRun, StudentGrade, grade, verified_results
from labkit.course.grading_kernel import sign

REPO = Path(__file__).resolve().parent.parent
IDS_00 = [ex.id for ex in chapter_exercises("00")]  # chapter 00's exercises: the columns of its grade table
HEADER = ["student", *IDS_00, "total", "percent", "status", "isolation", "notes"]
IMPORTS = "import torch\nfrom labkit.course.exercises import check"
ONES = 'check("00.1", torch.ones(3, 4))'


def _row(student: str, passed: set[str], status: str, isolation: str, notes: str = "") -> list[str]:
    """The grades.csv row of a student who passed the exercises in `passed` (of chapter 00's)."""
    return [student, *(str(int(ex in passed)) for ex in IDS_00), str(len(passed)),
            f"{100 * len(passed) / len(IDS_00):.1f}", status, isolation, notes]
COUNT = ('def count_parameters(model):\n'
         '    return sum(p.numel() for p in model.parameters() if p.requires_grad)\n'
         'check("00.2", count_parameters)')
COUNT_STUB = ('def count_parameters(model):\n'
              '    raise NotImplementedError  # TODO: your code here\n'
              'check("00.2", count_parameters)')
SAMPLE = ('def seeded_sample(seed):\n'
          '    torch.manual_seed(seed)\n'
          '    return torch.randn(5)\n'
          'check("00.3", seeded_sample)')
# The check-result mime type, spelt so that the grader's scan of the code does not see it: these
# forgeries must be caught by the missing signature, not by the scan.
FORGE = ("from IPython.display import display\nimport base64\n"
         f"mime = base64.b64decode({base64.b64encode(MIME_TYPE.encode()).decode()!r}).decode()\n")
FORGED_PASSES = FORGE + ('for ex in ("00.1", "00.2", "00.3"):\n'
                         '    display({mime: {"exercise": ex, "passed": True, "message": "✓ " + ex}, "text/plain": "✓"}, raw=True)')
FORGED_SIGNATURE = FORGE + ('display({mime: {"exercise": "00.1", "passed": True, "message": "✓",\n'
                            '                "grader": {"run": "0", "seq": 1, "mac": "0" * 64}}, "text/plain": "✓"}, raw=True)')

STRONGEST = sandbox.detect("auto")
needs_sandbox = pytest.mark.skipif(STRONGEST.name == "none", reason=f"no sandbox works on this machine: {STRONGEST.why}")


def _write(path: Path, *cells) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(new_notebook(cells=list(cells)), path)
    return path


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.reader(file))


def _by_student(path: Path) -> dict[str, dict[str, str]]:
    rows = _rows(path)
    return {row[0]: dict(zip(rows[0], row)) for row in rows[1:]}


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                pass
    return [pid for pid in found if pid != os.getpid()]


# --------------------------------------------------------------------------- signatures, without kernels


def _signed(key: bytes, run: str, seq: int, exercise: str, passed: bool) -> dict:
    return {"exercise": exercise, "passed": passed, "message": "",
            "grader": {"run": run, "seq": seq, "mac": sign(key, run, seq, exercise, passed)}}


def test_only_results_signed_for_this_run_count_and_the_last_one_wins():
    key, run = b"k" * 32, "run1"
    good_fail = _signed(key, run, 3, "00.1", False)
    flipped = dict(_signed(key, run, 4, "00.2", False), passed=True)          # verdict changed after signing
    other_run = _signed(b"x" * 32, "run0", 5, "00.3", True)                  # signed with another key
    replayed_as = dict(_signed(key, run, 6, "00.1", True), exercise="00.3")  # a pass moved to another exercise
    results, forged = verified_results([
        (_signed(key, run, 1, "00.1", True), 2), (json.dumps(_signed(key, run, 2, "00.2", True)), 3),
        (good_fail, 4), (flipped, 5), (other_run, 6), (replayed_as, 7),
        ({"exercise": "00.3", "passed": True, "message": "✓"}, 8), ("not json", 9),
    ], run, key)
    assert results == {"00.1": False, "00.2": True}  # 00.1: seq 3 (a fail) came after seq 1
    assert [f.split(":")[0] for f in forged] == ["cell 5", "cell 6", "cell 7", "cell 8", "cell 9"]
    assert "did not sign" in forged[3] and "wrong signature" in forged[0]


def test_the_scan_names_the_graders_private_machinery():
    nb = new_notebook(cells=[new_code_cell("x = 1  # _REGISTRY in a comment counts too"), new_markdown_cell("_run_check"),
                             new_code_cell("import labkit.course.exercises as e\ne._run_check = None"),
                             new_code_cell('sys.modules["_labkit_grader"]'), new_code_cell("check('00.1', ones)")])
    assert grading._tamper_marks(nb) == ["cell 1: _REGISTRY", "cell 3: _run_check", "cell 4: _labkit_grader"]


def test_the_grader_and_the_checks_agree_on_the_result_format():
    assert grading.CHECK_MIME_TYPE == MIME_TYPE


def test_what_is_not_a_notebook():
    assert grading._read_notebook(b"not json")[1].startswith("cannot be read as a notebook (NotJSONError")
    assert grading._read_notebook(b"\xff\xfe")[1].startswith("cannot be read as a notebook (UnicodeDecodeError")
    assert grading._read_notebook(b'{"cells": 3, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')[0] is None
    assert grading._read_notebook(nbformat.writes(new_notebook(cells=[new_code_cell("1")])).encode())[1] == ""


# --------------------------------------------------------------------------- the table and the CSV, without kernels


def test_student_names_come_from_the_folder_or_the_notebook(tmp_path):
    assert grading._student_of(tmp_path / "alice" / "sub" / "05_cnn.ipynb", tmp_path) == "alice"
    assert grading._student_of(tmp_path / "bob.ipynb", tmp_path) == "bob"


def test_table_text_and_csv(tmp_path):
    table = GradeTable(["00.1", "00.2", "00.3"], [
        StudentGrade("ann", {"00.1": 1, "00.2": 1, "00.3": 0}, ["x.ipynb: timed out at cell 3"], "timed out at cell 3", "bwrap"),
        StudentGrade("ben", {"00.1": 0, "00.2": 0, "00.3": 0}, isolation="bwrap"),
    ])
    path = table.to_csv(tmp_path / "out" / "g.csv")
    assert path.read_text(encoding="utf-8").splitlines() == [
        "student,00.1,00.2,00.3,total,percent,status,isolation,notes",
        "ann,1,1,0,2,66.7,timed out at cell 3,bwrap,x.ipynb: timed out at cell 3",
        "ben,0,0,0,0,0.0,graded,bwrap,",
    ]
    assert str(table).splitlines()[1].startswith("ann      1     1     0     2      66.7     timed out at cell 3")


def _fake_batch(monkeypatch, folder: Path, outcomes: dict[str, NotebookRun], ran: list[str]) -> None:
    def fake_run(source, name, timeout, isolation, executed, startup_timeout, memory_bytes):
        ran.append(name)
        return outcomes[name]

    monkeypatch.setattr(grading, "_run_submission", fake_run)


def test_main_aggregates_a_students_notebooks(tmp_path, monkeypatch, capsys):
    """A pass in any of a student's notebooks counts; the most serious status is the row's; a
    tampered notebook zeroes the row; notes name the notebook; the isolation is printed and recorded."""
    folder = tmp_path / "subs"
    for name in ("alice/00_setup.ipynb", "alice/00_setup_retry.ipynb", "bob.ipynb", "carl.ipynb",
                 "alice/.ipynb_checkpoints/x.ipynb"):
        _write(folder / name, new_code_cell("pass"))
    outcomes = {
        "00_setup.ipynb": NotebookRun(Path(), {"00.1": True, "00.2": False}, "stopped by ValueError: no", 1, "error", 2),
        "00_setup_retry.ipynb": NotebookRun(Path(), {"00.1": False, "00.2": True, "99.9": True}),
        "bob.ipynb": NotebookRun(Path(), {"00.3": True}),
        "carl.ipynb": NotebookRun(Path(), {}, "scores set to 0: cell 1: forged", 1, "tampered"),
    }
    ran: list[str] = []
    _fake_batch(monkeypatch, folder, outcomes, ran)
    out = tmp_path / "grades.csv"
    assert grading.main(["grade", str(folder), "--timeout", "7", "--out", str(out), "--isolation", "none"]) == 0
    assert ran == ["00_setup.ipynb", "00_setup_retry.ipynb", "bob.ipynb", "carl.ipynb"]
    assert _rows(out) == [
        HEADER,
        _row("alice", {"00.1", "00.2"}, "error at cell 2 (00_setup.ipynb)", "none",
             "00_setup.ipynb: error at cell 2: stopped by ValueError: no"),
        _row("bob", {"00.3"}, "graded", "none"),
        _row("carl", set(), "tampered", "none", "carl.ipynb: tampered: scores set to 0: cell 1: forged"),
    ]
    printed = capsys.readouterr().out
    assert printed.startswith("isolation: none: NO SANDBOX")
    assert "alice/00_setup.ipynb: error at cell 2, 1 of 2 checks passed" in printed and f"wrote {out}" in printed


def test_a_rerun_resumes_and_regrade_grades_again(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "subs"
    for name in ("ann.ipynb", "ben.ipynb", "cat.ipynb"):
        _write(folder / name, new_code_cell('check("00.1", x)'))
    out = tmp_path / "grades.csv"
    # a grader stopped while writing ben's row: ann's row is whole, ben's is cut off
    out.write_text(",".join(HEADER) + "\n" + ",".join(_row("ann", {"00.1"}, "graded", "bwrap")) + "\nben,1,0",
                   encoding="utf-8")
    ran: list[str] = []
    _fake_batch(monkeypatch, folder, {n: NotebookRun(Path(), {"00.2": True}) for n in ("ann.ipynb", "ben.ipynb", "cat.ipynb")}, ran)
    grade(folder, timeout=5, out_csv=out, isolation="none", verbose=True)
    assert ran == ["ben.ipynb", "cat.ipynb"]
    assert "ann: already in" in capsys.readouterr().out
    assert _rows(out)[1:] == [_row("ann", {"00.1"}, "graded", "bwrap"), _row("ben", {"00.2"}, "graded", "none"),
                              _row("cat", {"00.2"}, "graded", "none")]
    ran.clear()
    grade(folder, timeout=5, out_csv=out, isolation="none", regrade=["ann"])
    assert ran == ["ann.ipynb"] and [r[0] for r in _rows(out)[1:]] == ["ben", "cat", "ann"]
    assert _by_student(out)["ann"]["00.2"] == "1"
    ran.clear()
    assert grading.main([str(folder), "--out", str(out), "--isolation", "none", "--regrade"]) == 0
    assert ran == ["ann.ipynb", "ben.ipynb", "cat.ipynb"]


def test_a_grade_file_for_other_exercises_is_not_mixed_in(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "subs"
    _write(folder / "ann.ipynb", new_code_cell('check("00.1", x)'))
    out = tmp_path / "grades.csv"
    out.write_text("student,05.1,total,percent,status,isolation,notes\n", encoding="utf-8")
    _fake_batch(monkeypatch, folder, {}, [])
    assert grading.main([str(folder), "--out", str(out), "--isolation", "none"]) == 2
    error = capsys.readouterr().err
    assert f"{out} holds a table with the columns student, 05.1" in error and "pass --regrade" in error


def test_main_refuses_bad_input(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert grading.main([str(tmp_path / "empty")]) == 1
    assert "no notebooks" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        grading.main([str(tmp_path / "missing")])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        grading.main([str(tmp_path / "empty"), "--timeout", "-3"])
    with pytest.raises(ValueError, match="timeout must be > 0"):
        grade(tmp_path / "empty", timeout=0)
    with pytest.raises(ValueError, match="isolation must be one of auto, bwrap, unshare, none; got 'docker'"):
        grade(tmp_path / "empty", isolation="docker")


def test_a_level_that_does_not_work_says_why(monkeypatch):
    monkeypatch.setattr(sandbox, "_DETECTED", {})
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match=r"isolation 'bwrap' does not work on this machine \(bwrap: bwrap is not installed"):
        sandbox.detect("bwrap")
    fallback = sandbox.detect("auto")
    assert fallback.name == "none" and "bwrap: bwrap is not installed" in fallback.why
    assert "unshare: unshare is not installed" in str(fallback)


def test_the_sandbox_shows_only_what_the_kernel_needs(tmp_path):
    view = sandbox.View(workdir=tmp_path / "work", scratch=tmp_path / "root", writable=[tmp_path / "ipc"],
                        read_only=[REPO / "labkit", REPO / "labkit" / "checks", Path(sys.prefix)])
    args = sandbox.Isolation("bwrap", "").wrap(["python"], view)
    binds = [(args[i], args[i + 1]) for i, a in enumerate(args) if a in ("--bind", "--ro-bind")]
    assert ("--bind", str(tmp_path / "work")) in binds and ("--bind", str(tmp_path / "ipc")) in binds
    assert ("--ro-bind", str(REPO / "labkit")) in binds and ("--ro-bind", str(REPO / "labkit" / "checks")) not in binds
    shown = {a[1] for a in binds}
    assert str(REPO) not in shown and "/" not in shown and "/etc" not in shown and "/etc/passwd" in shown
    assert "--unshare-all" in args and args[args.index("--uid") + 1] == "65534" and "--die-with-parent" in args
    assert args.index("--tmpfs") < args.index(str(tmp_path / "work"))  # /tmp first, then the run's folders in it
    assert sandbox.Isolation("none", "").wrap(["python", "-c", "1"], view) == ["python", "-c", "1"]


# --------------------------------------------------------------------------- real kernels


@pytest.mark.slow
def test_grade_executes_notebooks_and_writes_exact_scores(tmp_path):
    folder = tmp_path / "submissions"
    alice = _write(folder / "alice" / "00_setup.ipynb",
                   new_markdown_cell("# Setup"), new_code_cell(IMPORTS), new_code_cell(ONES),
                   new_code_cell(COUNT), new_code_cell(SAMPLE), new_code_cell("import sys\nprint(sys.prefix)"))
    (folder / "alice" / ".ipynb_checkpoints").mkdir()
    (folder / "alice" / ".ipynb_checkpoints" / "00_setup-checkpoint.ipynb").write_bytes(alice.read_bytes())
    # bob: a wrong answer, an untouched stub, then an exception; the last cell carries a saved ✓
    # output (a signed one, even) that must not count, since that cell never runs
    saved = nbformat.v4.new_output("display_data", data={MIME_TYPE: _signed(b"k" * 32, "r", 1, "00.3", True)})
    bob = _write(folder / "bob.ipynb",
                 new_code_cell(IMPORTS), new_code_cell('check("00.1", torch.zeros(3, 4))'), new_code_cell(COUNT_STUB),
                 new_code_cell("1 / 0"), new_code_cell(SAMPLE, outputs=[saved]))
    out, executed = tmp_path / "grades.csv", tmp_path / "executed"
    table = grade(folder, timeout=60, out_csv=out, executed_dir=executed)
    level = STRONGEST.name
    assert _rows(out) == [
        HEADER,
        _row("alice", {"00.1", "00.2", "00.3"}, "graded", level),
        _row("bob", set(), "error at cell 4", level, "bob.ipynb: error at cell 4: stopped by ZeroDivisionError: division by zero"),
    ]
    assert [row.student for row in table.rows] == ["alice", "bob"]
    alice_run = nbformat.read(executed / "alice" / "00_setup.ipynb", as_version=4)
    assert alice_run.cells[-1].outputs[0]["text"].strip() == sys.prefix  # this very environment
    shown = [o["data"][MIME_TYPE] for o in alice_run.cells[2].outputs if MIME_TYPE in o.get("data", {})]
    assert shown[0]["passed"] is True and set(shown[0]["grader"]) == {"run", "seq", "mac"}
    assert sorted(p.relative_to(executed).as_posix() for p in executed.rglob("*.ipynb")) == ["alice/00_setup.ipynb", "bob.ipynb"]
    assert grading._find_notebooks(tmp_path) == [alice, bob]  # executed copies are marked, and skipped
    assert nbformat.read(bob, as_version=4).cells[1].outputs == []  # the submissions are untouched


# --- one batch of adversarial submissions, run once per level, then looked at case by case

def _attempt(code: str) -> str:
    """`code` in a try: an attempt that fails (as it should, in a sandbox) lets the next cell try another."""
    body = "\n".join("    " + line for line in code.splitlines())
    return f"import os, signal, time\ntry:\n{body}\nexcept OSError as error:\n    print('failed:', error)\ntime.sleep(1)"


KILL_PARENT = _attempt("print('my parent is', os.getppid(), flush=True)\nos.kill(os.getppid(), signal.SIGKILL)")
KILL_PARENT_GROUP = _attempt("os.killpg(os.getpgid(os.getppid()), signal.SIGKILL)")
# kill(-1) signals every process the kernel may signal: guarded so that it can only run as the
# sandbox's uid 65534 (were the sandbox missing, the root running these tests would lose its machine)
KILL_EVERYTHING = _attempt("if os.getuid() == 65534:\n    os.kill(-1, signal.SIGKILL)")
KILL_ITSELF = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"


def _eve(course: Path, tmp_marker: Path, process_marker: str) -> list:
    """Reads the grades, writes outside her folder, rewrites bob's submission, leaves a process."""
    previous, grades, bob = course / "grades-2025.csv", course / "grades.csv", course / "subs" / "b_bob" / "00_setup.ipynb"
    zeros = nbformat.writes(new_notebook(cells=[new_code_cell(IMPORTS), new_code_cell('check("00.1", torch.zeros(3, 4))')]))
    spy = (f"import json, os\nseen = {{}}\nfor path in {[str(previous), str(grades), str(bob)]!r}:\n"
           "    try:\n        seen[path] = open(path).read()[:300]\n"
           "    except OSError as error:\n        seen[path] = f'ERR {type(error).__name__}'\n"
           f"try:\n    seen['listing'] = os.listdir({str(course)!r})\nexcept OSError as error:\n"
           "    seen['listing'] = f'ERR {type(error).__name__}'\nprint(json.dumps(seen))")
    vandal = (f"for path, text in [({str(tmp_marker)!r}, 'eve'), ({str(course / 'eve-was-here')!r}, 'eve'),\n"
              f"                   ({str(bob)!r}, {zeros!r})]:\n"
              "    try:\n        open(path, 'w').write(text); print('wrote', path)\n"
              "    except OSError as error:\n        print('could not write', path, type(error).__name__)")
    daemon = ("import subprocess, sys\ncode = 'import os, time\\nif os.fork(): os._exit(0)\\nos.setsid()\\ntime.sleep(300)'\n"
              f"subprocess.Popen([sys.executable, '-c', code, {process_marker!r}], start_new_session=True)\n"
              "import time; time.sleep(0.5)")
    return [new_code_cell(spy), new_code_cell(vandal), new_code_cell(daemon)]


def _adversarial_batch(course: Path, level: str, everyone: bool = True) -> dict:
    """Grade the adversarial submissions at `level`; `everyone=False` leaves out the cases that do
    not depend on the level (another signature forgery, a time-out, a file that is not a notebook)."""
    subs = course / "subs"
    marker = f"labkit-test-{os.getpid()}-{level}-{time.monotonic_ns()}"
    tmp_marker = Path("/tmp") / f"{marker}.txt"
    course.mkdir(parents=True)
    (course / "grades-2025.csv").write_text("student,total\nzoe,SECRET-PREVIOUS-GRADE\n", encoding="utf-8")
    _write(subs / "a_eve" / "00_setup.ipynb", *_eve(course, tmp_marker, marker))
    _write(subs / "b_bob" / "00_setup.ipynb", new_code_cell(IMPORTS), new_code_cell(ONES))
    killer = [KILL_PARENT, KILL_PARENT_GROUP, KILL_EVERYTHING if level != "none" else "pass", KILL_ITSELF]
    _write(subs / "c_killer" / "00_setup.ipynb", *[new_code_cell(c) for c in killer])
    _write(subs / "d_mallory" / "00_setup.ipynb", new_code_cell(FORGED_PASSES))
    if everyone:
        _write(subs / "e_oscar" / "00_setup.ipynb", new_code_cell(FORGED_SIGNATURE))
        _write(subs / "f_slow" / "00_setup.ipynb", new_code_cell(IMPORTS), new_code_cell(ONES),
               new_code_cell("import time\ntime.sleep(600)"), new_code_cell(COUNT))
        (subs / "g_junk.ipynb").write_text("{ this is not a notebook", encoding="utf-8")
        # asks for 6 GiB under the batch's 2 GiB limit: refused at once (the memory is never touched)
        _write(subs / "g_hog" / "00_setup.ipynb", new_code_cell(IMPORTS), new_code_cell(ONES),
               new_code_cell("hog = torch.empty(3 * 2**29, dtype=torch.float32)"), new_code_cell(COUNT))
    _write(subs / "h_zed" / "00_setup.ipynb", new_code_cell("print('zed')"))
    bob_before = (subs / "b_bob" / "00_setup.ipynb").read_bytes()
    started = time.monotonic()
    table = grade(subs, timeout=10, out_csv=course / "grades.csv", executed_dir=course.parent / f"executed-{level}",
                  isolation=level, memory_gib=2)
    seconds = time.monotonic() - started
    alive = _processes_with(marker)
    for pid in alive:  # leave the machine clean even when the test fails
        os.kill(pid, signal.SIGKILL)
    eve = nbformat.read(course.parent / f"executed-{level}" / "a_eve" / "00_setup.ipynb", as_version=4)
    return {"table": table, "rows": _by_student(course / "grades.csv"), "seconds": seconds, "alive": alive,
            "eve_saw": json.loads(eve.cells[0].outputs[0]["text"]), "eve_wrote": eve.cells[1].outputs[0]["text"],
            "tmp_marker": tmp_marker, "course": course, "bob_before": bob_before, "level": level}


@pytest.fixture(scope="module")
def strongest_batch(tmp_path_factory):
    batch = _adversarial_batch(tmp_path_factory.mktemp("strongest") / "course", STRONGEST.name)
    yield batch
    batch["tmp_marker"].unlink(missing_ok=True)


@pytest.fixture(scope="module")
def unsandboxed_batch(tmp_path_factory):
    batch = _adversarial_batch(tmp_path_factory.mktemp("none") / "course", "none", everyone=False)
    yield batch
    batch["tmp_marker"].unlink(missing_ok=True)


@pytest.fixture(params=["strongest", "none"])
def batch(request):
    if request.param == "strongest" and STRONGEST.name == "none":
        pytest.skip(f"no sandbox works on this machine: {STRONGEST.why}")
    return request.getfixturevalue(f"{'strongest' if request.param == 'strongest' else 'unsandboxed'}_batch")


@pytest.mark.slow
def test_forged_check_output_scores_nothing_and_is_reported(batch):
    """A notebook that does no exercise but displays ✓ results itself (issue 16) scored 100 %."""
    forgers = [s for s in ("d_mallory", "e_oscar") if s in batch["rows"]]
    for student in forgers:
        row = batch["rows"][student]
        assert (row["00.1"], row["00.2"], row["00.3"], row["total"], row["status"]) == ("0", "0", "0", "0", "tampered")
    assert "cell 1: a check result for '00.1' that the grader did not sign" in batch["rows"]["d_mallory"]["notes"]
    if "e_oscar" in forgers:
        assert "cell 1: a check result for '00.1' with a wrong signature" in batch["rows"]["e_oscar"]["notes"]


@pytest.mark.slow
def test_a_submission_that_kills_its_parent_ends_only_its_own_run(batch):
    """Killing its parent ended the whole grader (issue 16): no CSV, no rows for those after it."""
    rows = batch["rows"]
    assert list(rows)[:3] == ["a_eve", "b_bob", "c_killer"] and list(rows)[-1] == "h_zed"
    killer = rows["c_killer"]
    if batch["level"] == "none":  # its parent is the runner: that run ends, and only that run
        assert killer["status"] == "crashed at cell 1" and "its runner process died" in killer["notes"]
    elif batch["level"] == "unshare":  # the kernel shares its parent's process group: killing that group ends it
        assert killer["status"] == "crashed at cell 2" and "the kernel died" in killer["notes"]
    else:  # bwrap: its parent is the sandbox's init, and kill(-1) reaches only the sandbox: all miss, until it kills itself
        assert killer["status"] == "crashed at cell 4" and "the kernel died" in killer["notes"]
    assert rows["h_zed"]["status"] == "graded"  # queued after it, graded
    assert all(row["isolation"] == batch["level"] for row in rows.values())


@pytest.mark.slow
def test_every_student_gets_a_row_with_a_clear_status(strongest_batch):
    rows = strongest_batch["rows"]
    assert list(rows) == ["a_eve", "b_bob", "c_killer", "d_mallory", "e_oscar", "f_slow", "g_hog", "g_junk", "h_zed"]
    assert rows["f_slow"]["status"] == "timed out at cell 3" and rows["f_slow"]["00.1"] == "1"  # scores before it count
    assert rows["g_junk"]["status"] == "not a notebook"
    assert "cannot be read as a notebook (NotJSONError" in rows["g_junk"]["notes"]
    assert rows["b_bob"]["status"] == rows["a_eve"]["status"] == "graded"
    assert strongest_batch["seconds"] < 150


@pytest.mark.slow
def test_a_notebook_that_asks_for_too_much_memory_gets_an_error_and_the_batch_goes_on(strongest_batch):
    """No memory limit existed: one notebook could take the machine's memory, and the grader's with it."""
    hog = strongest_batch["rows"]["g_hog"]
    assert hog["status"] == "error at cell 3" and hog["00.1"] == "1"       # the cells before it still count
    assert "DefaultCPUAllocator: can't allocate memory" in hog["notes"]
    assert "over the grader's memory limit of 2 GiB a notebook: --memory" in hog["notes"]
    assert strongest_batch["rows"]["h_zed"]["status"] == "graded"


FILL_TMP = """import json, os
written = {}
for folder in ("/tmp", "/dev/shm"):
    n = 0
    try:
        with open(os.path.join(folder, "fill"), "wb") as file:
            while n < 2**30:
                file.write(b"x" * 2**20)
                n += 2**20
    except OSError as error:
        print(folder, type(error).__name__, error.errno)
    os.remove(os.path.join(folder, "fill"))
    written[folder] = n
print(json.dumps(written))"""


@pytest.mark.slow
@needs_sandbox
@pytest.mark.parametrize("level", ["strongest", "unshare"])
def test_a_sandboxed_notebooks_tmp_holds_no_more_than_the_memory_limit(tmp_path, level):
    """/tmp and /dev/shm are in memory in a sandbox (tmpfs): unbounded, a notebook could fill the machine's
    memory through them, where the data limit does not look."""
    level = STRONGEST.name if level == "strongest" else level
    if sandbox._probe(level):
        pytest.skip(f"{level} does not work here: {sandbox._probe(level)}")
    _write(tmp_path / "subs" / "filler.ipynb", new_code_cell(FILL_TMP))
    grade(tmp_path / "subs", timeout=60, out_csv=tmp_path / "grades.csv", executed_dir=tmp_path / "executed",
          isolation=level, memory_gib=0.5)
    outputs = nbformat.read(tmp_path / "executed" / "filler.ipynb", as_version=4).cells[0].outputs
    text = "".join(output.get("text", "") for output in outputs)
    lines = text.strip().splitlines()
    assert lines[:2] == ["/tmp OSError 28", "/dev/shm OSError 28"], text  # ENOSPC: No space left on device
    written = json.loads(lines[-1])
    assert all(2**28 < n <= 2**29 for n in written.values()), written  # up to 0.5 GiB each, not the 1 GiB asked
    assert _by_student(tmp_path / "grades.csv")["filler"]["status"] == "graded"


def test_the_kernel_prelude_limits_memory_and_puts_the_kernel_first_for_the_oom_killer():
    if not sys.platform.startswith("linux"):
        pytest.skip("RLIMIT_DATA and oom_score_adj are Linux's")
    probe = ("import resource; print(resource.getrlimit(resource.RLIMIT_DATA)[0], "
             "open('/proc/self/oom_score_adj').read().strip())")
    for limit, expected in ((3 * 2**30, f"{3 * 2**30} 1000"), (0, f"{resource.RLIM_INFINITY} 1000")):
        done = subprocess.run([sys.executable, "-I", "-S", "-c", grading_runner.KERNEL_PRELUDE, str(os.getpid()),
                               str(limit), sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
        assert done.stdout.strip() == expected, done.stderr


def test_the_memory_limit_is_checked_and_defaults_to_half_the_machine(tmp_path, capsys):
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert abs(grading.default_memory_gib() - total / 2 / 2**30) <= 0.05
    assert grading._memory_bytes(None) == int(grading.default_memory_gib() * 2**30)
    assert grading._memory_bytes(0) == 0 and grading._memory_bytes(1.5) == 3 * 2**29
    for bad in (-1, "4", True):
        with pytest.raises(ValueError, match="memory must be a number of GiB ≥ 0"):
            grading._memory_bytes(bad)
    (tmp_path / "subs").mkdir()
    with pytest.raises(SystemExit):
        grading.main(["grade", str(tmp_path / "subs"), "--memory", "-2"])
    assert "--memory must be a number of GiB ≥ 0 (0: no limit), got -2" in capsys.readouterr().err


@pytest.mark.slow
def test_a_submission_cannot_change_another_one_before_it_is_graded(batch):
    """Eve rewrote bob's notebook (runs before his) with a wrong answer; bob was graded on his own."""
    assert batch["rows"]["b_bob"]["00.1"] == "1"
    bob = batch["course"] / "subs" / "b_bob" / "00_setup.ipynb"
    if batch["level"] == "none":
        assert f"wrote {bob}" in batch["eve_wrote"]  # without a sandbox the file itself changed
    else:
        assert f"could not write {bob}" in batch["eve_wrote"] and bob.read_bytes() == batch["bob_before"]


@pytest.mark.slow
def test_nothing_a_submission_started_is_left_running(batch):
    assert batch["alive"] == []


@pytest.mark.slow
@needs_sandbox
def test_a_sandboxed_submission_sees_no_grades_no_submissions_and_writes_nothing_outside(strongest_batch):
    batch = strongest_batch
    course = batch["course"]
    saw = batch["eve_saw"]
    assert saw[str(course / "grades-2025.csv")].startswith("ERR")
    assert saw[str(course / "grades.csv")].startswith("ERR")
    assert saw[str(course / "subs" / "b_bob" / "00_setup.ipynb")].startswith("ERR")
    assert saw["listing"].startswith("ERR")
    assert "SECRET" not in json.dumps(saw)
    assert not batch["tmp_marker"].exists() and not (course / "eve-was-here").exists()


@pytest.mark.slow
def test_without_a_sandbox_the_grader_says_what_is_not_isolated(unsandboxed_batch):
    """The "none" level: the same scores, but eve read the grades and wrote outside; every row says "none"."""
    batch = unsandboxed_batch
    assert "SECRET-PREVIOUS-GRADE" in batch["eve_saw"][str(batch["course"] / "grades-2025.csv")]
    assert batch["tmp_marker"].exists()
    assert {row["isolation"] for row in batch["rows"].values()} == {"none"}
    assert "NO SANDBOX" in sandbox.detect("none").summary


@pytest.mark.slow
@pytest.mark.skipif(sandbox._probe("unshare") != "", reason="user namespaces (unshare) do not work here")
def test_the_unshare_level_hides_the_grades_too(tmp_path):
    course = tmp_path / "course"
    (course / "grades-2025.csv").parent.mkdir(parents=True)
    (course / "grades-2025.csv").write_text("SECRET", encoding="utf-8")
    _write(course / "subs" / "eve.ipynb", new_code_cell(
        f"import os\ntry:\n    print(open({str(course / 'grades-2025.csv')!r}).read())\nexcept OSError as e:\n"
        f"    print('ERR', type(e).__name__)\nprint(os.getuid(), os.path.exists({str(course)!r}))\n"
        "import socket\ntry:\n    socket.create_connection(('1.1.1.1', 53), timeout=2)\nexcept OSError as e:\n"
        "    print('NONET', e.errno)"))
    grade(course / "subs", timeout=20, out_csv=course / "grades.csv", executed_dir=tmp_path / "ex", isolation="unshare")
    text = nbformat.read(tmp_path / "ex" / "eve.ipynb", as_version=4).cells[0].outputs[0]["text"]
    assert text.splitlines()[:2] == ["ERR FileNotFoundError", "65534 False"] and "NONET" in text
    assert _by_student(course / "grades.csv")["eve"]["isolation"] == "unshare"


@pytest.mark.slow
def test_a_killed_grader_loses_no_finished_row_and_a_rerun_resumes(tmp_path, capsys):
    """The grader itself dies (SIGKILL) while a notebook runs: the rows written stay, its run dies
    with it, and the rerun grades only the students left."""
    subs, out = tmp_path / "subs", tmp_path / "grades.csv"
    marker = f"labkit-test-sleeper-{os.getpid()}-{time.monotonic_ns()}"
    _write(subs / "ann.ipynb", new_code_cell("print('ann')"))
    _write(subs / "ben.ipynb", new_code_cell(f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', "
                                             f"'import time; time.sleep(300)', {marker!r}])"))
    _write(subs / "cat.ipynb", new_code_cell("print('cat')"))
    command = [sys.executable, "-m", "labkit", "grade", str(subs), "--out", str(out), "--timeout", "60"]
    grader = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while not _processes_with(marker) and time.monotonic() < deadline and grader.poll() is None:
        time.sleep(0.2)
    assert _processes_with(marker), grader.communicate()[0].decode()[-2000:]
    grader.kill()
    grader.wait()
    for _ in range(50):  # ben's run dies with the grader (its runner has the parent-death signal)
        if not _processes_with(marker):
            break
        time.sleep(0.1)
    assert _processes_with(marker) == []
    assert _rows(out) == [["student", "total", "percent", "status", "isolation", "notes"],
                          ["ann", "0", "0.0", "graded", STRONGEST.name, ""]]
    left_behind = list(Path(tempfile.gettempdir()).glob(f"labkit-grade-{grader.pid}-*"))
    assert len(left_behind) == 1  # ben's run folder: the killed grader could not delete it
    grade(subs, timeout=3, out_csv=out, verbose=True)  # the rerun
    assert "ann: already in" in capsys.readouterr().out
    assert not left_behind[0].exists()  # the next batch deleted it
    assert [(r[0], r[3]) for r in _rows(out)[1:]] == [("ann", "graded"), ("ben", "timed out at cell 1"), ("cat", "graded")]
