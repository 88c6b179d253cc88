"""Grading: notebooks are executed in this venv, scored per exercise, and written as a CSV."""
from __future__ import annotations

import csv
import json
import shutil
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from labkit import grading
from labkit.exercises import MIME_TYPE
from labkit.grading import GradeTable, NotebookRun, StudentGrade, grade, read_check_results

IMPORTS = "import torch\nfrom labkit.exercises import check"
ONES = 'check("00.1", torch.ones(3, 4))'
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


def _write(path: Path, *cells) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(new_notebook(cells=list(cells)), path)
    return path


def _check_output(exercise: str, passed: bool):
    return new_output("display_data", data={MIME_TYPE: {"exercise": exercise, "passed": passed, "message": ""},
                                            "text/plain": "✓" if passed else "✗"})


def test_read_check_results_last_result_counts():
    nb = new_notebook(cells=[
        new_code_cell("a", outputs=[_check_output("00.1", False), new_output("stream", text="hi")]),
        new_markdown_cell("text"),
        new_code_cell("b", outputs=[_check_output("00.1", True), _check_output("00.2", True)]),
        new_code_cell("c", outputs=[new_output("display_data", data={
            MIME_TYPE: json.dumps({"exercise": "00.2", "passed": False})})]),
    ])
    assert read_check_results(nb) == {"00.1": True, "00.2": False}


def test_student_names_come_from_the_folder_or_the_notebook(tmp_path):
    assert grading._student_of(tmp_path / "alice" / "sub" / "05_cnn.ipynb", tmp_path) == "alice"
    assert grading._student_of(tmp_path / "bob.ipynb", tmp_path) == "bob"


def test_table_text_and_csv(tmp_path):
    table = GradeTable(["00.1", "00.2", "00.3"], [
        StudentGrade("ann", {"00.1": 1, "00.2": 1, "00.3": 0}, ["x.ipynb: timed out after 5 s (in cell 3)"]),
        StudentGrade("ben", {"00.1": 0, "00.2": 0, "00.3": 0}),
    ])
    path = table.to_csv(tmp_path / "out" / "g.csv")
    assert path.read_text(encoding="utf-8").splitlines() == [
        "student,00.1,00.2,00.3,total,percent,notes",
        "ann,1,1,0,2,66.7,x.ipynb: timed out after 5 s (in cell 3)",
        "ben,0,0,0,0,0.0,",
    ]
    assert str(table).splitlines()[1].startswith("ann      1     1     0     2      66.7     x.ipynb")


def test_main_aggregates_a_students_notebooks(tmp_path, monkeypatch, capsys):
    """Without kernels: a pass in any of a student's notebooks counts; notes name the notebook."""
    folder = tmp_path / "subs"
    for name in ("alice/00_setup.ipynb", "alice/00_setup_retry.ipynb", "bob.ipynb", "alice/.ipynb_checkpoints/x.ipynb"):
        _write(folder / name, new_code_cell("pass"))
    fake = {
        "00_setup.ipynb": NotebookRun(Path(), {"00.1": True, "00.2": False}, "stopped by ValueError in cell 2: no"),
        "00_setup_retry.ipynb": NotebookRun(Path(), {"00.1": False, "00.2": True, "99.9": True}),
        "bob.ipynb": NotebookRun(Path(), {"00.3": True}),
    }
    ran = []

    def fake_run(path, timeout, kernel_name, executed_path):
        ran.append(Path(path).relative_to(folder).as_posix())
        return fake[Path(path).name]

    monkeypatch.setattr(grading, "run_notebook", fake_run)
    out = tmp_path / "grades.csv"
    assert grading.main(["grade", str(folder), "--timeout", "7", "--out", str(out)]) == 0
    assert ran == ["alice/00_setup.ipynb", "alice/00_setup_retry.ipynb", "bob.ipynb"]
    assert list(csv.reader(out.open(encoding="utf-8"))) == [
        ["student", "00.1", "00.2", "00.3", "total", "percent", "notes"],
        ["alice", "1", "1", "0", "2", "66.7", "00_setup.ipynb: stopped by ValueError in cell 2: no"],
        ["bob", "0", "0", "1", "1", "33.3", ""],
    ]
    printed = capsys.readouterr().out
    assert "alice/00_setup.ipynb: 1 of 2 checks passed" in printed and f"wrote {out}" in printed


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


@pytest.mark.slow
def test_grade_executes_notebooks_and_writes_exact_scores(tmp_path):
    folder = tmp_path / "submissions"
    # alice: everything right (nested layout: the folder names the student)
    alice = _write(folder / "alice" / "00_setup.ipynb",
                   new_markdown_cell("# Setup"), new_code_cell(IMPORTS), new_code_cell(ONES),
                   new_code_cell(COUNT), new_code_cell(SAMPLE), new_code_cell("import sys\nprint(sys.prefix)"))
    # a checkpoint copy is not a submission
    (folder / "alice" / ".ipynb_checkpoints").mkdir()
    shutil.copy(alice, folder / "alice" / ".ipynb_checkpoints" / "00_setup-checkpoint.ipynb")
    # bob (flat layout): a wrong answer, an untouched stub, then an exception; the last cell carries a
    # saved ✓ output that must not count, since that cell never runs
    bob = _write(folder / "bob.ipynb",
                 new_code_cell(IMPORTS), new_code_cell('check("00.1", torch.zeros(3, 4))'), new_code_cell(COUNT_STUB),
                 new_code_cell("1 / 0"), new_code_cell(SAMPLE, outputs=[_check_output("00.3", True)]))

    out = tmp_path / "grades.csv"
    executed = tmp_path / "executed"
    table = grade(folder, timeout=120, out_csv=out, executed_dir=executed)

    assert out.read_text(encoding="utf-8").splitlines() == [
        "student,00.1,00.2,00.3,total,percent,notes",
        "alice,1,1,1,3,100.0,",
        "bob,0,0,0,0,0.0,bob.ipynb: stopped by ZeroDivisionError in cell 4: division by zero",
    ]
    assert [row.student for row in table.rows] == ["alice", "bob"]
    # the kernel ran in this very environment
    alice_run = nbformat.read(executed / "alice" / "00_setup.ipynb", as_version=4)
    assert alice_run.cells[-1].outputs[0]["text"].strip() == sys.prefix
    assert sorted(p.relative_to(executed).as_posix() for p in executed.rglob("*.ipynb")) == [
        "alice/00_setup.ipynb", "bob.ipynb"]
    # executed copies are marked, so grading a folder that holds them skips them
    assert grading._find_notebooks(tmp_path) == [alice, bob]
    # the submissions themselves are untouched
    assert nbformat.read(bob, as_version=4).cells[1].outputs == []


def _shown_result(exercise: str) -> str:
    """A cell leaving the output `check()` leaves (without importing torch, so it is instant)."""
    bundle = {MIME_TYPE: {"exercise": exercise, "passed": True, "message": f"✓ {exercise}"}, "text/plain": "✓"}
    return f"from IPython.display import display\ndisplay({bundle!r}, raw=True)"


@pytest.mark.slow
def test_a_notebook_past_its_time_limit_keeps_the_scores_before_it(tmp_path):
    folder = tmp_path / "submissions"
    _write(folder / "carol" / "00_setup.ipynb",
           new_code_cell(_shown_result("00.1")), new_markdown_cell("a slow cell follows"),
           new_code_cell("import time\ntime.sleep(600)"), new_code_cell(_shown_result("00.2")))
    started = time.monotonic()
    grade(folder, timeout=3, out_csv=tmp_path / "grades.csv")
    assert time.monotonic() - started < 60
    assert (tmp_path / "grades.csv").read_text(encoding="utf-8").splitlines() == [
        "student,00.1,00.2,00.3,total,percent,notes",
        "carol,1,0,0,1,33.3,00_setup.ipynb: timed out after 3 s (in cell 3)",
    ]
