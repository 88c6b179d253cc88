"""Notebook 09a (image recognition, retrieval and generation): its notebooks are wired to its checks,
the checks' references agree with torch and labkit, the result assertions keep their thresholds, and
the widget's slice of the notebook runs on its own.

tests/test_notebook_wiring.py checks what every chapter shares (seeding, stubs, solutions, tags).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import distributions as D

from labkit import vision
from labkit.course.checks import ch09a
from labkit.course.exercises import chapter_exercises
from notebook_cells import code_cells as _code_cells, run_widget_slice

REPO = Path(__file__).resolve().parent.parent
NAME = "09a_vision"
CHAPTER = REPO / "chapters" / f"{NAME}.ipynb"
IDS = [ex.id for ex in chapter_exercises("09a")]


def test_the_notebook_has_exercises_09_1_to_09_5():
    assert IDS == ["09.1", "09.2", "09.3", "09.4", "09.5"]


def test_timing_and_widget_cells_are_marked_for_nbval():
    for source in _code_cells(CHAPTER):
        if re.search(r"\binteract\(", source) or "seconds[name]:5.1f" in source:
            assert source.splitlines()[0] == "# NBVAL_IGNORE_OUTPUT", source[:120]


def test_result_assertions_keep_their_thresholds():
    source = "\n".join(_code_cells(CHAPTER))
    assert 'growth["plain"][-1] > 10 * growth["residual"][-1]' in source
    assert "min(cnn_acc, res_acc) >= 0.82" in source
    assert 'precision["ResNet embedding", 10] > precision["pixels", 10] + 0.03' in source
    assert "test_elbo.mean() > baseline.mean() + 50" in source
    assert 'compare("Grad-CAM = the class activation map for this network"' in source


@pytest.mark.slow
def test_the_widget_slice_runs_on_its_own():
    """What the browser test runs: the cells tagged browser-setup (a VAE trained in seconds), then the
    widget's drawing at the sliders' ends."""
    namespace = run_widget_slice(CHAPTER, with_widget=False)
    exec(compile(_code_cells(CHAPTER)[[i for i, c in enumerate(_code_cells(CHAPTER)) if "def show_latent" in c][0]]
                 .split("widgets.interact(")[0], "<widget>", "exec"), namespace)
    for dimension, value in ((0, -3.0), (15, 3.0)):
        namespace["show_latent"](dimension, value)
    namespace["plt"].close("all")


# --------------------------------------------------------------------------- the checks agree with torch


def test_kl_reference_equals_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    assert torch.allclose(ch09a._torch_kl(mu, logvar), ch09a.generative.gaussian_kl(mu, logvar), atol=1e-5)
    q = D.Normal(mu, (0.5 * logvar).exp())
    assert torch.allclose(D.kl_divergence(q, D.Normal(0.0, 1.0)).sum(1), ch09a._torch_kl(mu, logvar), atol=1e-5)


def test_retrieval_case_separates_cosine_from_euclidean_and_self():
    for seed, k in ((1, 5), (2, 1), (3, 10)):
        embeddings, labels = ch09a._retrieval_case(seed)
        right = vision.precision_at_k(embeddings, labels, k)
        assert 0.4 < right < 0.95, "neither chance nor perfect: the cases can tell answers apart"
        assert abs(right - ch09a._euclidean(embeddings, labels, k)) > 1e-3
        assert abs(right - ch09a._with_self(embeddings, labels, k)) > 1e-3


def test_saliency_reference_by_finite_differences():
    model, (images, labels) = ch09a._saliency_model(), ch09a._saliency_images()
    got = ch09a._reference_saliency(model, images, labels)
    images64, model64 = images.double(), model.double()
    for b, c, i, j in ((0, 1, 3, 4), (2, 0, 0, 7), (3, 2, 5, 5)):
        step = torch.zeros_like(images64)
        step[b, c, i, j] = 1e-6
        slope = (model64(images64 + step)[b, labels[b]] - model64(images64 - step)[b, labels[b]]) / 2e-6
        assert abs(slope.item()) <= got[b, i, j].item() + 1e-5          # the max over channels bounds each one


def test_shift_measurement_by_hand():
    from labkit.data import load_images

    images = load_images("fashion_mnist", "test")[0][:1000].float() / 255
    shifted = torch.zeros_like(images)
    shifted[:, :, 3:] = images[:, :, :-3]
    sims = F.normalize(shifted.flatten(1), dim=1) @ F.normalize(images.flatten(1), dim=1).T
    share = (sims.argmax(1) == torch.arange(1000)).float().mean().item()
    assert share == pytest.approx(ch09a.shifted_self_retrieval(), abs=1e-9)
    assert share < 0.25                                                # the option the chapter's answer says
