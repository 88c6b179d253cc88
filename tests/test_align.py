"""labkit.align (chapter 07d): DPO and GRPO.

The proofs are on a one-step bandit, where the KL-regularised optimum is known in closed form:
π*(a) ∝ π_ref(a) · exp(r(a)/β). DPO trained on Bradley–Terry preferences between arms reaches it
(to 1e-4 in every arm's probability, for several β); GRPO with Bernoulli rewards puts ≥ 95 % of its
probability on the best arm. The losses equal hand computations on tiny cases.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from labkit.align import (
    bandit_optimum,
    categorical_kl,
    dpo_loss,
    group_advantages,
    grpo_loss,
    kl_k3,
    pack_responses,
    sequence_logprobs,
    token_logprobs,
)
from labkit.gpt import GPT, GPTConfig

REFERENCE = torch.tensor([0.40, 0.25, 0.15, 0.12, 0.08], dtype=torch.float64)
REWARDS = torch.tensor([0.0, 1.0, 0.5, 2.0, -1.0], dtype=torch.float64)
DPO_TOLERANCE = 1e-4  # the largest difference allowed in any arm's probability


def train_dpo_bandit(reference, rewards, beta):
    """A softmax policy over the arms, trained on DPO's loss over every ordered pair of arms (i, j),
    weighted by the Bradley–Terry probability that i is preferred: σ(r_i − r_j) (the loss of
    infinitely many labelled pairs, all arm pairs equally often). L-BFGS, from the reference."""
    logits = torch.log(reference).clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([logits], lr=1.0, max_iter=200, tolerance_grad=1e-12, tolerance_change=1e-15,
                                  line_search_fn="strong_wolfe")
    i, j = torch.meshgrid(torch.arange(len(rewards)), torch.arange(len(rewards)), indexing="ij")
    i, j = i[i != j], j[i != j]
    weight = torch.sigmoid(rewards[i] - rewards[j])                            # P(i ≻ j)
    log_ref = torch.log(reference)

    def closure():
        optimizer.zero_grad()
        logp = torch.log_softmax(logits, dim=0)
        per_pair = -F.logsigmoid(beta * ((logp[i] - log_ref[i]) - (logp[j] - log_ref[j])))  # DPO's loss, i ≻ j
        loss = (weight * per_pair).sum() / weight.sum()                        # weighted by P(i ≻ j)
        loss.backward()
        return loss

    optimizer.step(closure)
    return torch.softmax(logits.detach(), dim=0)


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_dpo_on_a_bandit_reaches_the_closed_form_optimum(beta):
    torch.manual_seed(0)
    trained = train_dpo_bandit(REFERENCE, REWARDS, beta)
    optimum = bandit_optimum(REFERENCE, REWARDS, beta)
    assert (trained - optimum).abs().max() < DPO_TOLERANCE, (trained, optimum)


def test_dpo_beta_sweep_moves_from_the_reference_to_the_best_arm():
    best = int(REWARDS.argmax())
    shares = [float(train_dpo_bandit(REFERENCE, REWARDS, beta)[best]) for beta in (8.0, 2.0, 0.5)]
    assert shares[0] < shares[1] < shares[2]
    assert abs(float(bandit_optimum(REFERENCE, REWARDS, 1e3)[0]) - float(REFERENCE[0])) < 1e-3  # β → ∞: π_ref
    assert float(bandit_optimum(REFERENCE, REWARDS, 0.01)[best]) > 0.999                       # β → 0: greedy


def test_dpo_trained_on_sampled_pairs_gets_close_to_the_optimum():
    generator = torch.Generator().manual_seed(0)
    beta, n = 1.0, 20_000
    i = torch.randint(0, 5, (n,), generator=generator)
    j = (i + torch.randint(1, 5, (n,), generator=generator)) % 5              # another arm
    i_wins = torch.rand(n, generator=generator) < torch.sigmoid(REWARDS[i] - REWARDS[j])
    chosen, rejected = torch.where(i_wins, i, j), torch.where(i_wins, j, i)
    logits = torch.log(REFERENCE).clone().requires_grad_(True)
    optimizer = torch.optim.Adam([logits], lr=0.1)
    log_ref = torch.log(REFERENCE)
    for _ in range(300):
        logp = torch.log_softmax(logits, dim=0)
        loss, _, _ = dpo_loss(logp[chosen], logp[rejected], log_ref[chosen], log_ref[rejected], beta)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    trained = torch.softmax(logits.detach(), dim=0)
    assert (trained - bandit_optimum(REFERENCE, REWARDS, beta)).abs().max() < 0.03


def test_grpo_on_a_bandit_converges_to_the_best_arm():
    generator = torch.Generator().manual_seed(0)
    success = torch.tensor([0.2, 0.5, 0.8, 0.6, 0.3])                         # Bernoulli rewards: arm 2 is best
    reference = torch.full((5,), 0.2)
    logits = torch.zeros(5, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=0.05)
    for _ in range(300):
        probs = torch.softmax(logits.detach(), dim=0)
        arms = torch.multinomial(probs.expand(4, 5), 8, replacement=True, generator=generator)  # (N=4, G=8)
        rewards = (torch.rand(arms.shape, generator=generator) < success[arms]).float()
        advantages = group_advantages(rewards).reshape(-1)
        logp = torch.log_softmax(logits, dim=0)[arms.reshape(-1)][:, None]     # (B, 1): one token each
        loss, _ = grpo_loss(logp, logp.detach(), torch.log(reference)[arms.reshape(-1)][:, None], advantages,
                            torch.ones_like(logp, dtype=torch.bool), beta=0.001)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(torch.softmax(logits.detach(), dim=0)[2]) > 0.95


def test_dpo_loss_equals_a_hand_computation():
    pc, pr, rc, rr = torch.tensor([-2.0, -1.0]), torch.tensor([-3.0, -0.5]), torch.tensor([-2.5, -1.0]), \
        torch.tensor([-2.0, -1.5])
    loss, chosen, rejected = dpo_loss(pc, pr, rc, rr, beta=0.1)
    # row 0: 0.1·(0.5) − 0.1·(−1.0) = 0.15; row 1: 0.1·0 − 0.1·(1.0) = −0.1
    want = (math.log(1 + math.exp(-0.15)) + math.log(1 + math.exp(0.1))) / 2
    assert abs(loss.item() - want) < 1e-6
    assert torch.allclose(chosen, torch.tensor([0.05, 0.0])) and torch.allclose(rejected, torch.tensor([-0.1, 0.1]))


def test_group_advantages_and_kl_estimator_by_hand():
    adv = group_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]]))
    s = math.sqrt(1 / 3)                                                       # sample std of 1, 0, 0, 1
    assert torch.allclose(adv[0], torch.tensor([0.5, -0.5, -0.5, 0.5]) / (s + 1e-4))
    assert torch.equal(adv[1], torch.zeros(4))                                 # all equal: nothing to learn
    logp, ref = torch.tensor([-1.0, -2.0]), torch.tensor([-1.5, -2.0])
    assert torch.allclose(kl_k3(logp, ref), torch.tensor([math.exp(-0.5) + 0.5 - 1, 0.0]))


def test_kl_k3_is_unbiased_for_the_true_kl():
    p, q = torch.tensor([0.5, 0.3, 0.2]), torch.tensor([0.2, 0.3, 0.5])
    samples = torch.multinomial(p, 200_000, replacement=True, generator=torch.Generator().manual_seed(0))
    estimate = kl_k3(torch.log(p)[samples], torch.log(q)[samples]).mean()
    assert abs(float(estimate) - float(categorical_kl(p, q))) < 0.01


def test_grpo_loss_equals_a_hand_computation_with_clipping():
    logp = torch.tensor([[-1.0, -0.5, 0.0], [-2.0, -1.0, 0.0]])
    old = torch.tensor([[-1.5, -0.5, 0.0], [-1.0, -1.0, 0.0]])
    ref = torch.tensor([[-1.0, -1.0, 0.0], [-2.0, -1.0, 0.0]])
    mask = torch.tensor([[True, True, False], [True, True, False]])
    adv = torch.tensor([1.0, -1.0])
    loss, mean_kl = grpo_loss(logp, old, ref, adv, mask, clip=0.2, beta=0.1)
    # row 0: ratios e^0.5 (clipped to 1.2), 1 → surrogates 1.2, 1; KL 0, e^-0.5 + 0.5 − 1
    kl01 = math.exp(-0.5) + 0.5 - 1
    row0 = -((1.2 - 0) + (1.0 - 0.1 * kl01)) / 2
    # row 1: ratios e^-1, 1, A = −1 → min(−e^-1, −0.8) = −0.8, −1; KL 0
    row1 = -((-0.8) + (-1.0)) / 2
    assert abs(loss.item() - (row0 + row1) / 2) < 1e-6
    assert abs(mean_kl.item() - kl01 / 4) < 1e-6


def test_sequence_logprobs_equal_a_direct_gather():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=16, n_layer=1, n_head=2, n_embd=8)).eval()
    ids, mask = pack_responses([[1, 2, 3], [4, 5]], [[6, 7], [8, 9, 10, 0]], pad_id=0)
    assert ids.tolist() == [[1, 2, 3, 6, 7, 0], [4, 5, 8, 9, 10, 0]]
    assert mask.tolist() == [[False, False, False, True, True, False], [False, False, True, True, True, True]]
    with torch.no_grad():
        got = sequence_logprobs(model, ids, mask)
        for b, (prompt, response) in enumerate((([1, 2, 3], [6, 7]), ([4, 5], [8, 9, 10, 0]))):
            row = torch.tensor([prompt + response])
            logp = torch.log_softmax(model(row)[0], dim=-1)
            want = sum(logp[len(prompt) - 1 + k, token] for k, token in enumerate(response))
            assert abs(float(got[b]) - float(want)) < 1e-5
        assert token_logprobs(model(ids), ids).shape == (2, 5)


def test_bandit_optimum_maximises_the_regularised_objective():
    beta = 0.7
    optimum = bandit_optimum(REFERENCE, REWARDS, beta)

    def objective(p):
        return float((p * REWARDS).sum() - beta * categorical_kl(p, REFERENCE))

    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        other = torch.softmax(torch.log(optimum) + 0.3 * torch.randn(5, generator=generator, dtype=torch.float64), 0)
        assert objective(other) <= objective(optimum) + 1e-12
    # and its value is β·log Z: the soft maximum of the rewards
    assert abs(objective(optimum) - beta * math.log(float((REFERENCE * torch.exp(REWARDS / beta)).sum()))) < 1e-9


@pytest.mark.parametrize("call, message", [
    (lambda: dpo_loss(torch.zeros(2), torch.zeros(2), torch.zeros(2), torch.zeros(2), beta=0), "beta must be > 0"),
    (lambda: dpo_loss(torch.zeros(2), torch.zeros(3), torch.zeros(2), torch.zeros(2), beta=0.1), "policy_rejected"),
    (lambda: dpo_loss(torch.zeros(2, 1), torch.zeros(2), torch.zeros(2), torch.zeros(2), 0.1), "policy_chosen"),
    (lambda: group_advantages(torch.zeros(4)), "rewards must be"),
    (lambda: group_advantages(torch.zeros(4, 1)), "at least 2 answers"),
    (lambda: bandit_optimum(torch.tensor([0.5, 0.6]), torch.zeros(2), 1.0), "sum to 1"),
    (lambda: bandit_optimum(torch.tensor([0.5, 0.5]), torch.zeros(3), 1.0), "one value per arm"),
    (lambda: bandit_optimum(torch.tensor([0.5, 0.5]), torch.zeros(2), -1.0), "beta must be > 0"),
    (lambda: grpo_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3),
                       torch.ones(2, 3, dtype=torch.bool)), "advantages has 3 values for 2"),
    (lambda: grpo_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2),
                       torch.ones(2, 3, dtype=torch.bool), clip=1.5), "clip must be"),
    (lambda: grpo_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2),
                       torch.zeros(2, 3, dtype=torch.bool)), "no response token"),
    (lambda: pack_responses([[1]], [[2], [3]], 0), "1 prompts but 2 responses"),
    (lambda: pack_responses([[1]], [[]], 0), "response 0 is empty"),
    (lambda: sequence_logprobs(lambda ids: ids, torch.zeros(1, 3, dtype=torch.long),
                               torch.ones(1, 3, dtype=torch.bool)), "position 0"),
])
def test_bad_input_gets_a_clear_error(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()
