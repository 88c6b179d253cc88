"""How much faster does a KV cache make `GPT.generate`?

For each model size, generates the same tokens with and without the cache (same seed, checked
token for token), interleaved in one process in alternating order so that machine noise hits
both alike. Prints the median tokens per second of each and the speed-up. The prompt plus the
new tokens fill the context exactly (block_size), where the cache saves the most; past
block_size both recompute the last block_size tokens each step, so the cache no longer helps.

    python benchmarks/kv_cache.py                      # char-tiny, char-small (vocab 65), bpe-small (vocab 4096)
    python benchmarks/kv_cache.py --rounds 5 --preset char-small --batch 4 --threads 1
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from labkit.gpt import GPT, GPTConfig

MODELS = {"char-tiny": 65, "char-small": 65, "bpe-small": 4096}  # preset → vocab size, as in chapter 06


def generate(model: GPT, prompt: torch.Tensor, new_tokens: int, use_cache: bool) -> tuple[torch.Tensor, float]:
    """Sampled tokens (seed 0, temperature 1) and the seconds they took."""
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    out = model.generate(prompt, new_tokens, use_cache=use_cache, generator=generator)
    return out, time.perf_counter() - start


def measure(preset: str, vocab_size: int, rounds: int, batch: int, prompt_length: int) -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset(preset, vocab_size=vocab_size)).eval()
    block = model.config.block_size
    prompt = torch.randint(vocab_size, (batch, prompt_length), generator=torch.Generator().manual_seed(1))
    new_tokens = block - prompt_length
    seconds: dict[str, list[float]] = {"with cache": [], "without cache": []}
    names = list(seconds)
    for r in range(rounds + 1):  # round 0 warms up both and is not counted
        outputs = {}
        for name in names[r % 2 :] + names[: r % 2]:  # alternate which one runs first
            outputs[name], elapsed = generate(model, prompt, new_tokens, use_cache=name == "with cache")
            if r:
                seconds[name].append(elapsed)
        if not torch.equal(outputs["with cache"], outputs["without cache"]):
            raise AssertionError(f"{preset}: the cache changed the generated tokens")
    rate = {name: batch * new_tokens / statistics.median(values) for name, values in seconds.items()}
    print(
        f"\n{preset}: {model.num_parameters():,} parameters, vocab {vocab_size}, batch {batch}, prompt {prompt_length} "
        f"+ {new_tokens} new tokens = block_size {block}, {rounds} rounds, {torch.get_num_threads()} threads"
    )
    for name, tokens_per_s in rate.items():
        print(f"  {name:<14} {tokens_per_s:8.0f} tokens/s")
    print(f"  speed-up       {rate['with cache'] / rate['without cache']:8.2f}×  (same tokens: yes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--preset", choices=[*MODELS, "all"], default="all")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--prompt-length", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for preset, vocab_size in MODELS.items():
        if args.preset in ("all", preset):
            measure(preset, vocab_size, args.rounds, args.batch, args.prompt_length)


if __name__ == "__main__":
    main()
