"""Pruning and quantization by hand (chapter 08c): the clean versions of what the notebook writes.

Pruning (剪枝)
- ``magnitude_mask``: unstructured, keep the largest |w|; equals ``torch.nn.utils.prune.l1_unstructured``.
- ``channel_mask``: structured, keep whole rows (output channels) of largest norm; equals ``ln_structured``.
- ``keep_outputs`` / ``keep_inputs``: a smaller ``nn.Linear`` or ``nn.Conv2d`` holding only the kept
  channels, so that the pruned model is a smaller *dense* model (the only kind a CPU runs faster).

Quantization (量化)
- ``quantize_int8_per_channel`` / ``dequantize_int8``: one scale per output row, symmetric, as
  PyTorch's ``per_channel_dynamic_qconfig`` makes them (the integers are equal).
- ``quantize_q4_1`` / ``dequantize_q4_1``: GGUF's Q4_1, blocks of 32 weights stored as a float16
  scale d, a float16 minimum m and 32 four-bit integers q: weight ≈ d·q + m. The bytes equal those
  of ``gguf.quants.quantize(..., GGMLQuantizationType.Q4_1)``.
"""
from __future__ import annotations

import torch
from torch import nn

Q4_1_BLOCK = 32          # weights per block
Q4_1_BLOCK_BYTES = 20    # float16 d + float16 m + 16 bytes of 4-bit integers


# ==================================================================================== pruning


def pruned_count(amount: float, size: int) -> int:
    """How many of `size` numbers a fraction `amount` prunes, rounded as torch.nn.utils.prune rounds it."""
    if not 0.0 <= amount <= 1.0:
        raise ValueError(f"amount is the fraction to prune, between 0 and 1, got {amount}")
    return round(amount * size)


def magnitude_mask(weight: torch.Tensor, amount: float) -> torch.Tensor:
    """Unstructured magnitude pruning: a mask of weight's shape, 0.0 at the `amount` fraction of entries
    with the smallest |w|, 1.0 elsewhere. Equals ``prune.l1_unstructured(module, "weight", amount)``'s mask."""
    k = pruned_count(amount, weight.numel())
    mask = torch.ones_like(weight)
    if k:
        smallest = torch.topk(weight.detach().abs().reshape(-1), k=k, largest=False).indices
        mask.view(-1)[smallest] = 0.0
    return mask


def channel_norms(weight: torch.Tensor, n: float = 2, dim: int = 0) -> torch.Tensor:
    """The L`n` norm of each slice along `dim` (each output channel for dim 0): shape (weight.shape[dim],)."""
    other = [d for d in range(weight.dim()) if d != dim % weight.dim()]
    return torch.linalg.vector_norm(weight.detach(), ord=n, dim=other)


def kept_channels(weight: torch.Tensor, amount: float, n: float = 2, dim: int = 0) -> torch.Tensor:
    """Indices (sorted) of the channels along `dim` that structured pruning keeps: those of largest norm."""
    size = weight.shape[dim]
    keep = size - pruned_count(amount, size)
    return torch.topk(channel_norms(weight, n, dim), k=keep).indices.sort().values


def channel_mask(weight: torch.Tensor, amount: float, n: float = 2, dim: int = 0) -> torch.Tensor:
    """Structured pruning: a mask of weight's shape, zero over the whole channels (slices along `dim`) of
    smallest L`n` norm. Equals ``prune.ln_structured(module, "weight", amount, n, dim)``'s mask."""
    mask = torch.zeros_like(weight)
    index = [slice(None)] * weight.dim()
    index[dim] = kept_channels(weight, amount, n, dim)
    mask[tuple(index)] = 1.0
    return mask


def keep_outputs(layer: nn.Linear | nn.Conv2d, keep: torch.Tensor) -> nn.Linear | nn.Conv2d:
    """A copy of `layer` with only the output channels (rows) `keep`: (out, in, …) → (len(keep), in, …)."""
    if isinstance(layer, nn.Linear):
        new: nn.Linear | nn.Conv2d = nn.Linear(layer.in_features, len(keep), bias=layer.bias is not None)
    elif isinstance(layer, nn.Conv2d):
        new = nn.Conv2d(layer.in_channels, len(keep), layer.kernel_size, layer.stride, layer.padding,
                        bias=layer.bias is not None)
    else:
        raise TypeError(f"keep_outputs prunes nn.Linear or nn.Conv2d, got {type(layer).__name__}")
    with torch.no_grad():
        new.weight.copy_(layer.weight[keep])
        if layer.bias is not None:
            new.bias.copy_(layer.bias[keep])
    return new


def keep_inputs(layer: nn.Linear, keep: torch.Tensor, group: int = 1) -> nn.Linear:
    """A copy of the Linear `layer` that reads only inputs from the kept channels: (out, in) → (out, len(keep)·group).

    `group` > 1 when each channel feeds `group` consecutive inputs, as a flattened (channels, h, w)
    feature map does (group = h·w)."""
    columns = (keep[:, None] * group + torch.arange(group)).reshape(-1)
    new = nn.Linear(len(columns), layer.out_features, bias=layer.bias is not None)
    with torch.no_grad():
        new.weight.copy_(layer.weight[:, columns])
        if layer.bias is not None:
            new.bias.copy_(layer.bias)
    return new


# ==================================================================================== int8, per channel


def quantize_int8_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8, one scale per output row: (out, in) → (q int8 (out, in), scale float32 (out,)).

    scale = max|w| / 127.5 (the 255 steps of −128 … 127, halved), q = round(w / scale) clipped to
    −128 … 127: PyTorch's per-channel observer's convention. Multiplying by 1/scale (float32), as its
    kernel does, makes the integers equal its own (the largest |w| lands near ±127.5)."""
    amax = weight.detach().abs().amax(dim=tuple(range(1, weight.dim())), keepdim=True).float()
    scale = torch.clamp(amax / 127.5, min=torch.finfo(torch.float32).eps)
    q = torch.clamp(torch.round(weight.detach().float() * (1 / scale)), -128, 127).to(torch.int8)
    return q, scale.reshape(-1)


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """float32 weights back from (q (out, in, …), scale (out,)): w ≈ q · scale."""
    return q.float() * scale.reshape(-1, *([1] * (q.dim() - 1)))


# ==================================================================================== GGUF's Q4_1


def quantize_q4_1(weight: torch.Tensor) -> torch.Tensor:
    """GGUF's Q4_1: (…, n) float, n a multiple of 32 → (blocks, 20) uint8, blocks = numel / 32.

    Each block of 32 consecutive weights: d = (max − min) / 15, q = trunc((w − min) / d + 0.5) in
    0 … 15; stored as d and min in float16 (bytes 0–3), then byte j holds q_j (low nibble) and
    q_(j+16) (high nibble). The same bytes as ``gguf.quants.quantize(w, GGMLQuantizationType.Q4_1)``."""
    if weight.shape[-1] % Q4_1_BLOCK:
        raise ValueError(f"Q4_1 packs rows of a multiple of {Q4_1_BLOCK} weights; the last dimension is {weight.shape[-1]}")
    blocks = weight.detach().float().reshape(-1, Q4_1_BLOCK)
    low, high = blocks.min(dim=1, keepdim=True).values, blocks.max(dim=1, keepdim=True).values
    d = (high - low) / 15
    inverse = torch.where(d == 0, torch.zeros_like(d), 1 / d)
    q = torch.trunc((blocks - low) * inverse + 0.5).clamp(0, 15).to(torch.uint8)
    packed = q[:, :16] | (q[:, 16:] << 4)
    as_bytes = [t.to(torch.float16).view(torch.uint8) for t in (d, low)]     # (blocks, 2) each
    return torch.cat([*as_bytes, packed], dim=1)


def dequantize_q4_1(blocks: torch.Tensor, shape: tuple[int, ...] | torch.Size | None = None) -> torch.Tensor:
    """float32 weights from Q4_1 blocks (blocks, 20) uint8: w = d · q + m, reshaped to `shape` if given."""
    d = blocks[:, 0:2].contiguous().view(torch.float16).float()     # (blocks, 1)
    m = blocks[:, 2:4].contiguous().view(torch.float16).float()
    packed = blocks[:, 4:]
    q = torch.cat([packed & 0x0F, packed >> 4], dim=1).float()     # (blocks, 32)
    values = d * q + m
    return values.reshape(shape) if shape is not None else values.reshape(-1)


def round_trip(weight: torch.Tensor, scheme: str) -> torch.Tensor:
    """`weight` stored in `scheme` and read back as float32: "fp32", "bf16", "int8" (per channel) or "q4_1"."""
    if scheme == "fp32":
        return weight.detach().float().clone()
    if scheme == "bf16":
        return weight.detach().to(torch.bfloat16).float()
    if scheme == "int8":
        return dequantize_int8(*quantize_int8_per_channel(weight))
    if scheme == "q4_1":
        return dequantize_q4_1(quantize_q4_1(weight), weight.shape)
    raise ValueError(f"unknown scheme {scheme!r}: use 'fp32', 'bf16', 'int8' or 'q4_1'")


def stored_bytes(weight: torch.Tensor, scheme: str) -> int:
    """Bytes that `weight` takes in `scheme`: 4, 2 or 1 per number (+ 4 per row's int8 scale), 20 per 32 in Q4_1."""
    n = weight.numel()
    sizes = {"fp32": 4 * n, "bf16": 2 * n, "int8": n + 4 * weight.shape[0], "q4_1": n // Q4_1_BLOCK * Q4_1_BLOCK_BYTES}
    if scheme not in sizes:
        raise ValueError(f"unknown scheme {scheme!r}: use 'fp32', 'bf16', 'int8' or 'q4_1'")
    return sizes[scheme]


def fake_quantize_activations(x: torch.Tensor, levels: int = 128) -> torch.Tensor:
    """`x` rounded to `levels` evenly spaced values between min(x, 0) and max(x, 0), one scale for the
    whole tensor (per tensor, affine), as dynamic quantization does to a Linear layer's input.

    PyTorch's x86 kernels use 128 levels (7 bits, "reduce_range") for the activations of a dynamic
    int8 Linear, so that products summed in 16 bits cannot overflow."""
    low, high = torch.clamp(x.min(), max=0.0), torch.clamp(x.max(), min=0.0)
    scale = torch.clamp((high - low) / (levels - 1), min=torch.finfo(torch.float32).eps)
    zero_point = torch.round(-low / scale)
    q = torch.clamp(torch.round(x / scale) + zero_point, 0, levels - 1)
    return (q - zero_point) * scale


def dynamic_int8_linear(x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None,
                        levels: int = 128) -> torch.Tensor:
    """What ``torch.ao.quantization.quantize_dynamic``'s Linear computes, written out in float32:
    x (…, in) quantized per tensor, weights q (out, in) int8 with per-row `scale`: → (…, out)."""
    y = fake_quantize_activations(x, levels) @ dequantize_int8(q, scale).T
    return y + bias if bias is not None else y
