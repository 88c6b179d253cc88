"""Checks for chapter 07b (project practice III, part 2: fine-tuning the GPT as a classifier, LoRA).

The stub cells in ``chapters/07b_classification_and_lora.ipynb``::

    def last_token_pool(hidden, idx, pad_id):
        raise NotImplementedError  # TODO: (B, T, C) hidden states → (B, C): each row's last real token
    check("07.4", last_token_pool)

    class LoRA(nn.Module):
        def __init__(self, base, rank, alpha):
            super().__init__()
            raise NotImplementedError  # TODO: freeze base; A (rank, in) random, B (out, rank) zeros
        def forward(self, x):
            raise NotImplementedError  # TODO: base(x) + (alpha / rank) · x Aᵀ Bᵀ
    check("07.5", LoRA)

    def merge(lora):
        raise NotImplementedError  # TODO: one nn.Linear computing what the LoRALinear computes
    check("07.6", merge)

    prediction = ...  # TODO: "a", "b" or "c": decide BEFORE you run the next cell
    committed = prediction  # the measurement cell's first line
    measured = ...     # TODO: LoRA's share of full fine-tuning's training memory at batch 64, printed above
    explanation = ...  # TODO: "a", "b" or "c"
    check("07.15", dict(committed=committed, prediction=prediction, measured=measured, explanation=explanation))

Every check runs in well under a second on small tensors and leaves the notebook's random stream alone,
but 07.15's, which measures the chapter's two models once (a few seconds, then cached).
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from labkit.course.checks.predict import PERCENTAGE, PredictMeasureExplain
from labkit.course.exercises import Hint, exercise, expect_callable, same_shape
from labkit.finetune import LoRALinear


def _not_done(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError  # what an untouched stub function does


class _StubLoRA(nn.Module):  # what the untouched stub class does
    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        raise NotImplementedError


# --------------------------------------------------------------------------- 07.4 last-token pooling


def _reference_last_token_pool(hidden: torch.Tensor, idx: torch.Tensor, pad_id: int) -> torch.Tensor:
    lengths = (idx != pad_id).sum(dim=1)  # (B,): real tokens come first, padding after
    return hidden[torch.arange(hidden.shape[0]), lengths - 1]


def _pool_case(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, int, list[int]]:
    """hidden (4, 7, 5) and right-padded idx (4, 7) with rows of 7, 3, 1 and 5 real tokens; pad id 0."""
    generator = torch.Generator().manual_seed(seed)
    lengths = [7, 3, 1, 5]
    idx = torch.randint(1, 50, (4, 7), generator=generator)
    for row, n in enumerate(lengths):
        idx[row, n:] = 0
    hidden = torch.randn(4, 7, 5, generator=generator)
    return hidden, idx, 0, lengths


def _check_last_token_pool(last_token_pool: Callable) -> str:
    expect_callable(last_token_pool, "last_token_pool")
    hidden, idx, pad_id, lengths = _pool_case()
    hidden_before, idx_before = hidden.clone(), idx.clone()
    got = last_token_pool(hidden, idx, pad_id)
    if got is None:
        raise Hint("last_token_pool returned None; return the pooled tensor of shape (B, C)")
    if not isinstance(got, torch.Tensor):
        raise Hint(f"last_token_pool should return a tensor of shape (B, C), got a {type(got).__name__}")
    if not (torch.equal(hidden, hidden_before) and torch.equal(idx, idx_before)):
        raise Hint("last_token_pool changed its inputs; read them, do not write to them")
    if got.dim() == 3 and got.shape[1] == 1:
        raise Hint(f"the result has shape {tuple(got.shape)}: drop the time axis, the pooled shape is (B, C) = (4, 5)")
    same_shape(got, (4, 5), "last_token_pool(hidden, idx, pad_id)")
    expected = _reference_last_token_pool(hidden, idx, pad_id)
    if torch.allclose(got, expected):
        return f"the last real token of each row: positions {[n - 1 for n in lengths]} of rows of 7, 3, 1 and 5 real tokens"
    if torch.allclose(got, hidden[:, -1]):
        raise Hint("that is the hidden state at the last *column* (hidden[:, -1]); in a padded row it belongs "
                   "to a padding token. Find each row's number of real tokens, (idx != pad_id).sum(dim=1)")
    if torch.allclose(got, hidden[:, 0]):
        raise Hint("that is the first token of each row; a causal model's first token has read only itself. "
                   "Take each row's LAST real token: it is the only one that has read the whole text")
    for row, n in enumerate(lengths):
        if n < 7 and torch.allclose(got[row], hidden[row, n]):
            raise Hint(f"row {row} has {n} real tokens, at positions 0 … {n - 1}; you took position {n}, the first "
                       "padding token (off by one: index with lengths - 1)")
    means = torch.stack([hidden[row, :n].mean(0) for row, n in enumerate(lengths)])
    if torch.allclose(got, means):
        raise Hint("that is mean pooling (the average over the real tokens); this exercise asks for the last real token")
    wrong_rows = [row for row in range(4) if not torch.allclose(got[row], expected[row])]
    raise Hint(f"row {wrong_rows[0]} (with {lengths[wrong_rows[0]]} real tokens) is not the hidden state of its last "
               "real token")


exercise(
    "07.4",
    title="Last-token pooling",
    reference=lambda: _reference_last_token_pool,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda hidden, idx, pad_id: hidden[:, -1],
        lambda: lambda hidden, idx, pad_id: hidden[:, 0],
        lambda: lambda hidden, idx, pad_id: hidden[torch.arange(len(hidden)), (idx != pad_id).sum(1).clamp(max=hidden.shape[1] - 1)],
        lambda: lambda hidden, idx, pad_id: (hidden * (idx != pad_id)[..., None]).sum(1) / (idx != pad_id).sum(1, keepdim=True),
        lambda: lambda hidden, idx, pad_id: _reference_last_token_pool(hidden, idx, pad_id)[:, None],
    ],
)(_check_last_token_pool)


# --------------------------------------------------------------------------- 07.5 LoRA as a module


class _ReferenceLoRA(nn.Module):
    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base.requires_grad_(False)
        self.scaling = alpha / rank
        self.A = nn.Parameter(torch.randn(rank, base.in_features) / math.sqrt(base.in_features))
        self.B = nn.Parameter(torch.zeros(base.out_features, rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scaling * (x @ self.A.T @ self.B.T)


class _RandomB(_ReferenceLoRA):
    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__(base, rank, alpha)
        self.B = nn.Parameter(torch.randn(base.out_features, rank) * 0.1)


class _BothZero(_ReferenceLoRA):
    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__(base, rank, alpha)
        self.A = nn.Parameter(torch.zeros(rank, base.in_features))


class _ScaledByAlpha(_ReferenceLoRA):
    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__(base, rank, alpha)
        self.scaling = alpha


class _BaseStillTrains(_ReferenceLoRA):
    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__(base, rank, alpha)
        self.base.requires_grad_(True)


class _ForgetsTheBase(_ReferenceLoRA):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scaling * (x @ self.A.T @ self.B.T)


def _check_lora(LoRA: Callable) -> str:
    expect_callable(LoRA, "LoRA")
    with torch.random.fork_rng(devices=[]):  # the notebook's random stream stays as it was
        torch.manual_seed(0)
        return _check_lora_seeded(LoRA)


def _check_lora_seeded(LoRA: Callable) -> str:
    base = nn.Linear(6, 10)
    weight, bias = base.weight.detach().clone(), base.bias.detach().clone()
    layer = LoRA(base, 3, 12)
    if not isinstance(layer, nn.Module):
        raise Hint(f"LoRA(base, rank, alpha) should build an nn.Module, got a {type(layer).__name__}")
    A, B = getattr(layer, "A", None), getattr(layer, "B", None)
    if not isinstance(A, nn.Parameter) or not isinstance(B, nn.Parameter):
        name = "B" if isinstance(A, nn.Parameter) else "A"
        raise Hint(f"keep the low-rank factor {name} as an nn.Parameter named self.{name}, so that it trains")
    same_shape(A, (3, 6), "self.A (rank, in_features)")
    same_shape(B, (10, 3), "self.B (out_features, rank)")
    if any(p.requires_grad for p in base.parameters()):
        raise Hint("the base layer still trains: freeze it (base.requires_grad_(False)); only A and B should learn")
    if not (torch.equal(base.weight, weight) and torch.equal(base.bias, bias)):
        raise Hint("the base layer's weights changed; LoRA leaves W and b exactly as they were")
    trainable = sum(p.numel() for p in layer.parameters() if p.requires_grad)
    if trainable != 3 * (6 + 10):
        raise Hint(f"{trainable} numbers train; a rank-3 LoRA of a 6 → 10 layer trains rank · (in + out) = 48")
    x = torch.randn(4, 6)
    out = layer(x)
    same_shape(out, (4, 10), "LoRA(...)(x) for x of shape (4, 6)")
    if torch.allclose(out.detach(), torch.zeros(4, 10)):
        raise Hint("the output is only the low-rank update: add the frozen layer's own output, base(x)")
    if not torch.equal(out.detach(), base(x).detach()):
        if bool((B != 0).any()):
            raise Hint("a fresh LoRA must compute exactly what the base layer computes, so that training starts "
                       "from the pretrained model: initialise B with zeros (and A at random)")
        raise Hint("a fresh LoRA (B = 0) must compute exactly base(x); yours does not")
    # Gradients: with B = 0, A gets none, but B must get one (it would not if A were zero too).
    out.pow(2).sum().backward()
    if B.grad is None or not bool(B.grad.abs().sum() > 0):
        raise Hint("B got no gradient: with both A and B at zero, each blocks the other's gradient and LoRA never "
                   "learns. Initialise A at random (e.g. torch.randn(rank, in) / in ** 0.5) and only B at zero")
    with torch.no_grad():
        B.copy_(torch.randn(10, 3))
    expected = base(x) + (12 / 3) * (x @ A.T @ B.T)
    got = layer(x).detach()
    if torch.allclose(got, base(x) + 12 * (x @ A.T @ B.T), atol=1e-5):
        raise Hint("the update is scaled by alpha; LoRA scales it by alpha / rank, so that changing the rank does "
                   "not change how big the update starts")
    if not torch.allclose(got, expected.detach(), atol=1e-5):
        raise Hint("with B ≠ 0 the output should be base(x) + (alpha / rank) · x Aᵀ Bᵀ; yours differs")
    return "frozen base, 48 trainable numbers, equal to the base layer when fresh, and base + (α/r)·BA x after"


exercise(
    "07.5",
    title="LoRA as a module",
    reference=lambda: _ReferenceLoRA,
    stub=lambda: _StubLoRA,
    wrong=[lambda: _RandomB, lambda: _BothZero, lambda: _ScaledByAlpha, lambda: _BaseStillTrains,
           lambda: _ForgetsTheBase],
)(_check_lora)


# --------------------------------------------------------------------------- 07.6 merging


def _reference_merge(lora: LoRALinear) -> nn.Linear:
    base = lora.base
    merged = nn.Linear(base.in_features, base.out_features)
    with torch.no_grad():
        merged.weight.copy_(base.weight + lora.scaling * lora.lora_B.weight @ lora.lora_A.weight)
        merged.bias.copy_(base.bias)
    return merged


def _trained_lora(seed: int) -> LoRALinear:
    """A LoRALinear 5 → 7 of rank 2, alpha 6, whose B is no longer zero (as after training)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        lora = LoRALinear(nn.Linear(5, 7), rank=2, alpha=6)
        with torch.no_grad():
            lora.lora_B.weight.normal_()
    return lora


def _check_merge(merge: Callable) -> str:
    expect_callable(merge, "merge")
    with torch.random.fork_rng(devices=[]):  # a new nn.Linear draws random weights: not from the notebook's stream
        return _check_merge_forked(merge)


def _check_merge_forked(merge: Callable) -> str:
    lora = _trained_lora(0)
    before = {name: t.clone() for name, t in lora.state_dict().items()}
    x = torch.linspace(-1, 1, 15).reshape(3, 5)
    with torch.no_grad():
        wanted = lora(x)
    merged = merge(lora)
    if merged is None:
        raise Hint("merge returned None; return the new nn.Linear")
    if not isinstance(merged, nn.Linear):
        raise Hint(f"merge should return one plain nn.Linear (no extra cost per token), got a {type(merged).__name__}")
    same_shape(merged.weight, (7, 5), "the merged weight (out_features, in_features)")
    changed = [name for name, t in lora.state_dict().items() if not torch.equal(t, before[name])]
    if changed:
        raise Hint(f"merge changed the LoRA layer's {changed[0]}; build a new nn.Linear and leave the LoRA layer as it was")
    with torch.no_grad():
        got = merged(x)
        plain = lora.base(x) + x @ (lora.lora_B.weight @ lora.lora_A.weight).T
        no_bias = lora(x) - lora.base.bias
    if torch.allclose(got, wanted, atol=1e-5):
        return "W + (alpha / rank) · B A in one nn.Linear: the same outputs as the LoRA layer"
    if torch.allclose(got, plain, atol=1e-5):
        raise Hint("the merged weight is W + B A; LoRA scales the update: W + (alpha / rank) · B A (lora.scaling)")
    if torch.allclose(got, no_bias, atol=1e-5):
        raise Hint("the merged layer has lost the base layer's bias: copy lora.base.bias into it")
    raise Hint("the merged layer's outputs differ from the LoRA layer's; its weight is "
               "lora.base.weight + lora.scaling * lora.lora_B.weight @ lora.lora_A.weight, of shape (out, in)")


def _merge_unscaled(lora: LoRALinear) -> nn.Linear:
    merged = _reference_merge(lora)
    with torch.no_grad():
        merged.weight.copy_(lora.base.weight + lora.lora_B.weight @ lora.lora_A.weight)
    return merged


def _merge_in_place(lora: LoRALinear) -> nn.Linear:
    with torch.no_grad():
        lora.base.weight += lora.scaling * lora.lora_B.weight @ lora.lora_A.weight
    return lora.base


def _merge_without_bias(lora: LoRALinear) -> nn.Linear:
    merged = _reference_merge(lora)
    with torch.no_grad():
        merged.bias.zero_()
    return merged


exercise(
    "07.6",
    title="Merge LoRA into the base weight",
    reference=lambda: _reference_merge,
    stub=lambda: _not_done,
    wrong=[lambda: _merge_unscaled, lambda: _merge_in_place, lambda: _merge_without_bias,
           lambda: lambda lora: lora],
)(_check_merge)


# --------------------------------------------------------------------------- 07.15 what LoRA saves at a larger batch

LORA_TARGETS = ("c_attn", "c_proj", "c_fc")                                    # as the chapter's section 3
LORA_ALSO_TRAINS = ("head", "gpt.transformer.h.*.ln_*", "gpt.transformer.ln_f")  # the new head, the LayerNorms


@functools.cache
def memory_share(batch_size: int, block: int = 32) -> float:
    """LoRA r=8's training memory (``labkit.finetune.training_memory``'s total) as a share of full
    fine-tuning's, for the chapter's classifier of ``base_bpe`` (mean pooling) on one batch of
    ``batch_size`` reviews of ``block`` tokens. Only the batch's shape matters (no padding: every
    column is kept), so any token ids but the padding id measure the same. As the measurement cell
    of 07.15 computes it; leaves the notebook's random stream alone."""
    import copy

    from labkit.checkpoints import load_pretrained
    from labkit.finetune import GPTClassifier, apply_lora, training_memory, unfreeze

    with torch.random.fork_rng(devices=[]):
        base, tokenizer, _ = load_pretrained("base_bpe")
        pad = tokenizer.special_tokens["<|endoftext|>"]
        x = torch.randint(0, pad, (batch_size, block), generator=torch.Generator().manual_seed(0))
        y = torch.zeros(batch_size, dtype=torch.long)
        full = GPTClassifier(copy.deepcopy(base), num_classes=2, pad_id=pad, pooling="mean")
        lora = GPTClassifier(copy.deepcopy(base), num_classes=2, pad_id=pad, pooling="mean")
        apply_lora(lora, targets=LORA_TARGETS, rank=8, alpha=16)
        unfreeze(lora, list(LORA_ALSO_TRAINS))
        return training_memory(lora, x, y)["total"] / training_memory(full, x, y)["total"]


def _share_kind(share: float) -> str:
    before = memory_share(16)
    return "a" if abs(share - before) < 0.05 else "b" if share > before else "c"


LORA_MEMORY = PredictMeasureExplain(
    predictions={
        "a": "about the share it is at batch 16 (within 5 points)",
        "b": "a larger share: closer to all of full fine-tuning's memory",
        "c": "a smaller share: closer to the 3.4% of the parameters LoRA trains",
    },
    explanations={
        "a": "LoRA trains fewer parameters, so with more reviews per step its memory falls towards its share of "
             "the parameters",
        "b": "both grow in proportion to the batch, so the share stays where it was",
        "c": "the weights, gradients and Adam states do not depend on the batch, the activations kept for the "
             "backward pass grow with it, and LoRA keeps all of them (the backward pass still runs through every "
             "frozen layer to reach the adapters): what LoRA saves stays fixed while the total grows",
    },
    measure=lambda: memory_share(64),
    predicted=_share_kind,
    explained=lambda share: "c" if share > memory_share(16) + 0.05 else "none",
    what="LoRA's training memory as a share of full fine-tuning's at batch 64",
    wrong_explanations={
        "a": "LoRA saves the gradients and Adam states of the frozen weights, a fixed amount; the activations, "
             "which grow with the batch, it keeps like full fine-tuning (look at the printed parts)",
        "b": "only the activations grow with the batch; the weights, gradients and Adam states stay the same "
             "(look at the printed parts)",
    },
    misreadings=(
        (lambda value, true: math.isclose(value, memory_share(16), rel_tol=0.01),
         "that is the share at batch 16; `measured` is the share at batch 64"),
        (lambda value, true: math.isclose(value, 1 / true, rel_tol=0.02),
         "that is full fine-tuning's memory divided by LoRA's; the share is LoRA's divided by full's"),
        PERCENTAGE,
    ),
    rel_tol=0.005,
)

LORA_MEMORY.register(
    "07.15", "Predict, measure, explain: what LoRA saves at a larger batch", module=__name__,
    wrong_measurements=(lambda: memory_share(16), lambda: 1 / memory_share(64), lambda: 100 * memory_share(64)),
)
