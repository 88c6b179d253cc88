"""Where training memory goes: weights, gradients, optimizer state and activations (chapter 08a).

Two ways to know, which chapter 08a builds by hand and checks against each other:

- **measure**: `count_saved_tensors` counts what autograd keeps for the backward pass (the
  activations) while a forward pass runs; `activation_bytes` does it for one call;
- **estimate by formula**: `gpt_activation_bytes` and `gpt_training_memory` give the same
  numbers for a `labkit.GPT` without building it (any size, instantly: the chapter's sliders).

    >>> config = GPTConfig.preset("char-small", vocab_size=70, block_size=256)
    >>> parts = gpt_training_memory(config, batch_size=8)      # bytes, one AdamW step in float32
    >>> sorted(parts)
    ['activations', 'gradients', 'optimizer', 'total', 'weights']

Shapes: B batch, T time (tokens), C channels (``n_embd``), L layers, V vocabulary, nh heads.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from .gpt import GPTConfig

__all__ = [
    "SavedTensors", "count_saved_tensors", "activation_bytes",
    "gpt_num_parameters", "gpt_activation_bytes", "gpt_training_memory",
]

FLOAT32_BYTES = 4
INDEX_BYTES = 8  # token ids, positions and targets are int64


# --------------------------------------------------------------------------- measuring


@dataclass
class SavedTensors:
    """What `count_saved_tensors` found: total ``bytes`` and the number of distinct ``storages``;
    ``shapes`` lists (shape, dtype, bytes) of each storage's first saved tensor, in order."""

    bytes: int = 0
    storages: int = 0
    shapes: list[tuple[tuple[int, ...], torch.dtype, int]] = field(default_factory=list)


@contextmanager
def count_saved_tensors(exclude: Iterable[torch.Tensor] = ()) -> Iterator[SavedTensors]:
    """Count the tensors autograd saves for the backward pass while the ``with`` block runs.

    Every tensor an operation keeps for its backward passes through a *pack hook*
    (``torch.autograd.graph.saved_tensors_hooks``). Many saved tensors are views of one block of
    memory (q, k and v are three slices of one (B, T, 3C) output), so each **storage** is counted
    once, at its full size. Storages of the tensors in ``exclude`` (pass the model's parameters:
    they exist anyway, they are not activations) are not counted. The hook keeps nothing itself.

        with count_saved_tensors(exclude=model.parameters()) as saved:
            loss = lm_loss(model(x), y)
        saved.bytes      # what the graph holds until loss.backward() frees it

    Chapter 08a counts what autograd keeps with it.
    """
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    found = SavedTensors()
    seen: set[int] = set()

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        address = storage.data_ptr()
        if address not in skip and address not in seen:
            seen.add(address)
            found.bytes += storage.nbytes()
            found.storages += 1
            found.shapes.append((tuple(tensor.shape), tensor.dtype, storage.nbytes()))
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        yield found


def activation_bytes(model: nn.Module, run: Callable[[], object]) -> int:
    """Bytes autograd keeps for the backward pass while ``run()`` computes (a forward pass and its
    loss), the model's parameters not counted. What ``run`` returns is dropped, which frees the graph.

        activation_bytes(model, lambda: lm_loss(model(x), y))

    Chapter 08a derives the formula and checks it against the count.
    """
    with count_saved_tensors(exclude=model.parameters()) as saved:
        result = run()
    del result
    return saved.bytes


# --------------------------------------------------------------------------- formulas for labkit.GPT


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number ≥ 1, got {value!r}")
    return value


def _block_size(config: GPTConfig, block_size: int | None) -> int:
    T = config.block_size if block_size is None else _positive_int(block_size, "block_size")
    if T > config.block_size:
        raise ValueError(f"block_size {T} is longer than the model's context ({config.block_size}): "
                         f"use at most {config.block_size}, or a config with a larger block_size")
    return T


def gpt_num_parameters(config: GPTConfig) -> int:
    """Parameters of ``labkit.GPT(config)`` by formula, without building it (chapter 06b):
    V·C (token embedding = output head) + T·C (positions) + L·(12·C² + 13·C) + 2·C (final norm).
    With ``bias=False`` the Linears have no bias and the LayerNorms a gain only: L·(12·C² + 2·C) + C."""
    C, L = config.n_embd, config.n_layer
    if config.bias:
        per_block, final_norm = 12 * C * C + 13 * C, 2 * C
    else:  # no Linear biases and LayerNorms with a gain only
        per_block, final_norm = 12 * C * C + 2 * C, C
    return config.vocab_size * C + config.block_size * C + L * per_block + final_norm


def gpt_activation_bytes(
    config: GPTConfig, batch_size: int, block_size: int | None = None, *, checkpointing: bool = False,
) -> dict[str, int]:
    """Bytes autograd keeps after the forward pass ``lm_loss(GPT(config)(x), y)`` in float32, by formula.

    Per token and per block, with PyTorch's fused attention ("sdpa") on a CPU, what the backward
    pass needs: the block's input and the LayerNorms' outputs (C each), qkv (3C), the attention's
    output (C, which c_proj reads without a copy) and its log-sum-exp (nh), the residual stream
    before the MLP (C), the MLP's widened input and output of GELU (4C + 4C), and the two
    LayerNorms' mean and 1/std (4): **16·C + nh + 4 numbers**. Written-out attention ("manual")
    keeps the (T, T) attention weights of each head instead of the log-sum-exp, nh·T numbers per
    token, and a (T, T) mask of booleans per block: it grows with T².

    Outside the blocks: the token ids and positions (int64), the final LayerNorm (2·C + 2), the
    softmax of the logits (V) and the targets (int64).

    ``checkpointing=True`` (``torch.utils.checkpoint`` around every block) keeps only each block's
    input, C numbers per token; the backward pass then recomputes one block at a time, which
    holds one block's activations more at its peak: ``"recomputed_block"`` (0 without).

    Returns {"embeddings", "blocks", "head", "total", "recomputed_block"}; "total" is the first three.
    Dropout keeps a mask too and is not modelled: pass a config with dropout 0.
    """
    B = _positive_int(batch_size, "batch_size")
    T = _block_size(config, block_size)
    if config.dropout or config.attn_dropout:
        raise ValueError(f"the formula assumes dropout 0 (each dropout keeps a mask as large as its input), got "
                         f"dropout={config.dropout}, attn_dropout={config.attn_dropout}: use "
                         "dataclasses.replace(config, dropout=0.0, attn_dropout=None)")
    C, L, V, nh = config.n_embd, config.n_layer, config.vocab_size, config.n_head
    tokens = B * T
    if config.attention == "sdpa":
        per_block = FLOAT32_BYTES * tokens * (16 * C + nh + 4)
    else:  # written out: the softmax weights (B, nh, T, T) and a (T, T) boolean mask
        per_block = FLOAT32_BYTES * tokens * (16 * C + 4 + nh * T) + T * T
    stored_per_block = FLOAT32_BYTES * tokens * C if checkpointing else per_block
    parts = {
        "embeddings": INDEX_BYTES * (tokens + T),                       # ids (B, T) and positions (T,)
        "blocks": L * stored_per_block,
        "head": FLOAT32_BYTES * tokens * (2 * C + 2 + V) + INDEX_BYTES * tokens + FLOAT32_BYTES,  # + the loss's weight sum
    }
    parts["total"] = parts["embeddings"] + parts["blocks"] + parts["head"]
    parts["recomputed_block"] = per_block if checkpointing else 0
    return parts


def gpt_training_memory(
    config: GPTConfig, batch_size: int, block_size: int | None = None, *, optimizer_states: int = 2,
    checkpointing: bool = False,
) -> dict[str, int]:
    """Bytes of one float32 training step of ``labkit.GPT(config)`` by formula, part by part, with the
    keys of `labkit.finetune.training_memory` (which measures them): "weights", "gradients" (4 bytes
    per parameter each), "optimizer" (``optimizer_states`` numbers per parameter: AdamW keeps 2,
    its running mean and mean square of the gradient), "activations" (`gpt_activation_bytes`'s
    total, kept from the forward pass to the backward pass) and "total".

    Chapter 08a adds up weights, gradients, optimizer states and activations.
    """
    if isinstance(optimizer_states, bool) or not isinstance(optimizer_states, int) or optimizer_states < 0:
        raise ValueError(f"optimizer_states must be a whole number ≥ 0 (AdamW keeps 2), got {optimizer_states!r}")
    n = gpt_num_parameters(config)
    parts = {
        "weights": FLOAT32_BYTES * n,
        "gradients": FLOAT32_BYTES * n,
        "optimizer": optimizer_states * FLOAT32_BYTES * n,
        "activations": gpt_activation_bytes(config, batch_size, block_size, checkpointing=checkpointing)["total"],
    }
    parts["total"] = sum(parts.values())
    return parts
