"""Checks for chapter 08d (practice: scaling, part 4: knowledge distillation and a mixture of experts).

The stub cells in ``chapters/08d_distillation_and_experts.ipynb``::

    def distill_loss(student_logits, teacher_logits, labels, temperature, alpha):
        raise NotImplementedError  # TODO: α · T² · KL(teacher_T ‖ student_T) + (1 − α) · CE(student, labels)
    check("08.12", distill_loss)

    def dropped_choices(experts, n_experts, capacity_factor):
        raise NotImplementedError  # TODO: how many of the N·k choices in experts (N, k) the capacity turns away
    check("08.13", dropped_choices)

    def predicted_parameters(n_layer, n_embd, vocab_size, block_size, n_experts, top_k):
        raise NotImplementedError  # TODO: (total, active) parameters of the course GPT with use_moe
    check("08.14", predicted_parameters)

    prediction = ...  # TODO: "a", "b" or "c": decide, run this cell, THEN run the measurement below
    ...               # the measurement cell: committed = prediction, then the counts, printed
    measured = ...     # TODO: the share of the parameters one token uses with 64 experts, top-2, printed above
    explanation = ...  # TODO: "a", "b" or "c"
    check("08.15", dict(committed=committed, prediction=prediction, measured=measured, explanation=explanation))

Every check runs in well under a second and leaves the notebook's random stream alone.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from labkit import distill, moe
from labkit.course.checks.predict import PERCENTAGE, PredictMeasureExplain
from labkit.course.exercises import Hint, exercise, expect_callable, expect_number


def _not_done(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError  # what an untouched stub function does


# --------------------------------------------------------------------------- 08.12 Hinton's loss

_DISTILL_CASES = [(8, 10, 4.0, 0.9), (5, 3, 1.0, 0.5), (16, 70, 2.0, 1.0), (4, 6, 10.0, 0.0), (6, 10, 0.5, 0.7)]


def _logits(seed: int, n: int, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)             # a private stream: the notebook's stays put
    student = torch.randn(n, k, generator=generator) * 2
    teacher = torch.randn(n, k, generator=generator) * 4
    labels = torch.randint(k, (n,), generator=generator)
    return student, teacher, labels


def _reference_distill_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor,
                            temperature: float, alpha: float) -> torch.Tensor:
    return distill.distillation_loss(student, teacher, labels, temperature, alpha)


def _check_distill_loss(distill_loss: Callable) -> str:
    expect_callable(distill_loss, "distill_loss")
    for seed, (n, k, T, alpha) in enumerate(_DISTILL_CASES):
        student, teacher, labels = _logits(seed, n, k)
        call = f"distill_loss(student ({n}, {k}), teacher, labels, temperature={T}, alpha={alpha})"
        got = expect_number(distill_loss(student.clone(), teacher.clone(), labels.clone(), T, alpha), call, " (the mean loss)")
        want = _reference_distill_loss(student, teacher, labels, T, alpha).item()
        if math.isclose(got, want, rel_tol=1e-4, abs_tol=1e-6):
            continue
        soft = distill.distillation_loss(student, teacher, labels, T, 1.0).item()
        hard = F.cross_entropy(student, labels).item()
        kl_sum = F.kl_div(F.log_softmax(student / T, 1), F.softmax(teacher / T, 1), reduction="sum").item()
        if T != 1 and math.isclose(got, alpha * soft / T ** 2 + (1 - alpha) * hard, rel_tol=1e-4):
            raise Hint(f"{call}: the soft term lacks its T² factor: its gradients shrink as 1/T², T² restores their size")
        if math.isclose(got, (1 - alpha) * soft + alpha * hard, rel_tol=1e-4) and alpha != 0.5:
            raise Hint(f"{call}: alpha weighs the soft targets (the teacher), 1 − alpha the labels; you have them swapped")
        if math.isclose(got, alpha * T ** 2 * kl_sum + (1 - alpha) * hard, rel_tol=1e-4):
            raise Hint(f"{call}: the KL term should be the mean over the {n} examples (a sum over classes, "
                       "then a mean over rows: KLDivLoss's reduction='batchmean')")
        reverse = (F.softmax(student / T, 1) * (F.log_softmax(student / T, 1) - F.log_softmax(teacher / T, 1))).sum(1).mean()
        if math.isclose(got, alpha * T ** 2 * reverse.item() + (1 - alpha) * hard, rel_tol=1e-4):
            raise Hint(f"{call}: that is KL(student ‖ teacher); Hinton's is KL(teacher ‖ student): "
                       "Σ p_teacher · (log p_teacher − log p_student)")
        raise Hint(f"{call}: expected {want:.5g}, got {got:.5g}; both softmaxes of the soft term divide the logits "
                   "by T, the labels' cross-entropy uses the plain logits")
    return f"Hinton et al.'s loss, {len(_DISTILL_CASES)} cases (temperatures 0.5 to 10, alpha 0 to 1)"


def _no_t_squared(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor, T: float, a: float) -> torch.Tensor:
    return distill.distillation_loss(s, t, y, T, a) - a * (T * T - 1) * distill.distillation_loss(s, t, y, T, 1.0) / (T * T)


def _swapped_alpha(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor, T: float, a: float) -> torch.Tensor:
    return distill.distillation_loss(s, t, y, T, 1 - a)


def _teacher_unscaled(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor, T: float, a: float) -> torch.Tensor:
    kl = F.kl_div(F.log_softmax(s / T, 1), F.softmax(t, 1), reduction="batchmean")
    return a * T * T * kl + (1 - a) * F.cross_entropy(s, y)


exercise(
    "08.12",
    title="Hinton's distillation loss",
    reference=lambda: _reference_distill_loss,
    stub=lambda: _not_done,
    wrong=[lambda: _no_t_squared, lambda: _swapped_alpha, lambda: _teacher_unscaled],
)(_check_distill_loss)


# --------------------------------------------------------------------------- 08.13 dropped choices

_DROP_CASES: list[tuple[list[list[int]], int, float]] = [
    ([[0], [0], [0], [1], [0], [2], [0], [0]], 4, 1.0),                     # top-1, 8 tokens, 4 experts
    ([[0, 1], [0, 2], [1, 0], [0, 1], [3, 0], [0, 2]], 4, 1.0),            # top-2: every choice counts
    ([[1, 0], [1, 2], [1, 0], [1, 3], [1, 2]], 4, 1.5),                    # a fractional capacity: ceil
    ([[2], [2], [2], [2], [2], [2], [2]], 3, 0.5),
    ([[0], [1], [2], [0], [1], [2]], 3, 1.0),                               # balanced: nothing dropped
]


def _reference_dropped_choices(experts: torch.Tensor, n_experts: int, capacity_factor: float) -> int:
    n_tokens, top_k = experts.shape
    limit = moe.capacity(n_tokens, n_experts, top_k, capacity_factor)
    counts = torch.bincount(experts.reshape(-1), minlength=n_experts)
    return int((counts - limit).clamp(min=0).sum())


def _check_dropped_choices(dropped_choices: Callable) -> str:
    expect_callable(dropped_choices, "dropped_choices")
    for rows, n_experts, factor in _DROP_CASES:
        experts = torch.tensor(rows)
        call = f"dropped_choices(experts {tuple(experts.shape)}, n_experts={n_experts}, capacity_factor={factor})"
        got = expect_number(dropped_choices(experts.clone(), n_experts, factor), call, " (a count)")
        want = _reference_dropped_choices(experts, n_experts, factor)
        if got == want:
            continue
        n, k = experts.shape
        counts = torch.bincount(experts.reshape(-1), minlength=n_experts)
        if k > 1 and got == int((counts - moe.capacity(n, n_experts, 1, factor)).clamp(min=0).sum()):
            raise Hint(f"{call}: with top-{k} there are {n}·{k} choices to share: capacity = ceil(factor · k · N / E)")
        if got == int((counts - math.floor(factor * k * n / n_experts)).clamp(min=0).sum()):
            raise Hint(f"{call}: the capacity rounds up (math.ceil): an expert never gets less than its share")
        first = torch.bincount(experts[:, 0], minlength=n_experts)
        if k > 1 and got == int((first - moe.capacity(n, n_experts, k, factor)).clamp(min=0).sum()):
            raise Hint(f"{call}: count every column of experts, not only the first choices")
        raise Hint(f"{call}: expected {want}, got {got:g}: count the choices per expert (torch.bincount), "
                   "each expert keeps up to its capacity, the rest are dropped")
    return f"dropped choices for {len(_DROP_CASES)} routings, top-1 and top-2"


exercise(
    "08.13",
    title="Capacity: how many choices are dropped",
    reference=lambda: _reference_dropped_choices,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda e, n, f: int((torch.bincount(e.reshape(-1), minlength=n)
                                     - math.ceil(f * e.shape[0] / n)).clamp(min=0).sum()),
        lambda: lambda e, n, f: int((torch.bincount(e.reshape(-1), minlength=n)
                                     - math.floor(f * e.numel() / n)).clamp(min=0).sum()),
        lambda: lambda e, n, f: int((torch.bincount(e[:, 0], minlength=n)
                                     - math.ceil(f * e.numel() / n)).clamp(min=0).sum()),
    ],
)(_check_dropped_choices)


# --------------------------------------------------------------------------- 08.14 predict the parameters

_COUNT_CASES = [(2, 64, 70, 64, 4, 1), (2, 64, 70, 64, 8, 2), (6, 192, 70, 256, 4, 1), (1, 16, 20, 8, 1, 1),
                (4, 128, 65, 64, 16, 2)]


def _reference_predicted_parameters(n_layer: int, n_embd: int, vocab_size: int, block_size: int,
                                    n_experts: int, top_k: int) -> tuple[int, int]:
    C = n_embd
    mlp = (C * 4 * C + 4 * C) + (4 * C * C + C)                 # c_fc and c_proj, with biases
    attention = (C * 3 * C + 3 * C) + (C * C + C)               # c_attn and c_proj
    norms = 2 * 2 * C                                            # ln_1, ln_2: gain and bias
    shared = vocab_size * C + block_size * C + 2 * C            # tied embedding, positions, ln_f
    router = C * n_experts
    total = shared + n_layer * (attention + norms + router + n_experts * mlp)
    active = shared + n_layer * (attention + norms + router + top_k * mlp)
    return total, active


def _check_predicted_parameters(predicted_parameters: Callable) -> str:
    expect_callable(predicted_parameters, "predicted_parameters")
    for case in _COUNT_CASES:
        call = "predicted_parameters({}, {}, {}, {}, n_experts={}, top_k={})".format(*case)
        answer = predicted_parameters(*case)
        if not (isinstance(answer, (tuple, list)) and len(answer) == 2):
            raise Hint(f"{call} should return a pair (total, active), got {type(answer).__name__}")
        total, active = (expect_number(v, call, " (a parameter count)") for v in answer)
        want_total, want_active = _reference_predicted_parameters(*case)
        if (total, active) == (want_total, want_active):
            continue
        n_layer, C, _, _, E, k = case
        if (total, active) == (want_total - n_layer * C * E, want_active - n_layer * C * E):
            raise Hint(f"{call}: each layer's router (a C × E matrix, no bias) has parameters too")
        if (total, active) == (want_active, want_total):
            raise Hint(f"{call}: total counts all E experts, active only the k a token uses: (total, active)")
        if total == want_total and active != want_active:
            raise Hint(f"{call}: the total is right; the active count keeps everything but the E − k unused experts "
                       f"of each layer: expected {want_active}, got {active:g}")
        raise Hint(f"{call}: expected ({want_total}, {want_active}), got ({total:g}, {active:g}): an expert is GPT's "
                   "MLP (C·4C + 4C + 4C·C + C); the embedding is tied to the output layer (count it once)")
    return f"total and active parameters of {len(_COUNT_CASES)} MoE GPTs, to the parameter"


def _no_router(*case: int) -> tuple[int, int]:
    total, active = _reference_predicted_parameters(*case)
    return total - case[0] * case[1] * case[4], active - case[0] * case[1] * case[4]


exercise(
    "08.14",
    title="Total and active parameters, by formula",
    reference=lambda: _reference_predicted_parameters,
    stub=lambda: _not_done,
    wrong=[
        lambda: _no_router,
        lambda: lambda *case: tuple(reversed(_reference_predicted_parameters(*case))),
        lambda: lambda *case: (_reference_predicted_parameters(*case)[0], _reference_predicted_parameters(*case)[0] // case[4]),
    ],
)(_check_predicted_parameters)


# --------------------------------------------------------------------------- 08.15 the share a token uses

RACE: dict[str, Any] = dict(vocab_size=70, block_size=64, n_layer=2, n_head=4, n_embd=64)  # the chapter's race model (V: Shakespeare)
MANY, TOP = 64, 2                                                           # the experts the question asks about


def active_share(n_experts: int = MANY, top_k: int = TOP) -> float:
    """The share of the race model's parameters that one token uses after ``use_moe(n_experts, top_k)``:
    active / total from `moe.parameter_counts`. Leaves the notebook's random stream alone."""
    from labkit.gpt import GPT, GPTConfig

    with torch.random.fork_rng(devices=[]):
        model = moe.use_moe(GPT(GPTConfig(**RACE)), n_experts=n_experts, top_k=top_k)
    total, active = moe.parameter_counts(model)
    return active / total


def _share_kind(share: float) -> str:
    return "a" if share < 1.1 * TOP / MANY else "b" if share < 0.15 else "c"


SHARE = PredictMeasureExplain(
    predictions={
        "a": f"k / E = {TOP}/{MANY}, about {TOP / MANY:.1%}: the router picks {TOP} of the {MANY} experts",
        "b": "somewhat above k / E, still under 15%",
        "c": "about the same share as with 4 experts and k = 1 (about a third)",
    },
    explanations={
        "a": "every token also runs through the parts all tokens share (embeddings, attention, LayerNorms, the "
             "routers); next to 64 experts they are small, so the share comes near k / E but stays above it",
        "b": f"each of the {MANY} experts is smaller than the dense MLP, so the experts hold a smaller share",
        "c": "the routers grow with E, and their parameters take most of the count",
    },
    measure=active_share,
    predicted=_share_kind,
    explained=lambda share: "a" if TOP / MANY < share < 0.15 else "none",
    what=f"the share of the parameters one token uses with {MANY} experts, top-{TOP} (a fraction, 0 … 1)",
    wrong_explanations={
        "b": "use_moe copies the dense MLP into every expert: each expert has exactly the MLP's parameters",
        "c": f"a router is one C × E matrix per block ({RACE['n_embd']} × {MANY} numbers), against {MANY} MLPs of "
             f"about 8·C² each",
    },
    misreadings=(
        PERCENTAGE,
        (lambda value, true: math.isclose(value, active_share(4, 1), rel_tol=0.02),
         "that is the race's model (4 experts, top-1); the question is 64 experts, top-2"),
        (lambda value, true: math.isclose(value, 1 / true, rel_tol=0.02),
         "that is total / active; `measured` is active / total"),
    ),
)

SHARE.register(
    "08.15", "Predict, measure, explain: the share of a MoE's parameters a token uses", module=__name__,
    wrong_measurements=(lambda: active_share(4, 1), lambda: 100 * active_share(), lambda: 1 / active_share()),
)
