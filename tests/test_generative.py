"""labkit.generative (chapter 09a): the VAE's loss, proven against torch.distributions."""
from __future__ import annotations

import math

import pytest
import torch
from torch import distributions as D

from labkit import generative


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_gaussian_kl_equals_torch_distributions():
    g = _generator(0)
    mu, logvar = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    q = D.Independent(D.Normal(mu, (0.5 * logvar).exp()), 1)
    p = D.Independent(D.Normal(torch.zeros(5, 7), torch.ones(5, 7)), 1)
    assert torch.allclose(generative.gaussian_kl(mu, logvar), D.kl_divergence(q, p), atol=1e-5)


def test_gaussian_kl_is_zero_only_at_the_prior():
    assert torch.equal(generative.gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2))
    assert (generative.gaussian_kl(torch.full((2, 3), 0.1), torch.zeros(2, 3)) > 0).all()


def test_bernoulli_log_likelihood_equals_torch_distributions():
    g = _generator(1)
    logits = 3 * torch.randn(4, 20, generator=g)
    x = (torch.rand(4, 20, generator=g) > 0.5).float()
    theirs = D.Independent(D.Bernoulli(logits=logits), 1).log_prob(x)
    assert torch.allclose(generative.bernoulli_log_likelihood(logits, x), theirs, atol=1e-5)


def test_elbo_is_reconstruction_minus_kl_and_below_the_log_likelihood():
    torch.manual_seed(0)
    model = generative.VAE(latent_dim=2, hidden=8, image_size=6)
    x = (torch.rand(3, 6, generator=_generator(2)) > 0.5).float()
    mu, logvar = model.encode(x)
    eps = torch.randn(mu.shape, generator=_generator(3))
    by_hand = (generative.bernoulli_log_likelihood(model.decode(mu + (0.5 * logvar).exp() * eps), x)
               - generative.gaussian_kl(mu, logvar))
    assert torch.allclose(generative.elbo(model, x, generator=_generator(3)), by_hand, atol=1e-6)
    # log p(x) by importance sampling with many draws from q: the ELBO is below it (Jensen)
    with torch.no_grad():
        z = D.Normal(mu, (0.5 * logvar).exp())
        draws = z.sample((4000,))                                                    # (S, B, 2)
        log_w = (D.Bernoulli(logits=model.decode(draws.reshape(-1, 2)).reshape(4000, 3, 6)).log_prob(x).sum(-1)
                 + D.Normal(0.0, 1.0).log_prob(draws).sum(-1) - z.log_prob(draws).sum(-1))
        log_px = torch.logsumexp(log_w, 0) - math.log(4000)
        assert (generative.elbo(model, x, samples=300, generator=_generator(4)) < log_px + 1e-3).all()


def test_vae_samples_in_training_mode_and_uses_the_mean_in_eval_mode():
    torch.manual_seed(0)
    model = generative.VAE(latent_dim=3, hidden=16, image_size=10)
    x = torch.rand(4, 10)
    logits, mu, _ = model.eval()(x)
    assert torch.allclose(logits, model.decode(mu))
    a, _, _ = model.train()(x)
    b, _, _ = model.train()(x)
    assert not torch.allclose(a, b)
    assert model.sample(5, _generator(0)).shape == (5, 10)
    assert torch.equal(model.sample(5, _generator(0)), model.sample(5, _generator(0)))


def test_pixel_mean_baseline_by_hand():
    train = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    test = torch.tensor([[1.0, 0.0]])
    p = torch.tensor([3 / 5, 2 / 5])                                                  # (count + 1) / (3 + 2)
    expected = math.log(p[0]) + math.log(1 - p[1])
    assert generative.pixel_mean_log_likelihood(train, test).item() == pytest.approx(expected, abs=1e-6)


def test_binarize_and_bits_per_pixel():
    images = torch.tensor([[[0, 127], [128, 255]]], dtype=torch.uint8)
    assert torch.equal(generative.binarize(images), torch.tensor([[0.0, 0.0, 1.0, 1.0]]))
    assert generative.nats_to_bits_per_pixel(784 * math.log(2)) == pytest.approx(1.0)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="same shape"):
        generative.gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="flatten"):
        generative.VAE().encode(torch.zeros(2, 28, 28))
    with pytest.raises(ValueError, match="latent_dim"):
        generative.VAE(latent_dim=0)
    with pytest.raises(ValueError, match="uint8"):
        generative.binarize(torch.rand(2, 28, 28))
