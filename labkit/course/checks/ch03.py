"""Checks for chapter 03 (core algorithms): a backward pass, a gradient by hand, two optimizer steps,
a stability limit, a predict-measure-explain, and settings that cross Rosenbrock's valley.

The stub cells in ``chapters/03_algorithms.ipynb``::

    def silu(v: Value) -> Value:
        raise NotImplementedError  # TODO: one node, v * sigmoid(v), with its own _backward
    check("03.1", silu)

    def grad_W1(x, y, W1, b1, W2, b2):
        raise NotImplementedError  # TODO: dL/dW1 for L = mean((relu(x @ W1 + b1) @ W2 + b2 - y) ** 2)
    check("03.2", grad_W1)

    def nesterov_step(p, grad, velocity, lr, momentum):
        raise NotImplementedError  # TODO: returns (new_p, new_velocity)
    check("03.3", nesterov_step)

    def adamw_step(p, grad, m, v, t, lr, betas, eps, weight_decay):
        raise NotImplementedError  # TODO: returns (new_p, new_m, new_v)
    check("03.4", adamw_step)

    def largest_stable_lr(a, b):
        raise NotImplementedError  # TODO: the largest lr for which GD converges on a·x² + b·y²
    check("03.5", largest_stable_lr)

    prediction = ...  # TODO: "a", "b" or "c", BEFORE running the measurement cell
    committed = prediction  # (the measurement cell's first line)
    measured = ...     # TODO: Adam's ratio, as the measurement cell printed it
    explanation = ...  # TODO: "a", "b" or "c"
    check("03.6", dict(committed=committed, prediction=prediction, measured=measured, explanation=explanation))

    rosenbrock_lr = ...        # TODO: the momentum path's learning rate (the widget's "lr (GD, mom.)")
    rosenbrock_momentum = ...  # TODO: its momentum μ; both found with the race widget (rosenbrock, 300 steps)
    check("03.7", dict(lr=rosenbrock_lr, momentum=rosenbrock_momentum))

Every check runs the learner's code on fresh numbers from its own random generator (the
notebook's random stream is untouched) and compares with torch.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Real
from typing import Any

import torch

from labkit.autograd import Value
from labkit.course.checks.predict import PredictMeasureExplain
from labkit.course.exercises import Hint, close, exercise, expect_callable, expect_tensor, same_shape


def _not_done(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError  # what an untouched stub function does


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _pair(result: Any, names: tuple[str, ...], function: str) -> tuple[torch.Tensor, ...]:
    """The learner's returned tuple, each part a tensor; a Hint naming what was expected otherwise."""
    wanted = "(" + ", ".join(names) + ")"
    if not isinstance(result, (tuple, list)) or len(result) != len(names):
        got = f"a {type(result).__name__}" if not isinstance(result, (tuple, list)) else f"{len(result)} values"
        raise Hint(f"{function} should return {len(names)} tensors {wanted}, got {got}; "
                   f"end with `return {', '.join(names)}`")
    return tuple(expect_tensor(value, f"{name} returned by {function}") for value, name in zip(result, names))


# --------------------------------------------------------------------------- 03.1


def _silu_reference_numbers(x: float) -> tuple[float, float]:
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = torch.nn.functional.silu(t)
    (grad,) = torch.autograd.grad(y, t)
    return y.item(), grad.item()


def _expect_node(out: Any, v: Value) -> None:
    if not all(hasattr(out, name) for name in ("data", "grad", "_prev", "_backward")):
        raise Hint(f"silu(v) should return a new Value (the output node), got {type(out).__name__} {out!r:.60}")
    if tuple(out._prev) != (v,):
        raise Hint("build ONE node whose only input is v: `out = Value(..., (v,), 'silu')`, then give it its own "
                   "`_backward`. (Composing v * v.sigmoid() gives the right numbers, but the exercise is to write "
                   "the backward rule yourself.)")


def _check_silu(silu: Any) -> str:
    expect_callable(silu, "silu")
    for x in (-3.0, -0.5, 0.0, 0.7, 2.5):
        value, slope = _silu_reference_numbers(x)
        v = Value(x)
        out = silu(v)
        _expect_node(out, v)
        if not isinstance(out.data, Real) or not math.isclose(out.data, value, rel_tol=1e-9, abs_tol=1e-12):
            raise Hint(f"silu({x:g}) should be x·sigmoid(x) = {value:.6g}, your node holds data={out.data!r:.30}")
        (out * 3.0).backward()
        if not math.isclose(v.grad, 3 * slope, rel_tol=1e-7, abs_tol=1e-12):
            if math.isclose(v.grad, slope, rel_tol=1e-7, abs_tol=1e-12) and abs(slope) > 1e-9:
                raise Hint(f"for (3·silu(v)).backward() at v={x:g} the gradient should be 3·silu'(v) = {3 * slope:.6g}, "
                           f"got {v.grad:.6g}: multiply the local derivative by out.grad (the chain rule)")
            s = 1 / (1 + math.exp(-x))
            if math.isclose(v.grad, 3 * s, rel_tol=1e-7):
                raise Hint(f"at v={x:g} the gradient is off ({v.grad:.6g} instead of {3 * slope:.6g}): silu is v·σ(v), "
                           "a product, so its derivative is σ(v) + v·σ(v)·(1 − σ(v)), not just σ(v)")
            raise Hint(f"for (3·silu(v)).backward() at v={x:g} the gradient should be {3 * slope:.6g}, got {v.grad:.6g}; "
                       "silu'(v) = σ(v) + v·σ(v)·(1 − σ(v))")
    v = Value(1.3)
    (silu(v) + silu(v)).backward()
    expected = 2 * _silu_reference_numbers(1.3)[1]
    if not math.isclose(v.grad, expected, rel_tol=1e-7):
        raise Hint(f"with v used twice, (silu(v) + silu(v)).backward() should give v.grad = {expected:.6g}, "
                   f"got {v.grad:.6g}: add into the gradient (`v.grad += ...`), never overwrite it (`v.grad = ...`)")
    return "matches torch.nn.functional.silu and its gradient"


def _reference_silu(v: Value) -> Value:
    s = 1 / (1 + math.exp(-v.data))
    out = Value(v.data * s, (v,), "silu")

    def _backward() -> None:
        v.grad += (s + v.data * s * (1 - s)) * out.grad

    out._backward = _backward
    return out


def _silu_with(derivative: Callable[[float, float], float], accumulate: bool = True,
               chain: bool = True) -> Callable[[Value], Value]:
    """A silu node with a (possibly wrong) backward rule: a plausible mistake for the tests."""
    def silu(v: Value) -> Value:
        s = 1 / (1 + math.exp(-v.data))
        out = Value(v.data * s, (v,), "silu")

        def _backward() -> None:
            local = derivative(v.data, s) * (out.grad if chain else 1.0)
            v.grad = v.grad + local if accumulate else local

        out._backward = _backward
        return out

    return silu


_SILU_SLOPE = lambda x, s: s + x * s * (1 - s)  # noqa: E731

exercise(
    "03.1",
    title="Backward of a SiLU node",
    reference=lambda: _reference_silu,
    stub=lambda: _not_done,
    wrong=[
        lambda: _silu_with(_SILU_SLOPE, accumulate=False),            # v.grad = ... overwrites
        lambda: _silu_with(_SILU_SLOPE, chain=False),                 # forgets out.grad
        lambda: _silu_with(lambda x, s: s),                           # treats σ(v) as a constant
        lambda: _silu_with(lambda x, s: s * (1 - s)),                 # the sigmoid's derivative
        lambda: lambda v: v * v.sigmoid(),                            # right numbers, but not one node
        lambda: lambda v: v.data / (1 + math.exp(-v.data)),           # a float, not a Value
    ],
)(_check_silu)


# --------------------------------------------------------------------------- 03.2


def _mlp_inputs(seed: int, batch: int = 6, d_in: int = 3, hidden: int = 5, d_out: int = 2) -> dict[str, torch.Tensor]:
    g = _generator(seed)
    return {
        "x": torch.randn(batch, d_in, generator=g, dtype=torch.float64),
        "y": torch.randn(batch, d_out, generator=g, dtype=torch.float64),
        "W1": torch.randn(d_in, hidden, generator=g, dtype=torch.float64),
        "b1": torch.randn(hidden, generator=g, dtype=torch.float64) * 0.5,
        "W2": torch.randn(hidden, d_out, generator=g, dtype=torch.float64),
        "b2": torch.randn(d_out, generator=g, dtype=torch.float64),
    }


def _autograd_W1(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.enable_grad():
        W1 = inputs["W1"].clone().requires_grad_()
        h = torch.relu(inputs["x"] @ W1 + inputs["b1"])
        loss = ((h @ inputs["W2"] + inputs["b2"] - inputs["y"]) ** 2).mean()
        (grad,) = torch.autograd.grad(loss, W1)
    return grad


def _check_grad_W1(grad_W1: Any) -> str:
    expect_callable(grad_W1, "grad_W1")
    notes = []
    for seed, sizes in ((31, (6, 3, 5, 2)), (32, (4, 2, 7, 3))):
        inputs = _mlp_inputs(seed, *sizes)
        expected = _autograd_W1(inputs)
        with torch.no_grad():  # by hand: autograd is switched off while your function runs
            got = grad_W1(*(inputs[k].clone() for k in ("x", "y", "W1", "b1", "W2", "b2")))
        got = expect_tensor(got, "grad_W1(...)")
        batch, d_in, hidden, d_out = sizes
        if tuple(got.shape) == (hidden, d_in) and hidden != d_in:
            raise Hint(f"grad_W1 has shape {tuple(got.shape)} but W1 has shape ({d_in}, {hidden}): a gradient has its "
                       "tensor's shape; dW1 = x.T @ dz1, with x (B, D) and dz1 (B, H)")
        same_shape(got, (d_in, hidden), f"grad_W1 for W1 of shape ({d_in}, {hidden})")
        got = got.to(torch.float64)
        if torch.allclose(got, 0.5 * expected, rtol=1e-6, atol=1e-10):
            raise Hint("your gradient is exactly half the right one: the derivative of (out − y)² is 2·(out − y)")
        if torch.allclose(got, expected * d_out, rtol=1e-6, atol=1e-10):
            raise Hint(f"your gradient is {d_out}× too large: the mean is over all B·C = {batch * d_out} entries of "
                       f"(out − y)², so divide by B·C, not by B")
        if torch.allclose(got, expected * batch * d_out, rtol=1e-6, atol=1e-10):
            raise Hint("your gradient is B·C times too large: the loss is a mean, so dL/dout = 2·(out − y)/(B·C)")
        z1 = inputs["x"] @ inputs["W1"] + inputs["b1"]
        dout = 2 * (torch.relu(z1) @ inputs["W2"] + inputs["b2"] - inputs["y"]) / (batch * d_out)
        no_mask = inputs["x"].T @ (dout @ inputs["W2"].T)
        if torch.allclose(got, no_mask, rtol=1e-6, atol=1e-10):
            raise Hint("the ReLU lets gradient through only where z1 = x @ W1 + b1 was positive: multiply dh by "
                       "(z1 > 0) before dW1 = x.T @ dz1")
        tanh_slope = inputs["x"].T @ ((dout @ inputs["W2"].T) * (1 - torch.relu(z1) ** 2))
        if torch.allclose(got, tanh_slope, rtol=1e-6, atol=1e-10):
            raise Hint("that is tanh's slope (1 − h²); here the activation is ReLU, whose slope is 1 where z1 > 0 "
                       "and 0 elsewhere: dz1 = dh * (z1 > 0)")
        notes.append(close(got, expected, atol=1e-9, rtol=1e-7, what=f"grad_W1 (shapes B,D,H,C = {sizes})"))
    return notes[-1]


def _reference_grad_W1(x, y, W1, b1, W2, b2):
    z1 = x @ W1 + b1                       # (B, H)
    h = torch.relu(z1)                     # (B, H)
    out = h @ W2 + b2                      # (B, C)
    dout = 2 * (out - y) / out.numel()     # (B, C): mean over all B·C entries
    dh = dout @ W2.T                       # (B, H)
    dz1 = dh * (z1 > 0)                    # (B, H): ReLU passes gradient where z1 > 0
    return x.T @ dz1                       # (D, H)


def _grad_W1_with(dout_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], mask: str = "relu",
                  left: str = "x") -> Callable[..., torch.Tensor]:
    """dW1 with a (possibly wrong) dL/dout, activation slope or left factor: plausible mistakes for the tests."""
    def grad_W1(x, y, W1, b1, W2, b2):
        z1 = x @ W1 + b1
        h = torch.relu(z1)
        out = h @ W2 + b2
        dh = dout_of(out, y) @ W2.T
        slope = {"relu": (z1 > 0).to(x.dtype), "none": torch.ones_like(z1), "tanh": 1 - h**2}[mask]
        return (x if left == "x" else h).T @ (dh * slope)
    return grad_W1


_MEAN = lambda out, y: 2 * (out - y) / out.numel()  # noqa: E731  the right dL/dout


exercise(
    "03.2",
    title="dL/dW1 of a 2-layer MLP by hand",
    reference=lambda: _reference_grad_W1,
    stub=lambda: _not_done,
    wrong=[
        lambda: _grad_W1_with(lambda out, y: 2 * (out - y) / out.shape[0]),  # divides by B only
        lambda: _grad_W1_with(lambda out, y: (out - y) / out.numel()),       # forgets the 2 of the square
        lambda: _grad_W1_with(lambda out, y: 2 * (out - y)),                 # the gradient of the sum, not the mean
        lambda: _grad_W1_with(_MEAN, mask="none"),                          # forgets the ReLU
        lambda: _grad_W1_with(_MEAN, mask="tanh"),                          # tanh's slope, copied from the chapter
        lambda: _grad_W1_with(_MEAN, left="h"),                             # h.T instead of x.T: shape (H, H)
        lambda: lambda *args: _reference_grad_W1(*args).T,                  # (H, D) instead of (D, H)
    ],
)(_check_grad_W1)


# --------------------------------------------------------------------------- optimizer steps: shared


def _quadratic_gradient(p: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Gradient of sum(scales * p**2) / 2 + sum(sin(p)): a bumpy bowl, so gradients change step to step."""
    return scales * p + torch.cos(p)


def _run_torch(make: Callable[[list[torch.Tensor]], torch.optim.Optimizer], p0: torch.Tensor,
               scales: torch.Tensor, steps: int) -> list[torch.Tensor]:
    p = p0.clone().requires_grad_()
    optimizer = make([p])
    history = []
    for _ in range(steps):
        p.grad = _quadratic_gradient(p.detach(), scales)
        optimizer.step()
        history.append(p.detach().clone())
    return history


# --------------------------------------------------------------------------- 03.3


def _check_nesterov(nesterov_step: Any) -> str:
    expect_callable(nesterov_step, "nesterov_step")
    g = _generator(33)
    p0 = torch.randn(5, generator=g, dtype=torch.float64)
    scales = torch.rand(5, generator=g, dtype=torch.float64) * 4 + 0.5
    lr, momentum, steps = 0.05, 0.9, 6
    expected = _run_torch(lambda ps: torch.optim.SGD(ps, lr=lr, momentum=momentum, nesterov=True), p0, scales, steps)
    plain = _run_torch(lambda ps: torch.optim.SGD(ps, lr=lr, momentum=momentum), p0, scales, steps)
    p, velocity = p0.clone(), torch.zeros_like(p0)
    for step in range(steps):
        grad = _quadratic_gradient(p, scales)
        with torch.no_grad():
            p_before = p.clone()
            p, velocity = _pair(nesterov_step(p.clone(), grad.clone(), velocity.clone(), lr, momentum),
                                ("new_p", "new_velocity"), "nesterov_step")
        same_shape(p, (5,), "new_p")
        same_shape(velocity, (5,), "new_velocity")
        p, velocity = p.to(torch.float64), velocity.to(torch.float64)
        if step == 0 and torch.allclose(p, p_before):
            raise Hint("after one step p has not moved: return the updated parameters p − lr·(g + μ·v)")
        if torch.allclose(p, plain[step], rtol=1e-9, atol=1e-12) and not torch.allclose(p, expected[step]):
            raise Hint(f"step {step + 1} matches plain (heavy-ball) momentum, p − lr·v. Nesterov looks ahead: "
                       "p − lr·(g + μ·v), with v already updated")
        if not torch.allclose(p, expected[step], rtol=1e-9, atol=1e-12):
            diff = (p - expected[step]).abs().max().item()
            if step == 0:
                raise Hint(f"the first step differs from torch.optim.SGD(nesterov=True) by {diff:.3g}: with v = 0 "
                           "it is v ← μ·0 + g = g, then p ← p − lr·(g + μ·g)")
            raise Hint(f"step 1 is right but step {step + 1} differs by {diff:.3g}: is the velocity you return the "
                       "updated one, v ← μ·v + g?")
    return f"{steps} steps equal torch.optim.SGD(nesterov=True)"


def _reference_nesterov(p, grad, velocity, lr, momentum):
    velocity = momentum * velocity + grad
    return p - lr * (grad + momentum * velocity), velocity


exercise(
    "03.3",
    title="A Nesterov momentum step",
    reference=lambda: _reference_nesterov,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda p, g, v, lr, mu: (p - lr * (mu * v + g), mu * v + g),             # heavy-ball momentum
        lambda: lambda p, g, v, lr, mu: (p - lr * (g + mu * (mu * v + g)), v),            # forgets to return new v
        lambda: lambda p, g, v, lr, mu: (p - lr * (g + mu * (mu * v + g)), mu * v + lr * g),  # v keeps lr·g
        lambda: lambda p, g, v, lr, mu: p - lr * (g + mu * (mu * v + g)),                 # returns only p
    ],
)(_check_nesterov)


# --------------------------------------------------------------------------- 03.4


def _check_adamw(adamw_step: Any) -> str:
    expect_callable(adamw_step, "adamw_step")
    g = _generator(34)
    p0 = torch.randn(6, generator=g, dtype=torch.float64)
    scales = torch.rand(6, generator=g, dtype=torch.float64) * 4 + 0.5
    lr, betas, eps, weight_decay, steps = 0.1, (0.8, 0.95), 1e-8, 0.2, 5
    expected = _run_torch(lambda ps: torch.optim.AdamW(ps, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay),
                          p0, scales, steps)
    l2 = _run_torch(lambda ps: torch.optim.Adam(ps, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay),
                    p0, scales, steps)
    p, m, v = p0.clone(), torch.zeros_like(p0), torch.zeros_like(p0)
    for t in range(1, steps + 1):
        grad = _quadratic_gradient(p, scales)
        inputs = (p.clone(), grad.clone(), m.clone(), v.clone(), t, lr, betas, eps, weight_decay)
        with torch.no_grad():
            result = adamw_step(*inputs)
        p, m, v = (x.to(torch.float64) for x in _pair(result, ("new_p", "new_m", "new_v"), "adamw_step"))
        for tensor, name in ((p, "new_p"), (m, "new_m"), (v, "new_v")):
            same_shape(tensor, (6,), name)
        if torch.allclose(p, expected[t - 1], rtol=1e-9, atol=1e-12):
            continue
        if torch.allclose(p, l2[t - 1], rtol=1e-9, atol=1e-12):
            raise Hint(f"step {t} matches Adam with L2 weight decay (g + wd·p fed into m and v). AdamW decouples it: "
                       "shrink the weights directly, p ← p·(1 − lr·wd), and give m and v the plain gradient")
        if not torch.all(torch.isfinite(p)):
            raise Hint(f"step {t} gave inf or nan: t counts from 1, so the bias corrections 1 − β1ᵗ and 1 − β2ᵗ "
                       "are never 0")
        for mistake, hint in (
            (_adamw_without_bias_correction, "it matches AdamW without bias correction: divide m by (1 − β1ᵗ) and "
                                             "v by (1 − β2ᵗ); without it the first steps have the wrong size"),
            (_adamw_decay_after, "it matches decaying the weights after the Adam update; torch decays first: "
                                 "p ← p·(1 − lr·wd), then p ← p − lr·m̂/(√v̂ + ε)"),
        ):
            if torch.allclose(p, mistake(*inputs)[0], rtol=1e-9, atol=1e-12):
                raise Hint(f"step {t} is off: {hint}")
        diff = (p - expected[t - 1]).abs().max().item()
        steps_ok = f"steps 1–{t - 1} are right, but " if t > 1 else ""
        raise Hint(f"{steps_ok}step {t} differs from torch.optim.AdamW by {diff:.3g} (new_p). The order: decay "
                   "p ← p·(1 − lr·wd); m ← β1·m + (1 − β1)·g; v ← β2·v + (1 − β2)·g²; m̂ = m/(1 − β1ᵗ); "
                   "v̂ = v/(1 − β2ᵗ); p ← p − lr·m̂/(√v̂ + ε). Return the new m and v too")
    return f"{steps} steps equal torch.optim.AdamW"


def _reference_adamw(p, grad, m, v, t, lr, betas, eps, weight_decay):
    beta1, beta2 = betas
    p = p * (1 - lr * weight_decay)                 # decoupled weight decay
    m = beta1 * m + (1 - beta1) * grad              # first moment
    v = beta2 * v + (1 - beta2) * grad**2           # second moment
    m_hat = m / (1 - beta1**t)                      # bias corrections
    v_hat = v / (1 - beta2**t)
    return p - lr * m_hat / (v_hat.sqrt() + eps), m, v


def _adamw_without_bias_correction(p, grad, m, v, t, lr, betas, eps, weight_decay):
    beta1, beta2 = betas
    p = p * (1 - lr * weight_decay)
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad**2
    return p - lr * m / (v.sqrt() + eps), m, v


def _adam_l2(p, grad, m, v, t, lr, betas, eps, weight_decay):
    return _reference_adamw(p, grad + weight_decay * p, m, v, t, lr, betas, eps, 0.0)


def _adamw_decay_after(p, grad, m, v, t, lr, betas, eps, weight_decay):
    p, m, v = _reference_adamw(p, grad, m, v, t, lr, betas, eps, 0.0)
    return p * (1 - lr * weight_decay), m, v


def _adamw_t_from_zero(p, grad, m, v, t, lr, betas, eps, weight_decay):
    return _reference_adamw(p, grad, m, v, t - 1, lr, betas, eps, weight_decay)


exercise(
    "03.4",
    title="An AdamW step with bias correction",
    reference=lambda: _reference_adamw,
    stub=lambda: _not_done,
    wrong=[
        lambda: _adamw_without_bias_correction,
        lambda: _adam_l2,                 # weight decay through the gradient: Adam, not AdamW
        lambda: _adamw_decay_after,       # decays after the update
        lambda: _adamw_t_from_zero,       # t - 1: divides by zero at the first step
        lambda: lambda p, grad, m, v, t, lr, betas, eps, wd: _reference_adamw(p, grad, m, v, t, lr, betas, eps, wd)[0],
    ],
)(_check_adamw)


# --------------------------------------------------------------------------- 03.5


def _check_largest_stable_lr(largest_stable_lr: Any) -> str:
    expect_callable(largest_stable_lr, "largest_stable_lr")
    for a, b in ((0.05, 2.0), (1.0, 1.0), (3.0, 0.5), (10.0, 0.1)):
        got = largest_stable_lr(a, b)
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, Real):
            raise Hint(f"largest_stable_lr({a}, {b}) should return a number, got {type(got).__name__} {got!r:.40}")
        expected = 1 / max(a, b)
        if math.isclose(got, 2 / max(a, b), rel_tol=1e-9):
            raise Hint(f"largest_stable_lr({a}, {b}) = {got:g} is twice too large: the curvature of a·x² is its second "
                       "derivative 2a, and GD converges for lr < 2 / curvature")
        if a != b and math.isclose(got, 1 / min(a, b), rel_tol=1e-9):
            raise Hint(f"largest_stable_lr({a}, {b}) = {got:g} follows the flat direction; the steep one decides: "
                       "at that lr GD already diverges across the ravine")
        if not math.isclose(got, expected, rel_tol=1e-9):
            raise Hint(f"largest_stable_lr({a}, {b}) should be {expected:g}, got {got:g}. Along x, GD multiplies x by "
                       "(1 − lr·2a) each step; it converges while |1 − lr·2a| < 1, and likewise for y")
    return "the steepest direction decides"


exercise(
    "03.5",
    title="The largest stable learning rate",
    reference=lambda: lambda a, b: 1 / max(a, b),
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda a, b: 2 / max(a, b),     # forgets that the curvature of a·x² is 2a
        lambda: lambda a, b: 1 / min(a, b),     # the flat direction
        lambda: lambda a, b: 2 / (a + b),       # averages the two
        lambda: lambda a, b: str(1 / max(a, b)),  # a string
    ],
)(_check_largest_stable_lr)


# --------------------------------------------------------------------------- 03.6 predict, measure, explain


def distance_travelled(make_optimizer: Callable[[list[torch.Tensor]], torch.optim.Optimizer], scale: float,
                       steps: int = 50) -> float:
    """How far (Euclidean) 8 parameters move in `steps` steps on scale · ½ Σ k_i p_i² (no randomness).

    The measurement of exercise 03.6; the chapter's measurement cell writes the same loop out."""
    p = torch.linspace(1.0, 2.0, 8).requires_grad_()
    k = torch.linspace(0.01, 0.1, 8)
    start = p.detach().clone()
    optimizer = make_optimizer([p])
    for _ in range(steps):
        optimizer.zero_grad()
        (scale * 0.5 * (k * p ** 2).sum()).backward()
        optimizer.step()
    return (p.detach() - start).norm().item()


def _ratio(make_optimizer: Callable[[list[torch.Tensor]], torch.optim.Optimizer]) -> float:
    return distance_travelled(make_optimizer, 100.0) / distance_travelled(make_optimizer, 1.0)


def _adam_ratio() -> float:
    return _ratio(lambda params: torch.optim.Adam(params, lr=0.01))


def _sgd_ratio() -> float:
    return _ratio(lambda params: torch.optim.SGD(params, lr=0.01))


LOSS_SCALE = PredictMeasureExplain(
    predictions={
        "a": "Adam moves about 100 times as far, as a 100 times larger gradient would suggest",
        "b": "Adam moves about as far as before",
        "c": "Adam moves less far: a steeper loss makes it careful",
    },
    explanations={
        "a": "Adam divides each coordinate's step by the square root of its running mean of squared "
             "gradients: multiply every gradient by 100 and that root grows 100-fold too, so the step is unchanged",
        "b": "Adam's bias correction divides the factor 100 away",
        "c": "Adam clips the gradient to length 1 before stepping",
    },
    measure=_adam_ratio,
    predicted=lambda ratio: "a" if ratio > 10 else "b" if ratio > 0.5 else "c",
    explained=lambda ratio: "a" if math.isclose(ratio, 1.0, rel_tol=0.01) else "none",
    what="the ratio distance with the loss × 100 / distance with the loss as it is, for Adam",
    wrong_explanations={
        "b": "bias correction divides m and v by 1 − β₁ᵗ and 1 − β₂ᵗ, numbers that depend on the step t "
             "and not on the gradient's size. Look at what m̂ is divided by",
        "c": "torch.optim.Adam clips nothing (the table of section 4 has every operation it does). Look at what m̂ "
             "is divided by",
    },
    misreadings=(
        (lambda value, true: math.isclose(value, _sgd_ratio(), rel_tol=0.02),
         "that is SGD's ratio; the question is about Adam's (adam_ratio)"),
        (lambda value, true: value > 0 and math.isclose(value, 100 * true, rel_tol=0.02),
         "that is 100 times the ratio: divide the distance with the loss × 100 by the distance with the loss × 1"),
    ),
)


LOSS_SCALE.register(
    "03.6", "Predict, measure, explain: Adam and a scaled loss", module=__name__,
    wrong_measurements=(
        lambda: _sgd_ratio(),  # SGD's ratio, not Adam's
        lambda: 100.0,  # the ratio guessed, not measured
    ),
    more_wrong=(
        lambda: LOSS_SCALE.answer(committed="B", prediction="B"),          # not an option
    ),
)


# --------------------------------------------------------------------------- 03.7 Rosenbrock in 300 steps

ROSENBROCK_STEPS, ROSENBROCK_TOLERANCE = 300, 0.05  # the race widget's "steps"; how close to the star counts


def momentum_end(lr: float, momentum: float) -> torch.Tensor:
    """Where the race's momentum path ends on Rosenbrock after ``ROSENBROCK_STEPS`` steps from the
    surface's start: labkit's Momentum, as the chapter's race runs it. (x, y) as a tensor (2,)."""
    from labkit import optimizers, surfaces

    path = surfaces.run_optimizer("rosenbrock", lambda p: optimizers.Momentum(p, lr=lr, momentum=momentum),
                                  steps=ROSENBROCK_STEPS)
    return path[-1]


def _check_rosenbrock(settings: Any) -> str:
    if not isinstance(settings, dict) or set(settings) != {"lr", "momentum"}:
        raise Hint("hand in a dict with the two settings of the race's momentum path, "
                   f"like dict(lr=0.001, momentum=0.9); got {settings!r:.60}")
    lr, momentum = settings["lr"], settings["momentum"]
    if lr is Ellipsis or momentum is Ellipsis:
        raise NotImplementedError("replace each ... with a number: in the race widget pick rosenbrock and 300 steps, "
                                  "and move 'lr (GD, mom.)' and 'momentum μ' until the momentum path ends on the star")
    for name, value in (("lr", lr), ("momentum", momentum)):
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            raise Hint(f"{name} should be a number, got {value!r:.40}")
    if lr <= 0:
        raise Hint(f"lr should be above 0, got {lr:g}")
    if not 0 <= momentum < 1:
        raise Hint(f"momentum μ should be at least 0 and below 1 (the share of the velocity kept each step), got {momentum:g}")
    end = momentum_end(float(lr), float(momentum))
    if not torch.isfinite(end).all() or end.abs().max() > 100:
        raise Hint(f"with lr {lr:g} the path leaves the picture: Rosenbrock's walls are steep (gradients reach "
                   "hundreds), so a step of lr × gradient overshoots and grows. Lower lr")
    distance = math.dist(end.tolist(), (1.0, 1.0))
    where = f"the path ends at ({end[0]:+.3f}, {end[1]:+.3f}), {distance:.3f} from the star (1, 1)"
    if distance <= ROSENBROCK_TOLERANCE:
        return where
    if momentum == 0:
        raise Hint(f"with momentum 0 this is plain GD: {where}. On the nearly flat, curving floor of the valley its "
                   "steps are tiny; momentum builds up speed along the floor: raise μ")
    raise Hint(f"{where} after {ROSENBROCK_STEPS} steps; it should end within {ROSENBROCK_TOLERANCE}. Watch the path in "
               "the widget: still crawling along the floor, it needs more speed (a larger μ or lr); circling or "
               "overshooting the star, a smaller lr")


exercise(
    "03.7",
    title="Rosenbrock in 300 steps",
    reference=lambda: dict(lr=0.002, momentum=0.95),
    stub=lambda: dict(lr=..., momentum=...),
    wrong=[
        lambda: dict(lr=0.001, momentum=0.0),   # plain GD: stuck on the floor
        lambda: dict(lr=0.001, momentum=0.5),   # too slow along the floor
        lambda: dict(lr=0.05, momentum=0.9),    # diverges
        lambda: dict(lr=0.002, momentum=1.0),   # not a momentum
        lambda: [0.002, 0.95],                  # not a dict
    ],
)(_check_rosenbrock)
