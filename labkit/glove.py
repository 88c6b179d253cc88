"""GloVe word vectors from scratch (Pennington, Socher & Manning, 2014): count how often words occur
near each other, then fit vectors whose dot products predict the logarithm of those counts.

    X[i, j] = Σ over occurrences of word j within `window` words of word i of 1 / distance
    loss    = Σ over X[i, j] > 0 of f(X[i, j]) · (w_i · w̃_j + b_i + b̃_j − log X[i, j])²
    f(x)    = (x / x_max)^α for x < x_max, else 1

Training takes full-batch steps on the whole matrix with the gradients written out by hand
(`glove_gradients`) and Adam; the word vectors are w + w̃, as in the paper. Chapter 10 derives it.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch

__all__ = ["tokenize_words", "build_vocab", "encode", "cooccurrence", "weighting", "glove_loss", "glove_gradients",
           "GloVe", "train_glove", "nearest", "analogy"]

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_HAN = re.compile(r"[\u4e00-\u9fff]")


def tokenize_words(text: str, language: str = "en") -> list[str]:
    """English: lower-case words (``"whale's"`` stays one word); Chinese ("zh"): one token per character,
    punctuation dropped (a Tang poem has no spaces, and a character is its smallest unit of meaning)."""
    if language == "en":
        return _WORD.findall(text.lower())
    if language == "zh":
        return _HAN.findall(text)
    raise ValueError(f'language must be "en" or "zh", got {language!r}')


def build_vocab(tokens: Iterable[str], max_size: int, min_count: int = 5) -> list[str]:
    """The ``max_size`` most frequent tokens seen at least ``min_count`` times, most frequent first."""
    if max_size < 1 or min_count < 1:
        raise ValueError(f"max_size and min_count must be ≥ 1, got max_size={max_size}, min_count={min_count}")
    counts = Counter(tokens)
    return [word for word, n in counts.most_common(max_size) if n >= min_count]


def encode(tokens: Sequence[str], vocab: Sequence[str]) -> torch.Tensor:
    """Token ids (N,) for ``tokens``; a token outside ``vocab`` becomes -1 (a gap that pairs are not counted across)."""
    index = {word: i for i, word in enumerate(vocab)}
    return torch.tensor([index.get(t, -1) for t in tokens], dtype=torch.long)


def cooccurrence(ids: torch.Tensor | Sequence[torch.Tensor], vocab_size: int, window: int = 10,
                 distance_weighting: bool = True, symmetric: bool = True) -> torch.Tensor:
    """The co-occurrence matrix X (V, V), float64: X[i, j] sums, over each time word j occurs within
    ``window`` words after (or, with ``symmetric``, before) word i, 1/distance (``distance_weighting``) or 1.

    ``ids``: a token-id stream (N,) or a list of documents (pairs never cross a document's end);
    -1 marks an unknown word, which pairs with nothing but still takes its place in the distance.
    Dense: V² numbers (a 3,000-word vocabulary: 72 MB), counted with one ``bincount`` per distance.
    """
    if window < 1:
        raise ValueError(f"window must be ≥ 1 word, got {window}")
    docs = [ids] if torch.is_tensor(ids) else list(ids)
    if not docs or any(not torch.is_tensor(d) or d.dim() != 1 for d in docs):
        raise ValueError("ids must be a 1-D tensor of token ids, or a list of them (one per document)")
    gap = torch.full((window,), -1, dtype=torch.long)
    stream = torch.cat([t for d in docs for t in (d.long(), gap)])  # documents apart by `window` unknowns
    if stream.numel() and (stream.max() >= vocab_size or stream.min() < -1):
        raise ValueError(f"token ids must be in 0 … {vocab_size - 1} (or -1 for unknown), got "
                         f"{int(stream.min())} … {int(stream.max())}: is vocab_size the vocabulary's size?")
    X = torch.zeros(vocab_size * vocab_size, dtype=torch.float64)
    for d in range(1, window + 1):
        left, right = stream[:-d], stream[d:]
        keep = (left >= 0) & (right >= 0)
        weight = 1.0 / d if distance_weighting else 1.0
        X += weight * torch.bincount(left[keep] * vocab_size + right[keep], minlength=vocab_size * vocab_size).double()
    X = X.view(vocab_size, vocab_size)
    return X + X.T if symmetric else X


def weighting(x: torch.Tensor, x_max: float = 100.0, alpha: float = 0.75) -> torch.Tensor:
    """GloVe's weight f(x) = min(1, (x / x_max)^α): rare pairs count less, frequent ones are capped at 1."""
    if not x_max > 0 or not alpha > 0:
        raise ValueError(f"x_max and alpha must be > 0, got x_max={x_max}, alpha={alpha}")
    return (x / x_max).pow(alpha).clamp(max=1.0)


def _log_counts(X: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.where(X > 0, X.clamp(min=1e-300).log(), torch.zeros_like(X)).to(dtype)  # log 0 never used: f(0) = 0


def glove_loss(w: torch.Tensor, w_ctx: torch.Tensor, b: torch.Tensor, b_ctx: torch.Tensor, X: torch.Tensor,
               x_max: float = 100.0, alpha: float = 0.75) -> torch.Tensor:
    """The weighted least-squares loss Σ_{X_ij > 0} f(X_ij)(w_i·w̃_j + b_i + b̃_j − log X_ij)²:
    w, w_ctx (V, D); b, b_ctx (V,); X (V, V). Differentiable (autograd can check `glove_gradients`)."""
    f = weighting(X, x_max, alpha).to(w.dtype)                      # (V, V), 0 where X = 0
    error = w @ w_ctx.T + b[:, None] + b_ctx[None, :] - _log_counts(X, w.dtype)
    return (f * error.pow(2)).sum()


def glove_gradients(w: torch.Tensor, w_ctx: torch.Tensor, b: torch.Tensor, b_ctx: torch.Tensor, X: torch.Tensor,
                    x_max: float = 100.0, alpha: float = 0.75
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, dw, dw_ctx, db, db_ctx) written out by hand. With G = 2·f(X)·error (V, V), zero where X = 0:
    dw = G w̃ (V, D), dw̃ = Gᵀ w (V, D), db = G summed over j, db̃ = G summed over i."""
    return _gradients(w, w_ctx, b, b_ctx, weighting(X, x_max, alpha).to(w.dtype), _log_counts(X, w.dtype))


def _gradients(w: torch.Tensor, w_ctx: torch.Tensor, b: torch.Tensor, b_ctx: torch.Tensor, f: torch.Tensor,
               log_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    error = torch.addmm(b[:, None] + b_ctx[None, :] - log_x, w, w_ctx.T)   # w w̃ᵀ + b + b̃ᵀ − log X: (V, V)
    G = 2 * f * error
    return (f * error.pow(2)).sum(), G @ w_ctx, G.T @ w, G.sum(1), G.sum(0)


@dataclass
class GloVe:
    """Trained GloVe: ``vectors`` (V, D) = w + w̃, the vocabulary, and the mean loss per epoch."""

    vectors: torch.Tensor
    vocab: list[str]
    losses: list[float] = field(default_factory=list)

    def index(self, word: str) -> int:
        try:
            return self.vocab.index(word)
        except ValueError:
            raise KeyError(f"{word!r} is not in the vocabulary ({len(self.vocab)} words, most frequent first: "
                           f"{', '.join(self.vocab[:8])}, …)") from None


def train_glove(X: torch.Tensor, vocab: Sequence[str], *, dim: int = 50, steps: int = 300, lr: float = 0.05,
                x_max: float = 100.0, alpha: float = 0.75, seed: int = 0) -> GloVe:
    """Fit GloVe vectors to the co-occurrence matrix X (V, V) (from `cooccurrence`): ``steps`` full-batch
    steps of Adam on the hand-written gradients. (The paper takes stochastic AdaGrad steps over the
    non-zero entries; on a CPU a whole-matrix step is a few matrix products, far faster.) Its own random
    generator: the caller's random stream is untouched. Returns w + w̃ as the vectors, and the loss
    (per non-zero entry) at each step."""
    V = len(vocab)
    if X.dim() != 2 or X.shape != (V, V):
        raise ValueError(f"X must be the (V, V) co-occurrence matrix of the vocabulary (V = {V}), got shape {tuple(X.shape)}")
    if dim < 1 or steps < 1 or not lr > 0:
        raise ValueError(f"dim and steps must be ≥ 1 and lr > 0, got dim={dim}, steps={steps}, lr={lr}")
    g = torch.Generator().manual_seed(seed)
    params = [(torch.rand(V, dim, generator=g) - 0.5) / dim, (torch.rand(V, dim, generator=g) - 0.5) / dim,
              torch.zeros(V), torch.zeros(V)]
    optimizer = torch.optim.Adam(params, lr=lr)
    f, log_x, nonzero = weighting(X, x_max, alpha).float(), _log_counts(X, torch.float32), int((X > 0).sum())
    losses = []
    for _ in range(steps):
        loss, *grads = _gradients(params[0], params[1], params[2], params[3], f, log_x)
        for p, grad in zip(params, grads):
            p.grad = grad
        optimizer.step()
        losses.append(loss.item() / nonzero)
    return GloVe(vectors=params[0] + params[1], vocab=list(vocab), losses=losses)


def _unit(vectors: torch.Tensor) -> torch.Tensor:
    return vectors / vectors.norm(dim=-1, keepdim=True).clamp(min=1e-12)


def nearest(vectors: torch.Tensor, vocab: Sequence[str], word: str | torch.Tensor, k: int = 5,
            exclude: Sequence[str] = ()) -> list[tuple[str, float]]:
    """The ``k`` words whose vectors have the highest cosine similarity with ``word`` (a word or a vector)."""
    if isinstance(word, str):
        if word not in vocab:
            raise KeyError(f"{word!r} is not in the vocabulary of {len(vocab)} words")
        query = vectors[list(vocab).index(word)]
        exclude = (*exclude, word)
    else:
        query = word
    sims = _unit(vectors) @ _unit(query[None])[0]                   # (V,)
    for w in exclude:
        if w in vocab:
            sims[list(vocab).index(w)] = -float("inf")
    top = sims.topk(k)
    return [(vocab[i], float(s)) for s, i in zip(top.values, top.indices)]


def analogy(vectors: torch.Tensor, vocab: Sequence[str], a: str, b: str, c: str, k: int = 1) -> list[tuple[str, float]]:
    """a is to b as c is to ?: the words nearest to b − a + c (unit vectors), a, b and c left out."""
    for w in (a, b, c):
        if w not in vocab:
            raise KeyError(f"{w!r} is not in the vocabulary of {len(vocab)} words")
    unit = _unit(vectors)
    index = list(vocab).index
    query = unit[index(b)] - unit[index(a)] + unit[index(c)]
    return nearest(vectors, vocab, query, k, exclude=(a, b, c))
