"""Checks for chapter 07e (SmolLM2 fine-tuned beside the course GPT).

The stub cells in ``chapters/07e_real_llm_finetuning.ipynb``::

    def run_top_blocks(model, x, k):
        raise NotImplementedError  # TODO: states (B, T, C) entering the top k blocks → final hidden states
    check("07.12", run_top_blocks)

    def lora_parameters(config, k, rank):
        raise NotImplementedError  # TODO: numbers LoRA trains on every linear layer of the top k blocks
    check("07.13", lora_parameters)

    07.14: predict, measure, explain the share of SmolLM2's parameters LoRA r=8 trains on its top 2 blocks.

Every check runs in well under a second and leaves the notebook's random stream alone.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from labkit.course.checks.predict import PredictMeasureExplain
from labkit.course.exercises import Hint, exercise, expect_callable, expect_number
from labkit.llama import Llama, LlamaConfig

_TINY = LlamaConfig(vocab_size=61, block_size=32, n_layer=4, n_embd=24, n_head=6, n_kv_head=2, n_hidden=40)


def _not_done(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError  # what an untouched stub function does


def _tiny() -> tuple[Llama, torch.Tensor]:
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(7)                                     # a private seed, the notebook's stream is restored
        model = Llama(_TINY).eval()
        idx = torch.randint(0, _TINY.vocab_size, (2, 11))
    finally:
        torch.random.set_rng_state(state)
    return model, idx


# --------------------------------------------------------------------------- 07.12 the top k blocks

def _reference_run_top_blocks(model: Llama, x: torch.Tensor, k: int) -> torch.Tensor:
    return model.hidden_states_from(x, model.config.n_layer - k)


def _check_run_top_blocks(run_top_blocks: Callable) -> str:
    expect_callable(run_top_blocks, "run_top_blocks")
    model, idx = _tiny()
    for k in (1, 3):
        with torch.no_grad():
            x = model.hidden_states_entering(idx, model.config.n_layer - k)
            got = run_top_blocks(model, x, k)
            want = model.hidden_states(idx)
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape):
            raise Hint(f"run_top_blocks should return a tensor of shape {tuple(want.shape)} (B, T, C), got "
                       f"{type(got).__name__} {tuple(got.shape) if isinstance(got, torch.Tensor) else ''}")
        if not torch.allclose(got, want, atol=1e-5):
            raise Hint(f"with k={k} the result differs from the full forward by {(got - want).abs().max():.3g}: run "
                       "model.blocks[-k:] (each with the rotary cos, sin of positions 0 … T−1), then model.norm")
    return "the top k blocks on the cached states give exactly the full forward's hidden states"


def _bottom_blocks(model: Llama, x: torch.Tensor, k: int) -> torch.Tensor:
    cos, sin = model.rotary(0, x.shape[1], x.dtype)
    for block in model.blocks[:k]:
        x = block(x, cos, sin)
    return model.norm(x)


def _no_norm(model: Llama, x: torch.Tensor, k: int) -> torch.Tensor:
    cos, sin = model.rotary(0, x.shape[1], x.dtype)
    for block in model.blocks[-k:]:
        x = block(x, cos, sin)
    return x


exercise("07.12", title="Run only the top k blocks", reference=lambda: _reference_run_top_blocks,
         stub=lambda: _not_done, wrong=[lambda: _bottom_blocks, lambda: _no_norm])(_check_run_top_blocks)


# --------------------------------------------------------------------------- 07.13 LoRA's parameter count

def _linear_shapes(config: LlamaConfig) -> list[tuple[int, int]]:
    c, kv, h = config.n_embd, config.n_kv_head * config.head_dim, config.n_hidden
    return [(c, c), (c, kv), (c, kv), (c, c), (c, h), (c, h), (h, c)]   # q, k, v, o, gate, up, down: (in, out)


def _reference_lora_parameters(config: LlamaConfig, k: int, rank: int) -> int:
    return k * rank * sum(i + o for i, o in _linear_shapes(config))


def _check_lora_parameters(lora_parameters: Callable) -> str:
    expect_callable(lora_parameters, "lora_parameters")
    for config, k, rank in ((LlamaConfig(), 2, 8), (_TINY, 3, 4), (LlamaConfig(), 1, 1)):
        got = expect_number(lora_parameters(config, k, rank), "lora_parameters(config, k, rank)")
        want = _reference_lora_parameters(config, k, rank)
        if got != want:
            hint = ""
            if got == k * rank * sum(i + i for i, _ in _linear_shapes(config)):
                hint = ": k_proj and v_proj are narrower (grouped-query attention: n_kv_head · head_dim outputs)"
            raise Hint(f"for k={k}, rank={rank} and width {config.n_embd} got {got:,}, expected {want:,}{hint}; "
                       "each adapted nn.Linear(in, out) trains rank · (in + out) numbers")
    return "rank · (in + out) for each of the 7 linear layers of each of the top k blocks"


def _gqa_forgotten(config: LlamaConfig, k: int, rank: int) -> int:
    return k * rank * sum(i + i for i, _ in _linear_shapes(config))


def _all_blocks(config: LlamaConfig, k: int, rank: int) -> int:
    return config.n_layer * rank * sum(i + o for i, o in _linear_shapes(config))


exercise("07.13", title="LoRA's parameters in the top k blocks", reference=lambda: _reference_lora_parameters,
         stub=lambda: _not_done, wrong=[lambda: _gqa_forgotten, lambda: _all_blocks])(_check_lora_parameters)


# --------------------------------------------------------------------------- 07.14 predict, measure, explain

def _share_trained() -> float:
    """Percent of SmolLM2-135M's parameters that LoRA r=8 on every linear layer of the top 2 blocks trains."""
    config = LlamaConfig()
    per_block = sum(i * o for i, o in _linear_shapes(config)) + 2 * config.n_embd
    total = config.vocab_size * config.n_embd + config.n_layer * per_block + config.n_embd
    return 100 * _reference_lora_parameters(config, 2, 8) / total


_PME = PredictMeasureExplain(
    predictions={"a": "under 0.5 %", "b": "between 0.5 % and 5 %", "c": "over 5 %"},
    explanations={
        "a": "each adapted layer trains rank · (in + out), tiny beside in · out, and only 2 of 30 blocks are adapted",
        "b": "LoRA trains about as much as one whole block",
        "c": "the embedding matrix is adapted too, and it is a quarter of the model",
    },
    measure=_share_trained,
    predicted=lambda v: "a" if v < 0.5 else ("b" if v < 5 else "c"),
    explained=lambda v: "a" if v < 0.5 else ("b" if v < 5 else "c"),
    what="the percentage of parameters trained",
    wrong_explanations={"b": "one block holds ~3.5 M parameters, LoRA far fewer",
                        "c": "the embedding is frozen: LoRA wraps the blocks' linear layers only"},
    misreadings=((lambda v, t: abs(v - t / 100) < 1e-4, "that is a fraction; the cell prints a percentage"),),
)
_PME.register("07.14", "Predict: how much of SmolLM2 does LoRA train?", module=__name__,
              wrong_measurements=(lambda: _share_trained() / 100, lambda: 15 * _share_trained()))
