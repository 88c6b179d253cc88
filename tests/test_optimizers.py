"""labkit.optimizers: step for step the same numbers as torch.optim, and clear errors."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from labkit import optimizers as mine

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.py

# name -> (labkit optimizer, its torch.optim twin)
PAIRS = {
    "GD": (lambda p: mine.GD(p, lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    "SGD": (lambda p: mine.SGD(p, lr=0.05), lambda p: torch.optim.SGD(p, lr=0.05)),
    "SGD-momentum": (lambda p: mine.SGD(p, lr=0.05, momentum=0.8), lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8)),
    "SGD-nesterov": (lambda p: mine.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
                     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True)),
    "SGD-weight-decay": (lambda p: mine.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.01),
                         lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.01)),
    "Momentum": (lambda p: mine.Momentum(p, lr=0.05), lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
    "RMSProp": (lambda p: mine.RMSProp(p), lambda p: torch.optim.RMSprop(p)),
    "RMSProp-alpha": (lambda p: mine.RMSProp(p, lr=0.003, alpha=0.9, eps=1e-6, weight_decay=0.1),
                      lambda p: torch.optim.RMSprop(p, lr=0.003, alpha=0.9, eps=1e-6, weight_decay=0.1)),
    "Adam": (lambda p: mine.Adam(p), lambda p: torch.optim.Adam(p)),
    "Adam-lr-betas": (lambda p: mine.Adam(p, lr=0.01, betas=(0.8, 0.99)),
                      lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.99))),
    "Adam-weight-decay": (lambda p: mine.Adam(p, lr=0.01, eps=1e-6, weight_decay=0.05),
                          lambda p: torch.optim.Adam(p, lr=0.01, eps=1e-6, weight_decay=0.05)),
}


def _model_and_data(dtype: torch.dtype) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).to(dtype)
    x = torch.randn(32, 4, dtype=dtype)
    y = torch.randint(0, 3, (32,))
    return model, x, y


def _train(make, dtype: torch.dtype, steps: int = 20) -> list[list[torch.Tensor]]:
    """Parameters after each of `steps` full-batch steps (a fresh model, same seed, each call)."""
    model, x, y = _model_and_data(dtype)
    optimizer = make(list(model.parameters()))
    history = []
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        history.append([p.detach().clone() for p in model.parameters()])
    return history


@pytest.mark.parametrize("name", PAIRS)
@pytest.mark.parametrize(("dtype", "atol"), [(torch.float32, 1e-6), (torch.float64, 1e-12)], ids=["float32", "float64"])
def test_same_parameters_as_torch_every_step(name, dtype, atol):
    make_mine, make_torch = PAIRS[name]
    ours, theirs = _train(make_mine, dtype), _train(make_torch, dtype)
    moved = any(not torch.equal(a, b) for a, b in zip(ours[-1], _model_and_data(dtype)[0].parameters()))
    assert moved, "the parameters should change"
    for step, (mine_params, torch_params) in enumerate(zip(ours, theirs), start=1):
        for a, b in zip(mine_params, torch_params):
            assert torch.allclose(a, b, rtol=0, atol=atol), f"{name}: step {step} differs by {(a - b).abs().max():.3g}"


def test_parameters_without_a_gradient_are_left_alone_and_adam_counts_steps_per_parameter():
    a = torch.tensor([1.0, 2.0], requires_grad=True)
    b = torch.tensor([3.0], requires_grad=True)
    a2, b2 = a.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
    ours, theirs = mine.Adam([a, b], lr=0.1), torch.optim.Adam([a2, b2], lr=0.1)
    for step in range(4):
        for opt, p, q in ((ours, a, b), (theirs, a2, b2)):
            opt.zero_grad()
            loss = (p ** 2).sum() + (q ** 2).sum() if step >= 2 else (p ** 2).sum()  # b gets no grad at first
            loss.backward()
            opt.step()
        if step < 2:
            assert b.item() == 3.0
    assert torch.allclose(a, a2) and torch.allclose(b, b2)


def test_zero_grad_sets_to_none_or_zero():
    p = torch.ones(3, requires_grad=True)
    opt = mine.GD([p], lr=0.1)
    (p * 2).sum().backward()
    opt.zero_grad(set_to_none=False)
    assert torch.equal(p.grad, torch.zeros(3))
    opt.zero_grad()
    assert p.grad is None


def test_errors_speak_to_the_learner():
    p = torch.ones(2, requires_grad=True)
    with pytest.raises(ValueError, match=r"learning rate must be > 0, got -0.1"):
        mine.GD([p], lr=-0.1)
    with pytest.raises(TypeError, match="wrap it: \\[tensor\\]"):
        mine.Adam(p)
    with pytest.raises(ValueError, match="empty list of parameters"):
        mine.Adam([])
    with pytest.raises(ValueError, match="does not require grad"):
        mine.SGD([torch.ones(2)], lr=0.1)
    with pytest.raises(ValueError, match=r"momentum must be >= 0 and < 1, got 1"):
        mine.Momentum([p], lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match=r"beta2 must be >= 0 and < 1, got 1.5"):
        mine.Adam([p], betas=(0.9, 1.5))
    with pytest.raises(ValueError, match="nesterov=True needs a momentum"):
        mine.SGD([p], lr=0.1, nesterov=True)
    assert "lr=0.1" in repr(mine.Momentum([p], lr=0.1))
