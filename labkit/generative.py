"""Image generation with a variational autoencoder (VAE, Kingma & Welling 2014).

Chapter 09a builds each piece by hand and then reuses the version kept here:

- `VAE`: an MLP encoder q(z|x) = N(μ, diag σ²) and decoder p(x|z) = Bernoulli(sigmoid(logits));
- `gaussian_kl`: KL(N(μ, σ²) ‖ N(0, I)) in closed form;
- `bernoulli_log_likelihood`, `elbo`: the evidence lower bound, per image, in nats;
- `pixel_mean_log_likelihood`: the baseline, a model that knows only each pixel's mean.

Images are binarised 28×28 digits flattened to (B, 784) with values in {0, 1}.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VAE", "gaussian_kl", "bernoulli_log_likelihood", "elbo", "pixel_mean_log_likelihood", "binarize"]


def _expect_flat(x: object, name: str, features: int | None = None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} should be a torch.Tensor (B, D), got {type(x).__name__}")
    if x.dim() != 2 or (features is not None and x.shape[1] != features):
        want = f"(B, {features})" if features is not None else "(B, D)"
        raise ValueError(f"{name} should have shape {want}, got {tuple(x.shape)}: flatten images with x.flatten(1)")
    return x


def binarize(images: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """uint8 images (N, 28, 28) → float {0, 1} (N, 784): a pixel is 1 where it is brighter than
    `threshold` (of 255). Chapter 09a models binarised digits, so that a Bernoulli likelihood is exact."""
    if images.dtype != torch.uint8:
        raise ValueError(f"binarize expects uint8 images (0…255), got {images.dtype}")
    return (images.flatten(1).float() / 255 > threshold).float()


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, diag σ²) ‖ N(0, I)) = ½ Σ_d (μ² + σ² − 1 − log σ²), per row: (B, D) → (B,).

    `logvar` is log σ². Chapter 09a derives it and checks it against torch.distributions."""
    mu, logvar = _expect_flat(mu, "mu"), _expect_flat(logvar, "logvar")
    if mu.shape != logvar.shape:
        raise ValueError(f"mu and logvar should have the same shape, got {tuple(mu.shape)} and {tuple(logvar.shape)}")
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(dim=1)


def bernoulli_log_likelihood(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x) = Σ_pixels [x log p + (1 − x) log(1 − p)] with p = sigmoid(logits): (B, D), (B, D) → (B,).

    Computed from the logits (binary cross-entropy with logits), which is stable. Chapter 09a."""
    logits, x = _expect_flat(logits, "logits"), _expect_flat(x, "x")
    if logits.shape != x.shape:
        raise ValueError(f"logits and x should have the same shape, got {tuple(logits.shape)} and {tuple(x.shape)}")
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=1)


class VAE(nn.Module):
    """A variational autoencoder with MLP encoder and decoder.

    encode: x (B, image_size) → μ, log σ² (B, latent_dim); decode: z (B, latent_dim) → logits
    (B, image_size); forward: x → (logits, μ, log σ²), sampling z = μ + σ·ε (the
    reparameterisation trick) in training mode and z = μ in eval mode. Chapter 09a.
    """

    def __init__(self, latent_dim: int = 16, hidden: int = 400, image_size: int = 784) -> None:
        super().__init__()
        for name, value in (("latent_dim", latent_dim), ("hidden", hidden), ("image_size", image_size)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"VAE: {name} must be a positive int, got {value!r}")
        self.latent_dim, self.image_size = latent_dim, image_size
        self.encoder = nn.Sequential(nn.Linear(image_size, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent_dim))
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, image_size))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(_expect_flat(x, "x", self.image_size)).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(_expect_flat(z, "z", self.latent_dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu) if self.training else mu
        return self.decode(z), mu, logvar

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images drawn from the prior, z ~ N(0, I), shown as pixel probabilities (n, image_size)."""
        z = torch.randn(n, self.latent_dim, generator=generator)
        return torch.sigmoid(self.decode(z.to(next(self.parameters()).device)))


def elbo(model: VAE, x: torch.Tensor, samples: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
    """The evidence lower bound, per image, in nats: E_q[log p(x|z)] − KL(q(z|x) ‖ p(z)), (B, D) → (B,).

    The expectation is estimated with `samples` draws of z ~ q(z|x). ELBO ≤ log p(x): higher is
    better, and −ELBO is the VAE's training loss. Chapter 09a."""
    x = _expect_flat(x, "x", model.image_size)
    if not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be an int ≥ 1, got {samples!r}")
    mu, logvar = model.encode(x)
    reconstruction = torch.zeros(len(x), device=x.device)
    for _ in range(samples):
        eps = torch.randn(mu.shape, generator=generator, device="cpu").to(mu.device)
        reconstruction = reconstruction + bernoulli_log_likelihood(model.decode(mu + (0.5 * logvar).exp() * eps), x)
    return reconstruction / samples - gaussian_kl(mu, logvar)


def pixel_mean_log_likelihood(train: torch.Tensor, test: torch.Tensor, smoothing: float = 1.0) -> torch.Tensor:
    """The baseline: each pixel an independent coin whose probability is its mean over `train`
    (with `smoothing` pseudo-counts, so no pixel has probability 0 or 1). Returns log p(x) of each
    `test` image in nats, (N,). Chapter 09a compares the VAE's ELBO with it."""
    train, test = _expect_flat(train, "train"), _expect_flat(test, "test", train.shape[1])
    p = (train.sum(dim=0) + smoothing) / (len(train) + 2 * smoothing)
    logits = torch.log(p) - torch.log1p(-p)
    return bernoulli_log_likelihood(logits.expand_as(test), test)


def nats_to_bits_per_pixel(nats: float, pixels: int = 784) -> float:
    """Nats per image → bits per pixel (÷ pixels ÷ ln 2). Chapter 09a."""
    return nats / pixels / math.log(2)
