"""Is labkit's SmolLM2 as fast as transformers' on the same weights?

Loads SmolLM2-135M-Instruct twice from the same GGUF file — ``labkit.load_smollm2`` and
transformers' ``AutoModelForCausalLM.from_pretrained(..., gguf_file=...)`` — in float32 and in
bfloat16, and measures on the CPU (or the device given):

- prefill: one forward pass over a long prompt that fills the KV cache and scores the next
  token only (tokens/s of prompt);
- generation: greedy decoding of ``--new-tokens`` tokens with the KV cache (tokens/s of new
  tokens), no stop token, so both produce exactly that many.

transformers keeps a GGUF model's weights packed and computes in float32 even when asked for
bfloat16 (it says so in a warning, casting each matmul's input and output), so its bfloat16 row
is float32 arithmetic; ours is bfloat16 arithmetic, which CPUs without bf16 instructions emulate.

The runs are interleaved in one process, alternating which model goes first, and the median
of ``--rounds`` is kept (a warm-up round is not counted). In float32 the greedy tokens must be
identical; in bfloat16 rounding may make them part ways, and the report says after how many.

    python benchmarks/llm_generation.py
    python benchmarks/llm_generation.py --rounds 5 --new-tokens 128 --dtype float32 --threads 2
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

# benchmarks/tokenizers.py would shadow the `tokenizers` package that transformers imports
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402

from labkit.data import load_text  # noqa: E402
from labkit.gpt import KVCache  # noqa: E402
from labkit.smollm2 import load_smollm2, smollm2_path  # noqa: E402

QUESTION = "Explain in a few sentences why the sky is blue."


def timed(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    with torch.no_grad():
        out = fn()
    return out, time.perf_counter() - start


def interleaved(runs: dict[str, Callable[[], torch.Tensor]], rounds: int) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Median seconds of each run over `rounds` (after a warm-up round), alternating the order."""
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    outputs: dict[str, torch.Tensor] = {}
    for r in range(rounds + 1):
        for name in names[r % 2 :] + names[: r % 2]:
            outputs[name], elapsed = timed(runs[name])
            if r:
                seconds[name].append(elapsed)
    return {name: statistics.median(values) for name, values in seconds.items()}, outputs


def measure(dtype: torch.dtype, rounds: int, new_tokens: int, prefill_tokens: int) -> None:
    from transformers import AutoModelForCausalLM

    start = time.perf_counter()
    ours, tokenizer = load_smollm2(dtype)
    loaded_ours = time.perf_counter() - start
    path = smollm2_path()
    start = time.perf_counter()
    theirs = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype).eval()
    loaded_theirs = time.perf_counter() - start

    chat = torch.tensor([tokenizer.encode(tokenizer.apply_chat_template([{"role": "user", "content": QUESTION}]))])
    long_prompt = torch.tensor([tokenizer.encode(load_text("shakespeare"))[:prefill_tokens]])

    prefill, _ = interleaved({
        # fill a KV cache and score the next token: what generation does before its first new token
        "labkit": lambda: ours.lm_head(ours.hidden_states(long_prompt, KVCache(ours.config.n_layer))[:, -1]),
        "transformers": lambda: theirs(long_prompt, use_cache=True, logits_to_keep=1).logits[:, -1],
    }, rounds)
    generation, outputs = interleaved({
        "labkit": lambda: ours.generate(chat, new_tokens, temperature=0),
        "transformers": lambda: theirs.generate(
            chat, attention_mask=torch.ones_like(chat), max_new_tokens=new_tokens, min_new_tokens=new_tokens,
            do_sample=False, eos_token_id=None, pad_token_id=tokenizer.token_id("<|im_end|>"),
        ),
    }, rounds)

    a, b = outputs["labkit"][0, chat.shape[1]:].tolist(), outputs["transformers"][0, chat.shape[1]:].tolist()
    same = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    if dtype == torch.float32 and a != b:
        raise AssertionError(f"float32 greedy tokens differ from transformers' at new token {same}")

    name = str(dtype).removeprefix("torch.")
    print(f"\n{name}: SmolLM2-135M-Instruct, {torch.get_num_threads()} threads, {rounds} rounds (median), "
          f"loaded in {loaded_ours:.1f} s (labkit) / {loaded_theirs:.1f} s (transformers)")
    print(f"  {'':<26}{'labkit':>10}{'transformers':>14}{'ratio':>8}")
    for label, secs, count in (
        (f"prefill, {long_prompt.shape[1]} tokens", prefill, long_prompt.shape[1]),
        (f"generate {new_tokens} (prompt {chat.shape[1]})", generation, new_tokens),
    ):
        mine, reference = count / secs["labkit"], count / secs["transformers"]
        print(f"  {label:<26}{mine:>8.0f}/s{reference:>12.0f}/s{mine / reference:>7.2f}×")
    print(f"  greedy tokens identical: {'all ' + str(len(a)) if a == b else f'the first {same} of {len(a)}'}")
    print(f"  reply: {tokenizer.decode(a)[:100]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--prefill-tokens", type=int, default=256)
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "both"], default="both")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in ("float32", "bfloat16"):
        if args.dtype in (name, "both"):
            measure(getattr(torch, name), args.rounds, args.new_tokens, args.prefill_tokens)


if __name__ == "__main__":
    main()
