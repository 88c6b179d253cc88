"""Pretraining speed: tokens per second and model FLOP utilisation (MFU) of `labkit.train_lm`,
against a plain hand-written nanoGPT-style loop on the same model, data and settings.

Both run the same number of optimizer steps of character-level Shakespeare, interleaved in one
process (in a rotating order) so machine noise hits both alike. MFU divides the model's training
FLOPs per second (`GPT.flops_per_token`, 6·N plus attention) by the fp32 matmul peak that
`labkit.doctor()` measures on this device.

    python benchmarks/pretraining.py                      # the chapter's default (char-tiny, 32×64)
    python benchmarks/pretraining.py --preset char-small --batch-size 24 --block-size 256
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from labkit.data import load_text
from labkit.device import get_device
from labkit.gpt import GPT, GPTConfig
from labkit.lm import configure_optimizer, get_batch, lm_loss, lr_at, train_lm
from labkit.machine import matmul_gflops
from labkit.tokenizers import CharTokenizer


def plain_loop(model: GPT, data: torch.Tensor, steps: int, batch_size: int, block_size: int, lr: float) -> float:
    """The loop one writes by hand (nanoGPT's train.py, without evaluation): returns tokens/s."""
    optimizer = configure_optimizer(model, lr)
    generator = torch.Generator().manual_seed(0)
    device = next(model.parameters()).device
    model.train()
    start = time.perf_counter()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, max_lr=lr, total_steps=steps, warmup_steps=max(1, steps // 20), min_lr=lr / 10)
        x, y = get_batch(data, batch_size, block_size, generator)
        loss = lm_loss(model(x.to(device)), y.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    loss.item()  # wait for the device
    return steps * batch_size * block_size / (time.perf_counter() - start)


def labkit_loop(model: GPT, data: torch.Tensor, steps: int, batch_size: int, block_size: int, lr: float) -> float:
    """``train_lm`` over the same steps; its own tokens/s leaves out the evaluations."""
    history = train_lm(model, data, None, steps=steps, batch_size=batch_size, block_size=block_size, lr=lr,
                       eval_every=steps, eval_batches=1, verbose=False)
    return history["tokens_per_s"][-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="char-tiny")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    device = get_device()
    text = load_text("shakespeare", "train")
    tokenizer = CharTokenizer(text)
    data = torch.tensor(tokenizer.encode(text), dtype=torch.int16)
    config = GPTConfig.preset(args.preset, vocab_size=tokenizer.vocab_size, block_size=args.block_size)
    peak = matmul_gflops(device) * 1e9
    print(f"{args.preset}: {GPT(config).num_parameters():,} parameters, batch {args.batch_size} × block "
          f"{args.block_size}, {args.steps} steps per run, device {device}, {torch.get_num_threads()} threads, "
          f"fp32 matmul peak {peak / 1e9:.0f} GFLOP/s")

    loops = {"plain loop": plain_loop, "train_lm": labkit_loop}
    speeds: dict[str, list[float]] = {name: [] for name in loops}
    names = list(loops)
    for r in range(args.rounds):
        for name in names[r % 2:] + names[: r % 2]:  # rotate which one goes first
            torch.manual_seed(0)
            model = GPT(config).to(device)
            speeds[name].append(loops[name](model, data, args.steps, args.batch_size, args.block_size, 1e-3))
    flops = GPT(config).flops_per_token(args.block_size)
    for name in names:
        tps = statistics.median(speeds[name])
        print(f"  {name:10s}  {tps:10,.0f} tokens/s   MFU {tps * flops / peak:5.1%}   "
              f"(runs: {', '.join(f'{s:,.0f}' for s in speeds[name])})")
    ratio = statistics.median(speeds["plain loop"]) / statistics.median(speeds["train_lm"])
    print(f"  plain / train_lm time ratio: {ratio:.3f} (1.00 = no overhead)")


if __name__ == "__main__":
    main()
