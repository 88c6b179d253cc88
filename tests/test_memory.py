"""labkit.memory (chapter 08a): the formulas for a GPT's training memory equal what is measured, byte
for byte, and the saved-tensor counter counts what autograd keeps, each storage once."""
from __future__ import annotations

import dataclasses
import doctest

import pytest
import torch
from torch.utils.checkpoint import checkpoint

from labkit import memory
from labkit.finetune import training_memory
from labkit.gpt import GPT, PRESETS, GPTConfig
from labkit.lm import configure_optimizer, lm_loss
from labkit.memory import (
    activation_bytes,
    count_saved_tensors,
    gpt_activation_bytes,
    gpt_num_parameters,
    gpt_training_memory,
)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny models: one thread is faster than two."""


def _batch(config: GPTConfig, B: int, T: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(config.vocab_size, (B, T), generator=g),
            torch.randint(config.vocab_size, (B, T), generator=g))


def _checkpointed_loss(model: GPT, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """lm_loss of the GPT's forward pass with every block under torch.utils.checkpoint (as in 08a)."""
    tr = model.transformer
    h = tr.drop(tr.wte(x) + tr.wpe(torch.arange(x.shape[1])))
    for block in tr.h:
        h = checkpoint(block, h, use_reentrant=False)
    return lm_loss(model.lm_head(tr.ln_f(h)), y)


def test_module_doctest():
    assert doctest.testmod(memory, raise_on_error=False).failed == 0


@pytest.mark.parametrize("name", [n for n, p in PRESETS.items() if p["n_layer"] <= 6])
@pytest.mark.parametrize("bias", [True, False])
def test_parameter_formula_equals_the_model(name, bias):
    config = GPTConfig.preset(name, vocab_size=PRESETS[name].get("vocab_size", 65), bias=bias)
    assert gpt_num_parameters(config) == GPT(config).num_parameters()


def test_parameter_formula_of_gpt2_small():
    assert gpt_num_parameters(GPTConfig.preset("gpt2")) == 124_439_808  # GPT-2 small, tied head


@pytest.mark.parametrize("attention", ["sdpa", "manual"])
@pytest.mark.parametrize(("B", "T"), [(1, 1), (1, 8), (3, 17), (2, 64)])
def test_activation_formula_equals_the_measured_bytes(attention, B, T):
    config = GPTConfig.preset("gpt-nano", vocab_size=50, attention=attention)
    model = GPT(config)
    x, y = _batch(config, B, T)
    measured = activation_bytes(model, lambda: lm_loss(model(x), y))
    assert gpt_activation_bytes(config, B, T)["total"] == measured


def test_activation_formula_without_biases_and_with_another_shape():
    config = GPTConfig(vocab_size=33, block_size=40, n_layer=2, n_head=2, n_embd=24, bias=False)
    model = GPT(config)
    x, y = _batch(config, 2, 40)
    assert gpt_activation_bytes(config, 2)["total"] == activation_bytes(model, lambda: lm_loss(model(x), y))


@pytest.mark.parametrize(("B", "T"), [(1, 8), (2, 64)])
def test_checkpointing_formula_equals_the_measured_bytes(B, T):
    config = GPTConfig.preset("gpt-nano", vocab_size=50)
    model = GPT(config)
    x, y = _batch(config, B, T)
    measured = activation_bytes(model, lambda: _checkpointed_loss(model, x, y))
    parts = gpt_activation_bytes(config, B, T, checkpointing=True)
    assert parts["total"] == measured
    full = gpt_activation_bytes(config, B, T)
    assert parts["recomputed_block"] == full["blocks"] // config.n_layer
    assert gpt_activation_bytes(config, B, T)["recomputed_block"] == 0
    assert parts["embeddings"] == full["embeddings"] and parts["head"] == full["head"]


def test_checkpointed_forward_gives_the_same_gradients():
    config = GPTConfig.preset("gpt-nano", vocab_size=50)
    model = GPT(config)
    x, y = _batch(config, 2, 16)
    lm_loss(model(x), y).backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    _checkpointed_loss(model, x, y).backward()
    for a, p in zip(plain, model.parameters()):
        torch.testing.assert_close(p.grad, a, rtol=0, atol=1e-6)


def test_training_memory_formula_equals_finetunes_measurement_and_the_optimizer():
    config = GPTConfig.preset("gpt-nano", vocab_size=50)
    model = GPT(config)
    x, y = _batch(config, 4, 32)
    assert gpt_training_memory(config, 4, 32) == training_memory(model, x, y, loss_fn=lm_loss)
    optimizer = configure_optimizer(model, lr=1e-3)
    lm_loss(model(x), y).backward()
    optimizer.step()
    moments = sum(t.nbytes for state in optimizer.state.values() for key, t in state.items() if key != "step")
    assert moments == gpt_training_memory(config, 4, 32)["optimizer"]
    assert gpt_training_memory(config, 4, 32, optimizer_states=0)["optimizer"] == 0


def test_counter_counts_each_storage_once_and_skips_excluded_tensors():
    w = torch.randn(4, 3, requires_grad=True)
    x = torch.randn(5, 4, requires_grad=True)
    with count_saved_tensors() as everything:
        (x @ w).sum()
    assert everything.bytes == x.nbytes + w.nbytes and everything.storages == 2
    with count_saved_tensors(exclude=[w]) as saved:
        big = x * 2                      # saves nothing (a constant factor)
        q, k = big[:, :2], big[:, 2:]    # two views of one storage
        (q * k).sum()                    # saves both: one storage
    assert saved.bytes == big.nbytes and saved.storages == 1
    assert saved.shapes == [((5, 2), torch.float32, big.nbytes)]
    with torch.no_grad(), count_saved_tensors() as nothing:
        (x @ w).sum()
    assert nothing.bytes == 0


def test_formula_refuses_dropout_and_too_long_blocks_with_a_way_out():
    config = GPTConfig.preset("gpt-nano", vocab_size=50, dropout=0.1)
    with pytest.raises(ValueError, match="dropout 0.*dataclasses.replace"):
        gpt_activation_bytes(config, 2)
    assert gpt_activation_bytes(dataclasses.replace(config, dropout=0.0), 2)["total"] > 0
    with pytest.raises(ValueError, match="longer than the model's context"):
        gpt_activation_bytes(GPTConfig.preset("gpt-nano", vocab_size=50), 2, 65)
    with pytest.raises(ValueError, match="batch_size must be a whole number"):
        gpt_training_memory(GPTConfig.preset("gpt-nano", vocab_size=50), 0)
    with pytest.raises(ValueError, match="optimizer_states"):
        gpt_training_memory(GPTConfig.preset("gpt-nano", vocab_size=50), 2, optimizer_states=-1)


def test_activations_grow_linearly_with_tokens_and_quadratically_for_written_out_attention():
    sdpa = GPTConfig.preset("char-small", vocab_size=70, block_size=256)
    manual = dataclasses.replace(sdpa, attention="manual")
    blocks = lambda c, B, T: gpt_activation_bytes(c, B, T)["blocks"]  # noqa: E731
    assert blocks(sdpa, 4, 128) == 2 * blocks(sdpa, 2, 128) == 2 * blocks(sdpa, 4, 64)
    extra = lambda B, T: blocks(manual, B, T) - blocks(sdpa, B, T)  # noqa: E731
    assert extra(2, 256) / extra(2, 128) == pytest.approx(4, rel=0.02)
