"""Chapter 09b (speech recognition and recommendation): its notebook is wired to its checks, the checks'
references agree with torch.stft and a direct least-squares solve, the result assertions keep their
thresholds, and the widget's slice of the notebook runs on its own.

tests/test_notebook_wiring.py checks what every chapter shares (seeding, stubs, solutions, tags).
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from labkit.course.checks import ch09b
from labkit.course.exercises import chapter_exercises
from notebook_cells import code_cells as _code_cells, run_widget_slice

REPO = Path(__file__).resolve().parent.parent
NAME = "09b_speech_and_recommendation"
CHAPTER = REPO / "chapters" / f"{NAME}.ipynb"
IDS = [ex.id for ex in chapter_exercises("09b")]


def test_the_notebook_has_exercises_09_6_to_09_9():
    assert IDS == ["09.6", "09.7", "09.8", "09.9"]


def test_timing_and_widget_cells_are_marked_for_nbval():
    for source in _code_cells(CHAPTER):
        if re.search(r"\binteract\(|perf_counter\(\)|Audio\(", source):
            assert source.splitlines()[0] == "# NBVAL_IGNORE_OUTPUT", source[:120]


def test_the_widget_slice_runs_on_its_own():
    """What the browser test runs: the cells tagged browser-setup, then the widget's drawing at the ends."""
    namespace = run_widget_slice(CHAPTER, with_widget=False)
    for snr_db, frame_ms in ((-10, 8), (40, 128)):          # the slider's ends, the dropdown's ends
        namespace["show_spectrogram"](snr_db, frame_ms)
    namespace["plt"].close("all")


def test_result_assertions_keep_their_thresholds():
    source = "\n".join(_code_cells(CHAPTER))
    assert "assert cnn_test_accuracy > 0.85" in source
    assert 'cnn_test_accuracy > baselines["mean spectrum + logistic regression"] + 0.1' in source
    assert 'assert mf_rmse < rmse_baselines["item mean (shrunk)"] - 0.1' in source
    assert 'ranking[f"matrix factorisation (rank {rank})"][1] > ranking["popularity"][1] + 0.05' in source
    assert "assert recovery.min() > 0.6" in source
    assert 'compare("STFT by hand vs torch.stft (real part)"' in source


def test_power_spectrogram_reference_is_torch_stft_and_labkits():
    from labkit import audio

    signal = torch.randn(2, 1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.allclose(ch09b._reference_power_spectrogram(signal, 128, 32), audio.power_spectrogram(signal, 128, 32))


def test_als_reference_solves_the_augmented_least_squares():
    """min |r − Qp|² + l2|p|² is least squares on Q stacked over √l2·I, with r stacked over zeros."""
    generator = torch.Generator().manual_seed(3)
    q = torch.randn(20, 4, generator=generator, dtype=torch.float64)
    r = torch.randn(20, generator=generator, dtype=torch.float64)
    l2 = 0.7
    stacked = torch.cat([q, l2 ** 0.5 * torch.eye(4, dtype=torch.float64)])
    target = torch.cat([r, torch.zeros(4, dtype=torch.float64)])
    direct = torch.linalg.lstsq(stacked, target.unsqueeze(1)).solution.squeeze(1)
    assert torch.allclose(ch09b._reference_als(q, r, l2), direct, atol=1e-10)


def test_the_oracle_measurement_is_below_one_and_above_popularity():
    value = ch09b._oracle_hit_rate()
    assert 0.6 < value < 0.999 and ch09b.ORACLE.predicted(value) == "b" and ch09b.ORACLE.explained(value) == "b"
