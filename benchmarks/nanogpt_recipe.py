"""The course's training step against nanoGPT's, at nanoGPT's own CPU recipe, and what each speed
lever buys on this machine.

nanoGPT's README trains Shakespeare characters on a CPU with 4 layers, 4 heads, 128 wide, block 64,
batch 12, fp32, no ``torch.compile``, dropout 0. Its repository is not available offline, so its
step is re-implemented here in a few lines (`nanogpt_step`): the same model (labkit's `GPT` is
nanoGPT's architecture; ``bias=False`` as nanoGPT's default), a batch of random windows stacked
from the token stream, the loss, backward, clipping at 1.0, and AdamW in its CPU form (nanoGPT asks
for the fused kernel on CUDA only). Against it:

- ``train_lm``: the course's loop with its defaults (the same AdamW; its own tokens/s);
- the same step with each lever the issue names: AdamW's fused CPU kernel, ``torch.compile``
  (inductor, which compiles C++ with this machine's gcc), bf16 autocast, and compile + fused.

Every variant trains its own copy of the model, all in one process, in rounds of ``--steps`` steps,
in a rotating order, so that machine noise hits each alike. Reported: the median ms per step and
tokens/s, and the ratio to nanoGPT's step (higher is faster). The OpenMP wait settings in force are
printed: ``OMP_WAIT_POLICY=PASSIVE`` makes every step about 1.9× slower on a quiet machine
(`benchmarks/omp_wait.py`), for both sides alike. A last line times only the step's weight matrix
products (`matmul_floor`): no loop built on PyTorch's matrix products can be faster, which bounds
every ratio here.

    python benchmarks/nanogpt_recipe.py               # about 3 minutes on the 2-core CPU
    python benchmarks/nanogpt_recipe.py --rounds 3 --steps 20
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch

from labkit.data import load_text
from labkit.gpt import GPT, GPTConfig
from labkit.lm import get_batch, lm_loss, train_lm
from labkit.tokenizers import CharTokenizer

RECIPE = dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12)  # nanoGPT's README, CPU


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

    def step() -> torch.Tensor:
        x, y = get_batch(data, batch, block, generator)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = lm_loss(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return loss

    return step


def matmul_floor(config: GPTConfig, batch: int) -> Callable[[], torch.Tensor]:
    """Only the weight matrix products of one training step, back to back: for every ``nn.Linear``
    of the model (in, out) with N = batch · block tokens, the forward (N, in) @ (in, out) and the
    backward's two, (N, out) @ (out, in) for the input's gradient and (out, N) @ (N, in) for the
    weight's. No attention, normalisation, activation, loss or optimizer: any fp32 loop at this recipe
    does at least this work, so with PyTorch's matrix products its time is a floor under every
    variant's ms per step on this machine (a faster product kernel would lower it)."""
    n, c = batch * config.block_size, config.n_embd
    shapes = [(c, 3 * c), (c, c), (c, 4 * c), (4 * c, c)] * config.n_layer + [(c, config.vocab_size)]
    generator = torch.Generator().manual_seed(0)
    operands = [(torch.randn(n, i, generator=generator), torch.randn(i, o, generator=generator),
                 torch.randn(n, o, generator=generator)) for i, o in shapes]

    def products() -> torch.Tensor:
        for x, w, g in operands:
            x @ w, g @ w.t(), g.t() @ x  # noqa: B018 - the products are the work being timed
        return g[0, 0]

    return products


def train_lm_steps(model: GPT, data: torch.Tensor, steps: int) -> float:
    """``train_lm`` for ``steps`` steps with its defaults; returns its ms per step (evaluations left out)."""
    history = train_lm(model, data, None, steps=steps, batch_size=RECIPE["batch_size"],
                       block_size=RECIPE["block_size"], eval_every=steps, eval_batches=1, verbose=False)
    return 1e3 * RECIPE["batch_size"] * RECIPE["block_size"] / history["tokens_per_s"][-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40, help="steps per variant and round")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()

    text = load_text("shakespeare", "train")
    tokenizer = CharTokenizer(text)
    data = torch.tensor(tokenizer.encode(text), dtype=torch.long)
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=RECIPE["block_size"], n_layer=RECIPE["n_layer"],
                       n_head=RECIPE["n_head"], n_embd=RECIPE["n_embd"], dropout=0.0, bias=False)
    print(f"nanoGPT's CPU recipe: {GPT(config).num_parameters():,} parameters, batch {RECIPE['batch_size']} × block "
          f"{RECIPE['block_size']}; {torch.get_num_threads()} threads, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, "
          f"GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT', 'unset')}; {args.rounds} rounds of {args.steps} steps each")

    levers = {"nanoGPT's step": {}, "+ fused AdamW": {"fused": True}, "+ torch.compile": {"compile": True},
              "+ compile + fused": {"compile": True, "fused": True}, "+ bf16 autocast": {"bf16": True},
              "+ compile + fused + bf16": {"compile": True, "fused": True, "bf16": True}}
    steps: dict[str, Callable[[], torch.Tensor]] = {}
    for name, kw in levers.items():
        torch.manual_seed(0)
        steps[name] = nanogpt_step(GPT(config), data, **kw)
        start = time.perf_counter()
        for _ in range(5):  # warm-up (compiling, for torch.compile)
            steps[name]().item()
        print(f"  {name:26s} warm-up {time.perf_counter() - start:5.1f} s")
    steps["matmul floor"] = matmul_floor(config, RECIPE["batch_size"])
    names = [*levers, "train_lm (defaults)", "matmul floor"]
    ms: dict[str, list[float]] = {name: [] for name in names}
    torch.manual_seed(0)
    course_model = GPT(config)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:  # rotate which goes first
            if name.startswith("train_lm"):
                ms[name].append(train_lm_steps(course_model, data, args.steps))
                continue
            start = time.perf_counter()
            for _ in range(args.steps):
                loss = steps[name]()
            loss.item()
            ms[name].append(1e3 * (time.perf_counter() - start) / args.steps)
    base = statistics.median(ms["nanoGPT's step"])
    tokens = RECIPE["batch_size"] * RECIPE["block_size"]
    for name in names:
        median = statistics.median(ms[name])
        print(f"  {name:26s} {median:6.1f} ms/step  {tokens / median * 1e3:8,.0f} tokens/s   "
              f"{base / median:4.2f}× nanoGPT's speed   (rounds: {', '.join(f'{m:.0f}' for m in ms[name])})")
    best = max(names[:-1], key=lambda name: base / statistics.median(ms[name]))
    print(f"fastest: {best}, {base / statistics.median(ms[best]):.2f}× nanoGPT's tokens/s (issue 13's target: 1.5×)")
    print(f"ceiling: a step that did nothing but its weight matrix products would be "
          f"{base / statistics.median(ms['matmul floor']):.2f}× nanoGPT's step on this machine")


if __name__ == "__main__":
    main()
