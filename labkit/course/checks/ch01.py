"""Checks for chapter 01 (background): training compute, training time, training memory, growth.

The stub cells in ``chapters/01_background.ipynb``::

    def training_flops(params, tokens):
        raise NotImplementedError  # TODO: FLOP to train N parameters on D tokens
    check("01.1", training_flops)

    def training_days(params, tokens, gflops_per_s, utilisation=0.4):
        raise NotImplementedError  # TODO: days to train on a device of this peak speed
    check("01.2", training_days)

    def adam_memory(params, mixed_precision):
        raise NotImplementedError  # TODO: {"weights", "gradients", "master_weights", "optimizer_state", "total"} in bytes
    check("01.3", adam_memory)

    def doubling_time_months(value_start, year_start, value_end, year_end):
        raise NotImplementedError  # TODO: months for the value to double, if it grew at a steady rate
    check("01.4", doubling_time_months)

    prediction = ...  # TODO: "a", "b" or "c", BEFORE running the measurement cell
    committed = prediction  # (the measurement cell's first line)
    measured = ...     # TODO: SGD with momentum's bytes per parameter, as the measurement cell printed it
    explanation = ...  # TODO: "a", "b" or "c"
    check("01.5", dict(committed=committed, prediction=prediction, measured=measured, explanation=explanation))
"""
from __future__ import annotations

import math
import traceback
from collections.abc import Callable
from numbers import Real
from typing import Any

import torch
from torch import nn

from labkit.course.checks.predict import PredictMeasureExplain
from labkit.course.exercises import Hint, exercise, expect_callable

SECONDS_PER_DAY = 86_400


def _not_done(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError  # what an untouched stub function does


def _number(value: Any, what: str) -> float:
    """`value` as a float, or a Hint: these exercises return plain numbers."""
    if isinstance(value, bool) or value is None:
        raise Hint(f"{what} should be a number, got {value!r}")
    if isinstance(value, Real):
        number = float(value)
    elif hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # a 0-d tensor or NumPy scalar
        number = float(value.item())
    else:
        raise Hint(f"{what} should be a number (int or float), got {type(value).__name__} {str(value)[:60]!r}")
    if math.isnan(number):
        raise Hint(f"{what} is NaN (not a number): look for 0/0 or an operation on a missing value")
    return number


def _call(function: Callable[..., Any], name: str, *args: Any) -> Any:
    """Call the learner's function; a Hint if it cannot even accept these arguments."""
    try:
        return function(*args)
    except TypeError as error:
        if len(traceback.extract_tb(error.__traceback__)) == 1:  # raised by the call itself, not inside it
            raise Hint(f"{name}{args} could not be called: {error}. Keep the signature of the stub") from None
        raise


def _ratio_hint(got: float, expected: float, hints: dict[float, str]) -> str:
    """The hint of the known mistake whose ratio got/expected matches, or ''."""
    if expected == 0 or got == 0:
        return ""
    ratio = got / expected
    for known, hint in hints.items():
        if math.isclose(ratio, known, rel_tol=1e-3):
            return hint
    return ""


def _compare(got: float, expected: float, what: str, hints: dict[float, str]) -> None:
    if math.isclose(got, expected, rel_tol=1e-6):
        return
    hint = _ratio_hint(got, expected, hints)
    raise Hint(f"{what} gave {got:.4g}, expected {expected:.4g}" + (f": {hint}" if hint else ""))


# --------------------------------------------------------------------------- 01.1


_FLOP_CASES = ((175e9, 300e9), (1e6, 2e6), (117e6, 1.0), (3.0, 7.0))


def _check_training_flops(training_flops: Any) -> None:
    expect_callable(training_flops, "training_flops")
    hints = {
        1 / 3: "that is 2·N·D, the forward pass alone; the backward pass costs twice as much again (4·N·D)",
        2 / 3: "that is 4·N·D, the backward pass alone; add the forward pass, 2·N·D",
        1 / 6: "that is N·D, one operation per weight per token; a multiply-add is 2 FLOP, and training "
               "does forward + backward: 6 per weight per token",
        0.5: "that is 3·N·D: the forward pass costs 2 FLOP per weight (a multiply and an add), the backward 4",
    }
    for params, tokens in _FLOP_CASES:
        call = f"training_flops({params:g}, {tokens:g})"
        got = _number(_call(training_flops, "training_flops", params, tokens), call)
        case_hints = {
            **hints,
            1 / tokens: "your answer does not grow with the number of tokens: every token costs 6 FLOP per parameter",
            1 / params: "your answer does not grow with the number of parameters: every parameter costs 6 FLOP per token",
        }
        _compare(got, 6 * params * tokens, call, case_hints)


exercise(
    "01.1",
    title="Training compute, 6·N·D",
    reference=lambda: lambda params, tokens: 6 * params * tokens,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda params, tokens: 2 * params * tokens,      # forward pass only
        lambda: lambda params, tokens: params * tokens,           # one operation per weight
        lambda: lambda params, tokens: 4 * params * tokens,       # backward only
        lambda: lambda params, tokens: 6 * params,                # forgot the tokens
        lambda: lambda params, tokens: f"{6 * params * tokens:.2e}",  # a string, not a number
    ],
)(_check_training_flops)


# --------------------------------------------------------------------------- 01.2


def _reference_days(params: float, tokens: float, gflops_per_s: float, utilisation: float = 0.4) -> float:
    return 6 * params * tokens / (gflops_per_s * 1e9 * utilisation) / SECONDS_PER_DAY


_DAY_CASES = ((175e9, 300e9, 140.0, 0.4), (1e6, 2e6, 100.0, 0.25), (6.7e9, 1e12, 312e3, 0.5))


def _check_training_days(training_days: Any) -> None:
    expect_callable(training_days, "training_days")
    unit_hints = {
        float(SECONDS_PER_DAY): "that is seconds; a day has 86,400 seconds",
        24.0: "that is hours; divide by 24 more",
        1 / 365.25: "that is years; multiply by 365.25",
        1e9: "GFLOP/s means 10⁹ FLOP per second: multiply gflops_per_s by 1e9",
        1e-9: "GFLOP/s means 10⁹ FLOP per second: multiply gflops_per_s by 1e9, do not divide",
        1 / 3: "that is 2·N·D FLOP, the forward pass alone; training costs 6·N·D",
    }
    for params, tokens, speed, share in _DAY_CASES:
        call = f"training_days({params:g}, {tokens:g}, {speed:g}, {share:g})"
        got = _number(_call(training_days, "training_days", params, tokens, speed, share), call)
        hints = {
            share: f"you divided by the peak speed; only {share:.0%} of it is achieved, so training takes "
                   f"1/{share:g} = {1 / share:.3g}× longer: divide by gflops_per_s · 1e9 · utilisation",
            share * share: "you multiplied by the utilisation; divide by it (a lower effective speed means more days)",
            **unit_hints,
        }
        _compare(got, _reference_days(params, tokens, speed, share), call, hints)
    got = _number(_call(training_days, "training_days", 1e9, 1e9, 100.0), "training_days(1e9, 1e9, 100)")
    expected = _reference_days(1e9, 1e9, 100.0)
    if not math.isclose(got, expected, rel_tol=1e-6):
        raise Hint(f"training_days(1e9, 1e9, 100) gave {got:.4g}, expected {expected:.4g}: "
                   "without a utilisation argument it should use the default 0.4 (utilisation=0.4)")


exercise(
    "01.2",
    title="Training time in days",
    reference=lambda: _reference_days,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda p, t, g, u=0.4: 6 * p * t / (g * 1e9) / SECONDS_PER_DAY,             # ignores utilisation
        lambda: lambda p, t, g, u=0.4: 6 * p * t / (g * 1e9) * u / SECONDS_PER_DAY,         # multiplies by it
        lambda: lambda p, t, g, u=0.4: 6 * p * t / (g * 1e9 * u),                          # seconds
        lambda: lambda p, t, g, u=0.4: 6 * p * t / (g * u) / SECONDS_PER_DAY,              # GFLOP/s as FLOP/s
        lambda: lambda p, t, g, u=0.4: 2 * p * t / (g * 1e9 * u) / SECONDS_PER_DAY,        # forward only
        lambda: lambda p, t, g, u=0.5: 6 * p * t / (g * 1e9 * u) / SECONDS_PER_DAY,        # wrong default
    ],
)(_check_training_days)


# --------------------------------------------------------------------------- 01.3

_MEMORY_KEYS = ("weights", "gradients", "master_weights", "optimizer_state", "total")


def _reference_adam_memory(params: float, mixed_precision: bool) -> dict[str, float]:
    width = 2 if mixed_precision else 4  # bf16 or fp32 working copy
    parts = {
        "weights": width * params,
        "gradients": width * params,
        "master_weights": 4 * params if mixed_precision else 0,  # the fp32 copy the optimizer updates
        "optimizer_state": 8 * params,                             # Adam's m and v, fp32
    }
    parts["total"] = sum(parts.values())
    return parts


_PART_HINTS = {
    "weights": "the weights take 4 bytes each in fp32 and 2 bytes each in bf16",
    "gradients": "there is one gradient per weight, in the same format as the weights (4 bytes in fp32, 2 in bf16)",
    "master_weights": "mixed precision keeps an fp32 master copy of the weights for the optimizer (4 bytes per "
                      "parameter); plain fp32 training needs no extra copy (0)",
    "optimizer_state": "Adam keeps two numbers per parameter, m and v, in fp32 in both cases: 8 bytes",
    "total": "total is the sum of the four parts",
}


def _check_adam_memory(adam_memory: Any) -> None:
    expect_callable(adam_memory, "adam_memory")
    for params in (1e9, 7e9):
        for mixed in (False, True):
            call = f"adam_memory({params:g}, mixed_precision={mixed})"
            got = _call(adam_memory, "adam_memory", params, mixed)
            if not isinstance(got, dict):
                raise Hint(f"{call} should return a dict with keys {', '.join(_MEMORY_KEYS)}, "
                           f"got {type(got).__name__} {str(got)[:60]!r}")
            missing = [key for key in _MEMORY_KEYS if key not in got]
            if missing:
                raise Hint(f"{call} is missing the key(s) {', '.join(map(repr, missing))}; the dict needs all of "
                           f"{', '.join(map(repr, _MEMORY_KEYS))} (0 for a part that is not needed)")
            expected = _reference_adam_memory(params, mixed)
            for key in _MEMORY_KEYS:
                value = _number(got[key], f"{call}[{key!r}]")
                if not math.isclose(value, expected[key], rel_tol=1e-6, abs_tol=1e-6):
                    per = value / params
                    raise Hint(f"{call}[{key!r}] is {value:.4g} bytes ({per:g} per parameter), expected "
                               f"{expected[key]:.4g} ({expected[key] / params:g} per parameter): {_PART_HINTS[key]}")


def _halved(params: float, mixed_precision: bool) -> dict[str, float]:
    """The tempting mistake: bf16 halves everything and needs no master copy."""
    width = 2 if mixed_precision else 4
    parts = {"weights": width * params, "gradients": width * params, "master_weights": 0,
             "optimizer_state": 2 * width * params}
    parts["total"] = sum(parts.values())
    return parts


def _without(key: str, scale: float = 0.0) -> Callable[[float, bool], dict[str, float]]:
    """The reference answer with one part wrong (scaled), total recomputed."""
    def answer(params: float, mixed_precision: bool) -> dict[str, float]:
        parts = _reference_adam_memory(params, mixed_precision)
        parts[key] *= scale
        parts["total"] = sum(v for k, v in parts.items() if k != "total")
        return parts
    return answer


def _no_master_in_mixed(params: float, mixed_precision: bool) -> dict[str, float]:
    parts = _reference_adam_memory(params, mixed_precision)
    parts["master_weights"] = 0
    parts["total"] = sum(v for k, v in parts.items() if k != "total")
    return parts


exercise(
    "01.3",
    title="Memory for Adam training",
    reference=lambda: _reference_adam_memory,
    stub=lambda: _not_done,
    wrong=[
        lambda: _halved,                                         # "bf16 halves it all"
        lambda: _no_master_in_mixed,                             # forgot the fp32 master copy
        lambda: _without("optimizer_state", 0.5),                # Adam with one state
        lambda: _without("gradients"),                           # forgot the gradients
        lambda: lambda p, m: {"total": 16 * p},                  # only the total
        lambda: lambda p, m: 16 * p,                             # a number, not a dict
    ],
)(_check_adam_memory)


# --------------------------------------------------------------------------- 01.4


def _reference_doubling(value_start: float, year_start: float, value_end: float, year_end: float) -> float:
    doublings = math.log2(value_end / value_start)
    return 12 * (year_end - year_start) / doublings


_DOUBLING_CASES = ((117e6, 2018, 175e9, 2020), (60e3, 1998, 60e6, 2012), (1.0, 2000, 8.0, 2003))


def _check_doubling(doubling_time_months: Any) -> None:
    expect_callable(doubling_time_months, "doubling_time_months")
    hints = {
        1 / 12: "that is in years; the question asks for months",
        1 / math.log(2): "you divided by the natural logarithm of the growth; the number of doublings is log2(end / start)",
        1 / math.log10(2): "you divided by log10 of the growth; the number of doublings is log2(end / start)",
        -1.0: "the sign is wrong: a value that grows doubles after a positive time; check the order of start and end",
    }
    for case in _DOUBLING_CASES:
        call = "doubling_time_months({:g}, {}, {:g}, {})".format(*case)
        got = _number(_call(doubling_time_months, "doubling_time_months", *case), call)
        expected = _reference_doubling(*case)
        if not math.isclose(got, expected, rel_tol=1e-4):
            hint = _ratio_hint(got, expected, hints) or (
                "a steady growth multiplies the value by the same factor every month: the number of doublings "
                "is log2(end / start), and the doubling time is the months elapsed divided by it")
            raise Hint(f"{call} gave {got:.4g} months, expected {expected:.4g}: {hint}")


exercise(
    "01.4",
    title="Doubling time of model size",
    reference=lambda: _reference_doubling,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda v0, y0, v1, y1: (y1 - y0) / math.log2(v1 / v0),                 # years
        lambda: lambda v0, y0, v1, y1: 12 * (y1 - y0) / math.log(v1 / v0),             # natural log
        lambda: lambda v0, y0, v1, y1: 12 * (y1 - y0) / math.log10(v1 / v0),           # log10
        lambda: lambda v0, y0, v1, y1: 12 * (y1 - y0) / (v1 / v0),                     # linear growth
        lambda: lambda v0, y0, v1, y1: 12 * (y0 - y1) / math.log2(v1 / v0),            # sign
        lambda: lambda v0, y0, v1, y1: (v1 / v0) ** (1 / (y1 - y0)),                   # growth per year
    ],
)(_check_doubling)


# --------------------------------------------------------------------------- 01.5 predict, measure, explain


def bytes_per_parameter(make_optimizer: Callable[[Any], torch.optim.Optimizer]) -> float:
    """Bytes of weights, gradients and optimizer state per parameter after one float32 training step
    of nn.Linear(256, 256), counted from the tensors themselves. The measurement of 01.5."""
    with torch.random.fork_rng(devices=[]):  # the layer's random weights do not come from the notebook's stream
        model = nn.Linear(256, 256)
        optimizer = make_optimizer(model.parameters())
        model(torch.ones(4, 256)).sum().backward()
        optimizer.step()
    params = list(model.parameters())
    tensors = params + [p.grad for p in params if p.grad is not None]
    tensors += [t for state in optimizer.state.values() for t in state.values() if isinstance(t, torch.Tensor)]
    return sum(t.numel() * t.element_size() for t in tensors) / sum(p.numel() for p in params)


def _momentum_bytes() -> float:
    return bytes_per_parameter(lambda params: torch.optim.SGD(params, lr=0.01, momentum=0.9))


def _adam_bytes() -> float:
    return bytes_per_parameter(lambda params: torch.optim.Adam(params, lr=0.01))


def _bytes_kind(value: float) -> str:
    return "a" if value < 6 else "b" if value < 14 else "c"


MOMENTUM_MEMORY = PredictMeasureExplain(
    predictions={
        "a": "4 bytes: plain SGD needs nothing but the weight, and momentum is just a number",
        "b": "12 bytes",
        "c": "16 bytes, like Adam",
    },
    explanations={
        "a": "the weight, its gradient and one velocity (a running sum of past gradients) per parameter, "
             "4 bytes each",
        "b": "the weight, its gradient and the previous step's weight, which momentum compares with",
        "c": "the weight and three gradients: this step's and the two before",
    },
    measure=_momentum_bytes,
    predicted=_bytes_kind,
    explained=lambda value: "a" if math.isclose(value, 12, rel_tol=0.01) else "none",
    what="the bytes per parameter that training nn.Linear(256, 256) with SGD and momentum holds",
    wrong_explanations={
        "b": "momentum's update (chapter 03) is v ← μ·v + g, p ← p − lr·v: no old weight appears in it. "
             "Look at what optimizer.state holds for one parameter",
        "c": "momentum keeps one number per parameter that sums all past gradients (v ← μ·v + g), not a list of "
             "them. Look at what optimizer.state holds for one parameter",
    },
    rel_tol=0.01,
    misreadings=(
        (lambda value, true: math.isclose(value, _adam_bytes(), rel_tol=0.01),
         "that is Adam's line; the question is about SGD with momentum"),
        (lambda value, true: math.isclose(value, true * 256 * 257, rel_tol=0.01),
         "that is the total of bytes; divide by the number of parameters"),
    ),
)


MOMENTUM_MEMORY.register(
    "01.5", "Predict, measure, explain: the memory of SGD with momentum", module=__name__,
    wrong_measurements=(
        lambda: _adam_bytes(),  # Adam's line
        lambda: 4.0,  # the prediction a, not a measurement
    ),
)
