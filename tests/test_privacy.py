"""labkit.privacy (chapter 11b): per-example clipping equals a loop over examples, the clipped
gradients are bounded, exposure ranks as "The Secret Sharer" defines it, and ε equals Opacus's
RDP accountant (values computed with opacus 1.6.0's ``accountants.analysis.rdp`` at orders 2–64)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from labkit import privacy


def _per_example_grads_loop(model, x, y):
    rows = []
    for xi, yi in zip(x, y):
        model.zero_grad()
        nn.functional.cross_entropy(model(xi[None]), yi[None]).backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    return torch.stack(rows)


def test_vmap_per_example_grads_and_clipping_equal_a_loop():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    x, y = torch.randn(8, 6) * 3, torch.randint(0, 3, (8,))
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(p, xi, yi):
        return nn.functional.cross_entropy(functional_call(model, p, (xi[None],)), yi[None])

    g = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)
    flat = torch.cat([g[k].reshape(8, -1) for k in params], dim=1)
    loop = _per_example_grads_loop(model, x, y)
    torch.testing.assert_close(flat, loop, rtol=1e-5, atol=1e-6)
    clipped = privacy.clip_per_example(flat, 0.5)
    by_hand = torch.stack([row * min(1.0, 0.5 / row.norm().item()) for row in loop])
    torch.testing.assert_close(clipped, by_hand, rtol=1e-5, atol=1e-6)


def test_clipped_norms_and_their_mean_are_at_most_c():
    grads = torch.randn(32, 100) * torch.logspace(-2, 2, 32)[:, None]
    for c in (0.1, 1.0, 10.0):
        clipped = privacy.clip_per_example(grads, c)
        assert (clipped.norm(dim=1) <= c * (1 + 1e-6)).all()
        assert clipped.mean(dim=0).norm() <= c * (1 + 1e-6)
        short = grads.norm(dim=1) <= c
        torch.testing.assert_close(clipped[short], grads[short])      # short rows unchanged


def test_noise_has_standard_deviation_sigma_c_over_b():
    grads = torch.zeros(50, 20000)
    noisy = privacy.noisy_mean_gradient(grads, 2.0, 1.5, generator=torch.Generator().manual_seed(0))
    assert noisy.std().item() == pytest.approx(1.5 * 2.0 / 50, rel=0.03)
    assert torch.equal(privacy.noisy_mean_gradient(grads, 2.0, 0.0), torch.zeros(20000))


def test_exposure():
    scores = torch.arange(1024, dtype=torch.float64)
    assert privacy.exposure(1023.0, scores) == pytest.approx(10.0)          # ranked first: log2 1024
    assert privacy.exposure(512.0, scores) == pytest.approx(1.0)            # rank 512: the middle
    assert privacy.exposure(0.0, scores) == pytest.approx(0.0)              # ranked last
    assert privacy.exposure(5.0, torch.full((8,), 5.0)) == pytest.approx(3.0)  # ties: nobody scored higher


@pytest.mark.parametrize("q, sigma, steps, expected", [
    (256 / 60000, 1.1, 14062, 2.5969811785953),   # Abadi et al.'s MNIST setting, 60 epochs
    (0.01, 1.0, 1000, 2.107753075451561),
    (64 / 8000, 1.0, 500, 1.40662773618952),
    (0.02, 2.0, 250, 0.7131080489202257),
])
def test_epsilon_equals_opacus(q, sigma, steps, expected):
    assert privacy.epsilon(q, sigma, steps, delta=1e-5) == pytest.approx(expected, rel=1e-9)


def test_more_noise_less_epsilon_and_bad_input_named():
    assert privacy.epsilon(0.01, 2.0, 100) < privacy.epsilon(0.01, 1.0, 100)
    assert privacy.epsilon(1.0, 1.0, 1) == pytest.approx(min(
        a / 2 + math.log((a - 1) / a) - (math.log(1e-5) + math.log(a)) / (a - 1) for a in range(2, 65)))
    for kwargs, message in ((dict(sample_rate=0.0), "sample_rate"), (dict(noise_multiplier=0.0), "noise_multiplier"),
                            (dict(steps=0), "steps")):
        args = dict(sample_rate=0.1, noise_multiplier=1.0, steps=10) | kwargs
        with pytest.raises(ValueError, match=message):
            privacy.epsilon(**args)
    with pytest.raises(ValueError, match="grads must be"):
        privacy.clip_per_example(torch.zeros(3), 1.0)
