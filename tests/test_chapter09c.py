"""Chapter 09c (applications: language and games): its notebooks are wired to its checks, the checks'
references agree with labkit (and the numeral reader with every numeral the chapter writes), the 09.14
measurement is the notebook's, and the widget's slice of the notebook runs on its own, quickly.

tests/test_notebook_wiring.py checks what every chapter shares (seeding, stubs, solutions, tags).
"""
from __future__ import annotations

import random
import re
import time
from pathlib import Path

from labkit import games, seq2seq
from labkit.course.checks import ch09c
from labkit.course.exercises import chapter_exercises
from notebook_cells import code_cells as _code_cells, run_widget_slice

REPO = Path(__file__).resolve().parent.parent
NAME = "09c_language_and_games"
CHAPTER = REPO / "chapters" / f"{NAME}.ipynb"
SOLUTIONS = REPO / "solutions" / f"{NAME}_solutions.ipynb"
IDS = [ex.id for ex in chapter_exercises("09c")]


def test_the_notebook_has_exercises_09_11_to_09_14():
    assert IDS == ["09.11", "09.12", "09.13", "09.14"]


def test_cells_that_print_times_or_show_widgets_are_marked_for_nbval():
    for source in _code_cells(CHAPTER):
        if re.search(r"\binteract\(|tokens/s|in \{[a-z_]*seconds|display\(widgets", source):
            assert source.splitlines()[0] == "# NBVAL_IGNORE_OUTPUT", source[:120]


def test_the_widget_slice_runs_on_its_own_and_redraws_fast():
    namespace = run_widget_slice(CHAPTER, with_widget=False)
    for simulations in (2, 400):                                    # the slider's ends
        start = time.perf_counter()
        namespace["show_search"](simulations)
        assert time.perf_counter() - start < 3.0                      # < 1 s on a quiet machine
    namespace["plt"].close("all")


def test_result_assertions_keep_their_thresholds():
    source = "\n".join(_code_cells(CHAPTER))
    assert 'scores["encoder–decoder"][0] > 0.9' in source
    assert 'scores["character for character"][0] < min(scores["encoder–decoder"][0], scores["decoder-only GPT"][0])' in source
    assert 'last["net + MCTS", "random"]["loss"] == 0 and last["net + MCTS", "one-ply"]["loss"] <= 0.05' in source
    assert 'last["perfect"] > first["perfect"] + 0.15' in source
    assert "assert mine == theirs" in source
    assert "assert not set(train_numbers) & set(test_numbers)" in source


def test_the_numeral_reader_reads_every_numeral_the_chapter_writes():
    assert all(ch09c._reference_from_chinese(seq2seq.chinese_numeral(n)) == n for n in range(0, 99_999_999, 9_973))


def test_the_minimax_cases_are_positions_of_the_game_and_not_all_draws():
    cases = ch09c._cases()
    assert len(cases) >= 30 and {games.game_value(b) for b in cases} == {-1, 0, 1}


def test_the_measurement_of_09_14_is_the_notebooks():
    source = "\n".join(_code_cells(CHAPTER))
    assert "random.Random(2026)" in source and "range(1000)" in source
    rng = random.Random(ch09c.SEED)
    both = games.random_player(rng)
    results = [games.play_game(both, both) for _ in range(ch09c.GAMES)]
    assert results.count(1) / ch09c.GAMES == ch09c.first_player_wins()
    assert results.count(1) > 1.5 * results.count(-1)                 # the explanation "a" holds
