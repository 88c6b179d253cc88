"""Pretraining a language model: token windows, a step-based loop, and what hangs off it.

``train_lm`` is ``fit``'s sibling for next-token prediction on one long stream of token ids.
It counts optimizer steps instead of epochs and evaluates every ``eval_every`` steps; each
evaluation is what ``fit`` calls an epoch, so the same callbacks (progress bar, live plot,
gradient clipping, best checkpoint, …) hang off the same hooks. What it adds:

- AdamW with weight-decay groups (matrices decay; biases, norms and embeddings' … see below),
- a warm-up + cosine learning rate (``WarmupCosine``), a pure function of the step,
- gradient accumulation (``accumulation_steps`` micro-batches per optimizer step),
- tokens per second and model FLOP utilisation (MFU) against the measured matmul peak,
- a text sample at each evaluation (``SampleText``),
- checkpoints that resume exactly: model, optimizer, step, history and every random state.

    >>> ids = torch.tensor(tokenizer.encode(text))
    >>> history = train_lm(model, ids[:n], ids[n:], steps=2000, batch_size=32, lr=1e-3)

Shapes: B batch, T block (context) length, V vocabulary size.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from . import distributed
from .callbacks import Callback, CallbackList, GradientClipping, default_callbacks, in_notebook
from .device import get_device
from .files import DamagedFileError, read_torch_file
from .loop import History, TrainState, _autocast, atomic_save, make_optimizer, run_periods

EVAL_SEED = 1234  # evaluation always reads the same windows, so its numbers are comparable over time


# --------------------------------------------------------------------------- data and loss


def get_batch(
    data: torch.Tensor, batch_size: int, block_size: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` random windows of a token stream (N,): inputs x (B, T) and targets y (B, T),
    where y is x shifted one token to the left (the next token at every position).

    Chapter 06a cuts random windows by hand first; 06b trains on them.
    """
    if len(data) <= block_size:
        raise ValueError(
            f"the token stream has {len(data)} tokens, too few for windows of block_size {block_size} "
            f"(+1 for the targets): use more text or a smaller block_size"
        )
    start = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    windows = data.unfold(0, block_size + 1, 1)[start]  # (B, T + 1), no copy of the stream
    return windows[:, :-1].long(), windows[:, 1:].long()


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of next-token logits (B, T, V) against targets (B, T).

    Chapter 06a derives the next-token loss.
    """
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


@torch.no_grad()
def rank_batch(data: torch.Tensor, batch_size: int, block_size: int,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``get_batch`` for this rank: every rank draws the windows of ``batch_size × world_size``
    (one generator, one seed) and keeps its share, so that together the ranks see exactly the
    batch one process would (one process: ``get_batch`` itself). x, y (batch_size, block_size)."""
    rank, world = distributed.rank(), distributed.world_size()
    x, y = get_batch(data, batch_size * world, block_size, generator)
    if world == 1:
        return x, y
    return x[rank * batch_size:(rank + 1) * batch_size], y[rank * batch_size:(rank + 1) * batch_size]


def estimate_loss(
    model: nn.Module,
    data: torch.Tensor,
    *,
    batch_size: int,
    block_size: int,
    batches: int = 20,
    device: torch.device | None = None,
    autocast: torch.dtype | None = None,
) -> float:
    """Mean loss over ``batches`` fixed random batches of windows of ``data`` (the same windows
    every call). Under DDP ``batch_size`` is a rank's share, as in ``train_lm``: every rank draws
    the batches of ``batch_size × world_size`` windows one process would, measures its share,
    and the ranks average, so the estimate is the one process's (call it on every rank).

    Chapter 06b measures its validation loss with it; 06c compares models with it.
    """
    device = device or next(model.parameters()).device
    generator = torch.Generator().manual_seed(EVAL_SEED)
    was_training = model.training
    model.eval()
    total = 0.0
    for _ in range(batches):
        x, y = rank_batch(data, batch_size, block_size, generator)
        with _autocast(device, autocast):
            total += lm_loss(model(x.to(device)), y.to(device)).item()
    model.train(was_training)
    return distributed.mean(total / batches, device)


# --------------------------------------------------------------------------- optimizer and schedule


def configure_optimizer(
    model: nn.Module, lr: float, weight_decay: float = 0.1, betas: tuple[float, float] = (0.9, 0.95),
    *, fused: bool | None = None,
) -> torch.optim.AdamW:
    """AdamW with two groups: weight decay on matrices (Linear and Embedding weights, ≥ 2-D) only,
    none on biases and LayerNorm gains (1-D), as in GPT-2 and nanoGPT. ``fused``: as in `make_optimizer`."""
    optimizer = make_optimizer("adamw", model, lr, weight_decay, decay_matrices_only=True, betas=betas, fused=fused)
    return cast(torch.optim.AdamW, optimizer)  # "adamw" made it


def lr_at(step: int, *, max_lr: float, total_steps: int, warmup_steps: int, min_lr: float) -> float:
    """Learning rate for optimizer step ``step`` (from 0): a linear warm-up to ``max_lr`` over
    ``warmup_steps``, then a cosine decay to ``min_lr`` at ``total_steps``."""
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)  # 0 → 1
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)


class WarmupCosine(Callback):
    """Sets the learning rate before every step from ``lr_at`` (so a resumed run gets the same rates)."""

    def __init__(self, max_lr: float, total_steps: int, warmup_steps: int, min_lr: float) -> None:
        self.kw: dict[str, Any] = dict(max_lr=max_lr, total_steps=total_steps, warmup_steps=warmup_steps, min_lr=min_lr)

    def _set(self, state: TrainState) -> None:
        lr = lr_at(state.step, **self.kw)
        for group in state.optimizer.param_groups:
            group["lr"] = lr

    on_fit_start = _set
    on_batch_end = _set  # state.step has just counted the finished step: set the next one's rate


# --------------------------------------------------------------------------- the loop


@dataclass
class LMState(TrainState):
    """``TrainState`` plus what a language-model run needs: the batch sampler's random generator
    and the run's settings."""

    generator: torch.Generator = field(default_factory=torch.Generator)
    settings: dict[str, Any] = field(default_factory=dict)
    peak_warned: bool = False
    peak_given: bool = False  # peak_flops= passed by the caller, not measured


def train_lm(
    model: nn.Module,
    train_data: torch.Tensor,
    val_data: torch.Tensor | None = None,
    *,
    steps: int,
    batch_size: int,
    block_size: int | None = None,
    lr: float = 1e-3,
    min_lr: float | None = None,
    warmup_steps: int | None = None,
    weight_decay: float = 0.1,
    grad_clip: float | None = 1.0,
    accumulation_steps: int = 1,
    eval_every: int = 100,
    eval_batches: int = 20,
    tokenizer: Any = None,
    sample_prompt: str = "\n",
    sample_tokens: int = 200,
    callbacks: Sequence[Callback] = (),
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    autocast: torch.dtype | None = None,
    compile: bool = False,
    peak_flops: float | None = None,
    aux_loss: Callable[[nn.Module], torch.Tensor] | None = None,
    device: torch.device | str | None = None,
    seed: int = 0,
    verbose: bool = True,
) -> History:
    """Train ``model`` (token ids (B, T) → logits (B, T, V)) on a token stream for ``steps`` steps.

    Every ``eval_every`` steps (and at step 0) the train and validation losses are estimated on
    ``eval_batches`` fixed windows and a row is added to the returned ``History``: step,
    train_loss, val_loss, lr, tokens_per_s, mfu (model FLOP utilisation, 0–1), time. Under torchrun,
    tokens_per_s counts every rank's tokens and mfu divides by every rank's peak (``peak_flops``: one device's).
    Each step sees ``batch_size × accumulation_steps`` windows of ``block_size`` tokens.
    ``lr`` warms up over ``warmup_steps`` (default 5% of the steps) and decays to ``min_lr``
    (default lr / 10). With ``tokenizer`` a sample of ``sample_tokens`` tokens after
    ``sample_prompt`` is shown at each evaluation. With ``checkpoint`` (a file path) the whole
    run state is saved at each evaluation; ``resume=True`` continues from it exactly.
    ``autocast`` (e.g. ``torch.bfloat16``) runs the forward pass in mixed precision; None or
    ``torch.float32``: full precision.
    ``compile=True`` trains through ``torch.compile(model)`` (the first steps compile it; evaluations,
    samples and checkpoints use ``model`` itself) and steps AdamW with its fused kernel; on a CPU it
    needs a C++ compiler. The fastest settings are ``compile=True, autocast=labkit.fastest_dtype()``
    (benchmarks/nanogpt_recipe.py measures each lever; chapter 08a §3.3 compares them with the defaults).
    ``aux_loss`` (a function of the model, called after each forward pass) adds a term to the
    training loss, e.g. a mixture of experts' load-balancing loss (chapter 08d:
    ``aux_loss=lambda m: 0.01 * labkit.moe.load_balancing_loss(m)``); the losses in the history
    stay the language model's own.
    The stop button ends training cleanly and keeps the history and the last checkpoint.
    """
    device = distributed.init_from_env(device if isinstance(device, torch.device) else get_device(device))
    block_size = block_size or _model_block_size(model)
    _check_lm_arguments(steps=steps, batch_size=batch_size, block_size=block_size, lr=lr,
                        accumulation_steps=accumulation_steps, eval_every=eval_every, train_data=train_data,
                        val_data=val_data, model=model, resume=resume, checkpoint=checkpoint)
    if compile:
        _check_can_compile(device)
    warmup_steps = max(1, steps // 20) if warmup_steps is None else warmup_steps
    min_lr = lr / 10 if min_lr is None else min_lr
    settings = dict(steps=steps, batch_size=batch_size, block_size=block_size, lr=lr, min_lr=min_lr,
                    warmup_steps=warmup_steps, weight_decay=weight_decay, accumulation_steps=accumulation_steps,
                    eval_every=eval_every, eval_batches=eval_batches, seed=seed)

    torch.manual_seed(seed)
    model.to(device)
    optimizer = configure_optimizer(model, lr, weight_decay, fused=True if compile else None)
    history = History()
    state = LMState(model, optimizer, device, epochs=1 + math.ceil(steps / eval_every), steps_per_epoch=eval_every,
                    history=history, has_validation=val_data is not None, period="evaluation",
                    generator=torch.Generator().manual_seed(seed), settings=settings, total_steps=steps,
                    peak_given=peak_flops is not None)
    if resume and checkpoint is not None:
        distributed.barrier()  # rank 0 may still be writing the file the last run left
        if Path(checkpoint).exists():
            _restore(state, Path(checkpoint))

    main = distributed.is_main()
    hooks = CallbackList([
        WarmupCosine(lr, steps, warmup_steps, min_lr),
        *([GradientClipping(grad_clip)] if grad_clip else []),
        *default_callbacks(verbose and main, callbacks, plot_metrics=[]),  # the loss panel only
        *([SampleText(tokenizer, sample_prompt, sample_tokens, seed=seed)] if tokenizer is not None and main else []),
        *callbacks,
        *([RunCheckpoint(checkpoint)] if checkpoint is not None and main else []),
    ])
    net = distributed.wrap(model, device)  # under DDP it averages the gradients over the ranks
    if compile:
        if device.type == "cpu":  # inductor imports torch.utils.cpp_extension, which warns "No CUDA runtime is
            # found" on a CUDA build of PyTorch without a GPU: true, irrelevant on a CPU, and alarming in a notebook
            logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        net = cast(nn.Module, torch.compile(net))
    flops_per_token = _flops_per_token(model, block_size)
    # tokens/s counts every rank's tokens, so MFU divides by every rank's peak together (each rank measures
    # its own: under torchrun a rank has 1 thread by default, half of this 2-core machine's peak)
    peak = distributed.total([peak_flops or _measured_peak(device, autocast)], device)[0]

    def compute_loss(batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        loss = lm_loss(net(x.to(device, non_blocking=True)), y.to(device, non_blocking=True))
        return loss if aux_loss is None else loss + aux_loss(model)

    def micro_batch() -> tuple[torch.Tensor, torch.Tensor]:
        return rank_batch(train_data, batch_size, block_size, state.generator)

    def periods():
        """One period per ``eval_every`` steps (the first and last may be shorter, after a resume)."""
        while state.step < steps:
            period_end = min(steps, (state.step // eval_every + 1) * eval_every)
            yield ([micro_batch() for _ in range(accumulation_steps)] for _ in range(period_end - state.step))

    def interrupted(state: TrainState) -> str:
        return (f"interrupted (stop button) at step {state.step}; the history of {history.epochs} evaluations is kept"
                + (f" and {checkpoint} holds the run as of the last evaluation" if checkpoint is not None else ""))

    model.train()
    return run_periods(
        state, hooks, periods(), compute_loss,
        lambda: _evaluate(state, train_data, val_data, flops_per_token, peak, autocast),
        autocast=autocast, measure_first=state.step == 0 and not history.epochs, interrupted=interrupted,
    )


def _evaluate(state: LMState, train_data: torch.Tensor, val_data: torch.Tensor | None,
              flops_per_token: float, peak: float, autocast: torch.dtype | None) -> dict[str, float]:
    """One history row: losses on fixed windows, learning rate, speed of the last period."""
    s = state.settings
    kw = dict(batch_size=s["batch_size"], block_size=s["block_size"], batches=s["eval_batches"],
              device=state.device, autocast=autocast)
    row = {"step": float(state.step), "train_loss": estimate_loss(state.model, train_data, **kw)}
    if val_data is not None:
        row["val_loss"] = estimate_loss(state.model, val_data, **kw)
    s_tokens = state.period_steps * s["batch_size"] * s["block_size"] * s["accumulation_steps"] * distributed.world_size()
    tokens_per_s = s_tokens / state.period_time if state.period_time > 0 else math.nan
    row.update(lr=state.optimizer.param_groups[0]["lr"], tokens_per_s=tokens_per_s,
               mfu=tokens_per_s * flops_per_token / peak)
    if row["mfu"] > 1 and not state.peak_warned:  # more than the machine can do: the peak is too low
        state.peak_warned = True
        if state.peak_given:
            why = (f"the peak_flops= given ({peak / 1e9:,.0f} GFLOP/s) is below what this run reached. "
                   "Pass this machine's peak (labkit.doctor() measures it), or leave peak_flops out to measure it")
        else:
            why = (f"the matmul peak ({peak / 1e9:,.0f} GFLOP/s) was measured while something else used the "
                   "processor. Stop the other work and run again, or pass peak_flops= (labkit.doctor() measures it)")
        warnings.warn(f"model FLOP utilisation {row['mfu']:.0%} is above 100%: {why}.", stacklevel=2)
    row["time"] = (state.history["time"][-1] if state.history.epochs else 0.0) + state.period_time
    return row


def _flops_per_token(model: nn.Module, block_size: int) -> float:
    """The model's training FLOPs per token: its own count if it has one (GPT), else 6·N."""
    own_count = getattr(model, "flops_per_token", None)
    if own_count is not None:
        return float(own_count(block_size))
    return 6.0 * sum(p.numel() for p in model.parameters())


def _measured_peak(device: torch.device, autocast: torch.dtype | None = None) -> float:
    """The matmul speed of ``device`` in FLOP/s in the dtype the Linear layers compute in
    (``autocast``'s, else float32), as ``labkit.doctor()`` measures it: 1024² on a CPU, 4096² on
    a GPU (a 1024² product leaves most of a large GPU idle, so it would measure a peak far too low)."""
    from .machine import matmul_gflops

    return matmul_gflops(device, autocast or torch.float32, size=4096 if device.type == "cuda" else 1024) * 1e9


def _model_block_size(model: nn.Module) -> int:
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "block_size"):
        raise ValueError("pass block_size=…: the model has no config.block_size to take it from")
    return int(config.block_size)


def _check_lm_arguments(*, steps, batch_size, block_size, lr, accumulation_steps, eval_every, train_data,
                        val_data, model, resume, checkpoint) -> None:
    for name, value in (("steps", steps), ("batch_size", batch_size), ("block_size", block_size),
                        ("accumulation_steps", accumulation_steps), ("eval_every", eval_every)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a whole number ≥ 1, got {value!r}")
    if not lr > 0:
        raise ValueError(f"learning rate must be > 0, got {lr}")
    model_block = getattr(getattr(model, "config", None), "block_size", None)
    if model_block is not None and block_size > model_block:
        raise ValueError(f"block_size {block_size} is longer than the model's context ({model_block}): "
                         f"use block_size ≤ {model_block}")
    for name, data in (("train_data", train_data), ("val_data", val_data)):
        if data is None:
            continue
        if not isinstance(data, torch.Tensor) or data.dim() != 1 or data.is_floating_point():
            raise ValueError(f"{name} must be a 1-D tensor of token ids (torch.tensor(tokenizer.encode(text))), "
                             f"got {type(data).__name__}{tuple(data.shape) if isinstance(data, torch.Tensor) else ''}")
        if len(data) <= block_size:
            raise ValueError(f"{name} has {len(data)} tokens, too few for block_size {block_size}: "
                             f"use more text or a smaller block_size")
        vocab = getattr(getattr(model, "config", None), "vocab_size", None)
        if vocab is not None and int(data.max()) >= vocab:
            raise ValueError(f"{name} holds token id {int(data.max())} but the model's vocab_size is {vocab}: "
                             f"build the model with vocab_size=tokenizer.vocab_size")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint=<the file to resume from>")


def _check_can_compile(device: torch.device) -> None:
    """On a CPU, torch.compile writes C++ and builds it: say so up front when no compiler is found,
    instead of a page of inductor's errors at the first step."""
    if device.type != "cpu":
        return
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler
    except ImportError:  # another PyTorch layout: let torch.compile speak for itself
        return
    try:
        get_cpp_compiler()
    except Exception as error:  # inductor raises its own exception types
        raise RuntimeError(
            f"compile=True needs a C++ compiler on a CPU (torch.compile writes C++ and builds it), and none was "
            f"found ({type(error).__name__}): install g++ or clang++ (on macOS: xcode-select --install), or "
            f"train with compile=False") from None


# --------------------------------------------------------------------------- callbacks of a language-model run


class SampleText(Callback):
    """After each evaluation, let the model continue ``prompt`` and show the text (one output,
    updated in place in a notebook; printed in a script). ``samples`` keeps (step, text) pairs.

    Chapter 06b shows samples with it as the model learns.
    """

    def __init__(self, tokenizer: Any, prompt: str = "\n", max_new_tokens: int = 200, *,
                 temperature: float = 0.8, top_k: int | None = None, seed: int = 0, show: bool = True) -> None:
        self.tokenizer, self.prompt, self.max_new_tokens = tokenizer, prompt, max_new_tokens
        self.temperature, self.top_k, self.seed, self.show = temperature, top_k, seed, show
        self.samples: list[tuple[int, str]] = []
        self.handle: Any = None

    def on_fit_start(self, state: TrainState) -> None:
        self.handle = None

    def on_epoch_end(self, state: TrainState) -> None:
        model: Any = state.model  # any model with a generate(): GPT, CharRNN, …
        prompt = torch.tensor([self.tokenizer.encode(self.prompt)], device=state.device)
        generator = torch.Generator(device=state.device).manual_seed(self.seed)  # training's randomness untouched
        out = model.generate(prompt, self.max_new_tokens, temperature=self.temperature, top_k=self.top_k,
                             generator=generator)
        text = self.tokenizer.decode(out[0, prompt.shape[1]:].tolist())
        self.samples.append((state.step, text))
        if self.show:
            self._show()

    def _show(self) -> None:
        step, text = self.samples[-1]
        if not in_notebook():
            print(f"--- sample at step {step} ---\n{text}\n")
            return
        from IPython.display import display

        shown = "\n\n".join(f"── step {s} ──\n{t}" for s, t in self.samples[-3:])  # the last three
        if self.handle is None:
            self.handle = display({"text/plain": shown}, raw=True, display_id=True)
        else:
            self.handle.update({"text/plain": shown}, raw=True)


class RunCheckpoint(Callback):
    """Save the whole run at each evaluation — model, optimizer, step, history, random states —
    into one file (written atomically) that ``train_lm(..., resume=True)`` continues exactly.
    The file holds only tensors, numbers, strings, lists and dicts: it loads with
    ``torch.load(path, weights_only=True)``."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def on_epoch_end(self, state: TrainState) -> None:
        assert isinstance(state, LMState)
        save_run(state, self.path)


def save_run(state: LMState, path: Path) -> None:
    """Write the run state of ``state`` to ``path`` atomically."""
    payload = {
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "step": state.step,
        "history": {k: list(v) for k, v in state.history.items()},
        "stop_reason": state.history.stop_reason,
        "generator": state.generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "settings": state.settings,
        "config": _config_dict(state.model),
    }
    atomic_save(payload, path)


def _config_dict(model: nn.Module) -> dict[str, Any]:
    to_dict = getattr(getattr(model, "config", None), "to_dict", None)
    return to_dict() if callable(to_dict) else {}


def _restore(state: LMState, path: Path) -> None:
    """Load a run saved by ``save_run`` into ``state`` (model, optimizer, step, history, randomness)."""
    payload = read_torch_file(path, "It cannot be resumed: delete it to start afresh (from step 0).", state.device)
    if not isinstance(payload, dict) or not {"model", "optimizer", "step", "history", "settings"} <= payload.keys():
        raise DamagedFileError(path, "is not a run file written by train_lm (it lacks the model, optimizer, step, "
                               "history or settings)", "Delete it, or give another checkpoint path, to start afresh.")
    saved_config, config = payload.get("config", {}), _config_dict(state.model)
    if saved_config and config and saved_config != config:
        changed = {k: (saved_config.get(k), config.get(k)) for k in config if saved_config.get(k) != config.get(k)}
        raise ValueError(f"{path} was saved from a model with another configuration (saved, now): {changed}; "
                         f"build the same model to resume, or delete the file to start afresh")
    changed = {k: (payload["settings"].get(k), v) for k, v in state.settings.items() if payload["settings"].get(k) != v
               and k not in ("steps",)}
    if changed:
        raise ValueError(f"{path} was saved by a run with other settings (saved, now): {changed}; "
                         f"use the same settings to resume exactly, or delete the file to start afresh")
    state.model.load_state_dict(payload["model"])
    state.optimizer.load_state_dict(payload["optimizer"])
    state.step = int(payload["step"])
    for key, values in payload["history"].items():
        state.history[key] = list(values)
    state.generator.set_state(payload["generator"])
    torch.set_rng_state(payload["torch_rng"])
