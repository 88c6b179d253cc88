"""Checks for chapter 09b (applications: speech recognition and recommendation).

The stub cells in ``chapters/09b_speech_and_recommendation.ipynb``::

    def power_spectrogram_by_hand(signal, n_fft, hop_length):
        raise NotImplementedError  # TODO: |STFT|² (..., n_fft // 2 + 1, frames), without torch.stft
    check("09.6", power_spectrogram_by_hand)

    def hit_rate_and_ndcg(scores, seen, relevant, k):
        raise NotImplementedError  # TODO: (HR@k, NDCG@k) averaged over users with a relevant item
    check("09.7", hit_rate_and_ndcg)

    def als_user_update(item_factors, ratings, l2):
        raise NotImplementedError  # TODO: the p minimising Σ (r_j − p · q_j)² + l2 · |p|²
    check("09.8", als_user_update)

    # 09.9: predict, measure, explain: HR@10 of perfect knowledge (the hidden tastes themselves)

Notebook 09a has 09.1–09.5, 09c 09.11 onwards. Every check runs in well under a second and
leaves the notebook's random stream alone (private generators only).
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch

from labkit import recommend
from labkit.course.checks.predict import PredictMeasureExplain
from labkit.course.exercises import Hint, exercise, expect_callable


def _not_done(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError  # what an untouched stub function does


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- 09.6 power spectrogram by hand

_SPECTROGRAM_CASES = [((2, 1000), 256, 128), ((700,), 64, 16), ((3, 2, 500), 128, 50), ((6000,), 512, 256)]


def _reference_power_spectrogram(signal: torch.Tensor, n_fft: int, hop_length: int) -> torch.Tensor:
    frames = signal.shape[-1]
    flat = signal.reshape(-1, frames)
    spec = torch.stft(flat, n_fft, hop_length, window=torch.hann_window(n_fft, dtype=signal.dtype),
                      center=True, pad_mode="reflect", return_complex=True)
    return spec.abs().pow(2).reshape(*signal.shape[:-1], *spec.shape[-2:])


def _check_power_spectrogram(power_spectrogram_by_hand: Callable) -> str:
    expect_callable(power_spectrogram_by_hand, "power_spectrogram_by_hand")
    for seed, (shape, n_fft, hop) in enumerate(_SPECTROGRAM_CASES):
        signal = torch.randn(shape, generator=_generator(seed), dtype=torch.float64)
        want = _reference_power_spectrogram(signal, n_fft, hop)
        where = f"for a signal of shape {shape}, n_fft={n_fft}, hop_length={hop}"
        got = power_spectrogram_by_hand(signal.clone(), n_fft, hop)
        if not isinstance(got, torch.Tensor):
            raise Hint(f"{where} you returned {type(got).__name__}, not a tensor")
        if got.is_complex():
            raise Hint(f"{where} you returned complex numbers: the power is |STFT|², .abs().pow(2)")
        if tuple(got.shape) != tuple(want.shape):
            if tuple(got.shape) == (*want.shape[:-2], want.shape[-1], want.shape[-2]):
                raise Hint(f"{where} your shape {tuple(got.shape)} has frames and frequencies swapped: "
                           "torch.stft puts frequency first, (..., n_fft // 2 + 1, frames)")
            raise Hint(f"{where} the shape should be {tuple(want.shape)} ((..., n_fft // 2 + 1, 1 + T // hop_length)), "
                       f"got {tuple(got.shape)}: pad n_fft // 2 on each side first (reflect), as torch.stft(center=True)")
        if torch.allclose(got.double(), want, rtol=1e-4, atol=1e-6 * want.max().item()):
            continue
        box = torch.stft(signal.reshape(-1, shape[-1]), n_fft, hop, window=torch.ones(n_fft, dtype=signal.dtype),
                         return_complex=True).abs().pow(2).reshape(want.shape)
        if torch.allclose(got.double(), box, rtol=1e-4):
            raise Hint(f"{where} your frames are not windowed: multiply each frame by torch.hann_window(n_fft)")
        if torch.allclose(got.double(), want.sqrt(), rtol=1e-4):
            raise Hint(f"{where} you return the magnitude |STFT|; the power is its square")
        raise Hint(f"{where} your values differ from torch.stft's power by up to "
                   f"{(got.double() - want).abs().max().item():.3g}: check the padding (reflect, n_fft // 2 each side), "
                   "the window (Hann, periodic) and rfft over each frame")
    return f"equal to torch.stft's power spectrogram for {len(_SPECTROGRAM_CASES)} signals"


def _unwindowed(signal: torch.Tensor, n_fft: int, hop_length: int) -> torch.Tensor:
    spec = torch.stft(signal.reshape(-1, signal.shape[-1]), n_fft, hop_length, window=torch.ones(n_fft, dtype=signal.dtype),
                      return_complex=True)
    return spec.abs().pow(2).reshape(*signal.shape[:-1], *spec.shape[-2:])


def _unpadded(signal: torch.Tensor, n_fft: int, hop_length: int) -> torch.Tensor:
    frames = signal.unfold(-1, n_fft, hop_length) * torch.hann_window(n_fft, dtype=signal.dtype)
    return torch.fft.rfft(frames).abs().pow(2).transpose(-1, -2)


exercise(
    "09.6",
    title="A power spectrogram by hand",
    reference=lambda: _reference_power_spectrogram,
    stub=lambda: _not_done,
    wrong=[
        lambda: _unwindowed,
        lambda: _unpadded,
        lambda: lambda s, n, h: _reference_power_spectrogram(s, n, h).sqrt(),
        lambda: lambda s, n, h: _reference_power_spectrogram(s, n, h).transpose(-1, -2),
    ],
)(_check_power_spectrogram)


# --------------------------------------------------------------------------- 09.7 HR@k and NDCG@k

def _ranking_case(seed: int, users: int = 30, items: int = 50) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = _generator(seed)
    scores = torch.randn(users, items, generator=generator)
    seen = torch.rand(users, items, generator=generator) < 0.3
    relevant = (torch.rand(users, items, generator=generator) < 0.12) & ~seen
    relevant[0] = False                                              # a user with nothing to find: left out
    relevant[1, :] = ~seen[1]                                        # a user who likes everything unseen
    return scores, seen, relevant


_RANKING_CASES = [(0, 10), (1, 5), (2, 1), (3, 20)]


def _check_ranking(hit_rate_and_ndcg: Callable) -> str:
    expect_callable(hit_rate_and_ndcg, "hit_rate_and_ndcg")
    for seed, k in _RANKING_CASES:
        scores, seen, relevant = _ranking_case(seed)
        want_hr, want_ndcg = recommend.hit_rate_and_ndcg(scores, seen, relevant, k)
        answer = hit_rate_and_ndcg(scores.clone(), seen.clone(), relevant.clone(), k)
        if not (isinstance(answer, tuple) and len(answer) == 2):
            raise Hint(f"return a pair (hit rate, ndcg), got {type(answer).__name__}")
        hr, ndcg = (float(value) for value in answer)
        where = f"for 30 users × 50 items, k={k}"
        if math.isclose(hr, want_hr, abs_tol=1e-5) and math.isclose(ndcg, want_ndcg, abs_tol=1e-5):
            continue
        unmasked_hr, _ = recommend.hit_rate_and_ndcg(scores, torch.zeros_like(seen), relevant, k)
        if math.isclose(hr, unmasked_hr, abs_tol=1e-5) and not math.isclose(hr, want_hr, abs_tol=1e-5):
            raise Hint(f"{where} your hit rate counts the items the user already rated: set their scores to -inf first")
        all_users = relevant.any(1).float().mean().item()
        if math.isclose(hr, want_hr * all_users, abs_tol=1e-5):
            raise Hint(f"{where} you average over every user; average over the users with at least one relevant item")
        if not math.isclose(hr, want_hr, abs_tol=1e-5):
            raise Hint(f"{where} HR@{k} should be {want_hr:.4f}, got {hr:.4f}: a user's hit is 1 if any of "
                       "their top k unseen items is relevant")
        raise Hint(f"{where} NDCG@{k} should be {want_ndcg:.4f}, got {ndcg:.4f}: the gain at rank 1 … k is "
                   "1 / log2(rank + 1), and the ideal DCG sums the first min(k, number relevant) of them")
    return f"the same HR@k and NDCG@k as labkit.recommend for {len(_RANKING_CASES)} cases"


def _ndcg_with_log2_rank(scores: torch.Tensor, seen: torch.Tensor, relevant: torch.Tensor, k: int) -> tuple[float, float]:
    """Wrong: discount 1 / log2(rank) shifted by one (1 / log2(rank + 2))."""
    users = relevant.any(1)
    top = scores.masked_fill(seen, -math.inf)[users].topk(k, dim=1).indices
    hits = relevant[users].gather(1, top).float()
    discounts = 1 / torch.log2(torch.arange(3, k + 3, dtype=torch.float32))
    ideal = torch.cumsum(discounts, 0)[relevant[users].sum(1).clamp(max=k) - 1]
    return hits.amax(1).mean().item(), ((hits * discounts).sum(1) / ideal).mean().item()


def _ideal_without_min(scores: torch.Tensor, seen: torch.Tensor, relevant: torch.Tensor, k: int) -> tuple[float, float]:
    """Wrong: the ideal DCG always sums k ranks, even when fewer items are relevant."""
    users = relevant.any(1)
    top = scores.masked_fill(seen, -math.inf)[users].topk(k, dim=1).indices
    hits = relevant[users].gather(1, top).float()
    discounts = 1 / torch.log2(torch.arange(2, k + 2, dtype=torch.float32))
    return hits.amax(1).mean().item(), ((hits * discounts).sum(1) / discounts.sum()).mean().item()


def _seen_not_masked(scores: torch.Tensor, seen: torch.Tensor, relevant: torch.Tensor, k: int) -> tuple[float, float]:
    return recommend.hit_rate_and_ndcg(scores, seen & False, relevant, k)


def _every_user(scores: torch.Tensor, seen: torch.Tensor, relevant: torch.Tensor, k: int) -> tuple[float, float]:
    hr, ndcg = recommend.hit_rate_and_ndcg(scores, seen, relevant, k)
    share = relevant.any(1).float().mean().item()
    return hr * share, ndcg * share


exercise(
    "09.7",
    title="Hit rate and NDCG at k",
    reference=lambda: recommend.hit_rate_and_ndcg,
    stub=lambda: _not_done,
    wrong=[lambda: _ndcg_with_log2_rank, lambda: _ideal_without_min, lambda: _seen_not_masked, lambda: _every_user],
)(_check_ranking)


# --------------------------------------------------------------------------- 09.8 ALS: one user's closed-form update

_ALS_CASES = [(12, 3, 0.1), (40, 5, 1.0), (4, 6, 0.5), (25, 2, 0.0)]


def _reference_als(item_factors: torch.Tensor, ratings: torch.Tensor, l2: float) -> torch.Tensor:
    rank = item_factors.shape[1]
    gram = item_factors.T @ item_factors + l2 * torch.eye(rank, dtype=item_factors.dtype)
    return torch.linalg.solve(gram, item_factors.T @ ratings)


def _objective(p: torch.Tensor, q: torch.Tensor, r: torch.Tensor, l2: float) -> float:
    return ((r - q @ p).pow(2).sum() + l2 * p.pow(2).sum()).item()


def _check_als(als_user_update: Callable) -> str:
    expect_callable(als_user_update, "als_user_update")
    for seed, (n, rank, l2) in enumerate(_ALS_CASES):
        generator = _generator(100 + seed)
        q = torch.randn(n, rank, generator=generator, dtype=torch.float64)
        r = torch.randint(1, 6, (n,), generator=generator).double() - 3
        want = _reference_als(q, r, l2)
        where = f"for {n} rated items, rank {rank}, l2={l2}"
        got = als_user_update(q.clone(), r.clone(), l2)
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != (rank,):
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise Hint(f"{where} return the user's vector p as a tensor of shape ({rank},), got {shape}")
        if torch.allclose(got.double(), want, rtol=1e-5, atol=1e-8):
            continue
        if l2 > 0 and torch.allclose(got.double(), _reference_als(q, r, 0.0), rtol=1e-5, atol=1e-8):
            raise Hint(f"{where} you solved plain least squares: add l2 · I to QᵀQ (the penalty l2 · |p|²)")
        if l2 > 0 and torch.allclose(got.double(), _reference_als(q, r, l2 * n), rtol=1e-5, atol=1e-8):
            raise Hint(f"{where} you scaled l2 by the number of ratings; the objective adds l2 · |p|² once")
        raise Hint(f"{where} your p gives the objective {_objective(got.double(), q, r, l2):.5g}, the best p gives "
                   f"{_objective(want, q, r, l2):.5g}: set its gradient to zero and solve (QᵀQ + l2·I) p = Qᵀ r")
    return f"the minimiser of Σ (r − p·q)² + l2·|p|² for {len(_ALS_CASES)} users (rank 2 to 6, fewer ratings than the rank once)"


exercise(
    "09.8",
    title="Alternating least squares: one user's update",
    reference=lambda: _reference_als,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda q, r, l2: _reference_als(q, r, 0.0),
        lambda: lambda q, r, l2: _reference_als(q, r, l2 * len(r)),
        lambda: lambda q, r, l2: torch.linalg.lstsq(q, r.unsqueeze(1)).solution.squeeze(1) * 0.9,
    ],
)(_check_als)


# --------------------------------------------------------------------------- 09.9 predict, measure, explain

@functools.lru_cache(maxsize=1)
def _oracle_hit_rate() -> float:
    """HR@10 of the hidden truth itself on the notebook's simulated world (seed 0); the world is drawn from
    its own generator, so the value never changes and is computed once."""
    world = recommend.simulate_ratings(seed=0)
    return recommend.hit_rate_and_ndcg(world.true_affinity(), world.train_mask(), world.relevant(), k=10)[0]


ORACLE = PredictMeasureExplain(
    predictions={
        "a": "1.0: knowing every hidden taste, each user's top 10 holds a held-out item they liked",
        "b": "clearly below 1.0, but above the popularity baseline",
        "c": "below the popularity baseline",
    },
    explanations={
        "a": "the true tastes rank every liked item first, so every user gets a hit",
        "b": "the top 10 by true taste is mostly items this user never rated: we do not know they would like them, "
             "so offline they count as misses; only the few held-out liked items can be hits",
        "c": "the rating noise is larger than the tastes, so the truth ranks no better than chance",
    },
    measure=_oracle_hit_rate,
    predicted=lambda value: "a" if value > 0.999 else ("b" if value > 0.6 else "c"),
    explained=lambda value: "b" if 0.3 < value < 0.999 else "none",
    what="HR@10 of the true affinity (world.true_affinity()) on the simulated world of seed 0",
    wrong_explanations={
        "a": "it did not happen: count the held-out liked items per user (about four among hundreds of unseen items)",
        "c": "the truth beat popularity in the measurement; noise of 0.5 stars is small beside tastes of about ±1",
    },
    misreadings=(
        (lambda value, true: 0 < value < 0.6 and not math.isclose(value, true, rel_tol=0.02),
         "that looks like the NDCG or the popularity baseline's hit rate; copy the truth's HR@10"),
    ),
)

ORACLE.register("09.9", "Predict, measure, explain: how well does perfect knowledge score offline?", module=__name__,
                wrong_measurements=(lambda: 1.0, lambda: 0.5))
