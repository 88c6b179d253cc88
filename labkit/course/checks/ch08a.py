"""Checks for chapter 08a (practice: scaling, part 1: where memory and time go).

The stub cells in ``chapters/08a_memory_and_speed.ipynb``::

    def activation_memory(config, batch_size, block_size):
        raise NotImplementedError  # TODO: bytes autograd keeps after lm_loss(GPT(config)(x), y), by formula
    check("08.1", activation_memory)

    def forward_checkpointed(model, idx, every):
        raise NotImplementedError  # TODO: logits (B, T, V), each run of `every` blocks under one checkpoint
    check("08.2", forward_checkpointed)

    def update_scale(scale, good_steps, found_inf, growth_interval):
        raise NotImplementedError  # TODO: (new scale, new count of good steps), as GradScaler does
    check("08.3", update_scale)

    def predict_gflops(m, k, n, peak_gflops, bandwidth_gbs):
        raise NotImplementedError  # TODO: the roofline's GFLOP/s for a float32 (m, k) @ (k, n)
    check("08.4", predict_gflops)

    without = ...             # TODO: the smallest batch B at which the activations outgrow the other three
    with_checkpointing = ...  # TODO: the same, with checkpointing (the red part only)
    check("08.16", dict(without=without, with_checkpointing=with_checkpointing))

Every check runs in well under a second and leaves the notebook's random stream alone.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint, checkpoint_sequential

from labkit.course.exercises import Hint, exercise, expect_callable, expect_number
from labkit.gpt import GPT, GPTConfig
from labkit.memory import activation_bytes, gpt_activation_bytes, gpt_training_memory


def _not_done(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError  # what an untouched stub function does


# --------------------------------------------------------------------------- 08.1 activation memory by formula

# (config, batch size, block size): the course GPT, a tiny one, and GPT-2 small's shape, whose
# 50 257-token vocabulary makes the logits' softmax the largest single activation
_ACTIVATION_CASES = [
    (GPTConfig.preset("char-small", vocab_size=70, block_size=256), 8, 256),
    (GPTConfig.preset("gpt-nano", vocab_size=50), 3, 17),
    (GPTConfig.preset("gpt2"), 2, 1024),
    (GPTConfig(vocab_size=1000, block_size=128, n_layer=2, n_head=8, n_embd=64), 16, 100),
]
_TOLERANCE = 0.01  # the small terms (means, 1/std, log-sum-exp, token ids) are worth less than this


def _reference_activation_memory(config: GPTConfig, batch_size: int, block_size: int) -> int:
    B, T, C, L, V, nh = batch_size, block_size, config.n_embd, config.n_layer, config.vocab_size, config.n_head
    per_block = 4 * B * T * (16 * C + nh + 4)                 # float32 numbers kept per block
    outside = 8 * (B * T + T) + 4 * B * T * (2 * C + 2 + V) + 8 * B * T + 4   # ids, positions, ln_f, softmax, targets
    return L * per_block + outside


def _activation_variants(config: GPTConfig, B: int, T: int) -> dict[str, float]:
    """Plausible wrong formulas, each with the hint that explains it."""
    C, L, V, nh = config.n_embd, config.n_layer, config.vocab_size, config.n_head
    right = _reference_activation_memory(config, B, T)
    return {
        "count in bytes, not in numbers: each float32 number takes 4 bytes": right / 4,
        "the softmax of the logits is kept for the loss's backward pass: (B, T, V) numbers, the largest "
        "single activation when the vocabulary is large (GPT-2's 50 257)": right - 4 * B * T * V,
        "that is one block's worth: every one of the n_layer blocks keeps its own": right - (L - 1) * 4 * B * T * (16 * C + nh + 4),
        "the MLP keeps its widened input of GELU (4C) and GELU's output (4C), 8·C numbers per token": right - L * 4 * B * T * 8 * C,
        "fused attention (sdpa) does not keep the (T, T) attention weights, only a log-sum-exp per head and "
        "position: that is why it is used": right + L * 4 * B * nh * T * T,
        "the attention's output is kept once: c_proj reads the same memory, not a copy (C, not 2·C)": right + L * 4 * B * T * C,
    }


def _check_activation_memory(activation_memory: Callable) -> str:
    expect_callable(activation_memory, "activation_memory")
    for config, B, T in _ACTIVATION_CASES:
        want = gpt_activation_bytes(config, B, T)["total"]
        where = f"n_layer={config.n_layer}, n_embd={config.n_embd}, n_head={config.n_head}, vocab_size={config.vocab_size}, B={B}, T={T}"
        got = expect_number(activation_memory(config, B, T), f"activation_memory(config, {B}, {T})", " (bytes)")
        if abs(got - want) <= _TOLERANCE * want:
            continue
        for hint, wrong in _activation_variants(config, B, T).items():
            if abs(got - wrong) <= _TOLERANCE * want / 4:
                raise Hint(f"for {where} you get {got:,.0f} bytes, the measurement {want:,}: {hint}")
        raise Hint(f"for {where} you get {got:,.0f} bytes, {got / want:.2f} × the measured {want:,}. Per token and "
                   "per block: 16·C + n_head + 4 numbers (section 1.2's list); outside the blocks the ids, the "
                   "final LayerNorm and the softmax of the logits (V); 4 bytes per number")
    return f"within {_TOLERANCE:.0%} of the measured bytes for {len(_ACTIVATION_CASES)} model shapes"


exercise(
    "08.1",
    title="Activation memory by formula",
    reference=lambda: _reference_activation_memory,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda config, B, T: _reference_activation_memory(config, B, T) / 4,
        lambda: lambda config, B, T: _reference_activation_memory(config, B, T) - 4 * B * T * config.vocab_size,
        lambda: lambda config, B, T: (_reference_activation_memory(config, B, T)
                                      + config.n_layer * 4 * B * config.n_head * T * T),
        lambda: lambda config, B, T: (_reference_activation_memory(config, B, T)
                                      - config.n_layer * 4 * B * T * 8 * config.n_embd),
        lambda: lambda config, B, T: 16 * config.n_embd * config.n_layer * B * T,  # numbers, no head: far off
        lambda: lambda config, B, T: torch.tensor([1.0, 2.0]),  # not one number
    ],
)(_check_activation_memory)


# --------------------------------------------------------------------------- 08.2 checkpoint every k blocks


def _reference_forward_checkpointed(model: GPT, idx: torch.Tensor, every: int) -> torch.Tensor:
    tr = model.transformer
    x = tr.drop(tr.wte(idx) + tr.wpe(torch.arange(idx.shape[1], device=idx.device)))   # (B, T, C)
    blocks = list(tr.h)

    def run(segment):                        # a function that runs some blocks one after another
        def forward(h):
            for block in segment:
                h = block(h)
            return h
        return forward

    for start in range(0, len(blocks), every):
        x = checkpoint(run(blocks[start:start + every]), x, use_reentrant=False)   # keeps only x
    return model.lm_head(tr.ln_f(x))         # (B, T, V)


def _checkpoint_case() -> tuple[GPT, torch.Tensor, torch.Tensor]:
    """A small 4-block GPT (2 heads, 16 wide) and a batch of (2, 12) ids with targets."""
    with torch.random.fork_rng(devices=[]):  # building a model draws random weights: keep the learner's stream
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=20, block_size=16, n_layer=4, n_head=2, n_embd=16))
        idx = torch.randint(20, (2, 12))
        targets = torch.randint(20, (2, 12))
    return model, idx, targets


def _loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def _check_forward_checkpointed(forward_checkpointed: Callable) -> str:
    expect_callable(forward_checkpointed, "forward_checkpointed")
    model, idx, targets = _checkpoint_case()
    B, T = idx.shape
    C, L = model.config.n_embd, model.config.n_layer
    _loss(model(idx), targets).backward()
    plain_logits = model(idx).detach()
    plain_grads = [p.grad.clone() for p in model.parameters()]
    full = gpt_activation_bytes(model.config, B, T)
    for every in (1, 2, 3, 4):
        model.zero_grad(set_to_none=True)
        logits = forward_checkpointed(model, idx, every)
        if not isinstance(logits, torch.Tensor):
            raise Hint(f"forward_checkpointed should return the logits tensor (B, T, V), got {type(logits).__name__}")
        if tuple(logits.shape) != tuple(plain_logits.shape):
            raise Hint(f"the logits should have shape {tuple(plain_logits.shape)} (B, T, V), got {tuple(logits.shape)}: "
                       "finish with the final LayerNorm and lm_head")
        if not torch.allclose(logits.detach(), plain_logits, atol=1e-5):
            raise Hint(f"with every={every} the logits differ from model(idx) by {(logits.detach() - plain_logits).abs().max():.2g}: "
                       "checkpointing must compute exactly the same thing (embeddings + positions, every block "
                       "in order, ln_f, lm_head)")
        if logits.grad_fn is None:
            raise Hint("the logits carry no gradient: don't run the blocks under torch.no_grad(); "
                       "checkpoint(fn, x, use_reentrant=False) itself keeps only x and recomputes the rest")
        _loss(logits, targets).backward()
        for name, p in model.named_parameters():
            if p.grad is None:
                raise Hint(f"with every={every} no gradient reached {name}: did the blocks run under "
                           "torch.no_grad()? checkpoint(fn, x, use_reentrant=False) keeps only x by itself")
        for (name, p), want in zip(model.named_parameters(), plain_grads):
            if not torch.allclose(p.grad, want, atol=1e-5):
                raise Hint(f"with every={every} the gradient of {name} differs from the plain model's: the "
                           "backward pass must see the same computation")
        segments = math.ceil(L / every)
        want = full["embeddings"] + full["head"] + segments * 4 * B * T * C
        got = activation_bytes(model, lambda: _loss(forward_checkpointed(model, idx, every), targets))
        if got == want:
            continue
        at = (f"with every={every} ({L} blocks: {segments} runs) autograd kept {got:,} bytes, expected {want:,}: "
              f"one checkpoint per run of {every} blocks, each keeping only its input (B·T·C = {B * T * C} numbers)")
        if got == full["total"]:
            raise Hint(f"{at}. Nothing was checkpointed: wrap each run of `every` blocks in "
                       "torch.utils.checkpoint.checkpoint(fn, x, use_reentrant=False)")
        if got > want:
            raise Hint(f"{at}. Yours kept more: is every run under a checkpoint, the last one too "
                       "(checkpoint_sequential runs its last segment without one)? And one checkpoint per run "
                       "of `every` blocks, not one per block?")
        raise Hint(f"{at}. Yours kept less: one checkpoint per run of `every` blocks, ceil(n_layer / every) in all")
    return "the same logits and gradients, and one (B, T, C) input kept per run of blocks"


def _forward_plain(model: GPT, idx: torch.Tensor, every: int) -> torch.Tensor:
    return model(idx)


def _forward_sequential(model: GPT, idx: torch.Tensor, every: int) -> torch.Tensor:
    tr = model.transformer
    x = tr.drop(tr.wte(idx) + tr.wpe(torch.arange(idx.shape[1])))
    segments = math.ceil(len(tr.h) / every)
    x = checkpoint_sequential(list(tr.h), segments, x, use_reentrant=False)  # the last segment is not checkpointed
    return model.lm_head(tr.ln_f(x))


def _forward_every_block(model: GPT, idx: torch.Tensor, every: int) -> torch.Tensor:
    return _reference_forward_checkpointed(model, idx, 1)  # ignores `every`


def _forward_no_grad(model: GPT, idx: torch.Tensor, every: int) -> torch.Tensor:
    tr = model.transformer
    x = tr.drop(tr.wte(idx) + tr.wpe(torch.arange(idx.shape[1])))
    with torch.no_grad():
        for block in tr.h:
            x = block(x)
    return model.lm_head(tr.ln_f(x))


def _forward_without_final_norm(model: GPT, idx: torch.Tensor, every: int) -> torch.Tensor:
    tr = model.transformer
    x = tr.drop(tr.wte(idx) + tr.wpe(torch.arange(idx.shape[1])))
    for start in range(0, len(tr.h), every):
        x = checkpoint(torch.nn.Sequential(*tr.h[start:start + every]), x, use_reentrant=False)
    return model.lm_head(x)


exercise(
    "08.2",
    title="Checkpoint every k blocks",
    reference=lambda: _reference_forward_checkpointed,
    stub=lambda: _not_done,
    wrong=[
        lambda: _forward_plain,
        lambda: _forward_sequential,
        lambda: _forward_every_block,
        lambda: _forward_no_grad,
        lambda: _forward_without_final_norm,
    ],
)(_check_forward_checkpointed)


# --------------------------------------------------------------------------- 08.3 dynamic loss scaling


def _reference_update_scale(scale: float, good_steps: int, found_inf: bool, growth_interval: int) -> tuple[float, int]:
    if found_inf:                             # an overflow: this step is skipped, halve the scale
        return scale * 0.5, 0
    good_steps += 1
    if good_steps == growth_interval:         # long enough without overflow: try a larger scale
        return scale * 2.0, 0
    return scale, good_steps


# (scale, growth_interval, overflows): sequences of steps, True where the scaled gradients overflowed
_SCALE_RUNS = [
    (65536.0, 3, [False, False, False, True, False, False, True, False, False, False, False]),
    (8.0, 1, [False, False, True, True, False]),
    (1024.0, 2000, [False] * 1999 + [False, True, False]),
]


def _check_update_scale(update_scale: Callable) -> str:
    expect_callable(update_scale, "update_scale")
    for scale, interval, overflows in _SCALE_RUNS:
        want_scale, want_good = scale, 0
        got_scale, got_good = scale, 0
        for step, found_inf in enumerate(overflows):
            result = update_scale(got_scale, got_good, found_inf, interval)
            if not isinstance(result, (tuple, list)) or len(result) != 2:
                raise Hint(f"update_scale should return two things, (new scale, new count of good steps), got {result!r:.60}")
            got_scale = expect_number(result[0], "the new scale")
            got_good = expect_number(result[1], "the new count of good steps")
            want_scale, want_good = _reference_update_scale(want_scale, want_good, found_inf, interval)
            if got_scale == want_scale and got_good == want_good:
                continue
            at = (f"growth_interval={interval}, step {step} ({'an overflow' if found_inf else 'finite gradients'}): "
                  f"expected scale {want_scale:g} and {want_good} good steps, got {got_scale:g} and {got_good:g}")
            if found_inf and got_scale == want_scale * 2:
                raise Hint(f"{at}. On an overflow the scale is halved (× 0.5), not kept")
            if found_inf and got_good != 0:
                raise Hint(f"{at}. An overflow starts the count of good steps again from 0")
            if not found_inf and got_scale == want_scale * 2 and want_good != 0:
                raise Hint(f"{at}. The scale grows (× 2) only after growth_interval good steps in a row, not after each")
            if not found_inf and got_scale == want_scale / 2:
                raise Hint(f"{at}. The scale doubles after growth_interval good steps; count this step first, then "
                           "compare with growth_interval (is this step the growth_interval-th?)")
            raise Hint(f"{at}. On an overflow: halve the scale, count 0. Otherwise count this step; when the count "
                       "reaches growth_interval, double the scale and count 0")
    return "the scales and counts of torch.amp.GradScaler's rule on three runs"


def _scale_grows_every_step(scale, good_steps, found_inf, growth_interval):
    return (scale * 0.5, 0) if found_inf else (scale * 2.0, 0)


def _scale_keeps_counting(scale, good_steps, found_inf, growth_interval):
    if found_inf:
        return scale * 0.5, good_steps
    return _reference_update_scale(scale, good_steps, False, growth_interval)


def _scale_one_step_late(scale, good_steps, found_inf, growth_interval):
    if found_inf:
        return scale * 0.5, 0
    if good_steps == growth_interval:         # compares before counting this step
        return scale * 2.0, 0
    return scale, good_steps + 1


def _scale_never_halves(scale, good_steps, found_inf, growth_interval):
    return (scale, 0) if found_inf else _reference_update_scale(scale, good_steps, False, growth_interval)


exercise(
    "08.3",
    title="Dynamic loss scaling",
    reference=lambda: _reference_update_scale,
    stub=lambda: _not_done,
    wrong=[
        lambda: _scale_grows_every_step,
        lambda: _scale_keeps_counting,
        lambda: _scale_one_step_late,
        lambda: _scale_never_halves,
        lambda: lambda scale, good_steps, found_inf, growth_interval: scale,  # one number, not two
    ],
)(_check_update_scale)


# --------------------------------------------------------------------------- 08.4 the roofline's prediction


def _reference_predict_gflops(m: int, k: int, n: int, peak_gflops: float, bandwidth_gbs: float) -> float:
    flops = 2 * m * k * n                     # a multiply and an add per term
    moved = 4 * (m * k + k * n + m * n)       # read both operands, write the result: float32 bytes
    return min(peak_gflops, bandwidth_gbs * flops / moved)


# (m, k, n, peak GFLOP/s, bandwidth GB/s): the GPT's products on this kind of CPU and on a GPU-like machine
_ROOFLINE_CASES = [
    (2048, 192, 576, 140.0, 16.0), (2048, 192, 70, 140.0, 16.0), (2048, 768, 192, 140.0, 16.0),
    (8, 4096, 4096, 989_000.0, 3350.0), (4096, 4096, 4096, 989_000.0, 3350.0), (1, 1, 1, 50.0, 10.0),
]


def _check_predict_gflops(predict_gflops: Callable) -> str:
    expect_callable(predict_gflops, "predict_gflops")
    for m, k, n, peak, bandwidth in _ROOFLINE_CASES:
        got = expect_number(predict_gflops(m, k, n, peak, bandwidth), f"predict_gflops({m}, {k}, {n}, {peak:g}, {bandwidth:g})",
                            " (GFLOP/s)")
        want = _reference_predict_gflops(m, k, n, peak, bandwidth)
        if math.isclose(got, want, rel_tol=1e-6):
            continue
        at = f"for ({m}, {k}) @ ({k}, {n}) at {peak:g} GFLOP/s and {bandwidth:g} GB/s: expected {want:.4g}, got {got:.4g}"
        intensity = 2 * m * k * n / (4 * (m * k + k * n + m * n))
        if math.isclose(got, max(peak, bandwidth * intensity), rel_tol=1e-6):
            raise Hint(f"{at}. The roofline is the *lower* of the two roofs: min(peak, bandwidth × intensity)")
        if math.isclose(got, min(peak, bandwidth * intensity / 2), rel_tol=1e-6):
            raise Hint(f"{at}. Each of the m·k·n terms is a multiply *and* an add: 2·m·k·n FLOP")
        if math.isclose(got, min(peak, bandwidth * intensity * 4), rel_tol=1e-6):
            raise Hint(f"{at}. Count bytes, not numbers: a float32 number is 4 bytes")
        if math.isclose(got, min(peak, bandwidth * 2 * m * k * n / (4 * (m * k + k * n))), rel_tol=1e-6):
            raise Hint(f"{at}. The result (m, n) is written to memory too: m·k + k·n + m·n numbers move")
        if math.isclose(got, bandwidth * intensity, rel_tol=1e-6):
            raise Hint(f"{at}. No product runs faster than the peak: min(peak, bandwidth × intensity)")
        raise Hint(f"{at}. intensity = 2·m·k·n / (4·(m·k + k·n + m·n)) FLOP per byte; "
                   "GB/s × FLOP/byte = GFLOP/s; then the lower of that and the peak")
    return f"the roofline's prediction for {len(_ROOFLINE_CASES)} products on two machines"


exercise(
    "08.4",
    title="The roofline's prediction",
    reference=lambda: _reference_predict_gflops,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda m, k, n, peak, bw: max(peak, bw * 2 * m * k * n / (4 * (m * k + k * n + m * n))),
        lambda: lambda m, k, n, peak, bw: min(peak, bw * m * k * n / (4 * (m * k + k * n + m * n))),
        lambda: lambda m, k, n, peak, bw: min(peak, bw * 2 * m * k * n / (m * k + k * n + m * n)),
        lambda: lambda m, k, n, peak, bw: min(peak, bw * 2 * m * k * n / (4 * (m * k + k * n))),
        lambda: lambda m, k, n, peak, bw: bw * 2 * m * k * n / (4 * (m * k + k * n + m * n)),
        lambda: lambda m, k, n, peak, bw: min(peak, bw * 1e9 * 2 * m * k * n / (4 * (m * k + k * n + m * n))),
    ],
)(_check_predict_gflops)


# --------------------------------------------------------------------------- 08.16 where activations take over

TAKEOVER_SHAPE = dict(block_size=256, n_layer=6, n_embd=192)  # the memory widget's starting shape (heads of 32)
TAKEOVER_BATCHES = range(1, 65)                                 # its batch slider


def _takeover_config() -> GPTConfig:
    return replace(GPTConfig.preset("char-small", vocab_size=70), **TAKEOVER_SHAPE,
                   n_head=TAKEOVER_SHAPE["n_embd"] // 32)


def takeover_batch(checkpointing: bool, *, with_recomputed: bool = False) -> int:
    """The smallest batch at which the activations kept for the backward pass (``with_recomputed``: plus
    the block checkpointing recomputes) outgrow weights, gradients and AdamW states together."""
    config = _takeover_config()
    for batch in TAKEOVER_BATCHES:
        parts = gpt_training_memory(config, batch, checkpointing=checkpointing)
        extra = gpt_activation_bytes(config, batch, checkpointing=True)["recomputed_block"] if with_recomputed else 0
        if parts["activations"] + extra > parts["weights"] + parts["gradients"] + parts["optimizer"]:
            return batch
    raise AssertionError("the activations never outgrow the rest on the slider")  # not for this shape


def _check_takeover(answer: Any) -> str:
    if not isinstance(answer, dict) or set(answer) != {"without", "with_checkpointing"}:
        raise Hint("hand in dict(without=..., with_checkpointing=...): two batch sizes, read off the widget's bars "
                   f"(or computed with labkit.memory.gpt_training_memory); got {answer!r:.60}")
    if any(value is Ellipsis for value in answer.values()):
        raise NotImplementedError("replace each ... with a batch size: start the memory widget at its shape (context "
                                  "256, 6 blocks, width 192) and move the batch until the red bar outgrows the other three")
    for name, value in answer.items():
        if isinstance(value, bool) or not isinstance(value, int) or value not in TAKEOVER_BATCHES:
            raise Hint(f"{name} should be a whole batch size from 1 to 64 (the widget's slider), got {value!r:.40}")
    config, rest_of = _takeover_config(), {}
    right = {"without": takeover_batch(False), "with_checkpointing": takeover_batch(True)}
    if answer == {"without": right["with_checkpointing"], "with_checkpointing": right["without"]}:
        raise Hint("the two are swapped: checkpointing keeps far fewer activations, so they take over later")
    for name, checkpointing in (("without", False), ("with_checkpointing", True)):
        got = answer[name]
        parts = gpt_training_memory(config, got, checkpointing=checkpointing)
        rest_of[name] = rest = parts["weights"] + parts["gradients"] + parts["optimizer"]
        at = (f"{name.replace('_', ' ')}, at B = {got} the activations kept are {parts['activations'] / 2**20:.1f} MiB "
              f"against {rest / 2**20:.1f} MiB of weights, gradients and AdamW states")
        if checkpointing and got == takeover_batch(True, with_recomputed=True) and got != right[name]:
            raise Hint(f"{at}: count what is *kept* after the forward pass (the red bar), not the hatched block that "
                       "checkpointing recomputes during the backward pass, one block at a time")
        if got < right[name]:
            raise Hint(f"{at}: not more yet. Raise B")
        if got > right[name]:
            raise Hint(f"{at}: more, but they already are at a smaller batch. The smallest B is asked for")
    return (f"activations outgrow weights, gradients and AdamW states ({rest_of['without'] / 2**20:.1f} MiB) at "
            f"B = {right['without']} without checkpointing and B = {right['with_checkpointing']} with it")


exercise(
    "08.16",
    title="Where activations take over",
    reference=lambda: {"without": takeover_batch(False), "with_checkpointing": takeover_batch(True)},
    stub=lambda: dict(without=..., with_checkpointing=...),
    wrong=[
        lambda: {"without": takeover_batch(True), "with_checkpointing": takeover_batch(False)},       # swapped
        lambda: {"without": takeover_batch(False) - 1, "with_checkpointing": takeover_batch(True)},   # the last B below
        lambda: {"without": takeover_batch(False), "with_checkpointing": takeover_batch(True) + 5},   # not the smallest
        lambda: {"without": takeover_batch(False),                                                     # hatched counted
                 "with_checkpointing": takeover_batch(True, with_recomputed=True)},
        lambda: {"without": takeover_batch(False), "with_checkpointing": 100},                        # off the slider
        lambda: [3, 27],                                                                               # not a dict
    ],
)(_check_takeover)

