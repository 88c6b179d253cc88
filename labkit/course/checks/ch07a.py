"""Checks for chapter 07a (project practice III, part 1: transfer learning on images).

The stub cells in ``chapters/07a_transfer_learning.ipynb``::

    def freeze_all_but(model, keep):
        raise NotImplementedError  # TODO: freeze all but the parts named in keep; return how many numbers still train
    check("07.1", freeze_all_but)

    def new_head(model, num_classes):
        raise NotImplementedError  # TODO: a fresh model.head with num_classes outputs; return the model
    check("07.2", new_head)

    def param_groups(model, body_lr, head_lr):
        raise NotImplementedError  # TODO: a list of two dicts {"params": [...], "lr": ...} for torch.optim
    check("07.3", param_groups)

    prediction = ...  # TODO: "a", "b" or "c": decide BEFORE you run the next cell
    committed = prediction  # the measurement cell's first line
    measured = ...     # TODO: how far block1 moved while frozen, as a share of how far it moved before, printed above
    explanation = ...  # TODO: "a", "b" or "c"
    check("07.17", dict(committed=committed, prediction=prediction, measured=measured, explanation=explanation))

The models the checks use have the chapter's layout: parts ``block1``, ``block2``, ``fc`` (the body)
and ``head`` (the last layer), only smaller. Every check runs in well under a second and leaves
the notebook's random stream alone.
"""
from __future__ import annotations

import functools
import math
import numbers
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, cast

import torch
from torch import nn

from labkit.course.checks.predict import PERCENTAGE, PredictMeasureExplain
from labkit.course.exercises import Hint, exercise, expect_callable, same_shape

BODY = ("block1", "block2", "fc")


def _not_done(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError  # what an untouched stub function does


def small_cnn(hidden: int = 16, num_classes: int = 10, seed: int = 0) -> nn.Sequential:
    """The chapter's CNN layout at a tiny width: (B, 1, 28, 28) → logits (B, num_classes)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(OrderedDict(
            block1=nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2)),   # (B, 4, 13, 13)
            block2=nn.Sequential(nn.Conv2d(4, 8, 3), nn.ReLU(), nn.MaxPool2d(2)),   # (B, 8, 5, 5)
            fc=nn.Sequential(nn.Flatten(), nn.Linear(8 * 5 * 5, hidden), nn.ReLU()),  # (B, hidden)
            head=nn.Linear(hidden, num_classes),                                     # (B, num_classes)
        ))


def _head(model: nn.Module) -> nn.Linear:
    """A small_cnn's last layer, model.head (the models these helpers get are small_cnn's)."""
    return cast(nn.Linear, model.head)


def _in_part(name: str, part: str) -> bool:
    return name == part or name.startswith(part + ".")


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _changed(model: nn.Module, before: dict[str, torch.Tensor]) -> list[str]:
    now = dict(model.named_parameters())
    return [name for name, value in before.items() if name in now and not torch.equal(now[name].detach(), value)]


def _as_count(value: Any, what: str) -> int:
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        return int(value.item())
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise Hint(f"{what} should be a whole number (the count of trainable parameters), got {type(value).__name__} {value!r}"[:300])


# --------------------------------------------------------------------------- 07.1 freeze all but


def _reference_freeze_all_but(model: nn.Module, keep: list[str]) -> int:
    for name, p in model.named_parameters():
        p.requires_grad_(any(name == part or name.startswith(part + ".") for part in keep))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _check_freeze_all_but(freeze_all_but: Callable) -> str:
    expect_callable(freeze_all_but, "freeze_all_but")
    model = small_cnn()
    before = _snapshot(model)
    # In this order, each call must also switch ON a part that the call before switched off.
    for keep in (["head"], ["fc", "head"], ["block2", "head"]):
        got = freeze_all_but(model, list(keep))
        call = f"freeze_all_but(model, {keep})"
        if _changed(model, before):
            raise Hint(f"{call} changed the values of {_changed(model, before)[0]}: freezing only switches "
                       "requires_grad off, it never touches a weight")
        for name, p in model.named_parameters():
            should_train = any(_in_part(name, part) for part in keep)
            if should_train and not p.requires_grad:
                was_off = keep != ["head"] and not _in_part(name, "head")
                raise Hint(f"after {call}, {name} is frozen, but it is in a part you keep"
                           + ("; it was frozen by the call before, so freeze_all_but must also switch the kept "
                              "parts ON (p.requires_grad_(True)), whatever state the model was in" if was_off else ""))
            if not should_train and p.requires_grad:
                raise Hint(f"after {call}, {name} still trains (requires_grad=True); every part not in keep "
                           "should be frozen")
        if got is None:
            raise Hint(f"{call} returned None; return the number of parameters that still train")
        count = _as_count(got, f"what {call} returned")
        trainable = [p for p in model.parameters() if p.requires_grad]
        expected = sum(p.numel() for p in trainable)
        total = sum(p.numel() for p in model.parameters())
        if count != expected:
            if count == len(trainable):
                raise Hint(f"{call} returned {count}: that is how many parameter *tensors* train. Count the "
                           f"numbers in them, p.numel() for each: {expected:,}")
            if count == total:
                raise Hint(f"{call} returned {count:,}, every parameter of the model; count only those with "
                           f"requires_grad=True ({expected:,})")
            if count == total - expected:
                raise Hint(f"{call} returned {count:,}, the number of frozen parameters; return how many still "
                           "train (requires_grad=True)")
            raise Hint(f"{call} returned {count:,}, but {expected:,} parameters train afterwards")
    return f"{expected:,} of {total:,} parameters train when block2 and the head are kept"


def _freeze_only(model: nn.Module, keep: list[str]) -> int:
    """Freezes what is not kept but never switches a kept part back on."""
    for name, p in model.named_parameters():
        if not any(_in_part(name, part) for part in keep):
            p.requires_grad_(False)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _count_tensors(model: nn.Module, keep: list[str]) -> int:
    _reference_freeze_all_but(model, keep)
    return len([p for p in model.parameters() if p.requires_grad])


def _count_everything(model: nn.Module, keep: list[str]) -> int:
    _reference_freeze_all_but(model, keep)
    return sum(p.numel() for p in model.parameters())


def _freeze_the_kept(model: nn.Module, keep: list[str]) -> int:
    for name, p in model.named_parameters():
        p.requires_grad_(not any(_in_part(name, part) for part in keep))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _zero_the_frozen(model: nn.Module, keep: list[str]) -> int:
    count = _reference_freeze_all_but(model, keep)
    with torch.no_grad():
        for p in model.parameters():
            if not p.requires_grad:
                p.zero_()
    return count


exercise(
    "07.1",
    title="Freeze all but some parts",
    reference=lambda: _reference_freeze_all_but,
    stub=lambda: _not_done,
    wrong=[
        lambda: _freeze_only,
        lambda: _count_tensors,
        lambda: _count_everything,
        lambda: _freeze_the_kept,
        lambda: _zero_the_frozen,
        lambda: lambda model, keep: _reference_freeze_all_but(model, keep) and None,  # forgets to return
    ],
)(_check_freeze_all_but)


# --------------------------------------------------------------------------- 07.2 a new head


def _reference_new_head(model: nn.Module, num_classes: int) -> nn.Module:
    model.head = nn.Linear(_head(model).in_features, num_classes)
    return model


def _check_new_head(new_head: Callable) -> str:
    expect_callable(new_head, "new_head")
    x = torch.linspace(-1, 1, 3 * 28 * 28).reshape(3, 1, 28, 28)
    for hidden, num_classes in ((16, 3), (24, 2)):
        model = small_cnn(hidden=hidden)
        for part in BODY:  # a feature extractor: the body is frozen
            getattr(model, part).requires_grad_(False)
        old_head = _head(model)
        body_before = {n: v for n, v in _snapshot(model).items() if not _in_part(n, "head")}
        call = f"new_head(model, {num_classes})"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1)
            try:
                result = new_head(model, num_classes)
            except AttributeError as error:
                raise Hint(f"{call} raised AttributeError: {error}. The model's last layer is model.head; "
                           "read its in_features from there") from None
        if isinstance(result, nn.Linear) and not hasattr(result, "head"):
            raise Hint(f"{call} returned the new layer only; put it in the model (model.head = ...) and return the model")
        if not isinstance(result, nn.Module):
            raise Hint(f"{call} should return the model (an nn.Module), got {type(result).__name__}")
        head = getattr(result, "head", None)
        if not isinstance(head, nn.Linear):
            if isinstance(head, nn.Module) and any(m is old_head for m in head.modules()):
                raise Hint(f"after {call}, model.head still holds the old head, with a new layer after it. Replace "
                           "the old head: its 10 outputs were the old task's classes, and the new layer should "
                           "read the body's features directly")
            raise Hint(f"after {call}, model.head should be an nn.Linear, got {type(head).__name__}")
        if head is old_head or any(p is old_head.weight for p in result.parameters()):
            raise Hint(f"after {call}, the old head is still in the model; build a new nn.Linear")
        if head.in_features != hidden:
            raise Hint(f"the new head takes {head.in_features} features, but the body gives {hidden} for this model; "
                       "read the number from the old head (model.head.in_features) instead of writing it in")
        if head.out_features != num_classes:
            raise Hint(f"{call}: the new head has {head.out_features} outputs; it should have num_classes={num_classes}")
        body_now = {n: p for n, p in result.named_parameters() if not _in_part(n, "head")}
        for name, value in body_before.items():
            if name not in body_now:
                raise Hint(f"after {call}, the body's parameter {name} is missing: change only model.head")
            if not torch.equal(body_now[name].detach(), value):
                raise Hint(f"after {call}, the body's weights changed ({name}): keep the pretrained body as it is and "
                           "change only the head (building a new model throws the pretraining away)")
            if body_now[name].requires_grad:
                raise Hint(f"after {call}, {name} trains again; the body was frozen and should stay so: change only "
                           "the head")
        if not all(p.requires_grad for p in head.parameters()):
            raise Hint(f"after {call}, the new head is frozen; it is the part that must train")
        result.eval()
        with torch.no_grad():
            out = result(x)
        same_shape(out, (3, num_classes), f"the model's output after {call}, for a batch of 3 images")
    return "the body is untouched and the new head reads its features"


def _new_model(model: nn.Module, num_classes: int) -> nn.Module:
    return small_cnn(hidden=_head(model).in_features, num_classes=num_classes, seed=3)


def _stacked_head(model: nn.Module, num_classes: int) -> nn.Module:
    model.head = nn.Sequential(_head(model), nn.Linear(_head(model).out_features, num_classes))
    return model


def _fixed_width_head(model: nn.Module, num_classes: int) -> nn.Module:
    model.head = nn.Linear(16, num_classes)  # the width of one model, written in
    return model


def _ten_classes_head(model: nn.Module, num_classes: int) -> nn.Module:
    model.head = nn.Linear(_head(model).in_features, 10)
    return model


def _only_the_layer(model: nn.Module, num_classes: int) -> nn.Module:
    return nn.Linear(_head(model).in_features, num_classes)


def _unfreezes_everything(model: nn.Module, num_classes: int) -> nn.Module:
    model.head = nn.Linear(_head(model).in_features, num_classes)
    return model.requires_grad_(True)


exercise(
    "07.2",
    title="A new head on a pretrained body",
    reference=lambda: _reference_new_head,
    stub=lambda: _not_done,
    wrong=[
        lambda: _new_model,
        lambda: _stacked_head,
        lambda: _fixed_width_head,
        lambda: _ten_classes_head,
        lambda: _only_the_layer,
        lambda: _unfreezes_everything,
    ],
)(_check_new_head)


# --------------------------------------------------------------------------- 07.3 parameter groups


def _reference_param_groups(model: nn.Module, body_lr: float, head_lr: float) -> list[dict[str, Any]]:
    body: list[nn.Parameter] = []
    head: list[nn.Parameter] = []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (head if name.startswith("head.") else body).append(p)
    return [{"params": body, "lr": body_lr}, {"params": head, "lr": head_lr}]


def _check_param_groups(param_groups: Callable) -> str:
    expect_callable(param_groups, "param_groups")
    model = small_cnn()
    model.block1.requires_grad_(False)  # a frozen first block: its parameters belong in no group
    names = {id(p): name for name, p in model.named_parameters()}
    body_lr, head_lr = 1e-4, 3e-3
    call = f"param_groups(model, body_lr={body_lr:g}, head_lr={head_lr:g})"
    groups = param_groups(model, body_lr, head_lr)
    if not isinstance(groups, (list, tuple)) or not all(isinstance(g, dict) for g in groups):
        raise Hint(f"{call} should return a list of dicts like {{'params': [...], 'lr': ...}}, got "
                   f"{type(groups).__name__}")
    for group in groups:
        if "params" not in group:
            raise Hint(f"each group needs the key 'params' (the list of parameters), got keys {sorted(group)}")
        if "lr" not in group:
            raise Hint("each group needs its own 'lr'; without it the group takes the optimizer's default "
                       "learning rate, the same for all")
    # What torch.optim does with the groups, without building an optimizer (the first one imports a lot)
    lr_of: dict[int, float] = {}
    for group in groups:
        params = group["params"]
        params = [params] if isinstance(params, torch.Tensor) else list(params)
        for p in params:
            if not isinstance(p, torch.Tensor):
                raise Hint(f"a group's 'params' should hold the model's parameters (tensors), got a {type(p).__name__}")
            if id(p) in lr_of:
                raise Hint("a parameter appears in two groups (the head's parameters are also in the body's group?); "
                           "torch.optim refuses that. Put each parameter in exactly one group: the head's in one, "
                           "all other trainable ones in the other")
            lr_of[id(p)] = group["lr"]
    rates = {lr_of.get(id(p)) for p in model.parameters() if p.requires_grad}
    if len(rates) == 1 and None not in rates:
        raise Hint(f"every trainable parameter gets the same lr={rates.pop():g}: make two groups, the head's "
                   "parameters with head_lr and all other trainable ones with body_lr")
    for name, p in model.named_parameters():
        is_head = _in_part(name, "head")
        if not p.requires_grad:
            if id(p) in lr_of:
                raise Hint(f"{name} is frozen (requires_grad=False) but is in a group; leave frozen parameters out, "
                           "as labkit.fit does: an optimizer should hold only what it trains")
            continue
        if id(p) not in lr_of:
            raise Hint(f"{name} trains but is in no group, so the optimizer would never update it")
        want = head_lr if is_head else body_lr
        got = lr_of[id(p)]
        if got != want:
            if got == (body_lr if is_head else head_lr):
                raise Hint(f"{name} gets lr={got:g}, the other part's rate: are body_lr and head_lr swapped? The head "
                           "(new, random) gets head_lr, the pretrained body body_lr")
            raise Hint(f"{name} gets lr={got:g}; it should get {'head_lr' if is_head else 'body_lr'}={want:g}")
    if any(key not in names for key in lr_of):
        raise Hint("a group holds a tensor that is not a parameter of this model")
    return "the new head's learning rate is 30 times the pretrained body's"


def _swapped_groups(model: nn.Module, body_lr: float, head_lr: float) -> list[dict[str, Any]]:
    return _reference_param_groups(model, head_lr, body_lr)


def _head_in_both(model: nn.Module, body_lr: float, head_lr: float) -> list[dict[str, Any]]:
    body = [p for p in model.parameters() if p.requires_grad]
    return [{"params": body, "lr": body_lr}, {"params": list(_head(model).parameters()), "lr": head_lr}]


def _with_frozen(model: nn.Module, body_lr: float, head_lr: float) -> list[dict[str, Any]]:
    body = [p for name, p in model.named_parameters() if not name.startswith("head.")]
    return [{"params": body, "lr": body_lr}, {"params": list(_head(model).parameters()), "lr": head_lr}]


def _one_group(model: nn.Module, body_lr: float, head_lr: float) -> list[dict[str, Any]]:
    return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": body_lr}]


def _no_lr(model: nn.Module, body_lr: float, head_lr: float) -> list[dict[str, Any]]:
    return [{"params": group["params"]} for group in _reference_param_groups(model, body_lr, head_lr)]


exercise(
    "07.3",
    title="Discriminative learning rates",
    reference=lambda: _reference_param_groups,
    stub=lambda: _not_done,
    wrong=[
        lambda: _swapped_groups,
        lambda: _head_in_both,
        lambda: _with_frozen,
        lambda: _one_group,
        lambda: _no_lr,
    ],
)(_check_param_groups)


# --------------------------------------------------------------------------- 07.17 frozen, yet moving


def chapter_cnn(num_classes: int = 10) -> nn.Sequential:
    """The chapter's `build_cnn` (section 2): (B, 1, 28, 28) → logits (B, num_classes)."""
    return nn.Sequential(OrderedDict(
        block1=nn.Sequential(nn.Conv2d(1, 16, 3), nn.ReLU(), nn.MaxPool2d(2)),   # (B, 16, 13, 13)
        block2=nn.Sequential(nn.Conv2d(16, 32, 3), nn.ReLU(), nn.MaxPool2d(2)),  # (B, 32, 5, 5)
        fc=nn.Sequential(nn.Flatten(), nn.Linear(32 * 5 * 5, 128), nn.ReLU()),   # (B, 128): the features
        head=nn.Linear(128, num_classes),                                        # (B, num_classes): logits
    ))


@functools.cache
def frozen_drift(set_to_none: bool = False) -> float:
    """How far block1's weights move in 5 Adam steps (lr 1e-3) after `freeze(model, ["block1"])`, as a
    share of how far they moved in the 5 steps before, with ONE optimizer built over every parameter
    and gradients zeroed with ``zero_grad(set_to_none=...)``. The chapter's CNN seeded 0, on 20 images
    of uniform noise (a generator seeded 0) with labels 0 … 9 twice. As the measurement cell of 07.17
    computes it; leaves the notebook's random stream alone."""
    import torch.nn.functional as F

    from labkit.finetune import freeze

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = chapter_cnn()
    x = torch.rand(20, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    y = torch.arange(20) % 10
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    weight = cast(nn.Conv2d, cast(nn.Sequential, model.block1)[0]).weight  # block1's convolution

    def distance_moved(steps: int) -> float:
        start = weight.detach().clone()
        for _ in range(steps):
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=set_to_none)
            loss.backward()
            optimizer.step()
        return (weight.detach() - start).norm().item()

    before = distance_moved(5)
    freeze(model, ["block1"])
    return distance_moved(5) / before


def _drift_kind(ratio: float) -> str:
    return "a" if ratio < 0.05 else "c" if ratio > 0.95 else "b"


FROZEN_DRIFT = PredictMeasureExplain(
    predictions={
        "a": "0, or nearly (under 0.05): a frozen weight gets no gradient, so it cannot move",
        "b": "between 0.05 and 0.95: it keeps moving, less than before",
        "c": "0.95 or more: as far as before",
    },
    explanations={
        "a": "Adam's step is lr · m / (√v + ε), where m is a running average of the past gradients; the frozen "
             "weight's gradient is now 0 (a tensor of zeros, kept by set_to_none=False, so Adam still steps it), "
             "m shrinks by β1 = 0.9 each step but is not 0, so the weight keeps moving, a little less each step",
        "b": "requires_grad=False only hides the weight from backward(); the optimizer computes its gradient again",
        "c": "the learning rate is what moves a weight, and freezing does not change the learning rate",
    },
    measure=frozen_drift,
    predicted=_drift_kind,
    explained=lambda ratio: "a" if 0.05 < ratio < 0.95 else "none",
    what="how far block1 moved in the 5 frozen steps as a share of the 5 steps before",
    wrong_explanations={
        "b": "backward() gave the frozen weight no new gradient (its .grad stayed a tensor of zeros), and no "
             "optimizer computes gradients: it only reads .grad. What else does Adam's step use?",
        "c": "with a gradient of 0, plain SGD would not move the weight at any learning rate: look at what else "
             "Adam's step uses",
    },
    misreadings=(
        (lambda value, true: math.isclose(value, 1 / true, rel_tol=0.01),
         "that is the steps before freezing over the frozen ones; `measured` is frozen over before"),
        PERCENTAGE,
    ),
    rel_tol=0.002,
)

FROZEN_DRIFT.register(
    "07.17", "Predict, measure, explain: frozen, yet moving", module=__name__,
    wrong_measurements=(lambda: 1 / frozen_drift(), lambda: 100 * frozen_drift(), lambda: frozen_drift(True)),
)
