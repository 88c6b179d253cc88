"""Exercises of chapters 00-04 that make a learner think (issue 18, part 6): checks whose hints
cannot be solved by trial and error, and predict-measure-explain exercises whose checks verify the
measurement and the explanation, report the prediction without failing on it, and notice a
prediction changed after the measurement ran. (test_exercises proves every check accepts its
reference and rejects its stub and its `wrong` answers; these tests add what is particular.)"""
from __future__ import annotations

import itertools

import pytest

from labkit.checks import ch02
from labkit.exercises import check

# --------------------------------------------------------------------------- 02.5


@pytest.mark.parametrize("size", [1, 2, 4])
def test_02_5_hint_says_how_many_are_wrong_but_never_which(size):
    """Every set of candidates that is wrong: the hint holds the count and names none of them, so
    flipping one item at a time and reading the hint does not solve the exercise."""
    right = set(ch02.HYPERPARAMETERS)
    for flipped in itertools.combinations(ch02.CANDIDATES, size):
        answer = right ^ set(flipped)
        if not answer:
            continue
        message = check("02.5", answer, show=False).message
        assert message.startswith("✗ 02.5"), message
        assert f"{size} of the {len(ch02.CANDIDATES)}" in message, message
        hint = message.split(": ", 1)[1]
        named = [name for name in ch02.CANDIDATES if name in hint]
        assert not named, f"the hint names {named}: {message}"


def test_02_5_right_answer_passes():
    assert check("02.5", set(ch02.HYPERPARAMETERS), show=False).passed
