"""Preference tuning and reinforcement learning on a language model: DPO and GRPO (chapter 07d).

Chapter 07d builds each part by hand; this module keeps the clean versions.

- `token_logprobs` / `sequence_logprobs`: how likely a model finds a response after its prompt,
  token by token or summed, with the prompt and the padding masked out. `pack_responses` lays
  prompts and responses out as the (ids, response mask) pair they read.
- `dpo_loss`: Direct Preference Optimization (Rafailov et al., 2023). The reward model of RLHF is
  hidden inside the policy: r(x, y) = β · log π(y|x) / π_ref(y|x) (+ a term of x alone), and the
  Bradley–Terry likelihood of "chosen ≻ rejected" becomes a loss on log-probabilities alone.
- `group_advantages`, `kl_k3`, `grpo_loss`: Group Relative Policy Optimization (Shao et al., 2024,
  DeepSeekMath). Sample a group of answers per prompt, score them, and use each answer's reward
  minus its group's mean, over the group's spread, as its advantage; PPO's clipped ratio; and a
  KL penalty to the reference model, estimated per token.
- `bandit_optimum`, `categorical_kl`: a one-step bandit (one prompt, a handful of answers), where
  the KL-regularised objective E_π[r] − β·KL(π‖π_ref) has the closed-form optimum
  π*(a) ∝ π_ref(a) · exp(r(a) / β). DPO's and GRPO's proofs in the chapter are checked against it.

Shapes: B sequences, T tokens, V vocabulary, N prompts, G answers per prompt (a group), K arms.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

__all__ = [
    "pack_responses",
    "token_logprobs",
    "sequence_logprobs",
    "dpo_loss",
    "group_advantages",
    "kl_k3",
    "grpo_loss",
    "bandit_optimum",
    "categorical_kl",
]


def _expect_tensor(value: Any, name: str, ndim: int, what: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor {what}, got a {type(value).__name__}")
    if value.ndim != ndim:
        raise ValueError(f"{name} must be {what} ({ndim} dimensions), got shape {tuple(value.shape)}")
    return value


def _expect_same_shape(shape: torch.Size, **tensors: torch.Tensor) -> None:
    for name, tensor in tensors.items():
        if tensor.shape != shape:
            raise ValueError(f"{name} has shape {tuple(tensor.shape)}, but it must match {tuple(shape)}: "
                             f"one value per sequence (and token) of the same batch")


def _expect_beta(beta: float, name: str = "beta", *, allow_zero: bool = False) -> float:
    if isinstance(beta, bool) or not isinstance(beta, (int, float)):
        raise TypeError(f"{name} must be a number, got {beta!r}")
    if beta < 0 or (beta == 0 and not allow_zero):
        bound = "≥ 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound} (it weighs the KL to the reference), got {beta}")
    return float(beta)


# ====================================================================== log-probabilities of responses


def pack_responses(
    prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts and responses (lists of token ids, one pair per row) → ids (B, T) and response_mask (B, T).

    Row b is prompt b + response b, padded on the right with ``pad_id`` to the longest row;
    response_mask is True exactly at the response's tokens (the ones a loss grades)."""
    if isinstance(prompts, torch.Tensor) or isinstance(responses, torch.Tensor):
        raise TypeError("prompts and responses must be lists of token-id lists, not tensors")
    if len(prompts) != len(responses):
        raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses: give one prompt per response "
                         f"(repeat a prompt for each of its answers)")
    if not prompts:
        raise ValueError("no responses to pack")
    for i, (prompt, response) in enumerate(zip(prompts, responses)):
        if len(prompt) < 1:
            raise ValueError(f"prompt {i} is empty: a response needs at least one token before it")
        if len(response) < 1:
            raise ValueError(f"response {i} is empty: there is nothing to score (end it with the end marker)")
    T = max(len(p) + len(r) for p, r in zip(prompts, responses))
    ids = torch.full((len(prompts), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), T), dtype=torch.bool)
    for i, (prompt, response) in enumerate(zip(prompts, responses)):
        ids[i, : len(prompt) + len(response)] = torch.tensor(list(prompt) + list(response))
        mask[i, len(prompt): len(prompt) + len(response)] = True
    return ids, mask


def token_logprobs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log p(ids[:, t] | ids[:, :t]) for t = 1 … T−1, from a model's logits (B, T, V) on ids (B, T):
    (B, T − 1). Position t's token is read from the logits at t − 1 (the next-token prediction)."""
    _expect_tensor(logits, "logits", 3, "(B, T, V)")
    _expect_tensor(ids, "ids", 2, "(B, T) of token ids")
    if logits.shape[:2] != ids.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and ids {tuple(ids.shape)} must share (B, T): "
                         f"pass the logits of model(ids)")
    log_probs = F.log_softmax(logits[:, :-1].float(), dim=-1)                    # (B, T-1, V)
    return log_probs.gather(-1, ids[:, 1:, None]).squeeze(-1)                    # (B, T-1)


def sequence_logprobs(model: Any, ids: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """log π(response | prompt) per row: the sum of the response tokens' log-probabilities (B,).

    ids (B, T) hold prompt + response (+ padding); response_mask (B, T) is True at the response's
    tokens (see `pack_responses`). The prompt and the padding add nothing. Chapter 07d builds it by hand."""
    _expect_tensor(ids, "ids", 2, "(B, T) of token ids")
    _expect_tensor(response_mask, "response_mask", 2, "(B, T), True at the response's tokens")
    if response_mask.shape != ids.shape:
        raise ValueError(f"response_mask {tuple(response_mask.shape)} must have the shape of ids {tuple(ids.shape)}")
    if bool(response_mask[:, 0].any()):
        raise ValueError("response_mask is True at position 0: the first token has no context to be predicted "
                         "from; every response needs a prompt before it")
    per_token = token_logprobs(model(ids), ids)                                  # (B, T-1)
    return (per_token * response_mask[:, 1:].to(per_token.dtype)).sum(dim=1)


# ====================================================================== DPO


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DPO's loss from sequence log-probabilities (B,) each: (mean loss, chosen rewards (B,),
    rejected rewards (B,)).

    The implicit reward of a response is r̂ = β · (log π(y|x) − log π_ref(y|x)); the loss is the
    Bradley–Terry negative log-likelihood that the chosen response wins:
    −log σ(r̂_chosen − r̂_rejected). The rewards come back detached, for logging. Chapter 07d
    derives it and trains with it. With `sequence_logprobs`, loss and gradient equal TRL's
    ``DPOTrainer`` (loss "sigmoid") on the same model and batch (tests/test_align_trl.py)."""
    beta = _expect_beta(beta)
    for name, value in (("policy_chosen", policy_chosen), ("policy_rejected", policy_rejected),
                        ("reference_chosen", reference_chosen), ("reference_rejected", reference_rejected)):
        _expect_tensor(value, name, 1, "(B,) of sequence log-probabilities")
    _expect_same_shape(policy_chosen.shape, policy_rejected=policy_rejected, reference_chosen=reference_chosen,
                       reference_rejected=reference_rejected)
    chosen = beta * (policy_chosen - reference_chosen)                           # (B,)
    rejected = beta * (policy_rejected - reference_rejected)                     # (B,)
    loss = -F.logsigmoid(chosen - rejected).mean()
    return loss, chosen.detach(), rejected.detach()


# ====================================================================== GRPO


def group_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Each answer's reward relative to its group: (r − mean) / (std + eps) along the last axis.

    rewards (N, G): G answers to each of N prompts → advantages (N, G). The std is the sample
    standard deviation (as in TRL's GRPOTrainer); a group whose answers all scored the same gets
    advantage 0 everywhere: it teaches nothing. Chapter 07d builds it by hand."""
    _expect_tensor(rewards, "rewards", 2, "(N prompts, G answers each)")
    if rewards.shape[1] < 2:
        raise ValueError(f"a group needs at least 2 answers to compare, got rewards of shape {tuple(rewards.shape)}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0 (it keeps a group with equal rewards from dividing by 0), got {eps}")
    rewards = rewards.float()
    return (rewards - rewards.mean(dim=1, keepdim=True)) / (rewards.std(dim=1, keepdim=True) + eps)


def kl_k3(logp: torch.Tensor, reference_logp: torch.Tensor) -> torch.Tensor:
    """Per-token estimate of KL(π‖π_ref) from the sampled tokens' log-probabilities (same shape):
    exp(d) − d − 1 with d = log π_ref − log π. Never negative, and unbiased when the tokens were
    sampled from π (Schulman's "k3"; GRPO's KL term)."""
    if not isinstance(logp, torch.Tensor) or not isinstance(reference_logp, torch.Tensor):
        raise TypeError("logp and reference_logp must be tensors of log-probabilities")
    _expect_same_shape(logp.shape, reference_logp=reference_logp)
    d = reference_logp - logp
    return torch.exp(d) - d - 1


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    reference_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip: float = 0.2,
    beta: float = 0.04,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GRPO's loss: (loss, mean KL per token (detached)).

    logp, old_logp, reference_logp (B, T): each sampled token's log-probability under the policy
    being trained, the policy that sampled it (detached) and the frozen reference; advantages (B,)
    (`group_advantages`, flattened); mask (B, T) True at the response tokens. Per token:
    min(ρ·A, clip(ρ, 1−clip, 1+clip)·A) − β·KL̂, with ρ = π/π_old; averaged over each response's
    tokens, then over the responses (the paper's 1/|o_i|), negated to be minimised. Chapter 07d
    builds it by hand and trains with it. Loss and gradient equal TRL's ``GRPOTrainer`` with
    ``loss_type="grpo"`` and ``use_bias_correction_kl=False`` (tests/test_align_trl.py); TRL 1.16's
    default multiplies the KL term by π/π_old (after DeepSeek-V3.2), which leaves the loss's value
    unchanged on-policy but changes the KL's gradient."""
    for name, value in (("logp", logp), ("old_logp", old_logp), ("reference_logp", reference_logp)):
        _expect_tensor(value, name, 2, "(B, T) of sampled tokens' log-probabilities")
    _expect_tensor(advantages, "advantages", 1, "(B,), one per response")
    _expect_tensor(mask, "mask", 2, "(B, T), True at the response's tokens")
    _expect_same_shape(logp.shape, old_logp=old_logp, reference_logp=reference_logp, mask=mask)
    if advantages.shape[0] != logp.shape[0]:
        raise ValueError(f"advantages has {advantages.shape[0]} values for {logp.shape[0]} responses: "
                         f"flatten the (N, G) advantages to (N·G,) in the responses' order")
    if not 0 < clip < 1:
        raise ValueError(f"clip must be between 0 and 1 (PPO uses 0.2), got {clip}")
    beta = _expect_beta(beta, allow_zero=True)
    weights = mask.to(logp.dtype)
    lengths = weights.sum(dim=1)
    if bool((lengths == 0).any()):
        raise ValueError("a row of mask has no response token: every response needs at least one token")
    ratio = torch.exp(logp - old_logp.detach())                                  # (B, T)
    A = advantages.detach()[:, None]                                             # (B, 1)
    surrogate = torch.minimum(ratio * A, ratio.clamp(1 - clip, 1 + clip) * A)
    kl = kl_k3(logp, reference_logp.detach())
    per_token = -(surrogate - beta * kl)
    loss = ((per_token * weights).sum(dim=1) / lengths).mean()
    mean_kl = ((kl * weights).sum(dim=1) / lengths).mean().detach()
    return loss, mean_kl


# ====================================================================== the one-step bandit


def _expect_distribution(probs: Any, name: str) -> torch.Tensor:
    probs = _expect_tensor(probs, name, 1, "(K,) of probabilities")
    if bool((probs < 0).any()) or abs(float(probs.sum()) - 1) > 1e-4:
        raise ValueError(f"{name} must be probabilities ≥ 0 that sum to 1, got sum {float(probs.sum()):.6g} "
                         f"and minimum {float(probs.min()):.3g}: normalise with probs / probs.sum()")
    return probs


def bandit_optimum(reference_probs: torch.Tensor, rewards: torch.Tensor, beta: float) -> torch.Tensor:
    """The policy (K,) that maximises E_π[r] − β · KL(π‖π_ref) over K arms:
    π*(a) = π_ref(a) · exp(r(a)/β) / Z. Small β: the best arm; large β: the reference.
    Chapter 07d derives it and checks DPO and GRPO against it."""
    reference_probs = _expect_distribution(reference_probs, "reference_probs")
    _expect_tensor(rewards, "rewards", 1, "(K,), one reward per arm")
    if rewards.shape != reference_probs.shape:
        raise ValueError(f"rewards {tuple(rewards.shape)} and reference_probs {tuple(reference_probs.shape)} "
                         f"must have one value per arm each")
    beta = _expect_beta(beta)
    logits = torch.log(reference_probs.double()) + rewards.double() / beta
    return torch.softmax(logits, dim=0).to(reference_probs.dtype)


def categorical_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p‖q) = Σ p · log(p/q) for two distributions over the same K outcomes (a 0-d tensor, nats);
    terms with p = 0 add 0."""
    p = _expect_distribution(p, "p")
    q = _expect_distribution(q, "q")
    if p.shape != q.shape:
        raise ValueError(f"p {tuple(p.shape)} and q {tuple(q.shape)} must be over the same outcomes")
    if bool(((q == 0) & (p > 0)).any()):
        return torch.tensor(float("inf"))
    terms = torch.where(p > 0, p * (torch.log(p) - torch.log(q.clamp_min(1e-300))), torch.zeros_like(p))
    return terms.sum()
