"""Checks for chapter 11a (the future, part 1: scale, efficiency and data quality).

The stub cells in ``chapters/11a_scale_and_efficiency.ipynb``::

    def power_law_fit(compute, loss):
        raise NotImplementedError  # TODO: (a, b) with loss ≈ a · compute^b, least squares in log space
    check("11.1", power_law_fit)

    def chinchilla_size(flops, tokens_per_parameter=20):
        raise NotImplementedError  # TODO: (N, D) with 6·N·D = flops and D = tokens_per_parameter · N
    check("11.2", chinchilla_size)

    def noisy_labels(labels, rate, num_classes, generator):
        raise NotImplementedError  # TODO: a copy with exactly round(rate · n) labels changed to another class
    check("11.3", noisy_labels)

    prediction = ...  # TODO: "a", "b" or "c": decide BEFORE you run the next cell
    committed = prediction  # the measurement cell's first line
    measured = ...     # TODO: the test accuracy after training on systematically wrong labels, printed above
    explanation = ...  # TODO: "a", "b" or "c"
    check("11.7", dict(committed=committed, prediction=prediction, measured=measured, explanation=explanation))

Notebook 11b has 11.4–11.6. Every check runs in well under a second and leaves the notebook's
random stream alone (its inputs come from private generators); 11.7's trains the chapter's small
network once (about a second, then cached).
"""
from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from labkit import scaling
from labkit.course.checks.predict import PERCENTAGE, PredictMeasureExplain
from labkit.course.exercises import Hint, exercise, expect_callable, expect_number


def _not_done(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError  # what an untouched stub function does


def _pair(value: Any, what: str) -> tuple[float, float]:
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise Hint(f"{what} should return a pair of numbers, got {type(value).__name__} {value!r:.60}")
    return expect_number(value[0], f"{what}[0]"), expect_number(value[1], f"{what}[1]")


# --------------------------------------------------------------------------- 11.1 power-law fit

def _fit_cases() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(11)                              # a private stream: the notebook's stays put
    cases = []
    for a, b, low, high in ((9.0, -0.08, 1e9, 1e12), (3.2, -0.05, 1e12, 1e18), (50.0, -0.3, 1.0, 1e4)):
        x = np.logspace(math.log10(low), math.log10(high), 10)
        cases.append((x, a * x ** b * np.exp(rng.normal(0, 0.02, x.size))))
    return cases


def _reference_fit(compute: Any, loss: Any) -> tuple[float, float]:
    law = scaling.fit_power_law(compute, loss)
    return law.coefficient, law.exponent


def _check_fit(power_law_fit: Callable) -> str:
    expect_callable(power_law_fit, "power_law_fit")
    for x, y in _fit_cases():
        a, b = _pair(power_law_fit(x.copy(), y.copy()), "power_law_fit(compute, loss)")
        slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
        where = f"for computes {x[0]:.0e} … {x[-1]:.0e}"
        if math.isclose(b, -slope, rel_tol=1e-6):
            raise Hint(f"{where} your exponent has the wrong sign: a falling loss has a negative exponent b")
        if not math.isclose(b, slope, rel_tol=1e-6, abs_tol=1e-9):
            if math.isclose(b, slope, rel_tol=0.3):
                raise Hint(f"{where} your exponent {b:.4f} is near numpy's {slope:.4f} but not equal: fit a straight "
                           "line to (log compute, log loss) by least squares, not to the raw values, and use every point")
            raise Hint(f"{where} your exponent {b:.4f} is not the least-squares slope of log loss on log compute "
                       f"({slope:.4f}): slope = cov(log C, log L) / var(log C)")
        if math.isclose(a, intercept, rel_tol=1e-6):
            raise Hint(f"{where} a is the intercept of the log-log line ({intercept:.4f}); the coefficient is e^intercept")
        if not math.isclose(a, math.exp(intercept), rel_tol=1e-6):
            raise Hint(f"{where} your coefficient {a:.4g} is not e^intercept = {math.exp(intercept):.4g}: "
                       "intercept = mean(log L) − b · mean(log C)")
    return "the same (a, b) as numpy.polyfit in log space for 3 sweeps"


def _linear_space_fit(compute: Any, loss: Any) -> tuple[float, float]:
    slope, intercept = np.polyfit(np.asarray(compute), np.asarray(loss), 1)
    return float(intercept), float(slope)


def _two_point_fit(compute: Any, loss: Any) -> tuple[float, float]:
    x, y = np.log(np.asarray(compute)), np.log(np.asarray(loss))
    b = (y[-1] - y[0]) / (x[-1] - x[0])
    return float(math.exp(y[0] - b * x[0])), float(b)


exercise(
    "11.1",
    title="A power law fitted by hand",
    reference=lambda: _reference_fit,
    stub=lambda: _not_done,
    wrong=[
        lambda: _linear_space_fit,
        lambda: _two_point_fit,
        lambda: lambda c, lo: (_reference_fit(c, lo)[0], -_reference_fit(c, lo)[1]),
        lambda: lambda c, lo: (math.log(_reference_fit(c, lo)[0]), _reference_fit(c, lo)[1]),
    ],
)(_check_fit)


# --------------------------------------------------------------------------- 11.2 Chinchilla's rule

_BUDGETS = [(5.76e23, 20.0), (1e18, 20.0), (3.0e15, 10.0), (1e21, 100.0)]


def _check_chinchilla(chinchilla_size: Callable) -> str:
    expect_callable(chinchilla_size, "chinchilla_size")
    for flops, ratio in _BUDGETS:
        n, d = _pair(chinchilla_size(flops, ratio), f"chinchilla_size({flops:.0e}, {ratio:g})")
        want_n, want_d = scaling.chinchilla_optimal(flops, ratio)
        where = f"for {flops:.2e} FLOPs and {ratio:g} tokens per parameter"
        if math.isclose(n, want_d, rel_tol=1e-6) and math.isclose(d, want_n, rel_tol=1e-6):
            raise Hint(f"{where} you return (D, N): return the parameters first")
        if n > 0 and math.isclose(6 * n * d, flops, rel_tol=1e-6) and not math.isclose(d, ratio * n, rel_tol=1e-6):
            raise Hint(f"{where} 6·N·D equals the budget but D / N = {d / n:.3g}, not {ratio:g}")
        if math.isclose(n, math.sqrt(flops / ratio), rel_tol=1e-6):
            raise Hint(f"{where} you left out the 6 of C = 6·N·D: N = √(C / (6 · tokens_per_parameter))")
        if not (math.isclose(n, want_n, rel_tol=1e-6) and math.isclose(d, want_d, rel_tol=1e-6)):
            raise Hint(f"{where} you give N = {n:.3g}, D = {d:.3g}; the budget wants 6·N·D = C with D = "
                       f"{ratio:g}·N, so C = 6·{ratio:g}·N²: solve for N")
    n, d = scaling.chinchilla_optimal(*_BUDGETS[0])
    return f"Chinchilla's own budget gives N = {n / 1e9:.0f}B parameters and D = {d / 1e12:.2f}T tokens"


exercise(
    "11.2",
    title="Chinchilla's rule of thumb, solved",
    reference=lambda: lambda flops, ratio=20.0: scaling.chinchilla_optimal(flops, ratio),
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda flops, ratio=20.0: scaling.chinchilla_optimal(flops, ratio)[::-1],
        lambda: lambda flops, ratio=20.0: (math.sqrt(flops / ratio), ratio * math.sqrt(flops / ratio)),
        lambda: lambda flops, ratio=20.0: (math.sqrt(flops / 6), math.sqrt(flops / 6)),
        lambda: lambda flops, ratio=20.0: (flops / (6 * ratio), ratio * flops / (6 * ratio)),
    ],
)(_check_chinchilla)


# --------------------------------------------------------------------------- 11.3 label noise

_NOISE_CASES = [(1000, 10, 0.3), (257, 2, 0.5), (500, 10, 0.0), (64, 4, 1.0)]


def _reference_noisy_labels(labels: torch.Tensor, rate: float, num_classes: int,
                            generator: torch.Generator) -> torch.Tensor:
    noisy = labels.clone()
    k = round(rate * len(labels))
    chosen = torch.randperm(len(labels), generator=generator)[:k]               # which labels to corrupt
    shift = torch.randint(1, num_classes, (k,), generator=generator)           # never 0: always another class
    noisy[chosen] = (labels[chosen] + shift) % num_classes
    return noisy


def _check_noisy_labels(noisy_labels: Callable) -> str:
    expect_callable(noisy_labels, "noisy_labels")
    for seed, (n, classes, rate) in enumerate(_NOISE_CASES):
        labels = torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(seed))
        before = labels.clone()
        got = noisy_labels(labels, rate, classes, torch.Generator().manual_seed(100 + seed))
        where = f"for {n} labels of {classes} classes at rate {rate:g}"
        if not isinstance(got, torch.Tensor) or got.shape != labels.shape:
            raise Hint(f"{where} return a tensor of the labels' shape ({n},), got {type(got).__name__}")
        if not torch.equal(labels, before):
            raise Hint(f"{where} you changed the labels passed in: corrupt a copy (labels.clone())")
        if got.min() < 0 or got.max() >= classes:
            raise Hint(f"{where} some labels are outside 0 … {classes - 1}")
        changed = int((got != labels).sum())
        if changed != round(rate * n):
            raise Hint(f"{where} {changed} labels differ from the originals; round(rate · n) = {round(rate * n)} should. "
                       "A label drawn at random may land on its own class: draw among the *other* classes")
        again = noisy_labels(labels, rate, classes, torch.Generator().manual_seed(100 + seed))
        if not torch.equal(got, again):
            raise Hint(f"{where} two calls with generators seeded alike gave different labels: draw every random "
                       "number from `generator`")
    if True:  # the new classes are spread over the others, not always the next one
        labels = torch.arange(10).repeat(100)
        got = noisy_labels(labels, 0.9, 10, torch.Generator().manual_seed(5))
        counts = torch.bincount(got[got != labels], minlength=10)
        if counts.min() < 40:
            raise Hint("the new labels are not spread over the other classes: draw each new class at random")
    return f"exactly round(rate · n) labels moved to another class in {len(_NOISE_CASES)} cases, reproducibly"


def _uniform_relabel(labels: torch.Tensor, rate: float, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """Wrong: a relabelled example may keep its class, so fewer than rate · n labels change."""
    noisy = labels.clone()
    chosen = torch.randperm(len(labels), generator=generator)[:round(rate * len(labels))]
    noisy[chosen] = torch.randint(0, num_classes, (len(chosen),), generator=generator)
    return noisy


_CALLS = itertools.count(1)


def _global_stream(labels: torch.Tensor, rate: float, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """Wrong: ignores the generator (each call draws from a stream of its own)."""
    return _reference_noisy_labels(labels, rate, num_classes, torch.Generator().manual_seed(next(_CALLS)))


def _in_place(labels: torch.Tensor, rate: float, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    noisy = _reference_noisy_labels(labels, rate, num_classes, generator)
    labels.copy_(noisy)
    return labels


exercise(
    "11.3",
    title="Label noise at a given rate",
    reference=lambda: _reference_noisy_labels,
    stub=lambda: _not_done,
    wrong=[
        lambda: _uniform_relabel,
        lambda: _in_place,
        lambda: _global_stream,
        lambda: lambda labels, rate, c, g: (labels + 1) % c if rate > 0 else labels.clone(),
        lambda: lambda labels, rate, c, g: _reference_noisy_labels(labels, rate / 2, c, g),
    ],
)(_check_noisy_labels)


# --------------------------------------------------------------------------- 11.7 systematic label noise


@functools.cache
def systematic_noise(rate: float = 0.6) -> dict[str, float]:
    """Section 3.1's network (784 → 128 → 10, seeded 0) trained 2 epochs on the MNIST training images
    whose labels were moved, for a random ``rate`` of them (a generator seeded 0), to the NEXT digit
    (d → d + 1 mod 10): its test accuracy ("right") and how often it answers the next digit ("next").
    As the measurement cell of 11.7 computes it; leaves the notebook's random stream alone."""
    from torch import nn
    from torch.utils.data import TensorDataset

    from labkit.data import load_images
    from labkit.seed import forked_rngs
    from labkit.training import fit

    (x_train, y_train), (x_test, y_test) = (load_images("mnist", split) for split in ("train", "test"))
    x_train, x_test = (x.float().div(255).flatten(1) for x in (x_train, x_test))
    labels = y_train.clone()
    chosen = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))[: round(rate * len(labels))]
    labels[chosen] = (labels[chosen] + 1) % 10
    with forked_rngs():  # fit(seed=0) reseeds Python's, NumPy's and PyTorch's generators: put them back after
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
        fit(model, TensorDataset(x_train, labels), epochs=2, lr=1e-3, batch_size=64, seed=0, verbose=False,
            device="cpu")
    with torch.no_grad():
        predicted = model(x_test).argmax(1)
    return {"right": (predicted == y_test).float().mean().item(),
            "next": (predicted == (y_test + 1) % 10).float().mean().item()}


def _noise_kind(accuracy: float) -> str:
    return "a" if accuracy > 0.8 else "c" if accuracy < 0.5 else "b"


SYSTEMATIC_NOISE = PredictMeasureExplain(
    predictions={
        "a": "above 80%, as with the random wrong labels of section 3.1: the noise averages out",
        "b": "between 50% and 80%",
        "c": "below 50%",
    },
    explanations={
        "a": "moved to the same wrong class every time, the next digit is the most frequent label of every digit: "
             "a consistent error is a pattern like any other, and the network learns it (look at how often it "
             "answered the next digit)",
        "b": "60% of the labels are wrong either way, so the network is as confused as in section 3.1",
        "c": "the network notices that the labels are shifted and learns to ignore them",
    },
    measure=lambda: systematic_noise()["right"],
    predicted=_noise_kind,
    explained=lambda accuracy: "a" if systematic_noise()["next"] > accuracy else "none",
    what="the test accuracy of the network trained on systematically wrong labels",
    wrong_explanations={
        "b": "section 3.1 had 60% wrong labels too and lost a few points; here the loss is far larger, so the "
             "number of wrong labels is not what matters. Look at *which* wrong answers the network gives",
        "c": "nothing in training can tell a shifted label from a true one: the loss rewards agreeing with the "
             "labels. Look at how often the network answered the next digit",
    },
    misreadings=(
        (lambda value, true: math.isclose(value, systematic_noise()["next"], rel_tol=0.005),
         "that is how often it answered the *next* digit; `measured` is how often it answered the right one"),
        PERCENTAGE,
    ),
    rel_tol=0.005,
)

SYSTEMATIC_NOISE.register(
    "11.7", "Predict, measure, explain: wrong labels that agree", module=__name__,
    wrong_measurements=(lambda: systematic_noise()["next"], lambda: 100 * systematic_noise()["right"]),
)
