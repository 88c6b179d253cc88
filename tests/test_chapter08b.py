"""Chapter 08b (training on several processes): its notebooks are wired to their
checks, the checks agree with labkit.parallelism, and the widget's slice of the notebook runs on its own.

tests/test_notebook_wiring.py checks what every chapter shares (seeding, stubs, solutions, tags).
"""
from __future__ import annotations

import math
import re
from pathlib import Path

from labkit.course.checks import ch08b
from labkit.course.exercises import chapter_exercises, check
from labkit.parallelism import data_parallel_speedup, ring_all_reduce_bytes, zero_bytes_per_device
from notebook_cells import cells as _cells, code_cells as _code_cells, run_widget_slice

REPO = Path(__file__).resolve().parent.parent
NAME = "08b_distributed"
CHAPTER = REPO / "chapters" / f"{NAME}.ipynb"
SOLUTIONS = REPO / "solutions" / f"{NAME}_solutions.ipynb"
IDS = [ex.id for ex in chapter_exercises("08b")]


def test_the_notebook_has_exercises_08_5_to_08_7():
    assert IDS == ["08.5", "08.6", "08.7"]
    assert [ex.id for ex in chapter_exercises("08")][4:7] == IDS


def test_timing_and_widget_cells_are_marked_for_nbval():
    for source in _code_cells(CHAPTER) + _code_cells(SOLUTIONS):
        if re.match(r"def |[A-Z_]+ = r\"\"\"", source):
            continue                                 # a helper's or a script's definition prints nothing
        if re.search(r"\binteract\(|perf_counter\(\)|\btokens_per_s\b|launch\(\[.*labkit", source):
            assert source.splitlines()[0] == "# NBVAL_IGNORE_OUTPUT", source[:120]


def test_subprocesses_are_time_limited():
    for source in _code_cells(CHAPTER) + _code_cells(SOLUTIONS):
        for call in re.findall(r"subprocess\.run\((.*?)\)\n", source, re.S):
            assert "timeout=" in call, call[:120]
        for call in re.findall(r"\blaunch\(\[[^\n]*", source):
            assert "timeout=" in call, call


def test_the_widget_slice_runs_on_its_own():
    """What the browser test runs: the cells tagged browser-setup, then the widget cell."""
    namespace = run_widget_slice(CHAPTER)
    fig, ax = namespace["plt"].subplots()
    for machines, bandwidth, params, step in ((128, 0.1, 1e5, 10), (1, 1000, 1, 1e4)):   # the sliders' far ends
        speed, share = namespace["speedup_curves"](ax, machines, bandwidth, params, step)
        assert 0 < speed <= machines and 0 <= share < 1
    namespace["plt"].close("all")


def test_result_assertions_keep_their_thresholds():
    source = "\n".join(_code_cells(CHAPTER))
    assert 'r["max_diff"] < 1e-3 * r["moved"]' in source
    assert 'abs(by_hand[0]["weights_sum"] - by_hand[1]["weights_sum"]) < 1e-9' in source
    assert "max(losses) - min(losses) < 1e-3" in source
    assert "assert by_hand_bytes == parallelism.ring_all_reduce_bytes(N, world)" in source
    assert "assert row == [zero_by_hand(n7b, devices, s) for s in range(4)]" in source


def test_no_measured_number_is_typed_into_the_prose():
    """Markdown may hold formulas and facts (16 bytes, 80 GB, 7 B), never a speed this machine measured."""
    for cell in _cells(CHAPTER):
        if cell["cell_type"] == "markdown":
            text = "".join(cell["source"])
            assert not re.search(r"\d[\d,.]*\s*(?:tokens/s|tok/s|ms/step|x faster|× faster)", text), text[:200]


# --------------------------------------------------------------------------- the checks agree with labkit


def test_references_are_labkits_functions():
    for n, world, b in ch08b._ALL_REDUCE_CASES:
        assert check("08.5", lambda n_, w_, b_: ring_all_reduce_bytes(n_, w_, b_), show=False).passed
        assert ring_all_reduce_bytes(n, world, b) <= 2 * n * b
    for n, d, stage in ch08b._ZERO_CASES:
        assert ch08b._reference_zero_bytes(n, d, stage) == zero_bytes_per_device(n, d, stage)["total"]
    for k, step, grad, bw in ch08b._SPEEDUP_CASES:
        speed = data_parallel_speedup(k, step, grad, bw)[0]
        ring = 2 * (k - 1) / k * grad / (bw * 1e9)
        assert math.isclose(speed, k * step / (step + ring))


def test_each_wrong_number_gets_its_own_hint_not_the_general_one():
    general = {"08.5": "each N − 1 steps of 1/N", "08.6": "each sharded part is divided", "08.7": "one step of compute, then"}
    for ex in chapter_exercises("08b"):
        for wrong in ex.wrong:
            result = check(ex.id, wrong(), show=False)
            assert not result.passed and general[ex.id] not in result.message, (ex.id, result.message)
