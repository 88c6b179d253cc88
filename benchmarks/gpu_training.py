"""The course's training loop on a CUDA GPU: tokens/s and model FLOP utilisation (MFU), fp32
against bf16 autocast, at two sizes; fused against foreach AdamW; fp16 with a GradScaler
(chapter 08a's GPU cell); DDP over NCCL on one rank.

Run on a machine with a CUDA GPU (`tools/gpu_check.sh` runs it); it refuses to run without one.

- MFU = tokens/s × FLOPs per token (`labkit.lm`'s count: 6·N plus attention) / peak. Two peaks are
  printed: the bf16 matmul rate measured here (8192², the fastest of five windows) and the
  vendor's datasheet figure when the GPU's name is known (dense bf16, no sparsity).
- Sizes: the shakespeare_char recipe's GPU model (6 layers, 384 wide, block 256, batch 64; the
  one `python -m labkit train` uses on a GPU) and GPT-2 small's shape (12 layers, 768 wide, block
  1024, vocabulary 50,304, batch 16), on random tokens: only the speed is measured.
- Each run is ``train_lm`` itself (its own timing: the last period of ``--steps`` steps, after
  a first period that pays for kernel selection), so the figures are what a learner's run sees.

    python benchmarks/gpu_training.py               # about a minute on an H100-class GPU
    python benchmarks/gpu_training.py --steps 40
"""
from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import torch
import torch.distributed as dist

from labkit import distributed
from labkit.gpt import GPT, GPTConfig
from labkit.lm import configure_optimizer, lm_loss, train_lm
from labkit.machine import matmul_gflops

DATASHEET_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "4090": 165e12}  # dense, FLOP/s
SIZES: dict[str, tuple[dict[str, Any], int]] = {
    "shakespeare_char GPU recipe": (dict(n_layer=6, n_head=6, n_embd=384, block_size=256, vocab_size=65), 64),
    "GPT-2 small shape": (dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50304), 16),
}


def datasheet_peak() -> float | None:
    name = torch.cuda.get_device_name()
    return next((flops for key, flops in DATASHEET_BF16.items() if key in name), None)


def run(config: dict[str, Any], batch: int, steps: int, autocast: torch.dtype | None, peak: float) -> dict[str, float]:
    torch.manual_seed(0)
    model = GPT(GPTConfig(dropout=0.0, **config))
    data = torch.randint(config["vocab_size"], (4_000_000,), generator=torch.Generator().manual_seed(0))
    history = train_lm(model, data, data[:200_000], steps=2 * steps, batch_size=batch, lr=3e-4, eval_every=steps,
                       eval_batches=2, autocast=autocast, peak_flops=peak, device="cuda", verbose=False)
    return dict(tokens_per_s=history["tokens_per_s"][-1], mfu=history["mfu"][-1], loss=history["train_loss"][-1],
                parameters=model.num_parameters(),
                memory_gib=torch.cuda.max_memory_allocated() / 2**30)


def adam_step_ms(fused: bool, repeats: int = 20) -> float:
    """Milliseconds per AdamW step on GPT-2 small's parameters (gradients set once)."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50304)).cuda()
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused, foreach=None if fused else True)
    for _ in range(3):
        optimizer.step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        optimizer.step()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats * 1e3


def fp16_with_grad_scaler() -> None:
    """Chapter 08a's GPU cell, run as it is in the notebook: 20 fp16 steps with a GradScaler."""
    cells = json.load(open(os.path.join(os.path.dirname(__file__), "..", "chapters", "08a_memory_and_speed.ipynb")))["cells"]
    source = next("".join(c["source"]) for c in cells if c["cell_type"] == "code" and "GradScaler" in "".join(c["source"]))
    config = GPTConfig.preset("char-small", vocab_size=65, block_size=256)
    ids = torch.randint(65, (100_000,), generator=torch.Generator().manual_seed(0))
    from labkit.lm import get_batch

    x, y = get_batch(ids, 8, 256, torch.Generator().manual_seed(0))
    exec(source, dict(torch=torch, math=__import__("math"), GPT=GPT, config=config, x=x, y=y,
                      configure_optimizer=configure_optimizer, lm_loss=lm_loss))


def ddp_nccl_one_rank(steps: int = 5) -> None:
    """DDP over NCCL on one rank (this machine's one GPU): DistributedDataParallel around the model (as
    `labkit.distributed.wrap` does with several ranks; with one it returns the model itself), the same
    steps as the bare model, weights compared. (Two ranks on one GPU are refused by NCCL;
    `init_from_env` says so before NCCL does.)"""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29511")
    dist.init_process_group("nccl", rank=0, world_size=1, device_id=torch.device("cuda", 0))
    config = GPTConfig.preset("char-tiny", vocab_size=65)
    x = torch.randint(65, (8, 64), generator=torch.Generator().manual_seed(1)).cuda()
    weights = []
    for use_ddp in (False, True):
        torch.manual_seed(0)
        model = GPT(config).cuda()
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[0]) if use_ddp else model
        optimizer = configure_optimizer(model, 1e-3)
        for _ in range(steps):
            lm_loss(net(x[:, :-1]), x[:, 1:]).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    t = torch.ones(4, device="cuda")
    dist.all_reduce(t)
    print(f"DDP over NCCL (1 rank, {dist.get_backend()}): all_reduce {t.tolist()}, rank {distributed.rank()} of "
          f"{distributed.world_size()}; after {steps} steps the largest weight difference from the bare model is "
          f"{(weights[0] - weights[1]).abs().max().item():.2e}", flush=True)
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="steps per measured period (each run trains two)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/gpu_training.py needs a CUDA GPU; PyTorch sees none here")
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}", flush=True)
    measured = {dt: matmul_gflops("cuda", dt, size=8192, seconds=1.0) * 1e9 for dt in (torch.float32, torch.bfloat16)}
    sheet = datasheet_peak()
    print(f"matmul 8192²: fp32 {measured[torch.float32] / 1e12:.1f} TFLOP/s, bf16 {measured[torch.bfloat16] / 1e12:.0f} "
          f"TFLOP/s (measured){f'; datasheet dense bf16 {sheet / 1e12:.0f}' if sheet else ''}", flush=True)
    print("configure_optimizer on CUDA gives AdamW fused =",
          configure_optimizer(GPT(GPTConfig.preset("char-tiny", vocab_size=65)).cuda(), 1e-3).defaults.get("fused"))
    for name, (config, batch) in SIZES.items():
        for autocast in (None, torch.bfloat16):
            torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            r = run(config, batch, args.steps, autocast, measured[torch.bfloat16])
            label = "bf16 autocast" if autocast else "fp32"
            of_sheet = f", {r['mfu'] * measured[torch.bfloat16] / sheet:6.1%} of the datasheet" if sheet else ""
            print(f"{name} ({r['parameters'] / 1e6:.1f} M), {label:>13}: {r['tokens_per_s']:>12,.0f} tokens/s, "
                  f"MFU {r['mfu']:6.1%} of the measured "
                  f"bf16 peak{of_sheet}; train loss {r['loss']:.3f}, peak memory {r['memory_gib']:.1f} GiB "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    foreach, fused = adam_step_ms(False), adam_step_ms(True)
    print(f"AdamW step on GPT-2 small's parameters: foreach {foreach:.2f} ms, fused {fused:.2f} ms ({foreach / fused:.1f}×)", flush=True)
    print("chapter 08a's fp16 + GradScaler cell:", flush=True)
    fp16_with_grad_scaler()
    ddp_nccl_one_rank()


if __name__ == "__main__":
    main()
