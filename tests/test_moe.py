"""labkit.moe (chapter 08d): one expert with k = 1 is the dense MLP, the auxiliary loss is the Switch
Transformer's formula, the capacity drops exactly the choices beyond it, and bad input is refused."""
from __future__ import annotations

import math

import pytest
import torch

from labkit import moe
from labkit.gpt import GPT, MLP, GPTConfig
from labkit.lm import train_lm

pytestmark = pytest.mark.usefixtures("one_thread")


def test_one_expert_with_k_1_is_the_dense_mlp_with_the_same_weights():
    torch.manual_seed(0)
    config = GPTConfig(n_embd=32, n_head=4)
    dense = MLP(config)
    layer = moe.MoE(32, n_experts=1, top_k=1, capacity_factor=None)
    layer.experts[0].load_state_dict(dense.state_dict())
    x = torch.randn(3, 7, 32)
    assert torch.allclose(layer(x), dense(x), atol=1e-6, rtol=0)
    assert layer.dropped == 0 and layer.aux_loss.item() == pytest.approx(1.0)


def test_a_gpt_with_one_copied_expert_per_block_computes_the_same_logits():
    torch.manual_seed(1)
    gpt = GPT(GPTConfig(vocab_size=20, block_size=16, n_layer=2, n_head=2, n_embd=16))
    twin = moe.use_moe(GPT(gpt.config), n_experts=1, capacity_factor=None)
    twin.load_state_dict({k: v for k, v in gpt.state_dict().items()}, strict=False)
    for block, dense_block in zip(twin.transformer.h, gpt.transformer.h):
        block.mlp.experts[0].load_state_dict(dense_block.mlp.state_dict())
    ids = torch.randint(20, (2, 16))
    assert torch.allclose(twin(ids), gpt(ids), atol=1e-5, rtol=0)


def test_copy_mlp_upcycles_every_expert_and_keeps_the_function():
    torch.manual_seed(2)
    gpt = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=16))
    ids = torch.randint(20, (2, 8))
    before = gpt(ids)
    moe.use_moe(gpt, n_experts=4, top_k=2, capacity_factor=None, copy_mlp=True)
    # every expert is the same MLP and the k = 2 gates sum to 1: the same function
    assert torch.allclose(gpt(ids), before, atol=1e-5, rtol=0)


def test_switch_loss_is_the_formula_on_a_hand_made_routing():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.5, 0.25, 0.25]])
    experts = torch.tensor([[0], [0], [1], [0]])
    f = torch.tensor([3 / 4, 1 / 4, 0.0])                       # shares of the tokens
    P = torch.tensor([1.9 / 4, 1.55 / 4, 0.55 / 4])             # mean probabilities
    want = 3 * (f * P).sum()
    assert moe.switch_loss(probs, experts).item() == pytest.approx(want.item(), rel=1e-6)
    assert want.item() == pytest.approx(3 * (0.75 * 0.475 + 0.25 * 0.3875), rel=1e-6)


def test_switch_loss_is_1_when_balanced_and_E_when_collapsed():
    E = 4
    uniform = torch.full((8, E), 1 / E)
    assert moe.switch_loss(uniform, torch.arange(8).remainder(E)[:, None]).item() == pytest.approx(1.0)
    certain = torch.zeros(8, E)
    certain[:, 2] = 1.0
    assert moe.switch_loss(certain, torch.full((8, 1), 2)).item() == pytest.approx(E)


def test_switch_loss_counts_every_choice_with_top_2():
    probs = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]])
    experts = torch.tensor([[0, 1], [1, 2]])
    f = torch.tensor([1 / 4, 2 / 4, 1 / 4])
    want = 3 * (f * probs.mean(dim=0)).sum()
    assert moe.switch_loss(probs, experts).item() == pytest.approx(want.item(), rel=1e-6)


def test_route_top_1_gates_are_the_probabilities_and_top_2_gates_sum_to_1():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
    probs, experts, gates = moe.route(logits, 1)
    assert experts[:, 0].tolist() == [0, 2]
    assert torch.allclose(gates[:, 0], probs.max(dim=1).values)
    probs, experts, gates = moe.route(logits, 2)
    assert experts.tolist()[0] == [0, 1]
    assert torch.allclose(gates.sum(dim=1), torch.ones(2))


def test_capacity_drops_the_choices_beyond_it_first_come_first_served():
    torch.manual_seed(3)
    layer = moe.MoE(8, n_experts=2, top_k=1, capacity_factor=1.0)
    with torch.no_grad():
        layer.router.weight.zero_()
        layer.router.weight[0, 0] = 10.0                       # tokens with x[0] > 0 go to expert 0
    x = torch.randn(1, 10, 8)
    x[0, :, 0] = torch.tensor([1.0, 1, 1, 1, 1, 1, 1, -1, -1, 1])   # 8 tokens want expert 0, 2 want expert 1
    limit = moe.capacity(10, 2, 1, 1.0)
    assert limit == 5
    y = layer(x)
    assert layer.dropped == 8 - limit
    assert layer.kept_load.tolist() == [5.0, 2.0]
    assert layer.load.tolist() == pytest.approx([0.8, 0.2])
    # the dropped tokens are the last ones in line for expert 0 (positions 5, 6 and 9): their output is zero
    assert torch.all(y[0, [5, 6, 9]] == 0) and torch.all(y[0, [0, 1, 2, 3, 4, 7, 8]].abs().sum(dim=1) > 0)
    layer.capacity_factor = None
    layer(x)
    assert layer.dropped == 0


def test_capacity_formula():
    assert moe.capacity(64, 4, 1, 1.25) == 20
    assert moe.capacity(64, 4, 2, 1.0) == 32
    assert moe.capacity(10, 3, 1, 1.0) == math.ceil(10 / 3)


def test_parameter_counts_total_and_active():
    gpt = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=2, n_head=2, n_embd=16))
    dense_total = sum(p.numel() for p in gpt.parameters())
    mlp = sum(p.numel() for p in gpt.transformer.h[0].mlp.parameters())
    moe.use_moe(gpt, n_experts=4, top_k=1)
    total, active = moe.parameter_counts(gpt)
    router = 16 * 4
    assert total == dense_total + 2 * (3 * mlp + router)
    assert active == dense_total + 2 * router


def test_train_lm_adds_the_auxiliary_loss_and_it_balances_the_load():
    torch.manual_seed(4)
    data = torch.randint(12, (4000,))
    losses = {}
    for coefficient in (0.0, 1.0):
        gpt = moe.use_moe(GPT(GPTConfig(vocab_size=12, block_size=16, n_layer=1, n_head=2, n_embd=16)), n_experts=4)
        seen = []

        def aux(model, c=coefficient, seen=seen):
            loss = moe.load_balancing_loss(model)
            seen.append(loss.item())
            return c * loss

        train_lm(gpt, data, steps=30, batch_size=8, lr=3e-3, eval_every=30, eval_batches=2, aux_loss=aux,
                 verbose=False, peak_flops=1e11, device="cpu")
        assert len(seen) == 30
        losses[coefficient] = sum(seen[-5:]) / 5
    assert losses[1.0] < losses[0.0] + 1e-6


def test_bad_input_errors_name_the_argument():
    with pytest.raises(ValueError, match="top_k"):
        moe.MoE(16, n_experts=2, top_k=3)
    with pytest.raises(ValueError, match="n_experts"):
        moe.MoE(16, n_experts=0)
    with pytest.raises(ValueError, match="capacity_factor"):
        moe.MoE(16, n_experts=2, capacity_factor=0)
    with pytest.raises(ValueError, match=r"\(B, T, 16\)"):
        moe.MoE(16, n_experts=2)(torch.randn(4, 8))
    with pytest.raises(ValueError, match="top_k"):
        moe.route(torch.randn(3, 2), 0)
    with pytest.raises(ValueError, match="no MoE layer"):
        moe.load_balancing_loss(GPT(GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=1, n_embd=8)))
    with pytest.raises(TypeError, match="labkit GPT"):
        moe.use_moe(torch.nn.Linear(2, 2), n_experts=2)  # type: ignore[arg-type]
