"""The course's training step against nanoGPT's, at nanoGPT's own CPU recipe, and what each speed
lever buys on this machine.

nanoGPT's README trains Shakespeare characters on a CPU with 4 layers, 4 heads, 128 wide, block 64,
batch 12, fp32, no ``torch.compile``, dropout 0, 2000 steps. Its repository is not available offline,
so its step is re-implemented here in a few lines (`nanogpt_step`): the same model (labkit's `GPT` is
nanoGPT's architecture; ``bias=False`` as nanoGPT's default), a batch of random windows stacked from
the token stream, its learning-rate schedule (`nanogpt_lr`), the loss, backward, clipping at 1.0, and
AdamW in its CPU form (nanoGPT asks for the fused kernel on CUDA only). Against it:

- the same step with each lever the issue names: AdamW's fused CPU kernel, ``torch.compile``
  (inductor, which compiles C++ with this machine's gcc), bf16 autocast, and their combinations;
- ``train_lm``, the course's loop, with its defaults and with its fastest settings on this machine,
  ``compile=True, autocast=labkit.fastest_dtype()`` (bf16 only where this CPU multiplies it faster).

Every variant trains its own copy of the model, all in one process, in rounds of ``--steps`` steps,
in a rotating order, so that machine noise hits each alike. Reported: the median ms per step and
tokens/s, and the ratio to nanoGPT's step (higher is faster). The OpenMP wait settings in force are
printed (`benchmarks/omp_wait.py` measures them). Two more lines time only the step's weight matrix
products (`matmul_floor`), in float32 and in bf16: no loop built on PyTorch's products in that format
can be faster, which bounds the ratios.

On a CPU without bf16 arithmetic (``labkit.fastest_dtype()`` is float32 there) the bf16 rows are left
out: they would take minutes per round and say only that bf16 is slow.

Then (``--quality-steps``, 2000 by default, as nanoGPT's README) nanoGPT's step, ``train_lm`` with its
defaults and ``train_lm`` at its fastest settings each train a fresh model from the same weights for
that many steps, and all are evaluated on the same 200 validation batches: the speed must not cost
validation loss.

    python benchmarks/nanogpt_recipe.py               # about 7 minutes on the 2-core CPU
    python benchmarks/nanogpt_recipe.py --rounds 3 --steps 20 --quality-steps 0
"""
from __future__ import annotations

import argparse
import functools
import math
import os
import statistics
import time
from collections.abc import Callable

import torch

from labkit.data import load_text
from labkit.gpt import GPT, GPTConfig
from labkit.lm import estimate_loss, get_batch, lm_loss, train_lm
from labkit.machine import fastest_dtype
from labkit.tokenizers import CharTokenizer

RECIPE = dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12)  # nanoGPT's README, CPU
ITERS = 2000  # nanoGPT's README: max_iters = lr_decay_iters = 2000


def nanogpt_lr(it: int, *, lr: float = 1e-3, min_lr: float = 1e-4, warmup: int = 100, decay: int = ITERS) -> float:
    """nanoGPT's get_lr with config/train_shakespeare_char.py's settings: linear warm-up, cosine decay."""
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it > decay:
        return min_lr
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * (it - warmup) / (decay - warmup))) * (lr - min_lr)


def nanogpt_step(model: GPT, data: torch.Tensor, *, fused: bool = False, compile: bool = False,
                 bf16: bool = False) -> Callable[[], torch.Tensor]:
    """One training step as nanoGPT's train.py takes it on a CPU, with the given levers pulled."""
    optimizer = torch.optim.AdamW(
        [{"params": [p for p in model.parameters() if p.dim() >= 2], "weight_decay": 0.1},
         {"params": [p for p in model.parameters() if p.dim() < 2], "weight_decay": 0.0}],
        lr=1e-3, betas=(0.9, 0.99), fused=fused)
    net = torch.compile(model) if compile else model
    generator = torch.Generator().manual_seed(0)
    batch, block = RECIPE["batch_size"], RECIPE["block_size"]
    it = 0

    def step() -> torch.Tensor:
        nonlocal it
        for group in optimizer.param_groups:
            group["lr"] = nanogpt_lr(it % ITERS)  # timing rounds go on past ITERS: start the schedule again
        it += 1
        x, y = get_batch(data, batch, block, generator)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = lm_loss(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return loss

    return step


def matmul_floor(config: GPTConfig, batch: int, dtype: torch.dtype = torch.float32) -> Callable[[], torch.Tensor]:
    """Only the weight matrix products of one training step, back to back, in ``dtype``: for every
    ``nn.Linear`` of the model (in, out) with N = batch · block tokens, the forward (N, in) @ (in, out)
    and the backward's two, (N, out) @ (out, in) for the input's gradient and (out, N) @ (N, in) for the
    weight's. No attention, normalisation, activation, loss or optimizer: any loop at this recipe
    whose products are in ``dtype`` does at least this work, so with PyTorch's matrix products its
    time is a floor under such a loop's ms per step on this machine (a faster product kernel would lower it)."""
    n, c = batch * config.block_size, config.n_embd
    shapes = [(c, 3 * c), (c, c), (c, 4 * c), (4 * c, c)] * config.n_layer + [(c, config.vocab_size)]
    generator = torch.Generator().manual_seed(0)
    operands = [tuple(torch.randn(*shape, generator=generator).to(dtype) for shape in ((n, i), (i, o), (n, o)))
                for i, o in shapes]

    def products() -> torch.Tensor:
        for x, w, g in operands:
            x @ w, g @ w.t(), g.t() @ x  # noqa: B018 - the products are the work being timed
        return g[0, 0]

    return products


def step_ms(step: Callable[[], torch.Tensor], steps: int) -> float:
    """Milliseconds per call of ``step`` over ``steps`` calls (reading the last result waits for the work)."""
    start = time.perf_counter()
    for _ in range(steps):
        out = step()
    out.item()
    return 1e3 * (time.perf_counter() - start) / steps


def train_lm_steps(model: GPT, data: torch.Tensor, steps: int, **settings) -> float:
    """``train_lm`` for ``steps`` steps with ``settings``; returns its ms per step (evaluations left out)."""
    history = train_lm(model, data, None, steps=steps, batch_size=RECIPE["batch_size"],
                       block_size=RECIPE["block_size"], eval_every=steps, eval_batches=1, verbose=False, **settings)
    return 1e3 * RECIPE["batch_size"] * RECIPE["block_size"] / history["tokens_per_s"][-1]


def quality(config: GPTConfig, train: torch.Tensor, val: torch.Tensor, steps: int, fastest: dict) -> None:
    """nanoGPT's step and ``train_lm`` with its defaults and at its fastest settings, ``steps`` steps
    each from the same initial weights; all evaluated (float32) on the same 200 validation batches.
    The two ``train_lm`` runs draw the same batches, so their difference is the levers' alone."""
    print(f"validation loss after {steps} steps, from the same initial weights, on the same 200 batches:")
    losses = {}
    for name, settings in (("nanoGPT's step", None), ("train_lm (defaults)", {}), ("train_lm (fastest)", fastest)):
        torch.manual_seed(0)
        model = GPT(config)
        start = time.perf_counter()
        if settings is None:
            step = nanogpt_step(model, train)
            for _ in range(steps):
                step()
        else:
            train_lm(model, train, None, steps=steps, batch_size=RECIPE["batch_size"], block_size=RECIPE["block_size"],
                     eval_every=steps, eval_batches=1, verbose=False, **settings)
        seconds = time.perf_counter() - start
        losses[name] = estimate_loss(model, val, batch_size=RECIPE["batch_size"], block_size=RECIPE["block_size"],
                                     batches=200)
        print(f"  {name:26s} val loss {losses[name]:.4f}   ({seconds:.0f} s)")
    nano, defaults, fastest_loss = losses["nanoGPT's step"], losses["train_lm (defaults)"], losses["train_lm (fastest)"]
    print(f"  train_lm's defaults minus nanoGPT's step {defaults - nano:+.4f}; fastest minus defaults "
          f"{fastest_loss - defaults:+.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40, help="steps per variant and round")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--quality-steps", type=int, default=ITERS, help="steps of the validation-loss check (0: skip)")
    args = parser.parse_args()

    text = load_text("shakespeare")
    tokenizer = CharTokenizer(text)
    train = torch.tensor(tokenizer.encode(load_text("shakespeare", "train")), dtype=torch.long)
    val = torch.tensor(tokenizer.encode(load_text("shakespeare", "val")), dtype=torch.long)
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=RECIPE["block_size"], n_layer=RECIPE["n_layer"],
                       n_head=RECIPE["n_head"], n_embd=RECIPE["n_embd"], dropout=0.0, bias=False)
    dtype = fastest_dtype()
    fastest = {"compile": True, "autocast": dtype}  # float32: autocast off
    print(f"nanoGPT's CPU recipe: {GPT(config).num_parameters():,} parameters, batch {RECIPE['batch_size']} × block "
          f"{RECIPE['block_size']}; {torch.get_num_threads()} threads, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, "
          f"GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT', 'unset')}; {args.rounds} rounds of {args.steps} steps each; "
          f"labkit.fastest_dtype() here: {str(dtype).removeprefix('torch.')}")

    levers = {"nanoGPT's step": {}, "+ fused AdamW": {"fused": True}, "+ torch.compile": {"compile": True},
              "+ compile + fused": {"compile": True, "fused": True}}
    if dtype == torch.bfloat16:
        levers |= {"+ bf16 autocast": {"bf16": True}, "+ compile + fused + bf16": {"compile": True, "fused": True, "bf16": True}}
    runs: dict[str, Callable[[], float]] = {}  # name → one round of args.steps steps, returning its ms per step
    for name, kw in levers.items():
        torch.manual_seed(0)
        step = nanogpt_step(GPT(config), train, **kw)
        runs[name] = functools.partial(step_ms, step, args.steps)
        start = time.perf_counter()
        for _ in range(5):  # warm-up (compiling, for torch.compile)
            step().item()
        print(f"  {name:34s} warm-up {time.perf_counter() - start:5.1f} s")
    for name, settings in (("train_lm (defaults)", {}), ("train_lm (compile, fastest dtype)", fastest)):
        torch.manual_seed(0)
        model = GPT(config)
        start = time.perf_counter()
        train_lm_steps(model, train, 5, **settings)  # warm-up
        print(f"  {name:34s} warm-up {time.perf_counter() - start:5.1f} s")
        runs[name] = functools.partial(train_lm_steps, model, train, args.steps, **settings)
    runs["matmul floor, float32"] = functools.partial(step_ms, matmul_floor(config, RECIPE["batch_size"]), args.steps)
    if dtype == torch.bfloat16:
        floor = matmul_floor(config, RECIPE["batch_size"], torch.bfloat16)
        runs["matmul floor, bfloat16"] = functools.partial(step_ms, floor, args.steps)
    names = list(runs)
    ms: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:  # rotate which goes first
            ms[name].append(runs[name]())
    base = statistics.median(ms["nanoGPT's step"])
    tokens = RECIPE["batch_size"] * RECIPE["block_size"]
    for name in names:
        median = statistics.median(ms[name])
        print(f"  {name:34s} {median:6.1f} ms/step  {tokens / median * 1e3:8,.0f} tokens/s   "
              f"{base / median:4.2f}× nanoGPT's speed   (rounds: {', '.join(f'{m:.0f}' for m in ms[name])})")
    loops = [name for name in names if not name.startswith("matmul")]
    best = max(loops, key=lambda name: base / statistics.median(ms[name]))
    course = base / statistics.median(ms["train_lm (compile, fastest dtype)"])
    print(f"fastest: {best}, {base / statistics.median(ms[best]):.2f}× nanoGPT's tokens/s; the course's train_lm at "
          f"its fastest settings {course:.2f}× (issue 13's target: 1.5×)")
    floors = [f"{base / statistics.median(ms[name]):.2f}× ({name.split(', ')[1]})" for name in names if name.startswith("matmul")]
    print(f"ceiling: a step that did nothing but its weight matrix products would run at {' and '.join(floors)} "
          "nanoGPT's speed on this machine")
    if args.quality_steps:
        quality(config, train, val, args.quality_steps, fastest)


if __name__ == "__main__":
    main()
