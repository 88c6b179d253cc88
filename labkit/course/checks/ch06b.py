"""Checks for chapter 06b (pretraining a GPT: the training loop's schedule, its optimizer groups, and
the loss before training).

The stub cells in ``chapters/06b_pretraining.ipynb``::

    def lr_schedule(step, max_lr, warmup, total, min_lr):
        raise NotImplementedError  # TODO: the learning rate of optimizer step `step` (from 0)
    check("06.4", lr_schedule)

    def weight_decay_groups(model):
        raise NotImplementedError  # TODO: return (names that decay, names that don't)
    check("06.5", weight_decay_groups)

    prediction = ...  # TODO: "a", "b" or "c": decide, run this cell, THEN run the measurement below
    ...               # the measurement cell: char-tiny's loss with every weight matrix drawn with std 1
    measured = ...     # TODO: the loss of the std-1 model, printed above
    explanation = ...  # TODO: "a", "b" or "c"
    check("06.15", dict(committed=committed, prediction=prediction, measured=measured, explanation=explanation))

Every check runs in well under a second and leaves the notebook's random stream alone.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from labkit.course.checks.predict import PredictMeasureExplain
from labkit.course.exercises import Hint, exercise, expect_callable, expect_number


def _not_done(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError  # what an untouched stub function does


# --------------------------------------------------------------------------- 06.4 warm-up + cosine


def _reference_lr_schedule(step: int, max_lr: float, warmup: int, total: int, min_lr: float) -> float:
    if step < warmup:                        # linear warm-up: max_lr/warmup, 2·max_lr/warmup, …, max_lr
        return max_lr * (step + 1) / warmup
    if step >= total:                        # after the run: stay at the floor
        return min_lr
    progress = (step - warmup) / max(1, total - warmup)  # 0 → 1 over the decay
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (max_lr - min_lr)


# (max_lr, warmup, total, min_lr): a usual run, no warm-up at all, and a one-step warm-up
_SCHEDULES = [(1e-3, 10, 100, 1e-4), (3e-3, 0, 50, 0.0), (1.0, 1, 20, 0.1)]


def _cosine(step: int, max_lr: float, start: int, length: int, floor: float) -> float:
    return floor + 0.5 * (1 + math.cos(math.pi * (step - start) / max(1, length))) * (max_lr - floor)


def _check_lr_schedule(lr_schedule: Callable) -> str:
    from labkit.lm import lr_at  # the course's own schedule, which train_lm uses

    expect_callable(lr_schedule, "lr_schedule")
    for max_lr, warmup, total, min_lr in _SCHEDULES:
        where = f"max_lr={max_lr:g}, warmup={warmup}, total={total}, min_lr={min_lr:g}"
        for step in range(total + 6):  # every step, and a few after the end
            got = expect_number(lr_schedule(step, max_lr, warmup, total, min_lr), f"lr_schedule({step}, …)", " (the learning rate)")
            want = lr_at(step, max_lr=max_lr, total_steps=total, warmup_steps=warmup, min_lr=min_lr)
            if math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-12):
                continue
            at = f"at step {step} ({where}) the learning rate should be {want:.6g}, got {got:.6g}"
            if step < warmup:
                if math.isclose(got, max_lr * step / warmup, rel_tol=1e-6, abs_tol=1e-12):
                    raise Hint(f"{at}: the warm-up starts at 0, so the first step changes nothing. Count the "
                               "step being taken: step 0 gets max_lr·1/warmup, step warmup-1 gets max_lr, "
                               "i.e. max_lr * (step + 1) / warmup")
                raise Hint(f"{at}: during the first `warmup` steps the rate grows in a straight line, "
                           "max_lr * (step + 1) / warmup")
            if step >= total:
                raise Hint(f"{at}: after `total` steps the rate stays at min_lr (the cosine would rise again)")
            if math.isclose(got, _cosine(step, max_lr, warmup, total - warmup, 0.0), rel_tol=1e-6, abs_tol=1e-12):
                raise Hint(f"{at}: the cosine should end at min_lr, not at 0: "
                           "min_lr + 0.5 * (1 + cos(π · progress)) * (max_lr - min_lr)")
            if math.isclose(got, _cosine(step, max_lr, 0, total, min_lr), rel_tol=1e-6, abs_tol=1e-12):
                raise Hint(f"{at}: the decay starts after the warm-up, so progress = (step - warmup) / (total - warmup), "
                           "0 at the end of the warm-up and 1 at `total`")
            linear = min_lr + (1 - (step - warmup) / max(1, total - warmup)) * (max_lr - min_lr)
            if math.isclose(got, linear, rel_tol=1e-6, abs_tol=1e-12):
                raise Hint(f"{at}: that is a straight line down; the decay follows half a cosine wave, "
                           "min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (max_lr - min_lr)")
            raise Hint(at)
    return f"the same rates as labkit.lm.lr_at at every step of {len(_SCHEDULES)} schedules"


def _lr_from_zero(step, max_lr, warmup, total, min_lr):
    if step < warmup:
        return max_lr * step / warmup
    return _reference_lr_schedule(step, max_lr, warmup, total, min_lr)


def _lr_to_zero(step, max_lr, warmup, total, min_lr):
    return _reference_lr_schedule(step, max_lr, warmup, total, 0.0)


def _lr_cosine_over_whole_run(step, max_lr, warmup, total, min_lr):
    if step < warmup:
        return max_lr * (step + 1) / warmup
    return min_lr if step >= total else _cosine(step, max_lr, 0, total, min_lr)


def _lr_linear_decay(step, max_lr, warmup, total, min_lr):
    if step < warmup:
        return max_lr * (step + 1) / warmup
    if step >= total:
        return min_lr
    return min_lr + (1 - (step - warmup) / max(1, total - warmup)) * (max_lr - min_lr)


def _lr_no_floor_after_the_end(step, max_lr, warmup, total, min_lr):
    if step < warmup:
        return max_lr * (step + 1) / warmup
    return _cosine(step, max_lr, warmup, total - warmup, min_lr)


exercise(
    "06.4",
    title="Warm-up and cosine decay",
    reference=lambda: _reference_lr_schedule,
    stub=lambda: _not_done,
    wrong=[
        lambda: _lr_from_zero,
        lambda: _lr_to_zero,
        lambda: _lr_cosine_over_whole_run,
        lambda: _lr_linear_decay,
        lambda: _lr_no_floor_after_the_end,
        lambda: lambda step, max_lr, warmup, total, min_lr: torch.full((2,), max_lr),  # not one number
    ],
)(_check_lr_schedule)


# --------------------------------------------------------------------------- 06.5 weight-decay groups


def _reference_weight_decay_groups(model: nn.Module) -> tuple[list[str], list[str]]:
    decay: list[str] = []
    no_decay: list[str] = []
    for name, p in model.named_parameters():   # a tied weight is listed once
        (decay if p.dim() >= 2 else no_decay).append(name)  # matrices decay; biases and gains don't
    return decay, no_decay


def _check_models() -> list[tuple[str, nn.Module]]:
    """A small GPT (tied embedding, LayerNorms, biases) and a plain stack without any biases."""
    from labkit.gpt import GPT, GPTConfig

    with torch.random.fork_rng(devices=[]):  # building a model draws random weights: keep the learner's stream
        torch.manual_seed(0)
        gpt = GPT(GPTConfig.preset("gpt-micro", vocab_size=11))
        plain = nn.Sequential(nn.Embedding(7, 6), nn.Linear(6, 6, bias=False), nn.LayerNorm(6, bias=False),
                              nn.Linear(6, 3, bias=False))
    return [("a small GPT (GPTConfig.preset('gpt-micro', vocab_size=11))", gpt), ("a model without biases", plain)]


def _names(value: Any, what: str) -> list[str]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise Hint(f"{what} should be a list of parameter names, got {type(value).__name__} {value!r:.60}")
    items = list(value)
    for item in items:
        if isinstance(item, torch.Tensor):
            raise Hint(f"{what} holds tensors; return the parameters' names (str), as model.named_parameters() gives them")
        if not isinstance(item, str):
            raise Hint(f"{what} should hold parameter names (str), found {type(item).__name__} {item!r:.60}")
    return items


def _expected_groups(model: nn.Module) -> tuple[set[str], set[str]]:
    """The names in the two groups of labkit.lm.configure_optimizer, which train_lm uses: trainable
    tensors of two or more dimensions decay, the others don't (tests/test_chapter06b.py checks that the
    two agree; building an AdamW here would cost seconds the first time)."""
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    return {n for n, p in trainable if p.dim() >= 2}, {n for n, p in trainable if p.dim() < 2}


def _check_weight_decay_groups(weight_decay_groups: Callable) -> str:
    expect_callable(weight_decay_groups, "weight_decay_groups")
    for description, model in _check_models():
        result = weight_decay_groups(model)
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise Hint("weight_decay_groups should return two lists, (names that decay, names that don't), got "
                       + type(result).__name__ + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else ""))
        decay = _names(result[0], "the first list (names that decay)")
        no_decay = _names(result[1], "the second list (names that don't decay)")
        for got, what in ((decay, "first"), (no_decay, "second")):
            doubles = sorted({n for n in got if got.count(n) > 1})
            if doubles:
                raise Hint(f"the {what} list names {doubles[0]!r} more than once: list each parameter once")
        want_decay, want_no_decay = _expected_groups(model)
        known = want_decay | want_no_decay
        got_decay, got_no_decay = set(decay), set(no_decay)
        if "lm_head.weight" in got_decay | got_no_decay and "lm_head.weight" not in known:
            raise Hint("you listed 'lm_head.weight', but in a GPT it is the same tensor as 'transformer.wte.weight' "
                       "(weight tying): count it once. model.named_parameters() lists each tensor once; "
                       "model.state_dict() lists both names")
        unknown = sorted((got_decay | got_no_decay) - known)
        if unknown:
            raise Hint(f"for {description}, {unknown[0]!r} is not the name of a trainable parameter; "
                       "take the names from model.named_parameters()")
        both = sorted(got_decay & got_no_decay)
        if both:
            raise Hint(f"{both[0]!r} is in both lists: each parameter goes into exactly one group")
        missing = sorted(known - got_decay - got_no_decay)
        if missing:
            raise Hint(f"for {description}, {missing[0]!r} is in neither list: every trainable parameter "
                       "goes into one of the two groups")
        if got_decay == want_no_decay and got_no_decay == want_decay:
            raise Hint("the two lists are swapped: return (names that decay, names that don't), matrices first")
        decayed_vectors = sorted(got_decay - want_decay)
        if decayed_vectors:
            name = decayed_vectors[0]
            kind = "bias" if name.endswith("bias") else "LayerNorm gain" if ".ln_" in name or name == "2.weight" else "vector"
            raise Hint(f"{name!r} should not decay: it is a 1-D {kind}. Decide by the tensor's shape, not its name: "
                       "p.dim() >= 2 (a matrix) decays, p.dim() < 2 does not")
        spared_matrices = sorted(got_no_decay - want_no_decay)
        if spared_matrices:
            name = spared_matrices[0]
            if "wte" in name or "wpe" in name or name == "0.weight":
                raise Hint(f"{name!r} is an embedding matrix; in this course (as in GPT-2 and nanoGPT) every matrix "
                           "decays, embeddings included (minGPT leaves them out: a choice, but not configure_optimizer's)")
            raise Hint(f"{name!r} is a matrix (2-D): it should decay")
    return "the same groups as labkit.lm.configure_optimizer"


def _groups_by_name(model: nn.Module):
    decay: list[str] = []
    no_decay: list[str] = []
    for name, _ in model.named_parameters():
        (no_decay if name.endswith("bias") else decay).append(name)  # LayerNorm gains end in .weight
    return decay, no_decay


def _groups_from_state_dict(model: nn.Module):
    decay: list[str] = []
    no_decay: list[str] = []
    for name, tensor in model.state_dict().items():  # lists the tied lm_head.weight as well
        (decay if tensor.dim() >= 2 else no_decay).append(name)
    return decay, no_decay


def _groups_without_embeddings(model: nn.Module):
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay: list[str] = []
    no_decay: list[str] = []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and id(p) not in embeddings else no_decay).append(name)
    return decay, no_decay


def _groups_swapped(model: nn.Module):
    decay, no_decay = _reference_weight_decay_groups(model)
    return no_decay, decay


def _groups_of_tensors(model: nn.Module):
    return [p for p in model.parameters() if p.dim() >= 2], [p for p in model.parameters() if p.dim() < 2]


exercise(
    "06.5",
    title="Which parameters get weight decay",
    reference=lambda: _reference_weight_decay_groups,
    stub=lambda: _not_done,
    wrong=[
        lambda: _groups_by_name,
        lambda: lambda model: ([name for name, _ in model.named_parameters()], []),  # everything decays
        lambda: _groups_from_state_dict,
        lambda: _groups_without_embeddings,
        lambda: _groups_swapped,
        lambda: _groups_of_tensors,
    ],
)(_check_weight_decay_groups)


# --------------------------------------------------------------------------- 06.15 the loss before training


@functools.cache
def untrained_losses(stds: tuple[float, ...] = (0.02, 1.0)) -> dict[str, float]:
    """Section 1's "char-tiny" GPT for Shakespeare, untrained, with every weight matrix and embedding
    table (every parameter of ≥ 2 dimensions) drawn from N(0, std²) by a generator seeded 0: its loss
    on one batch of 32 validation windows (the batch `get_batch` draws with a generator seeded 0),
    for each std; and "ln V". As the measurement cell of 06.15 computes it; leaves the notebook's
    random stream alone."""
    from labkit.data import load_text
    from labkit.gpt import GPT, GPTConfig
    from labkit.lm import get_batch, lm_loss
    from labkit.tokenizers import CharTokenizer

    train_text, val_text = load_text("shakespeare", "train"), load_text("shakespeare", "val")
    tokenizer = CharTokenizer(train_text + val_text)
    val_ids = torch.tensor(tokenizer.encode(val_text))
    config = GPTConfig.preset("char-tiny", vocab_size=tokenizer.vocab_size)
    x, y = get_batch(val_ids, 32, config.block_size, torch.Generator().manual_seed(0))
    losses = {"ln V": math.log(tokenizer.vocab_size)}
    with torch.random.fork_rng(devices=[]):
        for std in stds:
            model = GPT(config).eval()
            generator = torch.Generator().manual_seed(0)
            with torch.no_grad():
                for p in model.parameters():
                    if p.dim() >= 2:
                        p.copy_(std * torch.randn(p.shape, generator=generator))
                losses[f"std {std:g}"] = lm_loss(model(x), y).item()
    return losses


def _loss_kind(loss: float) -> str:
    ln_v = untrained_losses()["ln V"]
    return "a" if abs(loss - ln_v) < 0.5 else "c" if loss >= 3 * ln_v else "b"


INIT_SCALE = PredictMeasureExplain(
    predictions={
        "a": "about ln V, as with GPT-2's small weights: an untrained model knows nothing either way",
        "b": "above ln V, but less than three times ln V",
        "c": "three times ln V or more",
    },
    explanations={
        "a": "the logits are the final (LayerNorm-ed) hidden vector times the token embedding; with entries of "
             "size 1 over 128 numbers they spread over tens, so the softmax is sure of a random character, and "
             "cross-entropy charges −ln p of the right one, far more than ln V for a confident wrong guess",
        "b": "weights of size 1 make the gradients explode, and exploding gradients raise the loss",
        "c": "a model with no training gives every character probability 1/V whatever its weights, so its loss "
             "is ln V",
    },
    measure=lambda: untrained_losses()["std 1"],
    predicted=_loss_kind,
    explained=lambda loss: "a" if loss > untrained_losses()["ln V"] + 0.5 else "none",
    what="the loss of the untrained model whose weights were drawn with std 1",
    wrong_explanations={
        "b": "no gradient was computed: the loss was measured by one forward pass, before any training step",
        "c": "the measurement says otherwise: uniform probabilities need logits that are all equal, which small "
             "weights give and large ones do not",
    },
    misreadings=(
        (lambda value, true: math.isclose(value, untrained_losses()["std 0.02"], abs_tol=0.005),
         "that is the model with GPT-2's std 0.02; `measured` is the std-1 model's loss"),
        (lambda value, true: math.isclose(value, untrained_losses()["ln V"], abs_tol=0.005),
         "that is ln V, the loss of uniform guessing; `measured` is the std-1 model's loss"),
    ),
    abs_tol=0.001,
)

INIT_SCALE.register(
    "06.15", "Predict, measure, explain: the loss before training", module=__name__,
    wrong_measurements=(lambda: untrained_losses()["std 0.02"], lambda: untrained_losses()["ln V"]),
)
