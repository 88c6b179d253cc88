"""Recommendation for chapter 09b: a simulated world of users with hidden tastes, matrix factorisation,
a two-tower network, and the metrics that judge them (RMSE, hit rate and NDCG at k).

No ratings set with a clear licence ships in a package registry (MovieLens's terms forbid passing it
on), so chapter 09b *simulates* one, said plainly: every user has a hidden taste vector, every item
hidden traits, and a rating is their agreement plus the item's appeal plus noise. Because we know
the hidden tastes, we can see whether a model recovers them::

    >>> world = simulate_ratings(seed=0)                       # world.train, world.test: Ratings
    >>> model = fit_matrix_factorization(world.train, world.n_users, world.n_items, rank=4)
    >>> rmse(model(world.test.users, world.test.items), world.test.ratings)   # about 0.6 stars
    >>> hit_rate_and_ndcg(model.score_all(), world.train_mask(), world.relevant(), k=10)

Shapes: ``U`` users, ``I`` items, ``N`` ratings, ``k`` hidden tastes, ``r`` the model's rank.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "Ratings", "SimulatedWorld", "simulate_ratings", "MatrixFactorization", "TwoTower",
    "fit_matrix_factorization", "fit_ratings_model", "rmse", "hit_rate_and_ndcg", "popularity_scores",
    "taste_recovery",
]


@dataclass
class Ratings:
    """N ratings as three aligned tensors: users (N,) int64, items (N,) int64, ratings (N,) float32."""

    users: torch.Tensor
    items: torch.Tensor
    ratings: torch.Tensor

    def __len__(self) -> int:
        return len(self.ratings)


@dataclass
class SimulatedWorld:
    """A simulated shop: the hidden truth and the ratings it produced.

    user_tastes (U, k) and item_traits (I, k): the hidden vectors; appeal (I,): how much everyone likes
    an item (its quality), which also makes it popular; tags (I, k) 0/1: what a shop can see about an
    item (trait > 0, with noise); train / test: the ratings, 20 % of each user's ratings held out."""

    user_tastes: torch.Tensor
    item_traits: torch.Tensor
    appeal: torch.Tensor
    tags: torch.Tensor
    train: Ratings
    test: Ratings
    relevant_rating: float = 4.0

    @property
    def n_users(self) -> int:
        return self.user_tastes.shape[0]

    @property
    def n_items(self) -> int:
        return self.item_traits.shape[0]

    def true_affinity(self) -> torch.Tensor:
        """(U, I): how much each user would like each item, without noise: taste · traits + appeal."""
        return self.user_tastes @ self.item_traits.T + self.appeal

    def train_mask(self) -> torch.Tensor:
        """(U, I) bool: True where the user rated the item in training (never recommend those again)."""
        mask = torch.zeros(self.n_users, self.n_items, dtype=torch.bool)
        mask[self.train.users, self.train.items] = True
        return mask

    def relevant(self) -> torch.Tensor:
        """(U, I) bool: the held-out ratings of at least ``relevant_rating`` stars: the hits to find."""
        mask = torch.zeros(self.n_users, self.n_items, dtype=torch.bool)
        good = self.test.ratings >= self.relevant_rating
        mask[self.test.users[good], self.test.items[good]] = True
        return mask


def simulate_ratings(n_users: int = 500, n_items: int = 300, n_tastes: int = 3, ratings_per_user: int = 30,
                     noise: float = 0.5, test_fraction: float = 0.2, seed: int = 0) -> SimulatedWorld:
    """Users with hidden tastes rate items with hidden traits (chapter 09b).

    Each user rates ``ratings_per_user`` items, chosen with probability ∝ exp(appeal + affinity) (people
    find and pick what they like, and popular items are seen more);
    rating = round(3 + taste · traits + appeal + noise · ε), clipped to 1 … 5 stars.
    A private generator seeded by ``seed`` draws everything: the notebook's random stream is untouched."""
    if not (n_users >= 2 and n_items > ratings_per_user >= 5 and n_tastes >= 1 and noise >= 0
            and 0 < test_fraction < 1):
        raise ValueError(f"need n_users >= 2, n_items > ratings_per_user >= 5, n_tastes >= 1, noise >= 0 and "
                         f"0 < test_fraction < 1; got n_users={n_users}, n_items={n_items}, "
                         f"ratings_per_user={ratings_per_user}, n_tastes={n_tastes}, noise={noise}, "
                         f"test_fraction={test_fraction}")
    generator = torch.Generator().manual_seed(seed)
    user_tastes = torch.randn(n_users, n_tastes, generator=generator) / math.sqrt(n_tastes) * 1.2
    item_traits = torch.randn(n_items, n_tastes, generator=generator)
    appeal = 0.5 * torch.randn(n_items, generator=generator)
    flips = torch.rand(n_items, n_tastes, generator=generator) < 0.15
    tags = ((item_traits > 0) ^ flips).float()                         # visible, 15 % of tags wrong
    weights = torch.exp(user_tastes @ item_traits.T + appeal + appeal)                    # (U, I)
    items = torch.multinomial(weights, ratings_per_user, replacement=False, generator=generator)   # (U, R)
    users = torch.arange(n_users).unsqueeze(1).expand_as(items)
    affinity = (user_tastes.unsqueeze(1) * item_traits[items]).sum(-1) + appeal[items]          # (U, R)
    stars = torch.round(3 + affinity + noise * torch.randn(affinity.shape, generator=generator)).clamp(1, 5)
    held_out = torch.rand(items.shape, generator=generator).argsort(dim=1) < round(test_fraction * ratings_per_user)

    def pick(mask: torch.Tensor) -> Ratings:
        return Ratings(users[mask].clone(), items[mask].clone(), stars[mask].float())

    return SimulatedWorld(user_tastes, item_traits, appeal, tags, pick(~held_out), pick(held_out))


class MatrixFactorization(nn.Module):
    """rating(u, i) ≈ mean + b_u + b_i + p_u · q_i, with p_u, q_i vectors of ``rank`` numbers (chapter 09b)."""

    def __init__(self, n_users: int, n_items: int, rank: int, mean: float = 3.0) -> None:
        super().__init__()
        self.mean = nn.Parameter(torch.tensor(float(mean)))
        self.user_bias = nn.Parameter(torch.zeros(n_users))
        self.item_bias = nn.Parameter(torch.zeros(n_items))
        self.user_factors = nn.Parameter(0.1 * torch.randn(n_users, rank))
        self.item_factors = nn.Parameter(0.1 * torch.randn(n_items, rank))

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """users, items (N,) int64 -> predicted ratings (N,)."""
        dot = (self.user_factors[users] * self.item_factors[items]).sum(-1)
        return self.mean + self.user_bias[users] + self.item_bias[items] + dot

    def score_all(self) -> torch.Tensor:
        """(U, I): the predicted rating of every user for every item."""
        with torch.no_grad():
            return (self.mean + self.user_bias[:, None] + self.item_bias[None, :]
                    + self.user_factors @ self.item_factors.T)


class TwoTower(nn.Module):
    """Two towers: a user tower (an embedding, then an MLP) and an item tower (an embedding plus the
    item's visible tags, then an MLP) each make a ``dim``-vector; the rating is mean + b_u + b_i + their
    dot product. The item tower can place an item by its tags alone, before anyone rated it."""

    def __init__(self, n_users: int, n_items: int, tags: torch.Tensor, dim: int = 8, hidden: int = 32,
                 mean: float = 3.0) -> None:
        super().__init__()
        self.tags: torch.Tensor
        self.register_buffer("tags", tags.float())                                  # (I, T)
        self.mean = nn.Parameter(torch.tensor(float(mean)))
        self.user_bias = nn.Parameter(torch.zeros(n_users))
        self.item_bias = nn.Parameter(torch.zeros(n_items))
        self.user_embedding = nn.Embedding(n_users, dim)
        self.item_embedding = nn.Embedding(n_items, dim)
        self.user_tower = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        self.item_tower = nn.Sequential(nn.Linear(dim + tags.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, dim))
        for embedding in (self.user_embedding, self.item_embedding):
            nn.init.normal_(embedding.weight, std=0.1)

    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        return self.user_tower(self.user_embedding(users))                          # (N, dim)

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        return self.item_tower(torch.cat([self.item_embedding(items), self.tags[items]], dim=-1))   # (N, dim)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        dot = (self.user_vectors(users) * self.item_vectors(items)).sum(-1)
        return self.mean + self.user_bias[users] + self.item_bias[items] + dot

    def score_all(self) -> torch.Tensor:
        with torch.no_grad():
            users = self.user_vectors(torch.arange(len(self.user_bias)))
            items = self.item_vectors(torch.arange(len(self.item_bias)))
            return self.mean + self.user_bias[:, None] + self.item_bias[None, :] + users @ items.T


def fit_ratings_model(model: nn.Module, train: Ratings, epochs: int = 300, lr: float = 0.05,
                      weight_decay: float = 0.0, l2: float = 0.05) -> list[float]:
    """Full-batch Adam on the mean squared error of the training ratings, plus ``l2`` × the mean squared
    size of the vectors and biases the batch used (the usual matrix-factorisation regulariser). Returns the
    training MSE after each epoch. Deterministic: no shuffling, no random numbers."""
    if epochs < 1 or lr <= 0 or l2 < 0:
        raise ValueError(f"need epochs >= 1, lr > 0 and l2 >= 0, got epochs={epochs}, lr={lr}, l2={l2}")
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    history = []
    for _ in range(epochs):
        predictions = model(train.users, train.items)
        mse = (predictions - train.ratings).pow(2).mean()
        penalty = sum(p.pow(2).mean() for name, p in model.named_parameters() if name != "mean")
        loss = mse + l2 * penalty
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(mse.item())
    return history


def fit_matrix_factorization(train: Ratings, n_users: int, n_items: int, rank: int = 4, epochs: int = 300,
                             lr: float = 0.05, l2: float = 0.05, seed: int = 0) -> MatrixFactorization:
    """A ``MatrixFactorization`` trained by ``fit_ratings_model``; its start is drawn from ``seed``."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = MatrixFactorization(n_users, n_items, rank, mean=train.ratings.mean().item())
    fit_ratings_model(model, train, epochs=epochs, lr=lr, l2=l2)
    return model.eval()


def rmse(predictions: torch.Tensor, targets: torch.Tensor) -> float:
    """Root mean squared error, in stars."""
    if predictions.shape != targets.shape:
        raise ValueError(f"predictions and targets must have the same shape, got {tuple(predictions.shape)} "
                         f"and {tuple(targets.shape)}")
    return (predictions.float() - targets.float()).pow(2).mean().sqrt().item()


def popularity_scores(train: Ratings, n_users: int, n_items: int) -> torch.Tensor:
    """(U, I): the baseline that recommends the same items to everyone, the most rated first."""
    counts = torch.bincount(train.items, minlength=n_items).float()
    return counts.expand(n_users, n_items).clone()


def hit_rate_and_ndcg(scores: torch.Tensor, seen: torch.Tensor, relevant: torch.Tensor,
                      k: int = 10) -> tuple[float, float]:
    """Ranking quality at k, averaged over the users who have at least one relevant item.

    scores (U, I): higher = recommend first; seen (U, I) bool: items the user already rated (never
    recommended); relevant (U, I) bool: the held-out items the user liked. Per user, the top k unseen
    items by score: hit = 1 if any of them is relevant; NDCG = Σ 1/log2(rank + 1) over the relevant ones
    (rank 1 … k), divided by its best possible value, Σ over ranks 1 … min(k, number relevant)."""
    if not (scores.shape == seen.shape == relevant.shape) or scores.dim() != 2:
        raise ValueError(f"scores, seen and relevant must all be (U, I), got {tuple(scores.shape)}, "
                         f"{tuple(seen.shape)}, {tuple(relevant.shape)}")
    if not 1 <= k <= scores.shape[1]:
        raise ValueError(f"k must be between 1 and the number of items ({scores.shape[1]}), got {k}")
    if (seen & relevant).any():
        raise ValueError("an item is both seen (in training) and relevant (held out): pass the held-out "
                         "relevant items only")
    users = relevant.any(dim=1)
    masked = scores.float().masked_fill(seen, -math.inf)[users]
    top = masked.topk(k, dim=1).indices                                                     # (U', k)
    hits = relevant[users].gather(1, top).float()                                           # (U', k)
    discounts = 1 / torch.log2(torch.arange(2, k + 2, dtype=torch.float32))                 # (k,)
    ideal = torch.cumsum(discounts, 0)[relevant[users].sum(1).clamp(max=k) - 1]             # (U',)
    return hits.amax(1).mean().item(), ((hits * discounts).sum(1) / ideal).mean().item()


def taste_recovery(learned: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """How well learned vectors (U, r) hold the hidden ones (U, k): the R² of the best linear map
    learned → hidden, one value per hidden dimension (1 = recovered exactly, 0 = nothing). A linear map,
    because factorisation finds the tastes only up to a rotation and scaling of its axes."""
    if learned.shape[0] != hidden.shape[0]:
        raise ValueError(f"learned and hidden need one row per user each, got {learned.shape[0]} and {hidden.shape[0]}")
    x = torch.cat([learned.double(), torch.ones(len(learned), 1, dtype=torch.float64)], dim=1)
    y = hidden.double()
    solution = torch.linalg.lstsq(x, y).solution
    residual = (y - x @ solution).pow(2).sum(0)
    total = (y - y.mean(0)).pow(2).sum(0)
    return (1 - residual / total).float()
