"""Privacy of training data: how exposed a planted secret is, and differentially private SGD.

Chapter 11b plants a canary ("my PIN is 7351") in the training text, trains a small GPT, and ranks
the canary among every possible secret by the model's log-likelihood: the *exposure* of Carlini et
al., "The Secret Sharer" (2019, arXiv:1802.08232). Then it trains with DP-SGD (Abadi et al. 2016,
arXiv:1607.00133): each example's gradient clipped to norm ≤ C, Gaussian noise of standard
deviation σ·C added to their sum. ``epsilon`` turns (sampling rate, σ, steps) into an (ε, δ) bound
with the Rényi-DP accountant of the subsampled Gaussian (Mironov et al. 2019, arXiv:1908.10530).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["exposure", "clip_per_example", "noisy_mean_gradient", "epsilon"]


def exposure(canary_score: float, candidate_scores: Sequence[float] | torch.Tensor) -> float:
    """log₂ |R| − log₂ rank: how much more likely the model finds the planted secret than chance.

    ``candidate_scores`` (|R|,) are the log-likelihoods of every possible secret (the canary's among
    them); rank 1 = the most likely. A secret the model knows nothing about sits near the middle
    (exposure ≈ 1 bit); a memorised one ranks first (exposure = log₂ |R|). Ties count in the
    canary's favour of nothing: rank = 1 + the number of candidates scored strictly higher.
    """
    scores = torch.as_tensor(candidate_scores, dtype=torch.float64).reshape(-1)
    if scores.numel() < 2:
        raise ValueError(f"candidate_scores needs at least 2 candidates, got {scores.numel()}")
    if not torch.isfinite(scores).all() or not math.isfinite(canary_score):
        raise ValueError("scores must be finite log-likelihoods (got NaN or inf): check the model's output")
    rank = 1 + int((scores > canary_score).sum())
    return math.log2(scores.numel()) - math.log2(rank)


def clip_per_example(grads: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Scale each row of ``grads`` (B, P) — one example's flattened gradient — to norm ≤ ``max_norm``.

    g_i · min(1, C / ‖g_i‖): rows already shorter than C are unchanged. This bounds what any one
    example can move the model: the *sensitivity* that DP-SGD's noise is sized to.
    """
    if grads.dim() != 2:
        raise ValueError(f"grads must be (B, P), one flattened gradient per example, got shape {tuple(grads.shape)}")
    if not max_norm > 0:
        raise ValueError(f"max_norm (C) must be > 0, got {max_norm}")
    norms = grads.norm(dim=1, keepdim=True)                                    # (B, 1)
    return grads * (max_norm / (norms + 1e-12)).clamp(max=1.0)


def noisy_mean_gradient(grads: torch.Tensor, max_norm: float, noise_multiplier: float,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """DP-SGD's gradient: (Σ clipped g_i + N(0, (σ·C)²)) / B for per-example grads (B, P) → (P,)."""
    if noise_multiplier < 0:
        raise ValueError(f"noise_multiplier (σ) must be ≥ 0, got {noise_multiplier}")
    total = clip_per_example(grads, max_norm).sum(dim=0)
    noise = torch.randn(total.shape, generator=generator, dtype=total.dtype) * noise_multiplier * max_norm
    return (total + noise) / grads.shape[0]


def _log_add(a: float, b: float) -> float:
    high, low = max(a, b), min(a, b)
    return high if low == -math.inf else high + math.log1p(math.exp(low - high))


def _rdp_sampled_gaussian(q: float, sigma: float, order: int) -> float:
    """Rényi DP of one step of the subsampled Gaussian at integer ``order`` α (Mironov et al. 2019, §3.3):
    log A_α / (α − 1), A_α = Σ_k C(α, k) (1−q)^(α−k) q^k exp((k² − k) / 2σ²)."""
    if q == 1.0:
        return order / (2 * sigma ** 2)
    log_a = -math.inf
    for k in range(order + 1):
        log_term = (math.lgamma(order + 1) - math.lgamma(k + 1) - math.lgamma(order - k + 1)
                    + k * math.log(q) + (order - k) * math.log1p(-q) + (k * k - k) / (2 * sigma ** 2))
        log_a = _log_add(log_a, log_term)
    return log_a / (order - 1)


def epsilon(sample_rate: float, noise_multiplier: float, steps: int, delta: float = 1e-5,
            orders: Sequence[int] = tuple(range(2, 65))) -> float:
    """ε of (ε, δ)-DP after ``steps`` DP-SGD steps, each on a batch drawn with probability
    ``sample_rate`` = B / n per example, noise σ = ``noise_multiplier``.

    RDP adds up over steps; the conversion to (ε, δ) is Balle et al. 2020 (arXiv:1905.09982, Thm 21),
    as in Opacus: ε = min_α  T·RDP(α) + log((α−1)/α) − (log δ + log α) / (α − 1).
    Equal to Opacus's ``RDPAccountant`` at the same integer orders (tests/test_privacy.py).
    """
    if not 0 < sample_rate <= 1:
        raise ValueError(f"sample_rate must be in (0, 1] (batch size / dataset size), got {sample_rate}")
    if noise_multiplier <= 0:
        raise ValueError(f"noise_multiplier must be > 0 for a finite ε (σ = 0 is no privacy), got {noise_multiplier}")
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"steps must be a whole number ≥ 1, got {steps!r}")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    best = math.inf
    for order in orders:
        if order < 2:
            raise ValueError(f"orders must be whole numbers ≥ 2, got {order}")
        rdp = steps * _rdp_sampled_gaussian(sample_rate, noise_multiplier, int(order))
        eps = rdp + math.log((order - 1) / order) - (math.log(delta) + math.log(order)) / (order - 1)
        best = min(best, eps)
    return best
