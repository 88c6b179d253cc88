"""labkit.roofline (chapter 08a): arithmetic intensity, the roofline and a bandwidth measurement."""
from __future__ import annotations

import doctest

import pytest

from labkit import roofline
from labkit.roofline import attainable_gflops, copy_bandwidth_gbs, matmul_intensity, ridge_point


def test_module_doctest():
    assert doctest.testmod(roofline, raise_on_error=False).failed == 0


def test_matmul_intensity_by_hand():
    # (2, 3) @ (3, 4): 2·2·3·4 = 48 FLOP over (6 + 12 + 8) · 4 = 104 bytes
    assert matmul_intensity(2, 3, 4) == pytest.approx(48 / 104)
    assert matmul_intensity(2, 3, 4, bytes_per_value=2) == pytest.approx(2 * 48 / 104)
    # a square product's intensity grows with its size: n/6 FLOP per byte in float32
    assert matmul_intensity(600, 600, 600) == pytest.approx(100)
    # a thin product (the GPT's head onto a small vocabulary) stays low however many rows
    assert matmul_intensity(1_000_000, 192, 70) < 2 * 192 * 70 / (4 * (192 + 70))


def test_roofline_is_the_lower_of_the_two_roofs():
    assert attainable_gflops(0.1, peak_gflops=100, bandwidth_gbs=20) == pytest.approx(2.0)
    assert attainable_gflops(50, peak_gflops=100, bandwidth_gbs=20) == 100
    ridge = ridge_point(100, 20)
    assert ridge == 5 and attainable_gflops(ridge, 100, 20) == pytest.approx(100)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "1", None, True])
def test_bad_numbers_say_what_was_wrong(bad):
    with pytest.raises(ValueError, match="must be"):
        attainable_gflops(bad, 100, 10)
    with pytest.raises(ValueError, match="must be"):
        ridge_point(100, bad)


def test_bad_matrix_sizes():
    with pytest.raises(ValueError, match="k must be a whole number"):
        matmul_intensity(2, 0, 3)


def test_copy_bandwidth_is_a_plausible_number():
    gbs = copy_bandwidth_gbs(megabytes=8, tries=2)
    assert 0.1 < gbs < 10_000
