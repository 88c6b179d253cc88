"""Is PyTorch's fused attention faster in bf16 or in float32 on this CPU, forward and backward?

`labkit.gpt.fused_attention` computes bf16 attention that will be differentiated in float32 below
``BF16_ATTENTION_IN_FP32_BELOW`` queries, because on the machines we measured PyTorch's CPU kernel
differentiates short bf16 contexts several times slower than float32 ones (while bf16 matrix
products are faster). This benchmark times one forward and backward pass of
``scaled_dot_product_attention`` (causal; batch 12) for a grid of context lengths and head sizes:

- bf16: PyTorch's kernel on bf16 inputs;
- labkit: `fused_attention` on the same bf16 inputs (float32 inside below the threshold, so the casts
  are included);
- float32: the kernel on float32 inputs, for reference.

For each length it prints the milliseconds (the fastest of 20 passes, `labkit.export.time_call`:
other programs can only slow a pass down) and bf16's time over labkit's: above 1, computing in float32 pays. Rerun
it on another machine or PyTorch version before trusting the threshold there.

    python benchmarks/attention_bf16.py          # about a minute on the 2-core CPU
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from labkit.export import time_call
from labkit.gpt import BF16_ATTENTION_IN_FP32_BELOW, fused_attention

Attention = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def forward_backward_ms(shape: tuple[int, int, int, int], dtype: torch.dtype, attention: Attention,
                        repeats: int = 20) -> float:
    """The fastest of ``repeats`` forward and backward passes (after a warm-up), in ms."""
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(*shape, generator=generator).to(dtype).requires_grad_() for _ in range(3))
    grad = torch.randn(*shape, generator=generator).to(dtype)
    return time_call(lambda: attention(q, k, v).backward(grad), repeats) * 1e3


def main() -> None:
    def pytorch(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def labkit(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return fused_attention(q, k, v, is_causal=True)

    print(f"causal attention, forward + backward, batch 12, {torch.get_num_threads()} threads; "
          f"labkit computes bf16 in float32 below {BF16_ATTENTION_IN_FP32_BELOW} queries")
    print(f"{'heads × head size':>18} {'T':>5} {'bf16':>9} {'labkit':>9} {'float32':>9}   bf16 / labkit")
    for heads, head_size in ((4, 32), (8, 64)):
        for T in (64, 128, 192, 256, 384):
            shape = (12, heads, T, head_size)
            bf16 = forward_backward_ms(shape, torch.bfloat16, pytorch)
            ours = forward_backward_ms(shape, torch.bfloat16, labkit)
            fp32 = forward_backward_ms(shape, torch.float32, pytorch)
            print(f"{f'{heads} × {head_size}':>18} {T:>5} {bf16:7.2f}ms {ours:7.2f}ms {fp32:7.2f}ms   {bf16 / ours:5.2f}×")


if __name__ == "__main__":
    main()
