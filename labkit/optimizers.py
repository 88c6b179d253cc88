"""Optimizers (优化器) written from scratch: gradient descent, SGD with momentum, RMSProp and Adam.

Each one takes a list of tensors (parameters with `.grad` filled in by `loss.backward()`) and
follows exactly the update rule and defaults of its torch.optim twin, so that the two give
the same numbers step for step (chapter 03 checks this):

| here                         | torch.optim                                   | update, with g = gradient            |
|------------------------------|-----------------------------------------------|--------------------------------------|
| GD(params, lr)               | SGD(params, lr)                               | p -= lr * g                          |
| SGD(params, lr, momentum)    | SGD(params, lr, momentum)                     | v = μ v + g;  p -= lr * v            |
| Momentum(params, lr, μ=0.9)  | SGD(params, lr, momentum=0.9)                 | the same, momentum on by default     |
| RMSProp(params, lr, alpha)   | RMSprop(params, lr, alpha=0.99, eps=1e-8)     | s = α s + (1-α) g²;  p -= lr g/(√s+ε) |
| Adam(params, lr, betas)      | Adam(params, lr, betas=(0.9, 0.999), eps=1e-8)| m, v averages of g, g², bias-corrected |

Use them like torch's: `opt.zero_grad(); loss.backward(); opt.step()`.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["Optimizer", "GD", "SGD", "Momentum", "RMSProp", "Adam"]


def _check_range(name: str, value: float, low: float, high: float | None = None, *, low_open: bool = False) -> float:
    """Learner-facing check that a hyperparameter is a number in its range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    too_low = value <= low if low_open else value < low
    if too_low or (high is not None and value >= high):
        bound = f"> {low:g}" if low_open else f">= {low:g}"
        upper = f" and < {high:g}" if high is not None else ""
        raise ValueError(f"{name} must be {bound}{upper}, got {value:g}")
    return float(value)


class Optimizer:
    """What every optimizer shares: the parameter list, `zero_grad()`, and per-parameter state."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float) -> None:
        if isinstance(params, torch.Tensor):
            raise TypeError("params should be a list of tensors, got a single tensor; wrap it: [tensor]")
        self.params: list[torch.Tensor] = list(params)
        if not self.params:
            raise ValueError("got an empty list of parameters: pass model.parameters() or a list of tensors")
        for i, p in enumerate(self.params):
            if not isinstance(p, torch.Tensor):
                raise TypeError(f"parameter {i} should be a torch.Tensor, got {type(p).__name__}")
            if not p.requires_grad:
                raise ValueError(f"parameter {i} (shape {tuple(p.shape)}) does not require grad, so it would never "
                                 "get a gradient; create it with requires_grad=True")
        self.lr = _check_range("learning rate", lr, 0.0, low_open=True)
        self.state: list[dict[str, Any]] = [{} for _ in self.params]  # one dict per parameter
        self.steps = 0

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients of the last backward pass (torch's default sets them to None)."""
        for p in self.params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_()
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        """Move every parameter that has a gradient one step; parameters without one are skipped."""
        self.steps += 1
        for p, state in zip(self.params, self.state):
            if p.grad is not None:
                self.update(p, p.grad, state)

    def update(self, p: torch.Tensor, grad: torch.Tensor, state: dict[str, Any]) -> None:
        """Change `p` in place using its gradient `grad` (same shape as p) and its `state`."""
        raise NotImplementedError(f"{type(self).__name__} must define update(p, grad, state)")

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v}" for k, v in vars(self).items() if k not in ("params", "state", "steps"))
        return f"{type(self).__name__}({settings})"


class SGD(Optimizer):
    """Stochastic gradient descent (随机梯度下降), optionally with momentum (动量), as torch.optim.SGD.

    Without momentum: p ← p − lr·g. With momentum μ a velocity v remembers past gradients:
    v ← μ·v + g (v starts as the first gradient), p ← p − lr·v. `nesterov=True` looks ahead:
    p ← p − lr·(g + μ·v). `weight_decay` adds weight_decay·p to g first (L2 regularisation).
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float, momentum: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr)
        self.momentum = _check_range("momentum", momentum, 0.0, 1.0)
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs a momentum > 0, got momentum=0")
        self.nesterov = bool(nesterov)
        self.weight_decay = _check_range("weight_decay", weight_decay, 0.0)

    def update(self, p: torch.Tensor, grad: torch.Tensor, state: dict[str, Any]) -> None:
        if self.weight_decay:
            grad = grad + self.weight_decay * p
        if self.momentum:
            if "velocity" not in state:
                state["velocity"] = grad.clone()  # torch starts the velocity at the first gradient
            else:
                state["velocity"].mul_(self.momentum).add_(grad)
            velocity = state["velocity"]
            grad = grad + self.momentum * velocity if self.nesterov else velocity
        p.add_(grad, alpha=-self.lr)


class GD(SGD):
    """Plain gradient descent (梯度下降): p ← p − lr·g. SGD is the same rule on mini-batch gradients."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float) -> None:
        super().__init__(params, lr)


class Momentum(SGD):
    """Gradient descent with momentum (动量), μ = 0.9 by default: torch.optim.SGD(params, lr, momentum=0.9)."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float, momentum: float = 0.9,
                 nesterov: bool = False, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)


class RMSProp(Optimizer):
    """RMSProp, as torch.optim.RMSprop: divide each step by a running root-mean-square of the gradient.

    s ← α·s + (1 − α)·g²  (s starts at 0),  p ← p − lr·g / (√s + ε).
    Directions with large gradients get smaller steps, flat directions larger ones.
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 0.01, alpha: float = 0.99,
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr)
        self.alpha = _check_range("alpha", alpha, 0.0, 1.0)
        self.eps = _check_range("eps", eps, 0.0)
        self.weight_decay = _check_range("weight_decay", weight_decay, 0.0)

    def update(self, p: torch.Tensor, grad: torch.Tensor, state: dict[str, Any]) -> None:
        if self.weight_decay:
            grad = grad + self.weight_decay * p
        if "square_avg" not in state:
            state["square_avg"] = torch.zeros_like(p)
        square_avg = state["square_avg"]
        square_avg.mul_(self.alpha).addcmul_(grad, grad, value=1 - self.alpha)
        p.addcdiv_(grad, square_avg.sqrt().add_(self.eps), value=-self.lr)


class Adam(Optimizer):
    """Adam, as torch.optim.Adam: momentum on the gradient plus RMSProp's scaling, both bias-corrected.

    m ← β1·m + (1 − β1)·g,  v ← β2·v + (1 − β2)·g²   (both start at 0, t counts steps from 1)
    m̂ = m / (1 − β1ᵗ),  v̂ = v / (1 − β2ᵗ),  p ← p − lr·m̂ / (√v̂ + ε).
    The bias correction undoes the pull towards 0 of averages that started at 0.
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2) like (0.9, 0.999), got {betas!r}")
        self.betas = (_check_range("beta1", betas[0], 0.0, 1.0), _check_range("beta2", betas[1], 0.0, 1.0))
        self.eps = _check_range("eps", eps, 0.0)
        self.weight_decay = _check_range("weight_decay", weight_decay, 0.0)

    def update(self, p: torch.Tensor, grad: torch.Tensor, state: dict[str, Any]) -> None:
        beta1, beta2 = self.betas
        if self.weight_decay:
            grad = grad + self.weight_decay * p
        if "m" not in state:
            state["m"], state["v"], state["t"] = torch.zeros_like(p), torch.zeros_like(p), 0
        state["t"] += 1  # counted per parameter, as torch does (a parameter without a gradient does not step)
        m, v, t = state["m"], state["v"], state["t"]
        m.mul_(beta1).add_(grad, alpha=1 - beta1)                # first moment: average gradient
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)      # second moment: average squared gradient
        step_size = self.lr / (1 - beta1 ** t)                   # bias correction of m
        denominator = (v.sqrt() / math.sqrt(1 - beta2 ** t)).add_(self.eps)  # bias correction of v
        p.addcdiv_(m, denominator, value=-step_size)
