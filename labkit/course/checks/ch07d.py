"""Checks for chapter 07d (practice III, part 4: preferences and rewards — DPO and GRPO).

The stub cells in ``chapters/07d_preference_and_rl.ipynb``::

    def my_dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta):
        raise NotImplementedError  # TODO: mean of −log σ(β·(log-ratio of the chosen) − β·(log-ratio of the rejected))
    check("07.9", my_dpo_loss)

    def leave_one_out(rewards):
        raise NotImplementedError  # TODO: (N, G) → reward minus the mean of the other G − 1 rewards of its group
    check("07.10", leave_one_out)

    prediction = ...  # TODO: "a", "b" or "c" (then the measurement cell)
    measured = ...     # TODO: the true reward of π* at β = 0.1
    explanation = ...  # TODO: "a", "b" or "c"
    check("07.11", dict(committed=committed, prediction=prediction, measured=measured, explanation=explanation))

Notebook 07c has 07.7–07.8. Every check runs in well under a second and leaves the notebook's
random stream alone (the inputs come from private generators).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from labkit import align
from labkit.course.checks.predict import PredictMeasureExplain
from labkit.course.exercises import Hint, exercise, expect_callable


def _not_done(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError  # what an untouched stub function does


def _as_tensor(value: Any, what: str, shape: tuple[int, ...]) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise Hint(f"{what} should return a torch.Tensor, got {type(value).__name__}")
    if tuple(value.shape) != shape:
        hint = " (take the mean over the batch)" if shape == () else ""
        raise Hint(f"{what} should have shape {shape}, got {tuple(value.shape)}{hint}")
    return value.detach().double()


# --------------------------------------------------------------------------- 07.9 DPO's loss

_DPO_CASES = [(4, 0.1), (16, 0.5), (7, 2.0), (1, 1.0)]


def _log_probs(seed: int, batch: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)             # a private stream: the notebook's stays put
    return [-(torch.rand(batch, generator=generator, dtype=torch.float64) * 20) for _ in range(4)]


def _reference_dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, reference_chosen: torch.Tensor,
                        reference_rejected: torch.Tensor, beta: float) -> torch.Tensor:
    return align.dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta)[0]


def _check_dpo_loss(my_dpo_loss: Callable) -> str:
    expect_callable(my_dpo_loss, "my_dpo_loss")
    for seed, (batch, beta) in enumerate(_DPO_CASES):
        pc, pr, rc, rr = _log_probs(seed, batch)
        want = _reference_dpo_loss(pc, pr, rc, rr, beta)
        got = _as_tensor(my_dpo_loss(pc.clone(), pr.clone(), rc.clone(), rr.clone(), beta),
                         f"my_dpo_loss(batch of {batch}, beta={beta})", ())
        if torch.isclose(got, want, rtol=1e-5, atol=1e-7):
            continue
        where = f"for a batch of {batch} with beta = {beta}: got {got.item():.5g}, expected {want.item():.5g}."
        margin = beta * ((pc - rc) - (pr - rr))
        if torch.isclose(got, -F.logsigmoid(-margin).mean(), rtol=1e-5):
            raise Hint(f"{where} Chosen and rejected are swapped: the loss is small when the *chosen* answer's "
                       "log-ratio is the larger one")
        if torch.isclose(got, -F.logsigmoid(beta * (pc - pr)).mean(), rtol=1e-5):
            raise Hint(f"{where} The reference is missing: each answer's term is log π − log π_ref, its log-ratio")
        if torch.isclose(got, -F.logsigmoid((pc - rc) - (pr - rr)).mean(), rtol=1e-5):
            raise Hint(f"{where} β is missing: multiply the difference of log-ratios by beta")
        if torch.isclose(got, -F.logsigmoid(margin).sum(), rtol=1e-5):
            raise Hint(f"{where} That is the sum over the batch: return the mean")
        raise Hint(f"{where} The loss is −log σ(β·(log π(chosen) − log π_ref(chosen)) − β·(log π(rejected) − "
                   "log π_ref(rejected))), averaged over the batch")
    return f"equal to labkit.align.dpo_loss on {len(_DPO_CASES)} batches"


exercise(
    "07.9",
    title="DPO's loss",
    reference=lambda: _reference_dpo_loss,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda pc, pr, rc, rr, b: -F.logsigmoid(b * ((pr - rr) - (pc - rc))).mean(),   # swapped
        lambda: lambda pc, pr, rc, rr, b: -F.logsigmoid(b * (pc - pr)).mean(),                 # no reference
        lambda: lambda pc, pr, rc, rr, b: -F.logsigmoid((pc - rc) - (pr - rr)).mean(),         # no β
        lambda: lambda pc, pr, rc, rr, b: -F.logsigmoid(b * ((pc - rc) - (pr - rr))).sum(),   # sum
        lambda: lambda pc, pr, rc, rr, b: -torch.sigmoid(b * ((pc - rc) - (pr - rr))).mean(),  # no log
        lambda: lambda pc, pr, rc, rr, b: -F.logsigmoid(b * ((pc - rc) - (pr - rr))),          # not reduced
    ],
)(_check_dpo_loss)


# --------------------------------------------------------------------------- 07.10 leave-one-out advantages

_LOO_SHAPES = [(3, 4), (1, 2), (5, 8), (2, 3)]


def _reference_leave_one_out(rewards: torch.Tensor) -> torch.Tensor:
    G = rewards.shape[1]
    return rewards - (rewards.sum(dim=1, keepdim=True) - rewards) / (G - 1)


def _check_leave_one_out(leave_one_out: Callable) -> str:
    expect_callable(leave_one_out, "leave_one_out")
    for seed, shape in enumerate(_LOO_SHAPES):
        generator = torch.Generator().manual_seed(100 + seed)
        rewards = torch.randint(0, 3, shape, generator=generator).double() + torch.rand(shape, generator=generator,
                                                                                          dtype=torch.float64)
        want = _reference_leave_one_out(rewards)
        got = _as_tensor(leave_one_out(rewards.clone()), f"leave_one_out(rewards of shape {shape})", shape)
        if torch.allclose(got, want, rtol=1e-5, atol=1e-7):
            continue
        where = f"for rewards of shape {shape}:"
        if torch.allclose(got, rewards - rewards.mean(dim=1, keepdim=True), atol=1e-6):
            raise Hint(f"{where} you subtract the mean of the whole group, the answer's own reward included; "
                       "leave it out: (group sum − own reward) / (G − 1)")
        if torch.allclose(got, align.group_advantages(rewards).double(), atol=1e-4):
            raise Hint(f"{where} that is GRPO's normalised advantage; RLOO subtracts the others' mean and "
                       "does not divide by a standard deviation")
        if shape[0] > 1 and torch.allclose(got, rewards - (rewards.sum(dim=0, keepdim=True) - rewards) / (shape[0] - 1),
                                           atol=1e-6):
            raise Hint(f"{where} you averaged down the columns (prompts); a group is a row: average along dim=1")
        if torch.allclose(got, rewards - (rewards.sum(dim=1, keepdim=True) - rewards) / shape[1], atol=1e-6):
            raise Hint(f"{where} the others are G − 1 answers, not G: divide by G − 1")
        raise Hint(f"{where} each entry should be its reward minus the mean of the other G − 1 rewards in its row")
    return f"equal to reward − mean of the others on {len(_LOO_SHAPES)} batches of groups"


exercise(
    "07.10",
    title="Leave-one-out advantages",
    reference=lambda: _reference_leave_one_out,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda r: r - r.mean(dim=1, keepdim=True),                                  # own reward included
        lambda: lambda r: align.group_advantages(r),                                        # GRPO's
        lambda: lambda r: r - (r.sum(dim=0, keepdim=True) - r) / max(r.shape[0] - 1, 1),    # wrong axis
        lambda: lambda r: r - (r.sum(dim=1, keepdim=True) - r) / r.shape[1],                # ÷ G
        lambda: lambda r: (r.sum(dim=1, keepdim=True) - r) / (r.shape[1] - 1) - r,          # sign flipped
    ],
)(_check_leave_one_out)


# --------------------------------------------------------------------------- 07.11 predict, measure, explain

# the bandit of the notebook's section 2: answers "42", "32", "52", "4", "420" to 17+25=
REFERENCE = torch.tensor([0.30, 0.40, 0.10, 0.12, 0.08])
PROXY = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.5])       # the judge with a loophole
REWARD = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0])      # the true judge


def true_reward_of_optimum(beta: float = 0.1) -> float:
    """The true reward of π* = π_ref·exp(proxy/β)/Z on the loophole bandit: the measurement of 07.11."""
    return float((align.bandit_optimum(REFERENCE, PROXY, beta) * REWARD).sum())


def _direction(value: float) -> str:
    at_one = true_reward_of_optimum(1.0)
    return "a" if value > at_one + 1e-6 else "b" if value < at_one - 1e-6 else "c"


LEASH = PredictMeasureExplain(
    predictions={
        "a": "it rises: a looser leash lets the policy move further towards better answers",
        "b": "it falls: below the true reward at β = 1",
        "c": "it stays the same: β changes how far the policy moves, not which answers it prefers",
    },
    explanations={
        "a": "π* weighs each answer by exp(proxy/β): as β shrinks, the answer with the highest proxy reward wins, "
             "and that is the loophole \"420\", which is wrong",
        "b": "a small β means the policy trained for fewer steps, so it had no time to find the right answer",
        "c": "the KL grows as β shrinks, and a larger KL always lowers the true reward",
    },
    measure=true_reward_of_optimum,
    predicted=_direction,
    explained=lambda value: "a" if _direction(value) == "b" else "none",
    what="the true reward of π* at β = 0.1",
    wrong_explanations={
        "b": "π* is a closed form: no steps, no training. Only β and the rewards decide it",
        "c": "not always: from β = 10 down to the curve's peak the KL grew and the true reward rose with it. "
             "Look at which answer gains the probability as β shrinks",
    },
    rel_tol=0.02,
    abs_tol=1e-3,
    misreadings=(
        (lambda value, true: abs(value - true_reward_of_optimum(1.0)) < 2e-3, "that is the true reward at β = 1; "
         "copy the one printed for β = 0.1"),
        (lambda value, true: abs(value - float((align.bandit_optimum(REFERENCE, PROXY, 0.1) * PROXY).sum())) < 2e-3,
         "that is the proxy reward (what the judge with the loophole pays); `measured` is the true reward"),
    ),
)


LEASH.register(
    "07.11", "Predict, measure, explain: loosening the leash", module=__name__,
    wrong_measurements=(
        lambda: true_reward_of_optimum(1.0),  # β = 1's row
        lambda: float((align.bandit_optimum(REFERENCE, PROXY, 0.1) * PROXY).sum()),  # proxy
    ),
)
