"""Checks for chapter 04 (math): convolution, log-softmax, cross-entropy's gradient, GELU's derivative, gradients.

The stub cells in ``chapters/04_math.ipynb``::

    def conv2d_strided(image, kernel, bias, stride, padding):
        raise NotImplementedError  # TODO: loops over output pixels, zero padding, no flip
    check("04.1", conv2d_strided)

    def log_softmax_with_temperature(logits, temperature):
        raise NotImplementedError  # TODO: z/T − max − log Σ exp(z/T − max), along the last axis
    check("04.2", log_softmax_with_temperature)

    def cross_entropy_grad(logits, targets):
        raise NotImplementedError  # TODO: (softmax − one-hot) / B, without autograd
    check("04.3", cross_entropy_grad)

    def gelu_derivative(z):
        raise NotImplementedError  # TODO: Φ(z) + z·φ(z)
    check("04.4", gelu_derivative)

    def numerical_gradient(f, point, h=1e-4):
        raise NotImplementedError  # TODO: central differences, one coordinate at a time
    check("04.5", numerical_gradient)

    prediction = ...  # TODO: "a", "b" or "c", BEFORE running the measurement cell
    committed = prediction  # (the measurement cell's first line)
    measured = ...     # TODO: the step h with the smallest error, as the measurement cell printed it
    explanation = ...  # TODO: "a", "b" or "c"
    check("04.6", dict(committed=committed, prediction=prediction, measured=measured, explanation=explanation))

    diagonal = ...  # TODO: a 3 × 3 kernel that answers ╲ edges, bright side up and to the right
    check("04.7", diagonal)
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from labkit.course.checks.predict import PredictMeasureExplain
from labkit.course.exercises import Hint, close, exercise, expect_callable, expect_tensor, same_shape


def _not_done(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError  # what an untouched stub function does


def _matches(got: torch.Tensor, candidate: torch.Tensor, atol: float = 1e-4) -> bool:
    """Whether `got` equals a known wrong answer (same shape, finite, all values close)."""
    got, candidate = got.detach().double(), candidate.detach().double()
    return got.shape == candidate.shape and bool(torch.isfinite(got).all()) and torch.allclose(got, candidate, atol=atol)


def _as_tensor_result(value: Any, what: str) -> torch.Tensor:
    if value is None:
        raise Hint(f"{what} returned None: did you forget `return`?")
    return expect_tensor(value, what)


# --------------------------------------------------------------------------- 04.1


def _conv_reference(image: torch.Tensor, kernel: torch.Tensor, bias: float, stride: int = 1,
                    padding: int = 0) -> torch.Tensor:
    return F.conv2d(image[None, None], kernel[None, None], stride=stride, padding=padding)[0, 0] + bias


_CONV_CASES = [  # image shape, kernel shape, bias, stride, padding
    ((6, 6), (3, 3), 0.5, 1, 0),
    ((7, 5), (2, 3), -1.0, 1, 1),
    ((8, 8), (3, 3), 0.25, 2, 1),
    ((9, 7), (3, 2), 2.0, 3, 0),   # the last rows and columns do not fit a step of 3: dropped
    ((5, 6), (1, 1), -0.5, 2, 2),
]


def _out(size: int, k: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - k) // stride + 1


def _diagnose_conv_shape(got: tuple[int, ...], image: tuple[int, int], kernel: tuple[int, int],
                         stride: int, padding: int) -> str:
    (h, w), (kh, kw) = image, kernel
    expected = (_out(h, kh, stride, padding), _out(w, kw, stride, padding))
    guesses = [
        ((_out(h, kh, stride, padding) - 1, _out(w, kw, stride, padding) - 1),
         "one row and column short: the kernel fits at ⌊(H + 2P − kH) / S⌋ + 1 positions, mind the + 1"),
        ((_out(h, kh, stride, 0), _out(w, kw, stride, 0)),
         f"that is the size without padding: first surround the image with {padding} rows and columns of zeros "
         "(F.pad(image, (P, P, P, P)) does it)"),
        ((_out(h, kh, 1, padding), _out(w, kw, 1, padding)),
         f"that is the size for stride 1: the kernel should jump {stride} pixels, so output pixel i reads "
         "the patch whose top row is i·S"),
        ((h, w), "that is the image's own size: this is not 'same' padding; the output is "
                 "(⌊(H + 2P − kH) / S⌋ + 1, ⌊(W + 2P − kW) / S⌋ + 1)"),
    ]
    for shape, explanation in guesses:
        if got == shape and shape != expected:
            return explanation
    return "the output is (⌊(H + 2P − kH) / S⌋ + 1, ⌊(W + 2P − kW) / S⌋ + 1)"


def _check_conv2d_strided(conv2d_strided: Any) -> str | None:
    expect_callable(conv2d_strided, "conv2d_strided")
    generator = torch.Generator().manual_seed(4)
    note = None
    for image_shape, kernel_shape, bias, stride, padding in _CONV_CASES:
        image = torch.randn(*image_shape, generator=generator)
        kernel = torch.randn(*kernel_shape, generator=generator)
        what = (f"conv2d_strided(image {image_shape}, kernel {kernel_shape}, bias={bias}, "
                f"stride={stride}, padding={padding})")
        got = _as_tensor_result(conv2d_strided(image.clone(), kernel.clone(), bias, stride, padding), what)
        expected = _conv_reference(image, kernel, bias, stride, padding)
        if tuple(got.shape) != tuple(expected.shape):
            raise Hint(f"{what} has shape {tuple(got.shape)}, expected {tuple(expected.shape)}: "
                       + _diagnose_conv_shape(tuple(got.shape), image_shape, kernel_shape, stride, padding))
        if _matches(got, _conv_reference(image, kernel.flip(0, 1), bias, stride, padding)) and not _matches(got, expected):
            raise Hint(f"{what} flips the kernel: that is the mathematicians' convolution. PyTorch's conv2d "
                       "(cross-correlation) does not flip: out[i, j] = Σ x[i·S + u, j·S + v] · kernel[u, v] + bias")
        if _matches(got, expected - bias):
            raise Hint(f"{what} is off by exactly the bias {bias}: add `bias` to every output pixel")
        mean = (expected - bias) / kernel.numel() + bias
        if kernel.numel() > 1 and _matches(got, mean):
            raise Hint(f"{what} is the mean of patch × kernel; a convolution takes the sum: .sum(), not .mean()")
        note = close(got, expected, atol=1e-4, what=what)
    return note


def _reference_conv2d_strided(image: torch.Tensor, kernel: torch.Tensor, bias: float, stride: int,
                              padding: int) -> torch.Tensor:
    image = F.pad(image, (padding, padding, padding, padding))
    kh, kw = kernel.shape
    out = torch.zeros((image.shape[0] - kh) // stride + 1, (image.shape[1] - kw) // stride + 1)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            patch = image[i * stride:i * stride + kh, j * stride:j * stride + kw]
            out[i, j] = (patch * kernel).sum() + bias
    return out


exercise(
    "04.1",
    title="Convolution with stride and padding, by loops",
    reference=lambda: _reference_conv2d_strided,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda image, kernel, bias, s, p: _conv_reference(image, kernel.flip(0, 1), bias, s, p),  # flipped
        lambda: lambda image, kernel, bias, s, p: _conv_reference(image, kernel, 0.0, s, p),             # no bias
        lambda: lambda image, kernel, bias, s, p: _conv_reference(image, kernel, bias, s, p)[:-1, :-1],  # no + 1
        lambda: lambda image, kernel, bias, s, p: _conv_reference(image, kernel, bias, s, 0),            # no padding
        lambda: lambda image, kernel, bias, s, p: _conv_reference(image, kernel, bias, 1, p),            # no stride
        lambda: lambda image, kernel, bias, s, p: (_conv_reference(image, kernel, 0.0, s, p) / kernel.numel()
                                                   + bias),                                           # mean
    ],
)(_check_conv2d_strided)


# --------------------------------------------------------------------------- 04.2


def _check_log_softmax(log_softmax_with_temperature: Any) -> str | None:
    expect_callable(log_softmax_with_temperature, "log_softmax_with_temperature")
    generator = torch.Generator().manual_seed(4)
    batch = torch.randn(3, 5, generator=generator) * 2
    cases = [
        (torch.tensor([1.0, 2.0, 3.0]), 1.0),
        (torch.tensor([1.0, 2.0, 3.0]), 2.0),
        (torch.tensor([1.0, 2.0, 3.0]), 0.5),
        (batch, 1.0),
        (batch, 0.3),
        (torch.tensor([1000.0, 1001.0, 1002.0]), 1.0),   # e^1000 overflows float32
        (torch.tensor([0.0, -200.0, 1.0]), 1.0),         # e^-200 underflows to 0, and log(0) = -inf
        (torch.tensor([0.5, 2.0, 3.0]), 0.01),           # a tiny temperature: 3 / 0.01 = 300 overflows too
    ]
    note = None
    for logits, temperature in cases:
        shown = f"logits {logits.tolist() if logits.dim() == 1 else tuple(logits.shape)}"
        what = f"log_softmax_with_temperature({shown}, temperature={temperature})"
        got = _as_tensor_result(log_softmax_with_temperature(logits.clone(), temperature), what)
        expected = torch.log_softmax(logits / temperature, dim=-1)
        same_shape(got, tuple(expected.shape), what)
        if not torch.isfinite(got).all() and (logits / temperature).max() > 88:
            raise Hint(f"{what} contains nan or inf: e^z overflows float32 above z ≈ 88. Subtract the largest "
                       "value m (of each row) first: log softmax(z)ᵢ = zᵢ − m − log Σⱼ exp(zⱼ − m), "
                       "and every exponent is ≤ 0")
        if torch.isnan(got).any() or (got == math.inf).any():
            raise Hint(f"{what} contains nan or +inf; the answer is finite and ≤ 0 everywhere")
        if (got == -math.inf).any():
            raise Hint(f"{what} contains -inf: a probability underflowed to 0 and log(0) = -inf. Do not take the "
                       "log of a softmax; compute zᵢ − m − log Σⱼ exp(zⱼ − m) directly (the log-sum-exp trick)")
        if _matches(got, torch.log_softmax(logits * temperature, dim=-1)) and not _matches(got, expected):
            raise Hint(f"{what}: you multiplied by the temperature; divide instead, z / T, "
                       "so that a high temperature flattens the probabilities")
        if _matches(got, torch.log_softmax(logits, dim=-1)) and not _matches(got, expected):
            raise Hint(f"{what} ignores the temperature: divide the logits by it first")
        if _matches(got, torch.softmax(logits / temperature, dim=-1)):
            raise Hint(f"{what} returns probabilities; return their logarithms (all ≤ 0)")
        if logits.dim() == 2 and _matches(got, torch.log_softmax(logits / temperature, dim=0)) \
                and not _matches(got, expected):
            raise Hint(f"{what}: you normalised each column, but each row (one example's logits) should be; "
                       "take max and sum along the last axis (dim=-1, keepdim=True)")
        note = close(got, expected, atol=1e-5, what=what)
    return note


def _reference_log_softmax(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    z = logits / temperature
    z = z - z.max(dim=-1, keepdim=True).values
    return z - z.exp().sum(dim=-1, keepdim=True).log()


def _log_of_stable_softmax(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    z = logits / temperature
    e = (z - z.max(dim=-1, keepdim=True).values).exp()
    return (e / e.sum(dim=-1, keepdim=True)).log()


def _naive_log_softmax(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    z = logits / temperature
    return z - z.exp().sum(dim=-1, keepdim=True).log()


exercise(
    "04.2",
    title="Stable log-softmax with temperature",
    reference=lambda: _reference_log_softmax,
    stub=lambda: _not_done,
    wrong=[
        lambda: _naive_log_softmax,                                                # overflows
        lambda: _log_of_stable_softmax,                                            # log(0) = -inf
        lambda: lambda logits, temperature: _reference_log_softmax(logits * temperature, 1.0),
        lambda: lambda logits, temperature: _reference_log_softmax(logits, 1.0),
        lambda: lambda logits, temperature: torch.log_softmax(logits / temperature, dim=0),   # wrong axis
        lambda: lambda logits, temperature: torch.softmax(logits / temperature, dim=-1),      # not the log
    ],
)(_check_log_softmax)


# --------------------------------------------------------------------------- 04.3


def _ce_grad_reference(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = logits.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(logits, targets), logits)
    return grad


def _check_cross_entropy_grad(cross_entropy_grad: Any) -> str | None:
    expect_callable(cross_entropy_grad, "cross_entropy_grad")
    generator = torch.Generator().manual_seed(4)
    cases = [
        (torch.randn(1, 3, generator=generator), torch.tensor([2])),
        (torch.randn(4, 5, generator=generator), torch.tensor([0, 3, 3, 1])),
        (torch.randn(6, 10, generator=generator) * 50, torch.randint(0, 10, (6,), generator=generator)),  # confident
    ]
    note = None
    for logits, targets in cases:
        batch, classes = logits.shape
        what = f"cross_entropy_grad(logits {tuple(logits.shape)}, targets {targets.tolist()})"
        got = _as_tensor_result(cross_entropy_grad(logits.clone(), targets.clone()), what)
        expected = _ce_grad_reference(logits, targets)
        same_shape(got, (batch, classes), what)
        if not torch.isfinite(got).all():
            raise Hint(f"{what} contains nan or inf: these logits are as large as "
                       f"{logits.abs().max().item():.0f}; use a stable softmax (subtract the max, exercise 04.2)")
        one_hot = F.one_hot(targets, classes).to(logits.dtype)
        probs = torch.softmax(logits, dim=-1)
        if batch > 1 and _matches(got, probs - one_hot) and not _matches(got, expected):
            raise Hint(f"{what} is {batch} times too large: F.cross_entropy takes the mean over the batch, "
                       f"so each row of the gradient is divided by B = {batch}")
        if _matches(got, -expected) and not _matches(got, expected):
            raise Hint(f"{what} has the wrong sign: the gradient is softmax(z) − one-hot(y), so the true class "
                       "gets a negative entry (raising its logit lowers the loss)")
        if _matches(got, (torch.sigmoid(logits) - one_hot) / batch) and not _matches(got, expected):
            raise Hint(f"{what} used a sigmoid per class; cross-entropy over {classes} classes uses the softmax, "
                       "whose probabilities sum to 1 over the classes")
        if _matches(got, probs / batch):
            raise Hint(f"{what} is softmax(z) / B: subtract the one-hot vector of each target, "
                       "F.one_hot(targets, K), so the true class's entry becomes p − 1")
        note = close(got, expected, atol=1e-5, what=what)
    return note


def _reference_cross_entropy_grad(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    probs = torch.softmax(logits, dim=-1)
    one_hot = F.one_hot(targets, logits.shape[-1]).to(logits.dtype)
    return (probs - one_hot) / logits.shape[0]


def _naive_ce_grad(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    e = logits.exp()
    one_hot = F.one_hot(targets, logits.shape[-1]).to(logits.dtype)
    return (e / e.sum(dim=-1, keepdim=True) - one_hot) / logits.shape[0]


exercise(
    "04.3",
    title="Cross-entropy gradient: softmax − one-hot",
    reference=lambda: _reference_cross_entropy_grad,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda logits, targets: _reference_cross_entropy_grad(logits, targets) * logits.shape[0],  # no mean
        lambda: lambda logits, targets: -_reference_cross_entropy_grad(logits, targets),                  # sign
        lambda: lambda logits, targets: (torch.sigmoid(logits)
                                         - F.one_hot(targets, logits.shape[-1]).float()) / logits.shape[0],
        lambda: _naive_ce_grad,                                                                           # overflows
        lambda: lambda logits, targets: torch.softmax(logits, dim=-1) / logits.shape[0],                  # no one-hot
    ],
)(_check_cross_entropy_grad)


# --------------------------------------------------------------------------- 04.4


_SQRT_2 = math.sqrt(2.0)
_SQRT_2PI = math.sqrt(2.0 * math.pi)


def _gelu_tanh_derivative(z: torch.Tensor) -> torch.Tensor:
    z = z.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.gelu(z, approximate="tanh").sum(), z)
    return grad


def _check_gelu_derivative(gelu_derivative: Any) -> str | None:
    expect_callable(gelu_derivative, "gelu_derivative")
    z = torch.linspace(-5, 5, 201)
    what = "gelu_derivative(torch.linspace(-5, 5, 201))"
    got = _as_tensor_result(gelu_derivative(z.clone()), what)
    same_shape(got, (201,), what)
    x = z.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(F.gelu(x).sum(), x)
    cdf = 0.5 * (1 + torch.erf(z / _SQRT_2))
    pdf = torch.exp(-z**2 / 2) / _SQRT_2PI
    if _matches(got, cdf):
        raise Hint(f"{what} is Φ(z) alone: GELU(z) = z·Φ(z) is a product, so its derivative is "
                   "Φ(z) + z·φ(z) (product rule), with φ(z) = exp(−z²/2) / √(2π)")
    if _matches(got, z * pdf):
        raise Hint(f"{what} is z·φ(z) alone: the product rule gives Φ(z) + z·φ(z)")
    if _matches(got, _gelu_tanh_derivative(z), atol=1e-6) and not _matches(got, expected, atol=1e-6):
        raise Hint(f"{what} is the derivative of GELU's tanh approximation; the exact GELU uses "
                   "Φ(z) = ½(1 + erf(z / √2)): use torch.erf")
    return close(got, expected, atol=1e-5, what=what)


def _reference_gelu_derivative(z: torch.Tensor) -> torch.Tensor:
    cdf = 0.5 * (1 + torch.erf(z / _SQRT_2))
    pdf = torch.exp(-z**2 / 2) / _SQRT_2PI
    return cdf + z * pdf


exercise(
    "04.4",
    title="The derivative of GELU",
    reference=lambda: _reference_gelu_derivative,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda z: 0.5 * (1 + torch.erf(z / _SQRT_2)),                        # Φ only
        lambda: _gelu_tanh_derivative,                                                # the approximation
        lambda: lambda z: torch.sigmoid(1.702 * z) * (1 + 1.702 * z * (1 - torch.sigmoid(1.702 * z))),  # sigmoid approx
        lambda: lambda z: (z > 0).float(),                                            # ReLU's derivative
    ],
)(_check_gelu_derivative)


# --------------------------------------------------------------------------- 04.5


# (description, f(x, y), point): f maps tensors x, y to a tensor z, as labkit.surfaces does
_SURFACES: list[tuple[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor], tuple[float, float]]] = [
    ("the bowl x² + 3y²", lambda x, y: x**2 + 3 * y**2, (1.0, -2.0)),
    ("the plane 2x − y", lambda x, y: 2 * x - y, (0.3, -0.7)),
    ("Rosenbrock (1 − x)² + 100(y − x²)²", lambda x, y: (1 - x) ** 2 + 100 * (y - x**2) ** 2, (-1.0, 0.5)),
    ("sin(x)·exp(y)", lambda x, y: torch.sin(x) * torch.exp(y), (0.7, 0.2)),
]


def _gradient(f: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], point: torch.Tensor) -> torch.Tensor:
    p = point.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(p[0], p[1]), p)
    return grad


def _check_numerical_gradient(numerical_gradient: Any) -> str | None:
    expect_callable(numerical_gradient, "numerical_gradient")
    note = None
    for description, f, (x0, y0) in _SURFACES:
        point = torch.tensor([x0, y0], dtype=torch.float64)
        what = f"numerical_gradient(f, point, h=1e-4) on {description} at ({x0}, {y0})"
        got = _as_tensor_result(numerical_gradient(f, point.clone(), 1e-4), what)
        same_shape(got, (2,), what)
        got = got.detach().double()
        expected = _gradient(f, point)
        if not torch.isfinite(got).all():
            raise Hint(f"{what} contains nan or inf")
        if _matches(got, 2 * expected, atol=1e-3) and not _matches(got, expected, atol=1e-3):
            raise Hint(f"{what} is twice the gradient: the two points x + h and x − h are 2h apart, "
                       "so divide their difference by 2h")
        if _matches(got, expected.flip(0), atol=1e-3) and not _matches(got, expected, atol=1e-3):
            raise Hint(f"{what} has ∂f/∂x and ∂f/∂y swapped: entry 0 is the change of f when x (entry 0) moves")
        if _matches(got, -expected, atol=1e-3) and not _matches(got, expected, atol=1e-3):
            raise Hint(f"{what} has the wrong sign: (f(x + h) − f(x − h)) / 2h, the later point first")
        if _matches(got, expected, atol=0.5) and not _matches(got, expected, atol=1e-5 * (1 + expected.abs().max().item())):
            forward = torch.stack([(f(point[0] + 1e-4, point[1]) - f(point[0], point[1])) / 1e-4,
                                   (f(point[0], point[1] + 1e-4) - f(point[0], point[1])) / 1e-4])
            if _matches(got, forward, atol=1e-7):
                raise Hint(f"{what} is a one-sided difference (f(x + h) − f(x)) / h, off by "
                           f"{(got - expected).abs().max().item():.2g}: the central difference "
                           "(f(x + h) − f(x − h)) / 2h cancels the error's first term and is far more accurate")
            raise Hint(f"{what} is close but off by {(got - expected).abs().max().item():.2g}: compute in the "
                       "point's float64 (point.clone(), then change one entry), not in new float32 tensors")
        note = close(got, expected, atol=1e-5, rtol=1e-5, what=what)
    return note


def _reference_numerical_gradient(f: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], point: torch.Tensor,
                                  h: float = 1e-4) -> torch.Tensor:
    gradient = torch.zeros_like(point)
    for i in range(len(point)):
        step = torch.zeros_like(point)
        step[i] = h
        plus, minus = point + step, point - step
        gradient[i] = (f(plus[0], plus[1]) - f(minus[0], minus[1])) / (2 * h)
    return gradient


def _forward_difference(f: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], point: torch.Tensor,
                        h: float = 1e-4) -> torch.Tensor:
    x, y = point[0], point[1]
    return torch.stack([(f(x + h, y) - f(x, y)) / h, (f(x, y + h) - f(x, y)) / h])


def _float32_difference(f: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], point: torch.Tensor,
                        h: float = 1e-4) -> torch.Tensor:
    x, y = torch.tensor(point[0].item()), torch.tensor(point[1].item())  # new float32 tensors: 7 digits only
    return torch.stack([(f(x + h, y) - f(x - h, y)) / (2 * h), (f(x, y + h) - f(x, y - h)) / (2 * h)])


exercise(
    "04.5",
    title="A numerical gradient (gradient check)",
    reference=lambda: _reference_numerical_gradient,
    stub=lambda: _not_done,
    wrong=[
        lambda: _forward_difference,
        lambda: lambda f, point, h=1e-4: 2 * _reference_numerical_gradient(f, point, h),      # divided by h
        lambda: lambda f, point, h=1e-4: _reference_numerical_gradient(f, point, h).flip(0),  # swapped
        lambda: lambda f, point, h=1e-4: -_reference_numerical_gradient(f, point, h),         # sign
        lambda: _float32_difference,
    ],
)(_check_numerical_gradient)


# --------------------------------------------------------------------------- 04.6 predict, measure, explain

STEPS = [10.0 ** -k for k in range(1, 8)]  # h = 0.1, 0.01, ..., 1e-7


def central_difference_errors(dtype: torch.dtype = torch.float32) -> dict[float, float]:
    """|(sin(1 + h) − sin(1 − h)) / 2h − cos(1)| for each h of STEPS, computed in `dtype`.

    The measurement of exercise 04.6 (chapter 04's measurement cell writes the same loop out)."""
    x = torch.tensor(1.0, dtype=dtype)
    return {h: abs(((torch.sin(x + h) - torch.sin(x - h)) / (2 * h)).item() - math.cos(1.0)) for h in STEPS}


def _best_step() -> float:
    errors = central_difference_errors()
    return min(errors, key=errors.__getitem__)


def _smallest_error() -> float:
    return min(central_difference_errors().values())


def _step_kind(h: float) -> str:
    return "a" if h <= min(STEPS) else "c" if h >= max(STEPS) else "b"


FINITE_STEP = PredictMeasureExplain(
    predictions={
        "a": "the smallest, h = 1e-7: the smaller the step, the closer the estimate comes to the derivative",
        "b": "one in the middle",
        "c": "the largest, h = 0.1",
    },
    explanations={
        "a": "float32 cannot hold a number as small as 1e-7, so h becomes 0",
        "b": "two errors trade off: the Taylor remainder shrinks like h², but sin(1 + h) and sin(1 − h) are each "
             "rounded to about 7 significant digits, and dividing their difference by 2h magnifies that rounding like 1/h",
        "c": "the central difference's Taylor error grows as h shrinks",
    },
    measure=_best_step,
    predicted=_step_kind,
    explained=lambda h: "b" if _step_kind(h) == "b" else "none",
    what="the step h whose estimate is closest to cos(1)",
    wrong_explanations={
        "a": "float32 holds numbers down to about 1e-38 (1e-7 is no problem). What float32 loses is digits: about 7 "
             "significant ones per number. Count how many of them sin(1 + h) − sin(1 − h) keeps when h is tiny",
        "c": "Taylor's expansion gives the central difference an error of about h²·|f‴(x)|/6: it shrinks as h does. "
             "Something else grows",
    },
    misreadings=(
        (lambda value, true: value > 0 and math.isclose(value, _smallest_error(), rel_tol=0.02),
         "that is the smallest error; `measured` is the step h that gave it"),
    ),
)


FINITE_STEP.register(
    "04.6", "Predict, measure, explain: the step of a numerical gradient", module=__name__,
    wrong_measurements=(
        lambda: 1e-7,  # the smallest h, not measured
        lambda: _smallest_error(),  # the error, not the step
    ),
)


# --------------------------------------------------------------------------- 04.7 a ╲ edge detector

EDGE_SIZE = 12  # the test pictures: EDGE_SIZE × EDGE_SIZE, 0 (dark) and 1 (bright)


def edge_pictures(size: int = EDGE_SIZE) -> dict[str, torch.Tensor]:
    """Step edges of contrast 1, each (size, size): both diagonals, each with its bright side on
    either side, and a vertical and a horizontal edge. Rows count down, columns right, so j > i is
    the part above and to the right of the ╲ diagonal."""
    i, j = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return {
        "╲, bright above": (j > i).float(), "╲, bright below": (j < i).float(),
        "╱, bright above": (i + j < size - 1).float(), "╱, bright below": (i + j > size - 1).float(),
        "vertical, bright right": (j >= size // 2).float(), "horizontal, bright above": (i < size // 2).float(),
    }


def edge_responses(kernel: torch.Tensor) -> dict[str, float]:
    """The largest response of ``kernel`` (3, 3) to each picture of ``edge_pictures`` (no padding:
    every window lies inside the picture), and to the ╱ edges the largest in size, either sign."""
    responses = {name: F.conv2d(picture[None, None], kernel[None, None].float())[0, 0]
                 for name, picture in edge_pictures().items()}
    largest = {name: r.max().item() for name, r in responses.items()}
    largest["╱, either sign"] = max(responses[n].abs().max().item() for n in ("╱, bright above", "╱, bright below"))
    return largest


def _check_diagonal(diagonal: Any) -> str:
    if diagonal is Ellipsis or diagonal is None:
        raise Hint("replace ... with a 3 × 3 kernel, e.g. torch.tensor([[...], [...], [...]]): build it in the kernel "
                   "explorer (section 2) first and watch its map")
    try:
        kernel = torch.as_tensor(diagonal, dtype=torch.float32) if not isinstance(diagonal, torch.Tensor) else diagonal
    except (TypeError, ValueError):
        raise Hint(f"diagonal should be a 3 × 3 tensor (or nested lists of numbers), got {type(diagonal).__name__}") from None
    if tuple(kernel.shape) != (3, 3):
        raise Hint(f"diagonal should have shape (3, 3), got {tuple(kernel.shape)}")
    kernel = kernel.detach().float()
    if not torch.isfinite(kernel).all():
        raise Hint("diagonal holds inf or NaN")
    scale = kernel.abs().max().item()
    if scale == 0:
        raise Hint("all nine numbers are 0: the map is 0 everywhere")
    total = kernel.sum().item()
    if abs(total) > 1e-6 * scale:
        raise Hint(f"its nine numbers sum to {total:g}: on a flat area of brightness x it answers {total:g}·x instead of "
                   "0, so bright surfaces light up like edges. An edge kernel's numbers sum to 0 (Sobel's do)")
    r = edge_responses(kernel)
    peak = r["╲, bright above"]
    if peak <= 0:
        if r["╲, bright below"] > 0:
            raise Hint("it answers ╲ edges whose bright side is below and to the left: the other polarity. "
                       "Multiply all nine numbers by −1")
        if r["╱, either sign"] > 0:
            raise Hint("it answers ╱ edges, the other diagonal, and gives no positive response anywhere on a ╲ edge "
                       "whose bright side is up and to the right")
        raise Hint("it gives no positive response anywhere on a ╲ edge whose bright side is up and to the right")
    if r["╱, either sign"] > 0.25 * peak:
        share = r["╱, either sign"] / peak
        raise Hint(f"it answers a ╱ edge {share:.0%} as strongly as a ╲ edge: it should tell the two diagonals apart "
                   "(at most 25%). Sobel x answers both alike: it compares left with right, and both diagonals have a "
                   "dark left and a bright right. Compare the two corners across the ╲ line instead: up-right against "
                   "down-left")
    if r["╲, bright below"] > 0.25 * peak:
        raise Hint(f"it also answers the ╲ edge of the other polarity ({r['╲, bright below'] / peak:.0%} as strongly): "
                   "the bright side up and to the right should count, the other side against")
    return (f"strongest on ╲ edges ({peak:g}); ╱ edges {r['╱, either sign'] / peak:.0%} of that, "
            f"a vertical edge (bright right) {r['vertical, bright right'] / peak:.0%}, a horizontal one (bright above) "
            f"{r['horizontal, bright above'] / peak:.0%}: the up-right direction has a right and an up half")


_DIAGONAL_SOBEL = [[0.0, 1.0, 2.0], [-1.0, 0.0, 1.0], [-2.0, -1.0, 0.0]]  # bright up-right → positive

exercise(
    "04.7",
    title="A kernel that finds ╲ edges",
    reference=lambda: torch.tensor(_DIAGONAL_SOBEL),
    stub=lambda: ...,
    wrong=[
        lambda: torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]),  # Sobel x: both diagonals
        lambda: -torch.tensor(_DIAGONAL_SOBEL),                                       # the other polarity
        lambda: torch.tensor(_DIAGONAL_SOBEL).flip(1),                                # the ╱ detector
        lambda: torch.tensor(_DIAGONAL_SOBEL) + torch.eye(3)[1:2].T @ torch.eye(3)[1:2],  # sums to 1 (emboss-like)
        lambda: torch.zeros(3, 3),
        lambda: torch.tensor(_DIAGONAL_SOBEL)[:2],                                    # not 3 × 3
    ],
)(_check_diagonal)
