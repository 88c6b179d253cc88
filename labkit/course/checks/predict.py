"""Predict, measure, explain: the check shared by the exercises of that kind (chapters 00-04).

The learner commits to a prediction in one cell, runs a given measurement cell, then reads off
the measurement and picks the explanation that fits it. In the chapter::

    prediction = ...  # TODO: "a", "b" or "c": decide BEFORE you run the next cell

    committed = prediction          # the measurement cell's first line keeps what you predicted
    ... the measurement, printed ...

    measured = ...     # TODO: the number the cell printed
    explanation = ...  # TODO: "a", "b" or "c"
    check("03.6", dict(committed=committed, prediction=prediction, measured=measured, explanation=explanation))

The check recomputes the measurement itself (cheaply, without touching the notebook's random
stream) and compares; it checks the explanation against what was measured; it says whether the
prediction was right but never fails on a wrong one (a wrong prediction, then explained, is the
lesson). It fails when the prediction was made or changed after the measurement ran: then
`committed` (what the measurement cell saw) is `...` or differs from `prediction`.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from labkit.course.exercises import Hint, exercise, expect_number

KEYS = ("committed", "prediction", "measured", "explanation")

PERCENTAGE: tuple[Callable[[float, float], bool], str] = (
    lambda value, true: math.isclose(value, 100 * true, rel_tol=0.02),
    "that is a percentage; `measured` is the fraction (between 0 and 1)",
)
"""The misreading of a measured fraction typed as a percentage (78 for 0.78): one of `misreadings`."""


class NotAnswered(NotImplementedError):
    """A stub value (`...`) still in the answer: reported as "not done yet"."""


@dataclass
class PredictMeasureExplain:
    """One exercise of the kind.

    predictions / explanations: option letter -> the sentence the chapter shows.
    measure(): the measurement, recomputed by the check (must take well under a second).
    predicted(measured): the prediction option the measurement bears out.
    explained(measured): the explanation option that the measurement supports.
    what: what `measured` is, e.g. "the ratio of Adam's steps".
    wrong_explanations: option letter -> why that explanation does not hold (the hint).
    misreadings: (test, hint) pairs: a measured value for which test(value, true_value) holds gets
    that hint (a plausible slip such as the inverse ratio or a loss instead of a perplexity).
    """

    predictions: dict[str, str]
    explanations: dict[str, str]
    measure: Callable[[], float]
    predicted: Callable[[float], str]
    explained: Callable[[float], str]
    what: str
    wrong_explanations: dict[str, str]
    rel_tol: float = 0.02
    abs_tol: float = 0.0
    misreadings: tuple[tuple[Callable[[float, float], bool], str], ...] = ()

    def answer(self, **changes: Any) -> dict[str, Any]:
        """The right answer (the reference), with `changes` applied (for the wrong answers)."""
        value = self.measure()
        right = self.predicted(value)
        answer: dict[str, Any] = dict(committed=right, prediction=right, measured=value,
                                      explanation=self.explained(value))
        answer.update(changes)
        return answer

    def register(self, exercise_id: str, title: str, *, module: str,
                 wrong_measurements: tuple[Callable[[], float], ...] = (),
                 more_wrong: tuple[Callable[[], Any], ...] = ()) -> None:
        """Register the exercise for the check module `module` (pass `__name__`: a split chapter's notebook
        finds its exercises by the module of their check). Its wrong answers, which the tests prove the
        check rejects: each wrong explanation, a prediction changed after the measurement, a measurement
        run before the prediction, each value of `wrong_measurements` (a plausible misreading) as
        `measured`, and `more_wrong`.

        Nothing is measured here: the wrong answers measure when they are made (a check module's import
        stays cheap, and a measurement that takes seconds runs only when an answer is checked)."""
        def wrong_explanation(k: int) -> dict[str, Any]:  # the k-th explanation the measurement does not support
            right = self.explained(self.measure())
            return self.answer(explanation=[option for option in sorted(self.explanations) if option != right][k])

        def changed_after_measuring() -> dict[str, Any]:
            outcome = self.predicted(self.measure())
            return self.answer(committed=outcome, prediction=next(o for o in sorted(self.predictions) if o != outcome))

        wrong: list[Callable[[], Any]] = [
            *(lambda k=k: wrong_explanation(k) for k in range(len(self.explanations) - 1)),
            *(lambda make=make: self.answer(measured=make()) for make in wrong_measurements),
            changed_after_measuring,
            lambda: self.answer(committed=...),                                                 # measured before predicting
            *more_wrong,
        ]
        def check(answer: Any) -> str:
            return self.check(answer)

        check.__module__, check.__qualname__ = module, f"check_{exercise_id.replace('.', '_')}"
        exercise(exercise_id, title=title, reference=self.answer, stub=self.stub, wrong=wrong)(check)

    def stub(self) -> dict[str, Any]:
        """What the untouched stubs give: the measurement cell copied the unset prediction."""
        return dict(committed=..., prediction=..., measured=..., explanation=...)

    def check(self, answer: Any) -> str:
        if not isinstance(answer, dict):
            raise Hint("pass a dict: dict(committed=committed, prediction=prediction, measured=measured, "
                       "explanation=explanation)")
        missing = [key for key in KEYS if key not in answer]
        if missing:
            raise Hint(f"the dict lacks {missing}; it needs the keys {list(KEYS)}")
        if any(answer[key] is Ellipsis or answer[key] is None for key in ("prediction", "measured", "explanation")):
            raise NotAnswered("replace each `...` with your answer: the prediction first, before the measurement runs")
        options = sorted(self.predictions)
        prediction, committed = answer["prediction"], answer["committed"]
        if prediction not in self.predictions:
            raise Hint(f"prediction should be one of {options} (a string), got {prediction!r}")
        if committed is Ellipsis or committed is None:
            raise Hint("the measurement ran before you had predicted (`committed` is still `...`): a prediction "
                       "made after seeing the result is not a prediction. Set `prediction`, run its cell, then run "
                       "the measurement cell again")
        if committed != prediction:
            raise Hint(f"you predicted {committed!r} before the measurement and changed it to {prediction!r} after: "
                       f"put back prediction = {committed!r}. A wrong prediction fails nothing; explaining why it "
                       "was wrong is the point of the exercise")
        value = expect_number(answer["measured"], "measured", f" ({self.what})")
        true = self.measure()
        if not math.isclose(value, true, rel_tol=self.rel_tol, abs_tol=self.abs_tol):
            for test, hint in self.misreadings:
                if test(value, true):
                    raise Hint(f"measured = {value:.4g}: {hint}")
            raise Hint(f"measured = {value:.4g} is not {self.what} that the measurement cell prints: "
                       "copy the number it printed (run it again if you changed anything)")
        explanation = answer["explanation"]
        if explanation not in self.explanations:
            raise Hint(f"explanation should be one of {sorted(self.explanations)} (a string), got {explanation!r}")
        right_explanation = self.explained(true)
        if explanation != right_explanation:
            reason = self.wrong_explanations.get(explanation, "it does not fit what you measured")
            raise Hint(f"explanation {explanation!r} does not hold: {reason}")
        outcome = self.predicted(true)
        verdict = ("your prediction was right" if committed == outcome
                   else f"you predicted {committed!r}, the measurement says {outcome!r}: now you know why")
        return f"measured {value:.3g}; {verdict}"


def ratio_inverted(value: float, true: float) -> bool:
    """The learner divided the other way round."""
    return value > 0 and math.isclose(value, 1 / true, rel_tol=0.02)
