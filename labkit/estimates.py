"""Back-of-the-envelope numbers for training a model: compute, time and memory.

Three estimates that chapter 01 derives and later chapters (08 scaling, 11 future) reuse:

    >>> flops = training_flops(175e9, 300e9)           # GPT-3: 6 · N · D ≈ 3.15e23 FLOP
    >>> format_duration(training_time_seconds(flops, gflops_per_s=140))   # on a 140 GFLOP/s CPU
    '178,245 years'
    >>> format_bytes(training_memory_bytes(7e9, "bf16")["total"])        # Adam, mixed precision
    '104 GiB'

They are estimates of the *order of magnitude*: good enough to know whether a run takes
minutes or centuries and whether it fits in memory, never a promise to the second or byte.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

__all__ = [
    "FLOP_PER_PARAMETER_PER_TOKEN", "BYTES_PER_VALUE", "OPTIMIZER_STATES", "Accelerator",
    "REFERENCE_ACCELERATORS", "training_flops", "training_time_seconds", "training_memory_bytes",
    "format_duration", "format_bytes", "format_count",
]

FLOP_PER_PARAMETER_PER_TOKEN = 6
"""2 for the forward pass (one multiply + one add per weight) + 4 for the backward pass."""

BYTES_PER_VALUE: dict[str, int] = {"fp32": 4, "bf16": 2}
"""Bytes per number: float32 takes 4, bfloat16 takes 2."""

OPTIMIZER_STATES: dict[str, int] = {"sgd": 0, "momentum": 1, "adam": 2}
"""Numbers the optimizer keeps per parameter: plain SGD none, momentum one (the velocity),
Adam two (the running mean of the gradient, m, and of its square, v)."""


def _positive(value: object, name: str, *, allow_zero: bool = False) -> float:
    """`value` as a float, or a ValueError that says what was wrong and what to pass instead."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    number = float(value)
    if math.isnan(number) or math.isinf(number) or number < 0 or (number == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return number


def training_flops(params: float, tokens: float) -> float:
    """Floating-point operations to train a dense model with `params` parameters on `tokens` tokens: ≈ 6·N·D.

    Why 6: nearly all the work of a dense network is matrix multiplication, in which every
    weight meets every token once. Forward, each weight does one multiply and one add per
    token: **2** FLOP. Backward does that work twice: once to pass the gradient back to the
    layer's input (x̄ = ȳ·Wᵀ) and once to get the weight's own gradient (W̄ = xᵀ·ȳ): **4** FLOP.
    2 + 4 = 6 FLOP per parameter per token.

    Left out, because they are small for large models: the attention scores (which grow with
    the context length; Kaplan et al. 2020, arXiv:2001.08361, add 6·n_layer·n_ctx·d_model
    per token), biases, normalisation, activations, and the optimizer step (~10 FLOP per
    parameter per *step*, not per token). A convolution reuses each weight at every pixel,
    so for a CNN the rule undercounts badly: it is a rule for transformers and MLPs.
    """
    n = _positive(params, "params")
    d = _positive(tokens, "tokens")
    return FLOP_PER_PARAMETER_PER_TOKEN * n * d


def training_time_seconds(flops: float, gflops_per_s: float, utilisation: float = 0.4) -> float:
    """Seconds to do `flops` operations on a device whose peak speed is `gflops_per_s` (10⁹ FLOP/s).

    No training run reaches the peak: data loading, small kernels, communication and
    Python all take their share. `utilisation` is the fraction of the peak actually
    achieved; 0.3–0.5 is typical of well-tuned large runs (PaLM reports 46 % "model FLOPs
    utilisation"; Llama 3.1 405B 38–43 %), a small model on a CPU often gets less.
    """
    work = _positive(flops, "flops", allow_zero=True)
    speed = _positive(gflops_per_s, "gflops_per_s")
    share = _positive(utilisation, "utilisation")
    if share > 1:
        raise ValueError(f"utilisation is a fraction of the peak speed, between 0 and 1, got {utilisation!r}"
                         " (for 40 % pass 0.4)")
    return work / (speed * 1e9 * share)


def training_memory_bytes(params: float, dtype: str = "fp32", optimizer: str = "adam") -> dict[str, float]:
    """Memory for training state, in bytes: {"weights", "gradients", "master_weights", "optimizer_state", "total"}.

    The convention (that of the ZeRO paper, Rajbhandari et al. 2019, arXiv:1910.02054):

    - ``dtype="fp32"``: weights, gradients and optimizer state all in float32. With Adam:
      4 + 4 + 8 (m and v) = **16 bytes per parameter**; ``master_weights`` is 0.
    - ``dtype="bf16"`` means *mixed precision*: the forward and backward passes use bfloat16
      weights (2 bytes) and produce bfloat16 gradients (2 bytes), but the optimizer updates
      an fp32 **master copy** of the weights (4 bytes), because tiny updates such as
      1e-4 · gradient vanish when added to a bfloat16 number (it keeps only ~3 significant
      digits). Adam's m and v stay in fp32 (8 bytes). Total again **16 bytes per parameter**:
      mixed precision buys speed and smaller activations, not smaller training state.

    Not included: activations (they grow with batch size and context length, and are often
    the largest part), temporary buffers, and the framework's own overhead. Pure-bf16
    training without a master copy exists, but is not modelled here.
    """
    n = _positive(params, "params")
    if dtype not in BYTES_PER_VALUE:
        raise ValueError(f"dtype must be one of {', '.join(map(repr, BYTES_PER_VALUE))}, got {dtype!r}")
    if optimizer not in OPTIMIZER_STATES:
        raise ValueError(f"optimizer must be one of {', '.join(map(repr, OPTIMIZER_STATES))}, got {optimizer!r}")
    width = BYTES_PER_VALUE[dtype]
    fp32 = BYTES_PER_VALUE["fp32"]
    parts = {
        "weights": width * n,
        "gradients": width * n,
        "master_weights": (fp32 * n) if dtype != "fp32" else 0.0,
        "optimizer_state": OPTIMIZER_STATES[optimizer] * fp32 * n,
    }
    parts["total"] = sum(parts.values())
    return parts


# --------------------------------------------------------------------------- reference accelerators


@dataclass(frozen=True)
class Accelerator:
    """A GPU or TPU with its published peak speed for training-style matrix multiplication.

    `peak_tflops` is the dense (no structured sparsity) tensor-core peak at `precision`, in
    10¹² FLOP/s, from the vendor's datasheet named in `source`.
    """

    name: str
    year: int
    precision: str
    peak_tflops: float
    memory_gib: float
    source: str

    @property
    def gflops_per_s(self) -> float:
        """The peak in GFLOP/s, the unit `labkit.doctor()` measures this machine in."""
        return self.peak_tflops * 1e3


REFERENCE_ACCELERATORS: tuple[Accelerator, ...] = (
    Accelerator("NVIDIA V100", 2017, "fp16 tensor", 125.0, 32,
                "NVIDIA Tesla V100 datasheet: 125 TFLOPS deep learning (SXM2)"),
    Accelerator("NVIDIA A100", 2020, "bf16 tensor", 312.0, 80,
                "NVIDIA A100 datasheet: BF16 Tensor Core 312 TFLOPS (624 with sparsity)"),
    Accelerator("NVIDIA RTX 4090", 2022, "bf16 tensor", 165.2, 24,
                "NVIDIA Ada GPU architecture whitepaper: peak BF16 Tensor TFLOPS, FP32 accumulate, 165.2 (330.4 with sparsity)"),
    Accelerator("Google TPU v4", 2021, "bf16", 275.0, 32,
                "Google Cloud TPU v4 documentation: 275 TFLOPS peak bf16 per chip"),
    Accelerator("NVIDIA H100", 2022, "bf16 tensor", 989.4, 80,
                "NVIDIA H100 datasheet (SXM): BF16 Tensor Core 1,979 TFLOPS with sparsity, half without"),
)
"""A few well-known accelerators, with their published dense bf16/fp16 tensor peak."""


# --------------------------------------------------------------------------- readable numbers

_DURATION_UNITS = (("years", 365.25 * 86400), ("days", 86400.0), ("hours", 3600.0), ("minutes", 60.0), ("seconds", 1.0))


def _number(value: float) -> str:
    """3.2, 41, 1,234: one decimal below 10, whole numbers above."""
    return f"{value:.1f}" if value < 9.95 else f"{value:,.0f}"


def format_duration(seconds: float) -> str:
    """A duration in the largest unit that fits: "45 seconds", "3.2 days", "41 years", "2.7 million years"."""
    s = _positive(seconds, "seconds", allow_zero=True)
    if s == 0:
        return "0 seconds"
    if s < 1e-3:
        return f"{_number(s * 1e6)} µs"
    if s < 1:
        return f"{_number(s * 1e3)} ms"
    for unit, size in _DURATION_UNITS:
        if s >= size:
            value = s / size
            if unit == "years" and value >= 1e6:
                for word, scale in (("billion", 1e9), ("million", 1e6)):
                    if value >= scale:
                        return f"{_number(value / scale)} {word} years"
            text = _number(value)
            return f"{text} {unit.removesuffix('s') if text == '1.0' else unit}"
    raise AssertionError("unreachable: every duration >= 1 s has a unit")


def format_bytes(n_bytes: float) -> str:
    """Bytes in binary units, as operating systems and GPU specs count memory: "512 MiB", "1.3 TiB"."""
    b = _positive(n_bytes, "n_bytes", allow_zero=True)
    for unit, size in (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if b >= size:
            return f"{_number(b / size)} {unit}"
    return f"{b:.0f} bytes"


def format_count(n: float) -> str:
    """A count the way papers write model and data sizes: "60K", "117M", "1.5B", "15.6T"."""
    x = float(f"{_positive(n, 'n', allow_zero=True):.3g}")  # round first, so 999.9M shows as 1B
    for suffix, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if x >= size:
            value = x / size
            return f"{value:.3g}{suffix}" if value < 1000 else f"{value:,.0f}{suffix}"
    return f"{x:g}"
