"""Exercise checks: every registered check accepts its reference, rejects its stub and wrong answers,
and `check()` reports (never raises) whatever the learner passes in."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from labkit.course import exercises
from labkit.course.exercises import (
    MIME_TYPE,
    CheckResult,
    Exercise,
    Hint,
    all_exercises,
    chapter_exercises,
    check,
    close,
    register,
    same_shape,
    summary,
)

ALL = all_exercises()
WRONG = [(ex, i) for ex in ALL for i in range(len(ex.wrong))]


def test_there_are_exercises_and_each_has_a_wrong_answer():
    assert {"00.1", "00.2", "00.3"} <= {ex.id for ex in ALL}
    for ex in ALL:
        assert ex.wrong, f"{ex.id} has no plausible wrong answer to prove its check can fail"
        assert ex.title.strip()


@pytest.mark.parametrize("ex", ALL, ids=lambda ex: ex.id)
def test_check_accepts_the_reference(ex: Exercise):
    result = check(ex.id, ex.reference(), show=False)
    assert result.passed, result.message
    assert result.message.startswith(f"✓ {ex.id} {ex.title}")


@pytest.mark.parametrize("ex", ALL, ids=lambda ex: ex.id)
def test_check_rejects_the_stub_as_not_done(ex: Exercise):
    result = check(ex.id, ex.stub(), show=False)
    assert not result.passed
    assert result.message.startswith(f"✗ {ex.id} not done yet"), result.message


@pytest.mark.parametrize(("ex", "index"), WRONG, ids=[f"{ex.id}-wrong{i}" for ex, i in WRONG])
def test_check_rejects_each_wrong_answer_with_a_hint(ex: Exercise, index: int):
    result = check(ex.id, ex.wrong[index](), show=False)
    assert not result.passed
    assert result.message.startswith(f"✗ {ex.id} {ex.title}: "), result.message
    assert "not done" not in result.message
    assert "raised" not in result.message, f"a wrong answer should get a hint, not a crash: {result.message}"


def _raises_value_error(*args, **kwargs):
    raise ValueError("boom")


def _returns_wrong_shape(*args, **kwargs):
    return torch.zeros(2, 7)


WEIRD = [None, "a string", 42, 3.5, object(), [1, 2], _raises_value_error, _returns_wrong_shape,
         lambda *a, **k: None, lambda *a, **k: "text", torch.zeros(2, 7)]


@pytest.mark.parametrize("ex", ALL, ids=lambda ex: ex.id)
@pytest.mark.parametrize("answer", WEIRD, ids=range(len(WEIRD)))
def test_check_never_raises_on_weird_answers(ex: Exercise, answer):
    result = check(ex.id, answer, show=False)
    assert isinstance(result, CheckResult)
    assert not result.passed
    assert result.message.startswith("✗ ") and len(result.message) > 10


FUNCTION_EXERCISES = [ex for ex in ALL if callable(ex.reference())]


def test_some_exercises_ask_for_a_function():
    assert FUNCTION_EXERCISES


@pytest.mark.parametrize("ex", FUNCTION_EXERCISES, ids=lambda ex: ex.id)
def test_exception_in_learner_code_names_its_type_and_line(ex: Exercise):
    def learner_answer(*args, **kwargs):
        raise ValueError("boom")

    result = check(ex.id, learner_answer, show=False)
    assert not result.passed
    assert "your code raised ValueError: boom" in result.message
    assert 'in learner_answer, test_exercises.py, line' in result.message
    assert 'raise ValueError("boom")' in result.message


# --------------------------------------------------------------------------- the mechanism, on a toy exercise


def _check_double(double):
    exercises.expect_callable(double, "double")
    got = double(torch.tensor([1.0, 2.5]))
    return close(got, torch.tensor([2.0, 5.0]), what="double([1, 2.5])")


@pytest.fixture
def toy():
    """Exercise 99.1 'Double it', registered for one test only."""
    def stub(x):
        raise NotImplementedError

    ex = register(Exercise("99.1", "Double it", _check_double, reference=lambda: lambda x: 2 * x, stub=lambda: stub))
    yield ex
    exercises._REGISTRY.pop("99.1", None)
    exercises._SESSION.pop("99.1", None)


def test_pass_reports_the_note_from_close(toy):
    assert check("99.1", lambda x: 2 * x, show=False).message == "✓ 99.1 Double it (exact)"
    message = check("99.1", lambda x: x * 2.000001, show=False).message
    assert message.startswith("✓ 99.1 Double it (approximate: max abs diff")


def test_not_done_variants(toy):
    def stub(x):
        raise NotImplementedError  # TODO

    for answer in (stub, None, ...):
        result = check("99.1", answer, show=False)
        assert not result.passed and result.message.startswith("✗ 99.1 not done yet: replace"), result.message
    assert "`raise NotImplementedError`" in check("99.1", stub, show=False).message
    assert "`...`" in check("99.1", ..., show=False).message


def test_not_implemented_from_inside_torch_is_an_error_not_a_stub(toy):
    def double(x):
        return nn.Module()(x)  # a Module without forward: torch raises NotImplementedError

    message = check("99.1", double, show=False).message
    assert "not done" not in message
    assert "your code raised NotImplementedError" in message and "in double" in message


def test_wrong_value_gets_the_difference(toy):
    message = check("99.1", lambda x: x + 1, show=False).message
    assert message.startswith("✗ 99.1 Double it: double([1, 2.5]) is wrong: max abs difference 1.5 at index (1,)")


def test_learner_assert_is_reported_as_their_error(toy):
    def double(x):
        assert x.dim() == 2, "expected a matrix"
        return 2 * x

    message = check("99.1", double, show=False).message
    assert "your code raised AssertionError: expected a matrix" in message


def test_error_inside_the_check_is_not_blamed_on_the_learner(toy):
    message = check("99.1", lambda x: "not a tensor", show=False).message
    assert message.startswith("✗ 99.1 Double it: double([1, 2.5]) should be a number or a tensor, got str")


def test_unknown_ids_list_the_chapter_and_never_raise():
    message = check("00.42", 1, show=False).message
    assert message == "✗ 00.42 is not an exercise of chapter 00; its exercises are: " + ", ".join(
        ex.id for ex in chapter_exercises("00"))
    assert check("87.1", 1, show=False).message == "✗ 87.1 is not an exercise: chapter 87 has no exercises"
    assert "looks like '05.1'" in check(5.1, 1, show=False).message
    assert "looks like '05.1'" in check("ex1", 1, show=False).message


def test_plain_python_prints_the_result(capsys):
    result = check("00.1", torch.ones(3, 4))
    assert capsys.readouterr().out == "✓ 00.1 A tensor of ones\n"
    assert str(result) == result.message


def test_result_bundle_carries_json_and_a_colored_box():
    good = check("00.1", torch.ones(3, 4), show=False)
    bad = check("00.1", torch.zeros(3, 4), show=False)
    bundle = bad.mimebundle()
    assert bundle[MIME_TYPE] == {"exercise": "00.1", "passed": False, "message": bad.message}
    json.dumps(bundle[MIME_TYPE])
    assert "#c62828" in bad._repr_html_() and "#2e7d32" in good._repr_html_()
    evil = CheckResult("00.1", False, "<script>")
    assert "<script>" not in evil._repr_html_()


def test_summary_tracks_the_session(toy):
    assert [row[2] for row in summary("99").rows] == ["not checked"]
    check("99.1", lambda x: x, show=False)
    assert summary(99).rows == [("99.1", "Double it", "failed")]
    assert not summary("99").all_passed and summary("99").missing == ["99.1"]
    check("99.1", lambda x: x + x, show=False)
    s = summary("99")
    assert s.all_passed and s.missing == []
    assert "1/1 passed" in str(s) and "✓" in s._repr_html_()
    assert ("99.1", "Double it", "passed") in summary().rows
    assert not summary("87").all_passed  # no exercises: nothing passed


def test_checking_seeded_sample_leaves_the_notebooks_random_stream_alone():
    ex = exercises.get_exercise("00.3")
    torch.manual_seed(5)
    expected = torch.randn(3)
    torch.manual_seed(5)
    assert check("00.3", ex.reference(), show=False).passed
    assert torch.equal(torch.randn(3), expected)


# --------------------------------------------------------------------------- helpers for writing checks


def test_close_exact_approximate_and_wrong():
    assert close(torch.tensor([1.0, 2.0]), [1.0, 2.0]) == "exact"
    assert close(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0 + 1e-6])).startswith("approximate")
    got = torch.ones(2, 3)
    got[1, 2] = 1.5
    with pytest.raises(Hint, match=r"^x is wrong: max abs difference 0\.5 at index \(1, 2\) \(expected 1, got 1\.5\); 1 of 6"):
        close(got, torch.ones(2, 3), what="x")
    with pytest.raises(Hint, match=r"should have shape \(3,\), got \(2,\)"):
        close([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(Hint, match="max abs difference inf"):
        close(torch.tensor([float("nan")]), torch.tensor([1.0]))
    assert close(torch.tensor([float("nan"), 1.0]), torch.tensor([float("nan"), 1.0])).startswith("approximate")
    assert close(3, 3.0) == "exact"


def test_same_shape_with_wildcards():
    same_shape(torch.zeros(8, 10), (None, 10))
    with pytest.raises(Hint, match=r"logits should have shape \(any, 10\), got \(8, 9\)"):
        same_shape(torch.zeros(8, 9), (None, 10), "logits")
    with pytest.raises(Hint, match="should be a tensor of shape"):
        same_shape("abc", (3,))


def test_register_refuses_bad_ids():
    with pytest.raises(ValueError, match="look like '05.1'"):
        register(Exercise("5-1", "bad", _check_double, reference=lambda: None, stub=lambda: None))


# --------------------------------------------------------------------------- in a real kernel


@pytest.mark.slow
def test_notebook_shows_each_result_once_with_its_json():
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    from labkit.course.grading import _kernel_env, _kernel_manager

    sources = [
        "import torch\nfrom labkit.course.exercises import check, summary",
        'check("00.1", torch.ones(3, 4))',                         # last expression: shown once
        'result = check("00.1", None)',                            # assigned: shown once
        "result",                                                  # shown again on request
        'check("00.1", 1); check("00.2", None)',                   # two checks: two boxes
        'summary("00")',
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    client = NotebookClient(nb, km=_kernel_manager(None), timeout=120)
    with client.setup_kernel(cleanup_kc=True, env=_kernel_env()):
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
    payloads = [[o["data"][MIME_TYPE] for o in cell.outputs if MIME_TYPE in o.get("data", {})] for cell in nb.cells]
    assert [len(p) for p in payloads] == [0, 1, 1, 1, 2, 0]
    assert [len(cell.outputs) for cell in nb.cells[:5]] == [0, 1, 1, 1, 2]
    assert payloads[1][0] == {"exercise": "00.1", "passed": True, "message": "✓ 00.1 A tensor of ones"}
    assert payloads[3][0]["passed"] is False and "not done" in payloads[3][0]["message"]
    assert "text/html" in nb.cells[1].outputs[0]["data"]
    assert f"0/{len(exercises.chapter_exercises('00'))} passed" in nb.cells[5].outputs[0]["data"]["text/plain"]


def test_compare_prints_the_difference_and_stops_when_too_far(capsys):
    from labkit.course.exercises import compare

    assert compare("same", torch.ones(3), torch.ones(3)) == 0.0
    assert "max abs diff 0.0e+00  ✓" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="differs from PyTorch by 1.00e-01"):
        compare("off", torch.zeros(2), torch.full((2,), 0.1))
    assert "✗" in capsys.readouterr().out
    with pytest.raises(AssertionError, match=r"my shape \(2,\), PyTorch's \(3,\)"):
        compare("shape", torch.zeros(2), torch.zeros(3))
