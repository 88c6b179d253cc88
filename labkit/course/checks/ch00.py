"""Checks for chapter 00 (setup): tensors, counting parameters, seeding.

The stub cells in ``chapters/00_setup.ipynb``::

    ones = ...  # TODO: a (3, 4) tensor of ones, dtype float32, on the CPU
    check("00.1", ones)

    def count_parameters(model):
        raise NotImplementedError  # TODO: how many numbers will the optimizer train?
    check("00.2", count_parameters)

    def seeded_sample(seed):
        raise NotImplementedError  # TODO: torch.randn(5), the same numbers for the same seed
    check("00.3", seeded_sample)

    prediction = ...  # TODO: "a", "b" or "c", BEFORE running the measurement cell
    committed = prediction  # (the measurement cell's first line)
    measured = ...     # TODO: how much x grew when 1 was added, as the measurement cell printed it
    explanation = ...  # TODO: "a", "b" or "c"
    check("00.4", dict(committed=committed, prediction=prediction, measured=measured, explanation=explanation))
"""
from __future__ import annotations

from collections.abc import Callable
from numbers import Integral
from typing import Any

import numpy as np
import torch
from torch import nn

from labkit.course.checks.predict import PredictMeasureExplain
from labkit.course.exercises import Hint, exercise, expect_callable, expect_tensor, same_shape


def _not_done(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError  # what an untouched stub function does


# --------------------------------------------------------------------------- 00.1


def _check_ones(ones: Any) -> None:
    ones = expect_tensor(ones, "`ones`")
    same_shape(ones, (3, 4), "`ones`")
    if ones.dtype != torch.float32:
        raise Hint(f"`ones` should have dtype torch.float32, got {ones.dtype}. "
                   "Networks compute with floats; pass dtype=torch.float32 (torch.ones gives it by default)")
    if ones.device.type != "cpu":
        raise Hint(f"`ones` should be on the CPU, got device {ones.device}; "
                   "leave out device=..., or move it with .cpu()")
    wrong = ones != 1
    if wrong.any():
        example = ones[wrong][0].item()
        raise Hint(f"every entry of `ones` should be 1, but {int(wrong.sum())} of 12 are not (one is {example:g}); "
                   "torch.zeros and torch.empty do not fill with ones")


exercise(
    "00.1",
    title="A tensor of ones",
    reference=lambda: torch.ones(3, 4),
    stub=lambda: ...,
    wrong=[
        lambda: torch.ones(4, 3),                        # rows and columns swapped
        lambda: torch.ones(3, 4, dtype=torch.int64),     # integers
        lambda: torch.tensor([[1] * 4] * 3),             # built from Python ints: int64 too
        lambda: torch.zeros(3, 4),
        lambda: torch.ones(3, 4, device="meta"),         # not on the CPU (stands in for "cuda")
        lambda: np.ones((3, 4), dtype=np.float32),       # NumPy, not torch
        lambda: [[1.0] * 4] * 3,                         # a Python list
    ],
)(_check_ones)


# --------------------------------------------------------------------------- 00.2


class _TiedModel(nn.Module):
    """Embedding and output layer share one weight matrix (as GPT-2 does): 10 * 4 = 40 numbers."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.out = nn.Linear(4, 10, bias=False)
        self.out.weight = self.embed.weight


def _frozen_model() -> nn.Module:
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    model[0].requires_grad_(False)  # frozen: the optimizer leaves it alone
    return model


# (description, model maker, trainable numbers)
_MODELS: list[tuple[str, Callable[[], nn.Module], int]] = [
    ("nn.Linear(3, 2)", lambda: nn.Linear(3, 2), 3 * 2 + 2),
    ("an MLP 10 → 5 → 1", lambda: nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 1)), 55 + 6),
    ("a small CNN", lambda: nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 26 * 26, 10)),
     8 * 9 + 8 + 8 * 26 * 26 * 10 + 10),
    ("nn.ReLU() (no parameters)", lambda: nn.ReLU(), 0),
    ("a model whose first layer is frozen", _frozen_model, 3 * 2 + 2),
    ("a model with BatchNorm", lambda: nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)), 20 + 8),
    ("a model whose two layers share one weight", _TiedModel, 40),
]


def _diagnose_count(model: nn.Module, got: int) -> str:
    """Guess which common mistake gives `got` for this model."""
    mistakes = [
        (len(list(model.parameters())),
         "that is the number of parameter tensors; count the numbers inside each one with p.numel()"),
        (sum(p.numel() for p in model.parameters()),
         "that includes frozen parameters (requires_grad=False), which the optimizer does not train; "
         "only count p with p.requires_grad"),
        (sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False) if p.requires_grad),
         "a weight shared by two layers was counted twice; model.parameters() lists each shared tensor once"),
        (sum(v.numel() for v in model.state_dict().values()),
         "that counts everything in state_dict(), including buffers such as BatchNorm's running_mean, "
         "which are saved but not trained; use model.parameters()"),
    ]
    for value, explanation in mistakes:
        if got == value:
            return explanation
    return "add up p.numel() over the parameters p of model.parameters() that have p.requires_grad"


def _check_count_parameters(count_parameters: Any) -> None:
    expect_callable(count_parameters, "count_parameters")
    for description, make_model, expected in _MODELS:
        with torch.random.fork_rng(devices=[]):  # building a model draws random weights: not from the notebook's stream
            model = make_model()
        got = count_parameters(model)
        if got is None:
            raise Hint("count_parameters returned None: did you forget `return`?")
        if isinstance(got, torch.Tensor):
            raise Hint(f"count_parameters should return a Python int, got a tensor {got!r}; convert it with int(...)")
        if isinstance(got, bool) or not isinstance(got, Integral):
            raise Hint(f"count_parameters should return a whole number (int), got {type(got).__name__} {got!r}")
        if got != expected:
            raise Hint(f"for {description} count_parameters returned {got}, expected {expected}: "
                       f"{_diagnose_count(model, int(got))}")


def _reference_count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


exercise(
    "00.2",
    title="Count trainable parameters",
    reference=lambda: _reference_count_parameters,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda model: sum(p.numel() for p in model.parameters()),          # counts frozen ones
        lambda: lambda model: len(list(model.parameters())),                       # counts tensors
        lambda: lambda model: sum(v.numel() for v in model.state_dict().values()),  # counts buffers
        lambda: lambda model: sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False)
                                  if p.requires_grad),                             # shared weight twice
        lambda: lambda model: torch.tensor(_reference_count_parameters(model)),    # a tensor, not an int
        lambda: lambda model: print(_reference_count_parameters(model)),           # prints, returns None
    ],
)(_check_count_parameters)


# --------------------------------------------------------------------------- 00.3


def _check_seeded_sample(seeded_sample: Any) -> None:
    expect_callable(seeded_sample, "seeded_sample")
    # fork_rng: whatever seed the learner's function sets, the notebook's own random stream is untouched.
    with torch.random.fork_rng(devices=[]):
        first = expect_tensor(seeded_sample(0), "seeded_sample(0)")
        same_shape(first, (5,), "seeded_sample(0)")
        if not first.is_floating_point():
            raise Hint(f"seeded_sample(0) should hold floats like torch.randn(5), got dtype {first.dtype}")
        torch.randn(1000)  # other code draws random numbers in between
        again = seeded_sample(0)
        if not torch.equal(first, again):
            raise Hint("two calls of seeded_sample(0) gave different numbers: call torch.manual_seed(seed) "
                       "inside the function, before torch.randn(5)")
        other = seeded_sample(1)
        if torch.equal(first, other):
            raise Hint("seeded_sample(0) and seeded_sample(1) gave the same numbers: use the `seed` argument, "
                       "torch.manual_seed(seed)")
        draws = torch.cat([seeded_sample(seed).reshape(-1) for seed in range(40)]).double()
    if (draws >= 0).all():
        raise Hint("200 draws and not one is negative: torch.randn samples a normal distribution (mean 0, std 1); "
                   "torch.rand samples uniformly from [0, 1)")
    mean, std = draws.mean().item(), draws.std().item()
    if abs(mean) > 0.4 or not 0.7 < std < 1.3:
        raise Hint(f"over 40 seeds your numbers have mean {mean:.2f} and std {std:.2f}; "
                   "torch.randn(5) gives mean ≈ 0 and std ≈ 1")


def _reference_seeded_sample(seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(5)


def _seed_after_drawing(seed: int) -> torch.Tensor:
    sample = torch.randn(5)
    torch.manual_seed(seed)  # too late: the numbers were already drawn
    return sample


def _always_seed_zero(seed: int) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(5)


def _uniform(seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.rand(5)


exercise(
    "00.3",
    title="Reproducible random numbers",
    reference=lambda: _reference_seeded_sample,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda seed: torch.randn(5),                                  # never seeded
        lambda: _seed_after_drawing,
        lambda: _always_seed_zero,
        lambda: _uniform,
        lambda: lambda seed: (torch.manual_seed(seed), torch.randn(5, 1))[1],  # wrong shape
        lambda: lambda seed: (torch.manual_seed(seed), torch.randn(5) * 3 + 2)[1],  # not standard normal
    ],
)(_check_seeded_sample)


# --------------------------------------------------------------------------- 00.4 predict, measure, explain

BIG = 16_777_216.0  # 2**24


def growth_when_adding_one(value: float = BIG, dtype: torch.dtype = torch.float32) -> float:
    """(x + 1) − x for x = `value` stored in `dtype`: 1 in exact arithmetic. The measurement of 00.4."""
    x = torch.tensor(value, dtype=dtype)
    return ((x + 1) - x).item()


def _growth_kind(growth: float) -> str:
    return "a" if growth == 1 else "b" if growth == 0 else "c"


PLUS_ONE = PredictMeasureExplain(
    predictions={
        "a": "x grows by 1, as it would on paper",
        "b": "x does not change",
        "c": "something else: x grows by more than 1, or becomes inf",
    },
    explanations={
        "a": "a float32 keeps 24 binary digits of a number: from 2²⁴ = 16,777,216 on, neighbouring float32 numbers "
             "are 2 apart, so x + 1 falls halfway between two of them and is rounded back to x",
        "b": "16,777,216 is the largest number a float32 can hold: adding 1 overflows",
        "c": "PyTorch rounds every float32 result to 7 decimal places",
    },
    measure=growth_when_adding_one,
    predicted=_growth_kind,
    explained=lambda growth: "a" if growth == 0 else "none",
    what="(x + 1) − x for the float32 x = 16,777,216",
    wrong_explanations={
        "b": "the largest float32 is about 3.4 × 10³⁸ (torch.finfo(torch.float32).max), and x + 1 gave no inf. "
             "Look at how many digits a float32 keeps",
        "c": "decimal places cannot be it: 16,777,216 has none, and a float32 holds 0.001 or 1e-30 without trouble. "
             "Look at how many significant binary digits it keeps, whatever the size",
    },
    abs_tol=1e-9,
    misreadings=(
        (lambda value, true: value == 1, "that is what exact arithmetic gives (your prediction, perhaps); "
                                         "copy what the cell printed for float32"),
        (lambda value, true: value == BIG or value == BIG + 1, "that is x + 1 itself; `measured` is how much x grew, "
                                                               "(x + 1) − x"),
    ),
)


PLUS_ONE.register(
    "00.4", "Predict, measure, explain: adding 1 in float32", module=__name__,
    wrong_measurements=(
        lambda: 1.0,  # exact arithmetic, not the measurement
        lambda: BIG,  # x + 1 itself
    ),
)
