"""labkit.recommend (chapter 09b): HR@k and NDCG@k equal a direct computation and scikit-learn's
ndcg_score, the simulation is seeded and leaves the global stream alone, matrix factorisation beats the
baselines and recovers the hidden tastes, and bad input gets a clear error."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import ndcg_score

from labkit import recommend


def _case(seed: int, users: int = 40, items: int = 60):
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randn(users, items, generator=generator)                 # continuous: no ties
    seen = torch.rand(users, items, generator=generator) < 0.3
    relevant = (torch.rand(users, items, generator=generator) < 0.1) & ~seen
    return scores, seen, relevant


@pytest.mark.parametrize(("seed", "k"), [(0, 10), (1, 1), (2, 5), (3, 30)])
def test_ndcg_equals_sklearn_on_the_unseen_items(seed, k):
    scores, seen, relevant = _case(seed)
    _, ours = recommend.hit_rate_and_ndcg(scores, seen, relevant, k)
    theirs = []
    for u in range(len(scores)):
        if relevant[u].any():
            unseen = ~seen[u]
            theirs.append(ndcg_score(relevant[u][unseen].numpy()[None].astype(float),
                                     scores[u][unseen].numpy()[None], k=k))
    assert math.isclose(ours, float(np.mean(theirs)), rel_tol=1e-5)


@pytest.mark.parametrize(("seed", "k"), [(0, 10), (4, 3)])
def test_hit_rate_equals_a_direct_count(seed, k):
    scores, seen, relevant = _case(seed)
    hits = []
    for u in range(len(scores)):
        if not relevant[u].any():
            continue
        order = [i for i in torch.argsort(scores[u], descending=True).tolist() if not seen[u, i]][:k]
        hits.append(any(relevant[u, i] for i in order))
    assert math.isclose(recommend.hit_rate_and_ndcg(scores, seen, relevant, k)[0], sum(hits) / len(hits), rel_tol=1e-6)


def test_perfect_scores_give_one():
    _, seen, relevant = _case(5)
    assert recommend.hit_rate_and_ndcg(relevant.float(), seen, relevant, k=10) == (1.0, 1.0)


def test_simulation_is_seeded_and_leaves_the_global_stream_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first, second = recommend.simulate_ratings(seed=7), recommend.simulate_ratings(seed=7)
    assert torch.equal(torch.rand(3), expected)
    assert torch.equal(first.train.ratings, second.train.ratings) and torch.equal(first.test.items, second.test.items)
    assert len(first.train) + len(first.test) == 500 * 30
    assert not (first.train_mask() & first.relevant()).any()
    pairs = set(zip(first.train.users.tolist(), first.train.items.tolist()))
    assert not pairs & set(zip(first.test.users.tolist(), first.test.items.tolist()))
    assert first.train.ratings.min() >= 1 and first.train.ratings.max() <= 5


@pytest.mark.slow
def test_matrix_factorisation_beats_baselines_and_recovers_tastes():
    world = recommend.simulate_ratings(seed=0)
    model = recommend.fit_matrix_factorization(world.train, world.n_users, world.n_items, rank=3, epochs=300)
    mean = world.train.ratings.mean()
    assert recommend.rmse(model(world.test.users, world.test.items).detach(), world.test.ratings) < \
        recommend.rmse(mean.expand(len(world.test)), world.test.ratings) - 0.2
    seen, relevant = world.train_mask(), world.relevant()
    _, mf_ndcg = recommend.hit_rate_and_ndcg(model.score_all(), seen, relevant)
    _, popular_ndcg = recommend.hit_rate_and_ndcg(recommend.popularity_scores(world.train, world.n_users, world.n_items),
                                                  seen, relevant)
    assert mf_ndcg > popular_ndcg + 0.1
    assert recommend.taste_recovery(model.user_factors.detach(), world.user_tastes).min() > 0.6


def test_taste_recovery_is_one_for_a_linear_image_and_near_zero_for_noise():
    hidden = torch.randn(300, 3, generator=torch.Generator().manual_seed(0))
    mixed = hidden @ torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 1.0], [1.0, 0.0, -1.0]]) + 5
    assert torch.allclose(recommend.taste_recovery(mixed, hidden), torch.ones(3), atol=1e-6)
    noise = torch.randn(300, 3, generator=torch.Generator().manual_seed(1))
    assert recommend.taste_recovery(noise, hidden).max() < 0.1


def test_two_tower_scores_match_its_forward():
    world = recommend.simulate_ratings(n_users=20, n_items=30, ratings_per_user=10, seed=1)
    torch.manual_seed(0)
    model = recommend.TwoTower(world.n_users, world.n_items, world.tags, dim=4, hidden=8)
    users, items = torch.tensor([0, 3, 19]), torch.tensor([5, 0, 29])
    with torch.no_grad():
        assert torch.allclose(model.score_all()[users, items], model(users, items), atol=1e-6)


def test_bad_input_is_named():
    scores, seen, relevant = _case(0)
    with pytest.raises(ValueError, match="k must be"):
        recommend.hit_rate_and_ndcg(scores, seen, relevant, k=0)
    with pytest.raises(ValueError, match="both seen"):
        recommend.hit_rate_and_ndcg(scores, seen, relevant | seen, k=5)
    with pytest.raises(ValueError, match=r"\(U, I\)"):
        recommend.hit_rate_and_ndcg(scores[:, :5], seen, relevant, k=5)
    with pytest.raises(ValueError, match="ratings_per_user"):
        recommend.simulate_ratings(n_items=10, ratings_per_user=30)
    with pytest.raises(ValueError, match="same shape"):
        recommend.rmse(torch.zeros(3), torch.zeros(4))
