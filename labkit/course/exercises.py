"""Exercise checks: `check("05.1", answer)` says ✓ or ✗ with a hint, and never raises.

Each chapter's exercises live in ``labkit/course/checks/chNN.py``; that module is imported the first
time one of its exercises is checked. A chapter's stub cell looks like::

    def normalize(images, mean, std):
        raise NotImplementedError  # TODO: your code here
    check("05.1", normalize)

and an untouched stub gives "✗ 05.1 not done yet", so the whole chapter still runs top to
bottom. In a notebook the result is shown once, as a green or red box, and also carries
machine-readable JSON (mime type ``application/vnd.labkit.check+json``). In a kernel started by
the grader (`labkit.course.grading`), the grader's channel (`labkit.course.grading_kernel`) judges the answer
and signs the result; the grader counts only signed results, never output a notebook makes itself.

Writing a check: decorate a function that takes the learner's answer and raises `Hint`
(or `AssertionError`) with a learner-facing message when the answer is wrong::

    @exercise("05.1", title="Normalize images", reference=..., stub=..., wrong=[...])
    def _check_normalize(normalize): ...

`reference()` returns a correct answer and `stub()` the untouched one: the tests prove every
check accepts the first and rejects the second (and every plausible `wrong` answer).
"""
from __future__ import annotations

import html
import importlib
import linecache
import math
import numbers
import pkgutil
import re
import sys
import sysconfig
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from labkit.course.grading_kernel import CHANNEL as _GRADER_CHANNEL  # the grader's result channel (stdlib only)

__all__ = [
    "Hint", "Exercise", "CheckResult", "Summary", "MIME_TYPE",
    "exercise", "register", "get_exercise", "chapter_exercises", "all_exercises",
    "check", "summary", "compare", "close", "same_shape", "expect_tensor", "expect_callable",
]

MIME_TYPE = "application/vnd.labkit.check+json"
"""Mime type of the JSON that every displayed check result carries (read by the grader)."""

_ID_PATTERN = re.compile(r"^(\d{2})\.(\d+)$")
_LABKIT_DIR = Path(__file__).resolve().parent.parent  # labkit/, this file is labkit/course/exercises.py
_CHECKS_DIR = _LABKIT_DIR / "course" / "checks"
_THIRD_PARTY_DIRS = tuple(
    {Path(p).resolve() for key in ("stdlib", "platstdlib", "purelib", "platlib") if (p := sysconfig.get_paths().get(key))}
)


class Hint(AssertionError):
    """A wrong answer, with a sentence for the learner saying what is wrong and what to try."""


@dataclass
class Exercise:
    """One exercise: its id ("05.1"), a title, a check and the answers that test the check.

    check(answer) returns None (or a short note) when the answer is right and raises `Hint`
    when it is wrong. reference() returns a correct answer, stub() the untouched stub's
    answer, and each of `wrong` a plausible mistake the check must reject.
    """

    id: str
    title: str
    check: Callable[[Any], str | None]
    reference: Callable[[], Any]
    stub: Callable[[], Any]
    wrong: list[Callable[[], Any]] = field(default_factory=list)

    @property
    def chapter(self) -> str:
        """The chapter number as two digits: "05" for exercise "05.1"."""
        return self.id.split(".")[0]


class UnknownExercise(LookupError):
    """An exercise id that no chapter defines."""


_REGISTRY: dict[str, Exercise] = {}


def _sort_key(exercise_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in exercise_id.split("."))


def register(ex: Exercise) -> Exercise:
    """Add `ex` to the registry (re-registering the same id from the same module replaces it)."""
    match = _ID_PATTERN.match(ex.id)
    if match is None:
        raise ValueError(f"exercise id must look like '05.1' (chapter.number), got {ex.id!r}")
    module = getattr(ex.check, "__module__", "") or ""
    module_match = re.fullmatch(r"labkit\.course\.checks\.ch(\d{2})[a-z]?", module)
    if module_match and module_match.group(1) != match.group(1):
        raise ValueError(f"exercise {ex.id} is defined in {module}; it belongs in labkit.course.checks.ch{match.group(1)}")
    old = _REGISTRY.get(ex.id)
    if old is not None and getattr(old.check, "__module__", None) != module:
        raise ValueError(f"exercise {ex.id} is defined twice: in {old.check.__module__} and in {module}")
    _REGISTRY[ex.id] = ex
    return ex


def exercise(
    exercise_id: str,
    *,
    title: str,
    reference: Callable[[], Any],
    stub: Callable[[], Any],
    wrong: Sequence[Callable[[], Any]] = (),
) -> Callable[[Callable[[Any], str | None]], Callable[[Any], str | None]]:
    """Decorator that registers the decorated check function as exercise `exercise_id`."""

    def decorate(check_fn: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
        register(Exercise(exercise_id, title, check_fn, reference, stub, list(wrong)))
        return check_fn

    return decorate


def _normalize_chapter(chapter: str | int) -> str:
    """ "5" → "05"; a notebook of a split chapter keeps its letter: "6a" → "06a"."""
    if isinstance(chapter, int) and not isinstance(chapter, bool):
        return f"{chapter:02d}"
    match = re.fullmatch(r"(\d{1,2})([a-z]?)", chapter.strip()) if isinstance(chapter, str) else None
    if match:
        return f"{int(match.group(1)):02d}{match.group(2)}"
    raise ValueError(f"a chapter is a number like 5 or '05' (or a notebook of a split chapter, like '06a'), got {chapter!r}")


def _load_chapter(chapter: str) -> None:
    """Import labkit.course.checks.chNN (once); UnknownExercise if the chapter has no check module."""
    name = f"labkit.course.checks.ch{chapter}"
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name in (name, "labkit.course.checks"):
            raise UnknownExercise(f"chapter {chapter} has no exercises") from None
        raise


def chapter_exercises(chapter: str | int) -> list[Exercise]:
    """Every exercise of a chapter, in order ("05.1", "05.2", ...); [] if it has none.

    A split chapter's notebook ("06a") has the exercises defined in its own check module
    (``labkit/course/checks/ch06a.py``); the chapter ("06") has them all."""
    chapter = _normalize_chapter(chapter)
    try:
        _load_chapter(chapter)
    except UnknownExercise:
        pass  # no check module; exercises may still have been registered by hand
    if len(chapter) == 3:  # one notebook of a split chapter
        module = f"labkit.course.checks.ch{chapter}"
        found = [ex for ex in _REGISTRY.values() if getattr(ex.check, "__module__", "") == module]
    else:
        found = [ex for ex in _REGISTRY.values() if ex.chapter == chapter]
    return sorted(found, key=lambda ex: _sort_key(ex.id))


def all_exercises() -> list[Exercise]:
    """Every exercise of every chapter (imports each labkit/course/checks/chNN.py)."""
    for info in pkgutil.iter_modules([str(_CHECKS_DIR)]):
        if re.fullmatch(r"ch\d{2}[a-z]?", info.name):
            importlib.import_module(f"labkit.course.checks.{info.name}")
    return sorted(_REGISTRY.values(), key=lambda ex: _sort_key(ex.id))


def get_exercise(exercise_id: str) -> Exercise:
    """The exercise with this id; UnknownExercise (saying which ids exist) if there is none."""
    if not isinstance(exercise_id, str) or not _ID_PATTERN.match(exercise_id.strip()):
        raise UnknownExercise(f"an exercise id looks like '05.1' (a string), got {exercise_id!r}")
    exercise_id = exercise_id.strip()
    if exercise_id in _REGISTRY:
        return _REGISTRY[exercise_id]
    chapter = exercise_id.split(".")[0]
    try:
        _load_chapter(chapter)
    except UnknownExercise as error:
        raise UnknownExercise(f"{exercise_id} is not an exercise: {error}") from None
    if exercise_id not in _REGISTRY:
        ids = ", ".join(ex.id for ex in chapter_exercises(chapter)) or "none"
        raise UnknownExercise(f"{exercise_id} is not an exercise of chapter {chapter}; its exercises are: {ids}")
    return _REGISTRY[exercise_id]


# --------------------------------------------------------------------------- results


@dataclass
class CheckResult:
    """What `check` found: the exercise id, whether the answer passed, and the message shown."""

    exercise: str
    passed: bool
    message: str
    _shown_in_cell: int | None = field(default=None, repr=False, compare=False)
    signature: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    """Set only in a kernel started by the grader: proof that the grader's channel judged this answer."""

    def __str__(self) -> str:
        return self.message

    def to_json(self) -> dict[str, Any]:
        """The machine-readable form shown with the result; under the grader it also carries the
        channel's signature ("grader"), without which the grader does not count it."""
        data: dict[str, Any] = {"exercise": self.exercise, "passed": self.passed, "message": self.message}
        if self.signature is not None:
            data["grader"] = dict(self.signature)
        return data

    def _repr_html_(self) -> str:
        if self.passed:
            border, background, color = "#2e7d32", "#e8f5e9", "#1b5e20"
        else:
            border, background, color = "#c62828", "#ffebee", "#7f0000"
        return (
            f'<div style="border-left: 5px solid {border}; background: {background}; color: {color}; '
            'padding: 6px 10px; margin: 4px 0; border-radius: 3px; font-family: var(--jp-code-font-family, monospace); '
            f'white-space: pre-wrap;">{html.escape(self.message)}</div>'
        )

    def mimebundle(self) -> dict[str, Any]:
        """Text, HTML and the grader's JSON, as one display bundle."""
        return {"text/plain": self.message, "text/html": self._repr_html_(), MIME_TYPE: self.to_json()}

    def _ipython_display_(self) -> None:
        # `check()` already showed this result in the current cell; when the result is also the
        # cell's last expression, IPython calls this again: skip it so the box appears once.
        shell = _ipython_shell()
        if shell is not None and self._shown_in_cell == shell.execution_count:
            return
        _display_bundle(self.mimebundle())


def _ipython_shell() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def _display_bundle(bundle: dict[str, Any]) -> None:
    from IPython.display import display

    display(bundle, raw=True)


def _show(result: CheckResult) -> None:
    shell = _ipython_shell()
    if shell is None:
        print(result.message)
        return
    _display_bundle(result.mimebundle())
    result._shown_in_cell = shell.execution_count


# --------------------------------------------------------------------------- tracebacks


def _within(filename: str, folder: Path) -> bool:
    return not filename.startswith("<") and Path(filename).resolve().is_relative_to(folder)


def _is_third_party(filename: str) -> bool:
    """Code from the standard library or an installed package (torch, numpy, ...), labkit excepted."""
    if filename.startswith(("<frozen", "<__array_function__")):
        return True
    return any(_within(filename, folder) for folder in _THIRD_PARTY_DIRS) and not _within(filename, _LABKIT_DIR)


def _is_learner(filename: str) -> bool:
    """Code the learner wrote: a notebook cell or their own file, not labkit, torch or the stdlib."""
    return not _is_third_party(filename) and not _within(filename, _LABKIT_DIR)


def _describe_frame(frame: traceback.FrameSummary) -> str:
    """'in normalize, line 3: return images - mean / std' (the file is named unless it is a cell)."""
    is_cell = "ipykernel_" in frame.filename or frame.filename.startswith("<ipython-input")
    where = f"line {frame.lineno}" if is_cell else f"{Path(frame.filename).name}, line {frame.lineno}"
    line = (frame.line or linecache.getline(frame.filename, frame.lineno or 0)).strip()
    text = f"in {frame.name}, {where}" if frame.name != "<module>" else where
    return f"{text}: {line}" if line else text


def _last_learner_frame(error: BaseException) -> traceback.FrameSummary | None:
    frames = traceback.extract_tb(error.__traceback__)
    learner = [frame for frame in frames if _is_learner(frame.filename)]
    return learner[-1] if learner else None


def _raised_by_learner(error: BaseException) -> bool:
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and _is_learner(frames[-1].filename)


def _raised_by_stub(error: NotImplementedError) -> bool:
    """A stub's `raise NotImplementedError` (learner or checks code), not one from inside torch."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return True
    innermost = frames[-1].filename
    return _is_learner(innermost) or _within(innermost, _CHECKS_DIR)


# --------------------------------------------------------------------------- check


_SESSION: dict[str, CheckResult] = {}

_NOT_DONE = "replace `raise NotImplementedError` with your code"


def _run_check(exercise_id: Any, answer: Any) -> CheckResult:
    label = exercise_id if isinstance(exercise_id, str) else repr(exercise_id)
    try:
        ex = get_exercise(exercise_id)
    except UnknownExercise as error:
        return CheckResult(str(label), False, f"✗ {error}")
    except Exception as error:  # a broken check module: say so instead of crashing the notebook
        return CheckResult(str(label), False,
                           f"✗ could not load the checks for {label} ({type(error).__name__}: {error}); "
                           "this is a bug in labkit, please report it")
    head = f"{ex.id} {ex.title}"
    if answer is None or answer is Ellipsis:
        shown = "None" if answer is None else "..."
        return CheckResult(ex.id, False, f"✗ {ex.id} not done yet: replace the `{shown}` with your answer")
    try:
        note = ex.check(answer)
    except NotImplementedError as error:
        if _raised_by_stub(error):  # a check's own NotImplementedError("...") says what is left to do
            frames = traceback.extract_tb(error.__traceback__)
            todo = str(error) if frames and _within(frames[-1].filename, _CHECKS_DIR) else ""
            return CheckResult(ex.id, False, f"✗ {ex.id} not done yet: {todo or _NOT_DONE}")
        return _exception_result(ex, head, error)
    except AssertionError as error:
        if not isinstance(error, Hint) and _raised_by_learner(error):
            return _exception_result(ex, head, error)  # the learner's own `assert` failed
        hint = str(error).strip() or "your answer is not right yet"
        return CheckResult(ex.id, False, f"✗ {head}: {hint}")
    except Exception as error:
        return _exception_result(ex, head, error)
    message = f"✓ {head}"
    if isinstance(note, str) and note.strip():
        message += f" ({note.strip()})"
    return CheckResult(ex.id, True, message)


def _exception_result(ex: Exercise, head: str, error: Exception) -> CheckResult:
    frame = _last_learner_frame(error)
    detail = f"{type(error).__name__}: {error}".rstrip(": ")
    if frame is None:
        return CheckResult(ex.id, False, f"✗ {head}: checking your answer raised {detail}")
    return CheckResult(ex.id, False, f"✗ {head}: your code raised {detail}\n    {_describe_frame(frame)}")


def check(exercise_id: str, answer: Any, *, show: bool = True) -> CheckResult:
    """Check `answer` to exercise `exercise_id`; show ✓ or ✗ with a hint and return the result.

    Never raises for a wrong answer (an unfinished stub, an exception in your code, a wrong
    type): it reports instead, so the notebook keeps running. In a notebook the result is
    shown once even when `check(...)` is the last line of a cell.

    Chapter 00 explains the exercises; every chapter's exercises call it.
    """
    channel = sys.modules.get(_GRADER_CHANNEL)  # only in a kernel the grader started (labkit/course/grading_kernel.py)
    result = channel.judge(exercise_id, answer) if channel is not None else _run_check(exercise_id, answer)
    if result.exercise in _REGISTRY:
        _SESSION[result.exercise] = result
    if show:
        _show(result)
    return result


# --------------------------------------------------------------------------- summary


@dataclass
class Summary:
    """Which exercises were checked in this session and whether they passed.

    rows: (id, title, status) with status "passed", "failed" or "not checked".
    """

    chapter: str | None
    rows: list[tuple[str, str, str]]

    @property
    def all_passed(self) -> bool:
        """True when there is at least one exercise and every one was checked and passed."""
        return bool(self.rows) and all(status == "passed" for _, _, status in self.rows)

    @property
    def missing(self) -> list[str]:
        """Ids of the exercises not yet passed."""
        return [exercise_id for exercise_id, _, status in self.rows if status != "passed"]

    def __str__(self) -> str:
        marks = {"passed": "✓", "failed": "✗", "not checked": "·"}
        scope = f"chapter {self.chapter}" if self.chapter else "this session"
        passed = sum(status == "passed" for _, _, status in self.rows)
        lines = [f"Exercises of {scope}: {passed}/{len(self.rows)} passed"]
        lines += [f"  {marks[status]} {exercise_id:<6} {title}  ({status})" for exercise_id, title, status in self.rows]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        colors = {"passed": "#2e7d32", "failed": "#c62828", "not checked": "#757575"}
        marks = {"passed": "✓", "failed": "✗", "not checked": "·"}
        body = "".join(
            f'<tr><td style="color:{colors[status]}">{marks[status]}</td><td>{html.escape(exercise_id)}</td>'
            f"<td>{html.escape(title)}</td><td>{status}</td></tr>"
            for exercise_id, title, status in self.rows
        )
        title = html.escape(str(self).splitlines()[0])
        return f"<table><caption>{title}</caption><tr><th></th><th>exercise</th><th>title</th><th>status</th></tr>{body}</table>"


def summary(chapter: str | int | None = None) -> Summary:
    """Table of a chapter's exercises (or of all checked ones) and whether each passed.

    A solution notebook ends with ``assert summary("05").all_passed``.

    Chapter 00 explains it; every chapter ends with it.
    """
    if chapter is None:
        ids = sorted(_SESSION, key=_sort_key)
        rows = [(i, _REGISTRY[i].title, "passed" if _SESSION[i].passed else "failed") for i in ids]
        return Summary(None, rows)
    chapter = _normalize_chapter(chapter)
    rows = []
    for ex in chapter_exercises(chapter):
        result = _SESSION.get(ex.id)
        status = "not checked" if result is None else "passed" if result.passed else "failed"
        rows.append((ex.id, ex.title, status))
    return Summary(chapter, rows)


# --------------------------------------------------------------------------- helpers for checks


def expect_callable(answer: Any, name: str) -> None:
    """Hint unless `answer` is a function (for exercises that ask you to write one)."""
    if not callable(answer):
        raise Hint(f"expected the function `{name}` itself, got {type(answer).__name__} {_short(answer)}; "
                   f"pass it without calling it: check(..., {name})")


def expect_tensor(value: Any, what: str = "your answer") -> torch.Tensor:
    """Hint unless `value` is a torch.Tensor; returns it."""
    if isinstance(value, torch.Tensor):
        return value
    kind = type(value).__module__.split(".")[0] + "." + type(value).__name__
    if kind == "numpy.ndarray":
        raise Hint(f"{what} should be a torch.Tensor, got a NumPy array; torch.from_numpy(array) converts one")
    if isinstance(value, (list, tuple, int, float)):
        raise Hint(f"{what} should be a torch.Tensor, got a Python {type(value).__name__}; "
                   "build it with a torch function (torch.tensor, torch.ones, ...)")
    raise Hint(f"{what} should be a torch.Tensor, got {type(value).__name__} {_short(value)}")


def expect_number(value: Any, what: str = "your answer", meaning: str = "") -> float:
    """Hint unless `value` is one number (a Python or NumPy number, or a one-element tensor);
    returns it as a float. ``meaning`` says what the number is, e.g. " (the learning rate)"."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise Hint(f"{what} should be one number{meaning}, got a tensor of shape {tuple(value.shape)}")
        return float(value.item())
    if isinstance(value, numbers.Real) and not isinstance(value, bool):  # int, float and NumPy's numbers
        return float(value)
    raise Hint(f"{what} should be a number{meaning}, got {type(value).__name__} {_short(value)}")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shape_text(shape: Sequence[int | None]) -> str:
    parts = ["any" if s is None else str(s) for s in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def same_shape(tensor: Any, shape: Sequence[int | None], what: str = "your tensor") -> None:
    """Hint unless `tensor` has this shape; None in `shape` matches any size, e.g. (None, 10)."""
    actual = getattr(tensor, "shape", None)
    if actual is None:
        raise Hint(f"{what} should be a tensor of shape {_shape_text(shape)}, got {type(tensor).__name__} {_short(tensor)}")
    actual = tuple(actual)
    fits = len(actual) == len(shape) and all(s is None or s == a for a, s in zip(actual, shape))
    if not fits:
        raise Hint(f"{what} should have shape {_shape_text(shape)}, got {_shape_text(actual)}")


def compare(name: str, mine: torch.Tensor, theirs: torch.Tensor, atol: float = 1e-5) -> float:
    """Print how far `mine` is from a reference such as PyTorch's result, and stop with an
    AssertionError if the shapes differ or the largest absolute difference is above `atol`.

    For a chapter's "by hand, then checked against torch" cells; returns the max abs difference.

    Chapter 02 uses it first: each thing built by hand is compared with labkit's or a library's.
    """
    assert mine.shape == theirs.shape, f"{name}: my shape {tuple(mine.shape)}, PyTorch's {tuple(theirs.shape)}"
    diff = (mine - theirs).abs().max().item()
    print(f"{name:<52} max abs diff {diff:.1e}  {'✓' if diff <= atol else '✗'}")
    assert diff <= atol, f"{name}: differs from PyTorch by {diff:.2e}, more than the {atol:g} allowed"
    return diff


def close(actual: Any, expected: Any, atol: float = 1e-5, rtol: float = 1e-4, what: str = "your answer") -> str:
    """Compare numbers like nn-zero-to-hero's `cmp`: return "exact" or "approximate (...)", or raise a Hint.

    The Hint says by how much they differ: the largest absolute difference, where it is, and
    how many values are outside the tolerance |actual - expected| <= atol + rtol * |expected|.
    """
    try:
        got = actual.detach() if isinstance(actual, torch.Tensor) else torch.as_tensor(actual)
    except Exception:
        raise Hint(f"{what} should be a number or a tensor, got {type(actual).__name__} {_short(actual)}") from None
    want = expected.detach() if isinstance(expected, torch.Tensor) else torch.as_tensor(expected)
    if got.is_complex() or want.is_complex():
        raise Hint(f"{what}: close() compares real numbers; compare .real and .imag separately")
    got, want = got.cpu().to(torch.float64), want.cpu().to(torch.float64)
    same_shape(got, tuple(want.shape), what)
    if torch.equal(got, want):
        return "exact"
    both_nan = torch.isnan(got) & torch.isnan(want)
    diff = (got - want).abs().masked_fill(both_nan, 0.0)
    diff = torch.where(torch.isnan(diff), torch.full_like(diff, math.inf), diff)
    tolerance = atol + rtol * want.abs()
    bad = diff > tolerance
    max_diff = diff.max().item() if diff.numel() else 0.0
    if not bad.any():
        return f"approximate: max abs diff {max_diff:.2g}"
    flat = int(torch.argmax(diff.reshape(-1)).item())
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), want.shape)) if want.dim() else ()
    at = f" at index {index}" if index else ""
    n_bad, n = int(bad.sum().item()), want.numel()
    got_v, want_v = got.reshape(-1)[flat].item(), want.reshape(-1)[flat].item()
    raise Hint(
        f"{what} is wrong: max abs difference {max_diff:.3g}{at} (expected {want_v:.4g}, got {got_v:.4g}); "
        f"{n_bad} of {n} values are off by more than atol={atol:g} + rtol={rtol:g}·|expected|"
    )
