"""Checks for chapter 09c (applications: language and games).

The stub cells in ``chapters/09c_language_and_games.ipynb``::

    def from_chinese(text):
        raise NotImplementedError  # TODO: "三千零五" → 3005, by rules (no model)
    check("09.11", from_chinese)

    def character_error_rate(predictions, references):
        raise NotImplementedError  # TODO: Σ edit distance / Σ reference length
    check("09.12", character_error_rate)

    def game_value(board):
        raise NotImplementedError  # TODO: +1 / 0 / -1 for the player to move, with perfect play
    check("09.13", game_value)

    prediction = ...  # TODO: "a", "b" or "c"
    ...
    check("09.14", dict(committed=committed, prediction=prediction, measured=measured, explanation=explanation))

Notebooks 09a and 09b have 09.1–09.10. Every check runs in well under a second and leaves the
notebook's random stream alone (the measurement of 09.14 uses its own generator).
"""
from __future__ import annotations

import random
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from labkit import games, seq2seq
from labkit.course.checks.predict import PredictMeasureExplain
from labkit.course.exercises import Hint, exercise, expect_callable, expect_number


def _not_done(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError  # what an untouched stub function does


# --------------------------------------------------------------------------- 09.11 numerals by rules

_NUMBERS = [0, 1, 7, 10, 15, 20, 99, 100, 101, 110, 115, 1000, 1005, 1050, 1500, 2019, 3005, 9999, 10000,
            10001, 10010, 10100, 11000, 15015, 20000, 30050, 40506, 99999, 100000, 105000, 1000001,
            12345678, 99999999, *range(0, 99_999_999, 1_234_567)]


def _reference_from_chinese(text: str) -> int:
    units = {"十": 10, "百": 100, "千": 1000}
    total, section, digit = 0, 0, 0
    for ch in text:
        if ch in seq2seq.DIGITS:
            digit = seq2seq.DIGITS.index(ch)
        elif ch in units:
            section += (digit or 1) * units[ch]      # a bare 十 at the start means 一十
            digit = 0
        elif ch == "万":
            total += (section + digit) * 10_000
            section, digit = 0, 0
        else:
            raise ValueError(f"not a numeral character: {ch!r}")
    return total + section + digit


def _check_from_chinese(from_chinese: Callable) -> str:
    expect_callable(from_chinese, "from_chinese")
    for n in _NUMBERS:
        text = seq2seq.chinese_numeral(n)
        got = from_chinese(text)
        if isinstance(got, str):
            raise Hint(f"from_chinese({text!r}) returned the string {got!r}: return an int (int(...) converts)")
        value = expect_number(got, f"from_chinese({text!r})")
        if value == n:
            continue
        if n in (10, 15) or (10 <= n < 20):
            raise Hint(f"from_chinese({text!r}) gave {value:g}, want {n}: a numeral may start with a bare 十, meaning 一十")
        if "万" in text and value == n % 10_000 + n // 10_000:
            raise Hint(f"from_chinese({text!r}) gave {value:g}, want {n}: 万 multiplies everything before it by 10,000")
        if "零" in text:
            raise Hint(f"from_chinese({text!r}) gave {value:g}, want {n}: 零 only marks skipped places; it adds nothing "
                       "and multiplies nothing")
        raise Hint(f"from_chinese({text!r}) gave {value:g}, want {n}")
    return f"{len(_NUMBERS)} numerals from 零 to {seq2seq.chinese_numeral(99_999_999)} read back exactly"


def _no_bare_ten(text: str) -> int:
    """Wrong: 十 always takes the digit before it, so 十五 → 5."""
    units = {"十": 10, "百": 100, "千": 1000}
    total, section, digit = 0, 0, 0
    for ch in text:
        if ch in seq2seq.DIGITS:
            digit = seq2seq.DIGITS.index(ch)
        elif ch in units:
            section += digit * units[ch]
            digit = 0
        else:
            total += (section + digit) * 10_000
            section, digit = 0, 0
    return total + section + digit


def _digits_only(text: str) -> int:
    """Wrong: reads the digits and drops the units (一千零五 → 105)."""
    kept = "".join(str(seq2seq.DIGITS.index(ch)) for ch in text if ch in seq2seq.DIGITS)
    return int(kept) if kept else 0


exercise(
    "09.11",
    title="Chinese numerals read by rules",
    reference=lambda: _reference_from_chinese,
    stub=lambda: _not_done,
    wrong=[
        lambda: _no_bare_ten,
        lambda: _digits_only,
        lambda: lambda text: str(_reference_from_chinese(text)),
        lambda: lambda text: _reference_from_chinese(text.split("万")[-1]),
    ],
)(_check_from_chinese)


# --------------------------------------------------------------------------- 09.12 character error rate

_CER_CASES = [
    (["3005", "120"], ["3005", "120"]),
    (["305", "120"], ["3005", "120"]),
    (["3005"], ["305"]),
    (["1234", "99"], ["4321", "9"]),
    (["", "7"], ["12", "7"]),
    (["123456"], ["12"]),
    (["kitten", "flaw"], ["sitting", "lawn"]),
]


def _check_character_error_rate(character_error_rate: Callable) -> str:
    expect_callable(character_error_rate, "character_error_rate")
    for predictions, references in _CER_CASES:
        call = f"character_error_rate({predictions}, {references})"
        got = expect_number(character_error_rate(list(predictions), list(references)), call, " (the character error rate)")
        want = seq2seq.character_error_rate(predictions, references)
        if abs(got - want) < 1e-9:
            continue
        hamming = sum(sum(a != b for a, b in zip(p, r)) + abs(len(p) - len(r)) for p, r in zip(predictions, references))
        mean_of_rates = sum(seq2seq.edit_distance(p, r) / len(r) for p, r in zip(predictions, references)) / len(references)
        total = sum(len(r) for r in references)
        if abs(got - hamming / total) < 1e-9:
            raise Hint(f"{call} = {got:.4g}, want {want:.4g}: you compare position by position; one missing "
                       "character then shifts all the rest. Count the fewest insertions, deletions and "
                       "substitutions (edit distance, a dynamic programme)")
        if abs(got - mean_of_rates) < 1e-9:
            raise Hint(f"{call} = {got:.4g}, want {want:.4g}: that is the mean of each pair's rate; the CER "
                       "sums the edits over all pairs and divides by the total reference length")
        if abs(got - 1 + want) < 1e-9:
            raise Hint(f"{call} = {got:.4g}: that looks like 1 − CER; 0 means every character right")
        raise Hint(f"{call} = {got:.4g}, want {want:.4g} (Σ edit distance / Σ reference length)")
    return f"{len(_CER_CASES)} cases equal to the edit-distance CER"


exercise(
    "09.12",
    title="Character error rate",
    reference=lambda: seq2seq.character_error_rate,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda p, r: sum(sum(a != b for a, b in zip(x, y)) + abs(len(x) - len(y)) for x, y in zip(p, r))
        / sum(len(y) for y in r),
        lambda: lambda p, r: sum(seq2seq.edit_distance(x, y) / len(y) for x, y in zip(p, r)) / len(r),
        lambda: lambda p, r: 1 - seq2seq.character_error_rate(p, r),
        lambda: lambda p, r: 1 - seq2seq.exact_match(p, r),
    ],
)(_check_character_error_rate)


# --------------------------------------------------------------------------- 09.13 minimax

def _cases() -> list[games.Board]:
    positions = [b for b in games.all_positions() if sum(c != 0 for c in b) >= 3]
    return positions[::97]  # spread over the game, each quick to search to the end


def _check_game_value(game_value: Callable) -> str:
    expect_callable(game_value, "game_value")
    cases = _cases()
    for board in cases:
        got = expect_number(game_value(board), "game_value(board)", " (+1, 0 or -1)")
        want = games.game_value(board)
        if got == want:
            continue
        shown = games.render(board).replace("\n", " / ")
        mover = "X" if games.to_move(board) == 1 else "O"
        if got == want * games.to_move(board) or got == -want:
            raise Hint(f"on {shown} ({mover} to move) you gave {got:g}, want {want}: give the value for the player "
                       "to move, and negate the child's value (what is good for the opponent is bad for you)")
        raise Hint(f"on {shown} ({mover} to move) you gave {got:g}, want {want}: the best over the moves of "
                   "−game_value(child); a finished board is -1 for the player to move if the other just won, else 0")
    return f"minimax values of {len(cases)} positions, equal to labkit.games.game_value's"


def _x_point_of_view(board: games.Board) -> int:
    """Wrong: the value for X, not for the player to move."""
    return games.game_value(board) * games.to_move(board)


exercise(
    "09.13",
    title="Perfect play: minimax",
    reference=lambda: games.game_value,
    stub=lambda: _not_done,
    wrong=[
        lambda: _x_point_of_view,
        lambda: lambda board: -games.game_value(board),
        lambda: lambda board: 0,
        lambda: lambda board: max((games.winner(games.play(board, m)) * games.to_move(board)
                                   for m in games.legal_moves(board)), default=0),
    ],
)(_check_game_value)


# --------------------------------------------------------------------------- 09.14 predict, measure, explain

GAMES = 1000
SEED = 2026


@lru_cache(maxsize=1)
def first_player_wins(games_played: int = GAMES, seed: int = SEED) -> float:
    """The share of games X wins when both players move at random (a private generator)."""
    rng = random.Random(seed)
    player = games.random_player(rng)
    return sum(games.play_game(player, player) == 1 for _ in range(games_played)) / games_played


_FIRST_MOVE = PredictMeasureExplain(
    predictions={
        "a": "X and O win about equally often (within a few percent): the players are the same",
        "b": "X, who moves first, wins clearly more often",
        "c": "most games are draws",
    },
    explanations={
        "a": "X always has as many marks on the board as O or one more, and the game can end on X's fifth mark "
             "before O has a fifth: more marks, more lines completed first",
        "b": "the centre is worth more than a corner, and random players take it equally often",
        "c": "random players seldom complete a line, so the game usually fills up",
    },
    measure=first_player_wins,
    predicted=lambda share: "b" if share > 0.45 else "a",
    explained=lambda share: "a",
    what="the share of games X wins",
    wrong_explanations={
        "b": "both players are random and pick the centre equally often; that cannot favour one of them",
        "c": "a draw is the rarest result between random players, as the measurement shows",
    },
    misreadings=(
        (lambda value, true: 0.2 < value < 0.35, "that is O's share of wins; the question asks for X's"),
        (lambda value, true: value > 1, "give a share between 0 and 1, not a percentage"),
    ),
)
_FIRST_MOVE.register("09.14", "Predict, measure, explain: the first move's advantage", module=__name__,
                     wrong_measurements=(lambda: 1 - first_player_wins(), lambda: 100 * first_player_wins()))
