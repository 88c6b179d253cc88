"""Checks for chapter 10 (tools and resources, 工具和资源推荐).

The stub cells in ``chapters/10_tools.ipynb``::

    prediction = ...  # TODO: "a", "b" or "c", BEFORE running the measurement cell
    committed = prediction  # (the measurement cell's first line)
    measured = ...     # TODO: the years the cell printed
    explanation = ...  # TODO: "a", "b" or "c"
    check("10.1", dict(committed=committed, prediction=prediction, measured=measured, explanation=explanation))

    def count_right_context(ids, vocab_size, window):
        raise NotImplementedError  # TODO: X[i, j] += 1 for each j within `window` words AFTER i
    check("10.2", count_right_context)

    def my_glove_loss(w, w_ctx, b, b_ctx, X):
        raise NotImplementedError  # TODO: Σ over X > 0 of f(X)(w_i·w̃_j + b_i + b̃_j − log X)², x_max 100, α 0.75
    check("10.3", my_glove_loss)

    def to_hugging_face(state_dict):
        raise NotImplementedError  # TODO: {GPT-2 name: tensor}, Conv1D weights transposed, lm_head left out
    check("10.4", to_hugging_face)

    def mean_length_table(reviews):
        raise NotImplementedError  # TODO: mean text length (characters): a row per dataset, a column per label
    check("10.5", mean_length_table)

Every check runs on numbers from its own random generator (the notebook's stream is untouched).
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import torch

from labkit.course.checks.predict import PredictMeasureExplain
from labkit.course.exercises import Hint, exercise, expect_callable, expect_number, expect_tensor


def _not_done(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError  # what an untouched stub function does


# --------------------------------------------------------------------------- 10.1 predict, measure, explain

SMOLLM2_PARAMETERS = 134_515_008   # SmolLM2-135M's parameters (chapter 06d counts them from its GGUF file)
SMOLLM2_TOKENS = 2e12              # the tokens it was pretrained on (its model card: 2 trillion)
SECONDS_PER_YEAR = 365.25 * 24 * 3600


def laptop_flops_per_second(name: str = "base_bpe") -> float:
    """The training FLOP/s the shipped checkpoint `name` actually sustained on the course's 2-core CPU:
    its mean tokens/s (meta.json) × its training FLOPs per token (6·N plus attention, as `GPT.flops_per_token`)."""
    from labkit.checkpoints import CHECKPOINTS_DIR

    meta = json.loads((CHECKPOINTS_DIR / name / "meta.json").read_text())
    c = json.loads((CHECKPOINTS_DIR / name / "config.json").read_text())
    n = meta["parameters"] - c["block_size"] * c["n_embd"]  # without the position embedding
    flops_per_token = 6 * n + 12 * c["n_layer"] * c["block_size"] * c["n_embd"]
    return float(meta["mean_tokens_per_s"]) * flops_per_token


def laptop_years_for_smollm2() -> float:
    """Years this laptop would need to pretrain SmolLM2-135M: 6·N·D FLOPs at the shipped run's FLOP/s."""
    return 6 * SMOLLM2_PARAMETERS * SMOLLM2_TOKENS / laptop_flops_per_second() / SECONDS_PER_YEAR


LAPTOP = PredictMeasureExplain(
    predictions={
        "a": "under a year: it is only a 135-million-parameter model, 23 times the course's base_bpe",
        "b": "a few years",
        "c": "centuries",
    },
    explanations={
        "a": "6·N·D: 135 million parameters × 2 trillion tokens is about 10^21 FLOPs, and the laptop sustains about "
             "10^11 FLOP/s: about 10^10 seconds. The parameters are small; the tokens are what is huge",
        "b": "the laptop's 24 GiB of memory cannot hold the model, so it would spend its time swapping to disk",
        "c": "SmolLM2 is stored in 4 bits, and training 4-bit weights is that much slower on a CPU",
    },
    measure=laptop_years_for_smollm2,
    predicted=lambda years: "a" if years < 1 else "b" if years < 30 else "c",
    explained=lambda years: "a" if years > 1 else "none",
    what="the years the laptop would need",
    wrong_explanations={
        "b": "135 million parameters with Adam's states take about 2 GB: they fit in memory. The time comes from "
             "the arithmetic alone, 6·N·D",
        "c": "pretraining is done in 16- or 32-bit floats, whatever format the weights are shipped in afterwards; "
             "the count is 6·N·D FLOPs",
    },
    rel_tol=0.02,
    misreadings=(
        (lambda value, true: math.isclose(value, true * SECONDS_PER_YEAR, rel_tol=0.02),
         "that is in seconds: divide by the seconds in a year"),
        (lambda value, true: math.isclose(value, true * 365.25, rel_tol=0.02),
         "that is in days: give years"),
    ),
)

LAPTOP.register(
    "10.1", "Predict, measure, explain: SmolLM2's pretraining on this laptop", module=__name__,
    wrong_measurements=(
        lambda: laptop_years_for_smollm2() * SECONDS_PER_YEAR,  # seconds
        lambda: laptop_years_for_smollm2() * 365.25,  # days
    ),
)


# --------------------------------------------------------------------------- 10.2 right-context counts


def _reference_right_context(ids: torch.Tensor, vocab_size: int, window: int) -> torch.Tensor:
    from labkit.glove import cooccurrence

    return cooccurrence(ids, vocab_size, window, distance_weighting=False, symmetric=False)


def _check_right_context(count_right_context: Callable) -> str:
    expect_callable(count_right_context, "count_right_context")
    g = torch.Generator().manual_seed(10)
    for vocab_size, window, n in ((6, 2, 40), (9, 4, 60)):
        ids = torch.randint(0, vocab_size, (n,), generator=g)
        got = expect_tensor(count_right_context(ids.clone(), vocab_size, window), "count_right_context(...)")
        right = _reference_right_context(ids, vocab_size, window)
        if tuple(got.shape) != (vocab_size, vocab_size):
            raise Hint(f"return the ({vocab_size}, {vocab_size}) matrix X, got shape {tuple(got.shape)}")
        got = got.double()
        if torch.allclose(got, right, atol=1e-9):
            continue
        if torch.allclose(got, right + right.T, atol=1e-9):
            raise Hint("your X is symmetric: it counts the left context too. Count only the words AFTER word i")
        if torch.allclose(got, right.T, atol=1e-9):
            raise Hint("rows and columns are swapped: X[i, j] is for word j appearing after word i")
        weighted = _cooc(ids, vocab_size, window, weighted=True)
        if torch.allclose(got, weighted, atol=1e-9):
            raise Hint("each pair should add 1, not 1/distance: this variation counts without distance weighting")
        for other in (window - 1, window + 1):
            if other >= 1 and torch.allclose(got, _reference_right_context(ids, vocab_size, other), atol=1e-9):
                raise Hint(f"you counted a window of {other} words: distances 1 … window, window included")
        raise Hint(f"X differs from the expected counts (window {window}, vocabulary {vocab_size}) by up to "
                   f"{(got - right).abs().max().item():.3g}: for each position i and each d in 1 … window with "
                   "i + d inside the sequence, add 1 to X[ids[i], ids[i + d]]")
    return "one-sided, unweighted counts right for two windows"


def _cooc(ids: torch.Tensor, vocab_size: int, window: int, weighted: bool) -> torch.Tensor:
    from labkit.glove import cooccurrence

    return cooccurrence(ids, vocab_size, window, distance_weighting=weighted, symmetric=False)


exercise(
    "10.2",
    title="Co-occurrence counts, one-sided and unweighted (a variation of GloVe's counts)",
    reference=lambda: _reference_right_context,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda ids, V, w: _reference_right_context(ids, V, w) + _reference_right_context(ids, V, w).T,
        lambda: lambda ids, V, w: _cooc(ids, V, w, weighted=True),
        lambda: lambda ids, V, w: _reference_right_context(ids, V, w + 1),
        lambda: lambda ids, V, w: _reference_right_context(ids, V, w).T,
    ],
)(_check_right_context)


# --------------------------------------------------------------------------- 10.3 GloVe's loss


def _reference_loss(w: torch.Tensor, w_ctx: torch.Tensor, b: torch.Tensor, b_ctx: torch.Tensor,
                    X: torch.Tensor) -> torch.Tensor:
    from labkit.glove import glove_loss

    return glove_loss(w, w_ctx, b, b_ctx, X, x_max=100.0, alpha=0.75)


def _loss_problem(seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    V, D = 7, 4
    X = torch.randint(0, 3, (V, V), generator=g).double() * torch.rand(V, V, generator=g, dtype=torch.float64) * 250
    return (torch.randn(V, D, generator=g, dtype=torch.float64), torch.randn(V, D, generator=g, dtype=torch.float64),
            torch.randn(V, generator=g, dtype=torch.float64), torch.randn(V, generator=g, dtype=torch.float64), X)


def _variant_loss(w, w_ctx, b, b_ctx, X, *, f=None, log=torch.log, reduce="sum", biases=True):
    mask = X > 0
    error = w @ w_ctx.T + ((b[:, None] + b_ctx[None, :]) if biases else 0) - torch.where(mask, log(X.clamp(min=1e-300)), 0)
    weight = (X / 100.0).pow(0.75).clamp(max=1.0) if f is None else f(X)
    terms = torch.where(mask, weight * error.pow(2), 0)
    return terms.sum() if reduce == "sum" else terms.sum() / mask.sum()


def _check_loss(my_glove_loss: Callable) -> str:
    expect_callable(my_glove_loss, "my_glove_loss")
    for seed in (0, 1):
        w, w_ctx, b, b_ctx, X = _loss_problem(seed)
        value = my_glove_loss(w.clone(), w_ctx.clone(), b.clone(), b_ctx.clone(), X.clone())
        got = expect_number(value.item() if torch.is_tensor(value) and value.numel() == 1 else value, "my_glove_loss(...)")
        right = _reference_loss(w, w_ctx, b, b_ctx, X).item()
        if math.isclose(got, right, rel_tol=1e-6):
            continue
        if math.isnan(got) or math.isinf(got):
            raise Hint(f"got {got}: log 0 is -inf. Sum only over the entries with X > 0 (f(0) = 0 weighs them out, "
                       "but 0 × inf is still nan: mask them, e.g. torch.where(X > 0, …, 0))")
        hints = (
            (dict(f=lambda x: torch.ones_like(x)), "without the weighting f(X): each term needs f(X) = min(1, (X / 100)^0.75)"),
            (dict(f=lambda x: (x / 100.0).pow(0.75)), "f is not capped: f(X) = min(1, (X / 100)^0.75), 1 for X ≥ 100"),
            (dict(log=torch.log1p), "log(1 + X) instead of log X"),
            (dict(reduce="mean"), "that is the mean over the entries; the loss is their sum"),
            (dict(biases=False), "the biases b_i + b̃_j are missing from the prediction"),
        )
        for changes, hint in hints:
            if math.isclose(got, _variant_loss(w, w_ctx, b, b_ctx, X, **changes).item(), rel_tol=1e-6):
                raise Hint(f"got {got:.6g}, expected {right:.6g}: {hint}")
        raise Hint(f"got {got:.6g}, expected {right:.6g} (labkit.glove.glove_loss on the same numbers)")
    return "equals labkit.glove.glove_loss"


exercise(
    "10.3",
    title="GloVe's weighted least-squares loss",
    reference=lambda: _reference_loss,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda *a: _variant_loss(*a, f=lambda x: torch.ones_like(x)),
        lambda: lambda *a: _variant_loss(*a, f=lambda x: (x / 100.0).pow(0.75)),
        lambda: lambda *a: _variant_loss(*a, log=torch.log1p),
        lambda: lambda *a: _variant_loss(*a, reduce="mean"),
        lambda: lambda *a: _variant_loss(*a, biases=False),
    ],
)(_check_loss)


# --------------------------------------------------------------------------- 10.4 GPT → Hugging Face names

_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def _tiny_state_dict() -> dict[str, torch.Tensor]:
    from labkit.gpt import GPT, GPTConfig

    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(10)
        model = GPT(GPTConfig(vocab_size=31, block_size=12, n_layer=2, n_head=2, n_embd=8))
    finally:
        torch.random.set_rng_state(state)  # the notebook's random stream stays where it was
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _reference_to_hf(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: (v.t() if k.endswith(_CONV1D) else v) for k, v in state_dict.items() if k != "lm_head.weight"}


def _check_to_hf(to_hugging_face: Callable) -> str:
    expect_callable(to_hugging_face, "to_hugging_face")
    ours = _tiny_state_dict()
    got = to_hugging_face({k: v.clone() for k, v in ours.items()})
    if not isinstance(got, dict):
        raise Hint(f"return a dict of name → tensor, got a {type(got).__name__}")
    right = _reference_to_hf(ours)
    if "lm_head.weight" in got:
        raise Hint("leave lm_head.weight out: it is the token embedding (tied), and GPT-2's file does not repeat it")
    missing, extra = sorted(set(right) - set(got)), sorted(set(got) - set(right))
    if missing or extra:
        raise Hint(f"the names differ from GPT-2's: missing {missing[:3]}, unexpected {extra[:3]} (the names stay ours)")
    for name, tensor in right.items():
        mine = expect_tensor(got[name], f"the tensor of {name}")
        if tuple(mine.shape) == tuple(tensor.shape) and torch.equal(mine, tensor):
            continue
        if name.endswith(_CONV1D) and torch.equal(mine, tensor.t()):
            raise Hint(f"{name} is not transposed: Hugging Face's Conv1D keeps (in, out), nn.Linear (out, in)")
        if mine.dim() == 2 and not name.endswith(_CONV1D) and torch.equal(mine, tensor.t()):
            raise Hint(f"{name} was transposed: only the four Conv1D weights ({', '.join(_CONV1D)}) are")
        raise Hint(f"{name}: expected shape {tuple(tensor.shape)} with the same numbers as ours, got {tuple(mine.shape)}")
    return f"all {len(right)} tensors named and laid out as GPT-2's"


exercise(
    "10.4",
    title="The course GPT's weights under GPT-2's names and layouts",
    reference=lambda: _reference_to_hf,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda sd: {k: v for k, v in sd.items() if k != "lm_head.weight"},                 # no transpose
        lambda: lambda sd: {k: (v.t() if v.dim() == 2 else v) for k, v in sd.items() if k != "lm_head.weight"},
        lambda: lambda sd: {k: (v.t() if k.endswith(_CONV1D) else v) for k, v in sd.items()},      # lm_head kept
        lambda: lambda sd: {k.removeprefix("transformer."): (v.t() if k.endswith(_CONV1D) else v)
                            for k, v in sd.items() if k != "lm_head.weight"},                       # renamed
    ],
)(_check_to_hf)


# --------------------------------------------------------------------------- 10.5 pandas: a table by group


def _reviews_frame(seed: int) -> Any:
    import pandas as pd

    g = torch.Generator().manual_seed(seed)
    rows = []
    for dataset in ("rotten_tomatoes", "chinese_reviews"):
        for _ in range(30):
            label = int(torch.randint(0, 2, (1,), generator=g))
            words = int(torch.randint(1, 12, (1,), generator=g)) + 4 * label
            rows.append({"dataset": dataset, "label": label, "text": " ".join(["ab"] * words) + "!" * (seed + 1)})
    return pd.DataFrame(rows)


def _reference_table(reviews: Any) -> Any:
    return reviews.assign(length=reviews["text"].str.len()).groupby(["dataset", "label"])["length"].mean().unstack()


def _check_table(mean_length_table: Callable) -> str:
    import pandas as pd

    expect_callable(mean_length_table, "mean_length_table")
    for seed in (0, 1):
        frame = _reviews_frame(seed)
        got = mean_length_table(frame.copy())
        right = _reference_table(frame)
        if isinstance(got, pd.Series):
            raise Hint("that is a Series with a (dataset, label) index: .unstack() turns the labels into columns")
        if not isinstance(got, pd.DataFrame):
            raise Hint(f"return a pandas DataFrame, got a {type(got).__name__}")
        if sorted(map(str, got.index)) != sorted(map(str, right.index)) or sorted(map(int, got.columns)) != [0, 1]:
            raise Hint(f"expected one row per dataset {sorted(right.index)} and one column per label [0, 1]; got rows "
                       f"{list(got.index)} and columns {list(got.columns)}")
        got = got.loc[right.index, right.columns]
        if ((got - right).abs() < 1e-9).all().all():
            continue
        lengths = frame.assign(length=frame["text"].str.len()).groupby(["dataset", "label"])["length"]
        words = frame.assign(length=frame["text"].str.split().str.len()).groupby(["dataset", "label"])["length"]
        for other, hint in ((lengths.median().unstack(), "the median: the table asks for the mean"),
                            (lengths.count().unstack(), "the number of reviews: the table asks for their mean length"),
                            (words.mean().unstack(), "the length in words: count characters (str.len())")):
            if ((got - other).abs() < 1e-9).all().all():
                raise Hint(f"that is {hint}")
        raise Hint("the numbers differ from the mean length in characters per dataset and label")
    return "a row per dataset, a column per label, mean lengths right"


exercise(
    "10.5",
    title="pandas: the mean review length by dataset and label",
    reference=lambda: _reference_table,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda df: df.assign(n=df["text"].str.len()).groupby(["dataset", "label"])["n"].mean(),   # a Series
        lambda: lambda df: df.assign(n=df["text"].str.len()).groupby(["dataset", "label"])["n"].median().unstack(),
        lambda: lambda df: df.assign(n=df["text"].str.split().str.len()).groupby(["dataset", "label"])["n"].mean().unstack(),
        lambda: lambda df: df.groupby(["dataset", "label"])["text"].count().unstack(),
    ],
)(_check_table)
