"""labkit.glove: the co-occurrence counts equal a direct double loop; the hand-written loss and
gradients equal a direct sum over the entries and autograd; training lowers the loss and puts
words that share contexts close together."""
from __future__ import annotations

import math

import pytest
import torch

from labkit.glove import (
    analogy,
    build_vocab,
    cooccurrence,
    encode,
    glove_gradients,
    glove_loss,
    nearest,
    tokenize_words,
    train_glove,
    weighting,
)


def _direct_counts(docs, V, window, distance_weighting=True, symmetric=True):
    X = torch.zeros(V, V, dtype=torch.float64)
    for doc in docs:
        ids = doc.tolist()
        for i, a in enumerate(ids):
            for d in range(1, window + 1):
                if i + d < len(ids) and a >= 0 and ids[i + d] >= 0:
                    w = 1.0 / d if distance_weighting else 1.0
                    X[a, ids[i + d]] += w
                    if symmetric:
                        X[ids[i + d], a] += w
    return X


@pytest.mark.parametrize("distance_weighting", [True, False])
@pytest.mark.parametrize("symmetric", [True, False])
def test_cooccurrence_equals_a_direct_double_loop(distance_weighting, symmetric):
    g = torch.Generator().manual_seed(0)
    docs = [torch.randint(-1, 7, (n,), generator=g) for n in (30, 5, 1, 12)]
    ours = cooccurrence(docs, 7, window=3, distance_weighting=distance_weighting, symmetric=symmetric)
    torch.testing.assert_close(ours, _direct_counts(docs, 7, 3, distance_weighting, symmetric), atol=1e-12, rtol=0)


def test_pairs_do_not_cross_documents():
    X = cooccurrence([torch.tensor([0, 1]), torch.tensor([2])], 3, window=5)
    assert X[1, 2] == 0 and X[0, 1] == 1 and X[1, 0] == 1


def _tiny_problem(seed=0, V=5, D=3):
    g = torch.Generator().manual_seed(seed)
    X = torch.randint(0, 4, (V, V), generator=g).double() * torch.rand(V, V, generator=g, dtype=torch.float64) * 150
    X[0, 1] = 0.0
    params = [torch.randn(V, D, generator=g, dtype=torch.float64), torch.randn(V, D, generator=g, dtype=torch.float64),
              torch.randn(V, generator=g, dtype=torch.float64), torch.randn(V, generator=g, dtype=torch.float64)]
    return X, params


def test_loss_equals_a_direct_sum_over_the_nonzero_entries():
    X, (w, wc, b, bc) = _tiny_problem()
    direct = 0.0
    for i in range(5):
        for j in range(5):
            x = X[i, j].item()
            if x > 0:
                f = min(1.0, (x / 100.0) ** 0.75)
                direct += f * ((w[i] @ wc[j]).item() + b[i].item() + bc[j].item() - math.log(x)) ** 2
    assert glove_loss(w, wc, b, bc, X).item() == pytest.approx(direct, rel=1e-12)
    assert glove_gradients(w, wc, b, bc, X)[0].item() == pytest.approx(direct, rel=1e-12)


def test_hand_written_gradients_equal_autograd():
    X, params = _tiny_problem(1)
    leaves = [p.clone().requires_grad_() for p in params]
    glove_loss(*leaves, X, x_max=10.0, alpha=0.5).backward()
    _, *grads = glove_gradients(*params, X, x_max=10.0, alpha=0.5)
    for leaf, grad in zip(leaves, grads):
        torch.testing.assert_close(grad, leaf.grad, atol=1e-10, rtol=1e-10)


def test_weighting_is_capped_at_one_and_zero_at_zero():
    x = torch.tensor([0.0, 1.0, 50.0, 100.0, 1e4], dtype=torch.float64)
    f = weighting(x, x_max=100.0, alpha=0.75)
    assert f[0] == 0 and f[3] == 1 and f[4] == 1 and f[1] == pytest.approx(0.01 ** 0.75)


def test_training_lowers_the_loss_and_groups_words_that_share_contexts():
    # two "topics": words 0-4 occur together, words 5-9 occur together
    g = torch.Generator().manual_seed(0)
    docs = [torch.randint(0, 5, (40,), generator=g) + 5 * (k % 2) for k in range(200)]
    vocab = [f"w{i}" for i in range(10)]
    model = train_glove(cooccurrence(docs, 10, window=3), vocab, dim=8, steps=150, lr=0.05)
    assert model.losses[-1] < 0.2 * model.losses[0]
    neighbours = [w for w, _ in nearest(model.vectors, vocab, "w0", k=4)]
    assert set(neighbours) == {"w1", "w2", "w3", "w4"}
    assert analogy(model.vectors, vocab, "w0", "w1", "w5", k=1)[0][0] in {f"w{i}" for i in range(5, 10)}


def test_tokenize_vocab_and_encode():
    assert tokenize_words("The whale's Tail, the sea!") == ["the", "whale's", "tail", "the", "sea"]
    assert tokenize_words("床前明月光，疑是地上霜。", "zh") == list("床前明月光疑是地上霜")
    vocab = build_vocab(["a", "b", "a", "c", "a", "b"], max_size=2, min_count=2)
    assert vocab == ["a", "b"] and encode(["a", "c", "b"], vocab).tolist() == [0, -1, 1]


@pytest.mark.parametrize("call, words", [
    (lambda: cooccurrence(torch.tensor([0, 5]), 3), "token ids must be in 0 … 2"),
    (lambda: cooccurrence(torch.tensor([0, 1]), 3, window=0), "window must be"),
    (lambda: tokenize_words("x", "fr"), "language must be"),
    (lambda: train_glove(torch.zeros(3, 3), ["a", "b"]), "X must be the (V, V)"),
    (lambda: weighting(torch.ones(2), x_max=0), "x_max and alpha"),
    (lambda: nearest(torch.zeros(2, 2), ["a", "b"], "zebra"), "not in the vocabulary"),
])
def test_bad_input_gets_a_clear_error(call, words):
    with pytest.raises((ValueError, KeyError), match=words.replace("(", r"\(").replace(")", r"\)")):
        call()
