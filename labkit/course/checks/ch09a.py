"""Checks for notebook 09a (applications, part 1: image recognition, retrieval and generation).

The stub cells in ``chapters/09a_vision.ipynb``::

    def gaussian_kl(mu, logvar):
        raise NotImplementedError  # TODO: KL(N(mu, exp(logvar)) ‖ N(0, I)) per row, shape (B,)
    check("09.1", gaussian_kl)

    def precision_at_k(embeddings, labels, k):
        raise NotImplementedError  # TODO: mean share of each item's k nearest others (cosine) with its label
    check("09.2", precision_at_k)

    def grad_cam_from(activations, gradients):
        raise NotImplementedError  # TODO: ReLU(Σ_k mean(gradient_k) · A_k), shape (B, H, W)
    check("09.3", grad_cam_from)

    def saliency(model, images, labels):
        raise NotImplementedError  # TODO: max over channels of |∂ logit[label] / ∂ pixel|, shape (B, H, W)
    check("09.4", saliency)

    prediction = ...  # TODO: "a", "b" or "c"
    ... the measurement ...
    check("09.5", dict(committed=committed, prediction=prediction, measured=measured, explanation=explanation))

Every check runs the learner's code on numbers from its own generator (the notebook's random
stream is left alone) and compares with labkit's or torch's answer.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import distributions as D, nn

from labkit import generative, vision
from labkit.course.checks.predict import PredictMeasureExplain
from labkit.course.exercises import Hint, exercise, expect_callable, expect_number, expect_tensor, same_shape
from labkit.data import load_images


def _not_done(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError  # what an untouched stub function does


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- 09.1 the KL term


def _torch_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    q = D.Independent(D.Normal(mu, (0.5 * logvar).exp()), 1)
    p = D.Independent(D.Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1)
    return D.kl_divergence(q, p)


def _check_gaussian_kl(gaussian_kl: Callable) -> str:
    expect_callable(gaussian_kl, "gaussian_kl")
    g = _generator(0)
    mu, logvar = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    got = expect_tensor(gaussian_kl(mu.clone(), logvar.clone()), "gaussian_kl(mu, logvar)")
    if got.dim() == 0:
        raise Hint("return one KL per row (per image), shape (B,): sum over the latent dimensions, not over the batch")
    same_shape(got, (6,), "gaussian_kl(mu, logvar) for mu (6, 5)")
    want = _torch_kl(mu, logvar)
    if torch.allclose(got.float(), want, atol=1e-4):
        return "equal to torch.distributions.kl_divergence(N(μ, σ²), N(0, I)) for 6 rows of 5 dimensions"
    if torch.allclose(got.float(), 2 * want, atol=1e-4):
        raise Hint("yours is twice the KL: the formula has a factor ½ in front of the sum")
    if torch.allclose(got.float(), -want, atol=1e-4):
        raise Hint("yours has the wrong sign: a KL divergence is never negative")
    if torch.allclose(got.float(), want / 5, atol=1e-4):
        raise Hint("you averaged over the 5 latent dimensions: the KL of independent dimensions is their sum")
    sigma_not_var = 0.5 * (mu.pow(2) + (0.5 * logvar).exp() - 1 - logvar).sum(1)
    if torch.allclose(got.float(), sigma_not_var, atol=1e-4):
        raise Hint("logvar is log σ², so σ² = exp(logvar); you used exp(logvar / 2), which is σ")
    raise Hint(f"for 6 rows the KL should be {want[:3].tolist()}…, got {got[:3].tolist()}…: "
               "KL = ½ Σ_d (μ² + σ² − 1 − log σ²) with σ² = exp(logvar)")


exercise(
    "09.1",
    title="The VAE's KL term",
    reference=lambda: generative.gaussian_kl,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda mu, lv: 2 * generative.gaussian_kl(mu, lv),
        lambda: lambda mu, lv: -generative.gaussian_kl(mu, lv),
        lambda: lambda mu, lv: generative.gaussian_kl(mu, lv) / mu.shape[1],
        lambda: lambda mu, lv: 0.5 * (mu.pow(2) + (0.5 * lv).exp() - 1 - lv).sum(1),
        lambda: lambda mu, lv: generative.gaussian_kl(mu, lv).sum(),
    ],
)(_check_gaussian_kl)


# --------------------------------------------------------------------------- 09.2 precision@k


def _retrieval_case(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Clusters of very different lengths, so cosine and Euclidean neighbours differ."""
    g = _generator(seed)
    labels = torch.randint(0, 4, (120,), generator=g)
    directions = torch.randn(4, 6, generator=g)
    vectors = directions[labels] + 1.0 * torch.randn(120, 6, generator=g)
    return vectors * (0.2 + 5 * torch.rand(120, 1, generator=g)), labels


def _check_precision_at_k(precision_at_k: Callable) -> str:
    expect_callable(precision_at_k, "precision_at_k")
    for seed, k in ((1, 5), (2, 1), (3, 10)):
        embeddings, labels = _retrieval_case(seed)
        got = expect_number(precision_at_k(embeddings.clone(), labels.clone(), k), f"precision_at_k(..., k={k})")
        want = vision.precision_at_k(embeddings, labels, k)
        if abs(got - want) < 1e-6:
            continue
        with_self = _with_self(embeddings, labels, k)
        if abs(got - with_self) < 1e-6:
            raise Hint(f"for k={k} you count each item as its own nearest neighbour (similarity 1): leave it out, "
                       "e.g. set the diagonal of the similarity matrix to -inf before topk")
        if abs(got - _euclidean(embeddings, labels, k)) < 1e-6:
            raise Hint(f"for k={k} you ranked by Euclidean distance; rank by cosine similarity (normalise each vector "
                       "to length 1 first): long and short vectors of a class point the same way")
        raise Hint(f"for k={k} precision@k should be {want:.4f}, got {got:.4f}: for each item, its k most similar "
                   "*other* items by cosine similarity, the share with the same label, averaged over all items")
    return "equal to labkit.vision.precision_at_k for three sets and k = 5, 1, 10"


def _with_self(embeddings: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Wrong: each item counts itself among its neighbours."""
    sims = F.normalize(embeddings, dim=1) @ F.normalize(embeddings, dim=1).T
    return (labels[sims.topk(k, dim=1).indices] == labels[:, None]).float().mean().item()


def _euclidean(embeddings: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Wrong: nearest by Euclidean distance, not by angle."""
    distances = torch.cdist(embeddings, embeddings)
    distances.fill_diagonal_(float("inf"))
    return (labels[distances.topk(k, dim=1, largest=False).indices] == labels[:, None]).float().mean().item()


exercise(
    "09.2",
    title="Precision@k for retrieval",
    reference=lambda: lambda e, y, k: vision.precision_at_k(e, y, k),
    stub=lambda: _not_done,
    wrong=[lambda: _with_self, lambda: _euclidean, lambda: lambda e, y, k: 0.25],
)(_check_precision_at_k)


# --------------------------------------------------------------------------- 09.3 Grad-CAM


def _check_grad_cam(grad_cam_from: Callable) -> str:
    expect_callable(grad_cam_from, "grad_cam_from")
    g = _generator(4)
    activations = torch.rand(3, 8, 5, 5, generator=g)                      # after a ReLU: ≥ 0
    gradients = torch.randn(3, 8, 5, 5, generator=g) + torch.linspace(-1, 1, 8)[None, :, None, None]
    got = expect_tensor(grad_cam_from(activations.clone(), gradients.clone()), "grad_cam_from(activations, gradients)")
    same_shape(got, (3, 5, 5), "the Grad-CAM maps for activations (3, 8, 5, 5)")
    want = vision.grad_cam_from(activations, gradients)
    if torch.allclose(got.float(), want, atol=1e-5):
        return "equal to labkit.vision.grad_cam_from for 3 images of 8 channels"
    unclipped = (gradients.mean(dim=(2, 3), keepdim=True) * activations).sum(1)
    if torch.allclose(got.float(), unclipped, atol=1e-5):
        raise Hint("some of your values are negative: Grad-CAM keeps only the evidence *for* the class, ReLU of the sum")
    if torch.allclose(got.float(), 25 * want, atol=1e-4):
        raise Hint("your map is 25 times too large: the weight α_k is the *mean* of the gradient over the 5 × 5 "
                   "positions, not its sum")
    if torch.allclose(got.float(), F.relu((gradients * activations).sum(1)), atol=1e-5):
        raise Hint("you multiply gradient and activation position by position: Grad-CAM first averages each "
                   "channel's gradient into one weight α_k, then weighs the whole channel A_k with it")
    raise Hint("Grad-CAM: α_k = gradients[:, k].mean over (H, W); map = ReLU(Σ_k α_k · activations[:, k])")


exercise(
    "09.3",
    title="Grad-CAM from activations and gradients",
    reference=lambda: vision.grad_cam_from,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda a, g: (g.mean(dim=(2, 3), keepdim=True) * a).sum(1),
        lambda: lambda a, g: F.relu((g.sum(dim=(2, 3), keepdim=True) * a).sum(1)),
        lambda: lambda a, g: F.relu((g * a).sum(1)),
        lambda: lambda a, g: F.relu((g.amax(dim=(2, 3), keepdim=True) * a).sum(1)),
    ],
)(_check_grad_cam)


# --------------------------------------------------------------------------- 09.4 saliency (a variation)


def _saliency_model() -> nn.Module:
    with torch.random.fork_rng(devices=[]):                  # the notebook's random stream stays put
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 5)).eval()


def _saliency_images() -> tuple[torch.Tensor, torch.Tensor]:
    g = _generator(5)
    return torch.rand(4, 3, 8, 8, generator=g), torch.tensor([0, 2, 4, 1])


def _reference_saliency(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    images = images.clone().requires_grad_(True)
    model(images).gather(1, labels[:, None]).sum().backward()
    assert images.grad is not None
    return images.grad.abs().amax(dim=1)


def _check_saliency(saliency: Callable) -> str:
    expect_callable(saliency, "saliency")
    model, (images, labels) = _saliency_model(), _saliency_images()
    got = expect_tensor(saliency(model, images.clone(), labels.clone()), "saliency(model, images, labels)")
    same_shape(got, (4, 8, 8), "the saliency maps for images (4, 3, 8, 8)")
    got = got.detach().float()
    want = _reference_saliency(_saliency_model(), images, labels)
    if torch.allclose(got, want, atol=1e-6):
        return "equal to max over channels of |∂ score / ∂ pixel| for 4 images of 3 channels"
    fresh = _saliency_model()
    x = images.clone().requires_grad_(True)
    F.cross_entropy(fresh(x), labels, reduction="sum").backward()
    assert x.grad is not None
    if torch.allclose(got, x.grad.abs().amax(dim=1), atol=1e-6):
        raise Hint("you took the gradient of the loss; the saliency of a class is the gradient of its *score* "
                   "(its logit), which does not depend on the other classes")
    x = images.clone().requires_grad_(True)
    fresh(x).gather(1, labels[:, None]).sum().backward()
    assert x.grad is not None
    if torch.allclose(got, x.grad.amax(dim=1), atol=1e-6):
        raise Hint("take the size of the gradient, |∂ score / ∂ pixel|, before the maximum over channels: a pixel "
                   "that lowers the score when brightened matters as much as one that raises it")
    if torch.allclose(got, x.grad.abs().sum(dim=1), atol=1e-6):
        raise Hint("take the maximum over the colour channels, not their sum")
    raise Hint("make the images require gradients, backpropagate the sum of each image's score for its own label "
               "(logits.gather(1, labels[:, None]).sum()), then take images.grad.abs().amax(dim=1)")


def _saliency_of_loss(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    x = images.clone().requires_grad_(True)
    F.cross_entropy(model(x), labels, reduction="sum").backward()
    assert x.grad is not None
    return x.grad.abs().amax(dim=1)


def _signed_saliency(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    x = images.clone().requires_grad_(True)
    model(x).gather(1, labels[:, None]).sum().backward()
    assert x.grad is not None
    return x.grad.amax(dim=1)


exercise(
    "09.4",
    title="A saliency map (a variation of Grad-CAM)",
    reference=lambda: _reference_saliency,
    stub=lambda: _not_done,
    wrong=[lambda: _saliency_of_loss, lambda: _signed_saliency,
           lambda: lambda m, x, y: _reference_saliency(m, x, y).mean(0, keepdim=True).expand(len(x), -1, -1)],
)(_check_saliency)


# --------------------------------------------------------------------------- 09.5 predict, measure, explain


@lru_cache(maxsize=8)
def shifted_self_retrieval(shift: int = 3, n: int = 1000) -> float:
    """The measurement of exercise 09.5: the first `n` Fashion-MNIST test images, each shifted `shift`
    pixels to the right (0 comes in), searched for among the `n` unshifted images by cosine similarity
    of raw pixels. Returns the share whose nearest neighbour is the image itself (no randomness, so it
    is computed once per setting and remembered)."""
    images = load_images("fashion_mnist", "test")[0][:n].float() / 255           # (n, 28, 28)
    shifted = torch.zeros_like(images)
    shifted[:, :, shift:] = images[:, :, :28 - shift]
    found, _ = vision.nearest_neighbours(shifted.flatten(1), images.flatten(1), k=1)
    return (found[:, 0] == torch.arange(n)).float().mean().item()


SHIFT = PredictMeasureExplain(
    predictions={
        "a": "nearly all (over 90 %): a 3-pixel shift leaves the picture the same",
        "b": "about half",
        "c": "few (under a quarter)",
    },
    explanations={
        "a": "raw pixels are compared position by position: a shift moves every edge onto other positions, so the "
             "shifted image overlaps many unshifted images of similar shape more than it overlaps its own original",
        "b": "cosine similarity divides by the length, and the shift changes the brightness of the image a lot",
        "c": "the test set holds exact copies of the shifted images, which win the search",
    },
    measure=shifted_self_retrieval,
    predicted=lambda share: "a" if share > 0.9 else "b" if share > 0.25 else "c",
    explained=lambda share: "a" if share < 0.5 else "none",
    what="the share of shifted images whose nearest raw-pixel neighbour is their own original",
    wrong_explanations={
        "b": "moving a centred article 3 pixels pushes only a few dark background columns out of the frame; "
             "compare the sums of the pixels before and after. What does a comparison position by position see?",
        "c": "the searched set holds only the 1 000 unshifted images; none of them is a shifted copy",
    },
    misreadings=(
        (lambda value, true: value > 1, "give the share as a fraction between 0 and 1, not a percentage"),
        (lambda value, true: abs(value - (1 - true)) < 0.005 and abs(true - 0.5) > 0.01,
         "that is the share that did NOT find itself; the question asks for the share that did"),
    ),
)

SHIFT.register(
    "09.5", "Predict, measure, explain: retrieval by raw pixels after a shift", module=__name__,
    wrong_measurements=(lambda: 1 - shifted_self_retrieval(), lambda: 100 * shifted_self_retrieval()),
    more_wrong=(lambda: SHIFT.answer(committed="d", prediction="d"),),
)
