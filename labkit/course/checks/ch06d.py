"""Checks for chapter 06d (a real LLM: from GPT-2 to Llama).

The stub cells in ``chapters/06d_real_llm.ipynb``::

    def rope_at(x, pos, base):
        raise NotImplementedError  # TODO: x (..., D) rotated as a query or key at position pos
    check("06.9", rope_at)

    def llama_kv_cache_bytes(config, seq_len, batch, bytes_per_value):
        raise NotImplementedError  # TODO: bytes of a full KV cache for a LlamaConfig with GQA
    check("06.10", llama_kv_cache_bytes)

    prediction = ...  # TODO: "ordered" or "shuffled": which text will SmolLM2 find less surprising?
    ppl_ordered = ...  # TODO: measured, with text_perplexity(model, tokenizer, ORDERED)
    ppl_shuffled = ...  # TODO: measured, with text_perplexity(model, tokenizer, SHUFFLED)
    explanation = ...  # TODO: "a", "b" or "c"
    check("06.11", dict(prediction=prediction, ppl_ordered=ppl_ordered, ppl_shuffled=ppl_shuffled,
                        explanation=explanation))

06.11 cannot run the model (a check runs in well under a second): it compares the learner's
measurement with the perplexities measured once with ``labkit.load_smollm2()`` in float32
(``MEASURED``), within a few percent (bfloat16 or another thread count round differently).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from labkit.course.exercises import Hint, exercise, expect_callable, expect_number, expect_tensor, same_shape
from labkit.llama import LlamaConfig


def _not_done(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError  # what an untouched stub function does


# --------------------------------------------------------------------------- 06.9 RoPE at one position


def _reference_rope_at(x: torch.Tensor, pos: int, base: float) -> torch.Tensor:
    D = x.shape[-1]
    angles = pos * base ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)  # (D/2,): pair i turns by pos·θ^(-2i/D)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    a, b = x[..., : D // 2], x[..., D // 2 :]  # pair (i, i + D/2)
    return torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)


def _rope_adjacent_pairs(x: torch.Tensor, pos: int, base: float) -> torch.Tensor:  # llama.cpp's layout
    D = x.shape[-1]
    angles = pos * base ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack([a * cos - b * sin, b * cos + a * sin], dim=-1).flatten(-2)


def _rope_slow_frequencies(x: torch.Tensor, pos: int, base: float) -> torch.Tensor:  # θ^(-i/D)
    D = x.shape[-1]
    angles = pos * base ** (-torch.arange(0, D // 2, dtype=torch.float64) / D)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    a, b = x[..., : D // 2], x[..., D // 2 :]
    return torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)


_ROPE_CASES = [  # (description, shape, pos, base)
    ("one head vector of 64 channels at position 5, θ = 100 000 (SmolLM2)", (64,), 5, 100_000.0),
    ("a (2, 3, 8) batch at position 3, θ = 10 000", (2, 3, 8), 3, 10_000.0),
    ("a (4, 16) batch at position 0", (4, 16), 0, 10_000.0),
    ("a (4, 16) batch at position 1000, θ = 500 000", (4, 16), 1000, 500_000.0),
]


def _check_rope_at(rope_at: Callable) -> str:
    expect_callable(rope_at, "rope_at")
    generator = torch.Generator().manual_seed(0)
    for description, shape, pos, base in _ROPE_CASES:
        x = torch.randn(*shape, generator=generator)
        before = x.clone()
        what = f"rope_at(x, {pos}, {base:g}) for {description}"
        got = expect_tensor(rope_at(x, pos, base), what)
        if not torch.equal(x, before):
            raise Hint(f"{what} changed x in place; return a new tensor (torch.cat of the rotated halves)")
        same_shape(got, shape, what)
        got = got.detach().to(torch.float32)
        expected = _reference_rope_at(x, pos, base)
        if torch.allclose(got, expected, atol=1e-4, rtol=1e-4):
            continue
        if torch.isnan(got).any():
            raise Hint(f"{what} contains NaN")
        if not torch.allclose(got.norm(dim=-1), x.norm(dim=-1), rtol=1e-3, atol=1e-4):
            raise Hint(f"{what} changed the vectors' length: a rotation keeps it. Each pair (a, b) becomes "
                       "(a·cos − b·sin, b·cos + a·sin), with the same angle's cos and sin in both")
        if torch.allclose(got, x, atol=1e-6):
            raise Hint(f"{what} returned x unchanged: only position 0 leaves a vector as it is; pair i turns by "
                       "pos · base^(-2i/D)")
        if torch.allclose(got, _reference_rope_at(x, -pos, base), atol=1e-4, rtol=1e-4):
            raise Hint(f"{what} turned the other way (by −angle): the rotated pair is "
                       "(a·cos − b·sin, b·cos + a·sin), where a is channel i and b channel i + D/2")
        if torch.allclose(got, _rope_adjacent_pairs(x, pos, base), atol=1e-4, rtol=1e-4):
            raise Hint(f"{what} rotated the neighbouring pairs (0, 1), (2, 3), …: that is llama.cpp's layout "
                       "(and the RoPE paper's). labkit, like Hugging Face's Llama, pairs channel i with i + D/2")
        if torch.allclose(got, _rope_slow_frequencies(x, pos, base), atol=1e-4, rtol=1e-4):
            raise Hint(f"{what}: the frequencies are off: pair i turns by pos · base^(-2i/D), the exponent "
                       "running over the even numbers 0, 2, 4, … (torch.arange(0, D, 2) / D)")
        raise Hint(f"{what} differs from the rotation by up to {(got - expected).abs().max():.3g}. Split x into its "
                   "halves a = x[..., :D/2] and b = x[..., D/2:], turn pair i by pos · base^(-2i/D)")
    return "a rotation per channel pair, as labkit.llama.apply_rotary"


exercise(
    "06.9",
    title="RoPE at one position",
    reference=lambda: _reference_rope_at,
    stub=lambda: _not_done,
    wrong=[
        lambda: _rope_adjacent_pairs,                                           # llama.cpp's pairs
        lambda: _rope_slow_frequencies,                                         # θ^(-i/D)
        lambda: lambda x, pos, base: _reference_rope_at(x, -pos, base),         # the other direction
        lambda: lambda x, pos, base: x.clone(),                                 # no rotation
        lambda: lambda x, pos, base: x * math.cos(pos),                         # a scaling, not a rotation
    ],
)(_check_rope_at)


# --------------------------------------------------------------------------- 06.10 KV cache with GQA


def _reference_llama_kv_cache_bytes(config: LlamaConfig, seq_len: int, batch: int, bytes_per_value: int) -> int:
    # a key and a value (2) per layer, *key/value* head, channel of a head, position and sequence
    return 2 * config.n_layer * config.n_kv_head * config.head_dim * seq_len * batch * bytes_per_value


_GQA_CASES = [  # (description, config, seq_len, batch, bytes_per_value)
    ("SmolLM2-135M, 8192 tokens, bfloat16", LlamaConfig(), 8192, 1, 2),
    ("4 layers, 8 query heads sharing 2 KV heads, 100 tokens, batch 3, float32",
     LlamaConfig(vocab_size=100, n_layer=4, n_embd=256, n_head=8, n_kv_head=2, n_hidden=512), 100, 3, 4),
    ("multi-query: 16 query heads, 1 KV head, 2048 tokens, batch 2, bfloat16",
     LlamaConfig(vocab_size=100, n_layer=6, n_embd=512, n_head=16, n_kv_head=1, n_hidden=1024), 2048, 2, 2),
    ("no sharing (like GPT): 4 heads, 4 KV heads, 64 tokens, float32",
     LlamaConfig(vocab_size=100, n_layer=2, n_embd=64, n_head=4, n_kv_head=4, n_hidden=128), 64, 1, 4),
]


def _check_llama_kv_cache_bytes(llama_kv_cache_bytes: Callable) -> str:
    expect_callable(llama_kv_cache_bytes, "llama_kv_cache_bytes")
    for description, config, seq_len, batch, nbytes in _GQA_CASES:
        what = f"llama_kv_cache_bytes(config, {seq_len}, {batch}, {nbytes}) for {description}"
        got = expect_number(llama_kv_cache_bytes(config, seq_len, batch, nbytes), what, " of bytes")
        expected = _reference_llama_kv_cache_bytes(config, seq_len, batch, nbytes)
        if math.isclose(got, expected, rel_tol=1e-9):
            continue
        ratio = got / expected
        group = config.n_head // config.n_kv_head
        hints = [
            (group, f"{group} times too much: that counts a key and a value for every *query* head (n_head). "
                    "With grouped-query attention only config.n_kv_head heads are cached; the query heads share them"),
            (0.5, "half the right size: the cache keeps two tensors per layer, the keys *and* the values"),
            (1 + group / 2, "that counts the queries too; only keys and values are cached"),
            (8, "8 times too much: that is bits, not bytes; bytes_per_value is already in bytes"),
            (1 / batch, f"{batch} times too small: every sequence of the batch has its own cache"),
            (1 / config.n_layer, f"{config.n_layer} times too small: every layer keeps its own keys and values"),
            (1 / config.head_dim, f"{config.head_dim} times too small: each cached head holds head_dim numbers "
                                  "per position (config.head_dim)"),
        ]
        for factor, message in hints:
            if factor != 1 and math.isclose(ratio, factor, rel_tol=1e-9):
                raise Hint(f"{what} gave {got:,.0f}: {message}")
        raise Hint(f"{what} should be {expected:,} bytes, got {got:,.0f}. Count a key and a value for every layer, "
                   "key/value head, channel of a head, position and sequence")
    smol = _reference_llama_kv_cache_bytes(LlamaConfig(), 8192, 1, 2)
    return f"SmolLM2 at 8192 tokens in bfloat16: {smol / 2**20:.0f} MiB, a third of what 9 KV heads would need"


exercise(
    "06.10",
    title="The KV cache with grouped-query attention",
    reference=lambda: _reference_llama_kv_cache_bytes,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda c, T, B, b: 2 * c.n_layer * c.n_head * c.head_dim * T * B * b,       # every query head
        lambda: lambda c, T, B, b: 2 * c.n_layer * c.n_embd * T * B * b,                    # n_embd: the same
        lambda: lambda c, T, B, b: c.n_layer * c.n_kv_head * c.head_dim * T * B * b,        # keys only
        lambda: lambda c, T, B, b: 2 * c.n_layer * c.n_kv_head * c.head_dim * T * B * b * 8,  # bits
        lambda: lambda c, T, B, b: 2 * c.n_layer * c.n_kv_head * c.head_dim * T * b,        # no batch
        lambda: lambda c, T, B, b: 2 * c.n_layer * c.n_kv_head * T * B * b,                 # no head_dim
    ],
)(_check_llama_kv_cache_bytes)


# --------------------------------------------------------------------------- 06.11 predict, measure, explain

ORDERED = "The old man walked slowly down the road to the village, where his daughter was waiting for him."
SHUFFLED = "road his The waiting village, for old down where him. the slowly was walked man to daughter the"
EXPLANATIONS = {
    "a": "The shuffled text is split into more tokens, and every extra token adds surprise.",
    "b": "Both hold the same words, but the model predicts each token from the ones before it: in the "
         "shuffled order the context no longer tells it what comes next.",
    "c": "The model has never seen some of the shuffled text's words, so it cannot predict them.",
}
RIGHT_EXPLANATION = "b"
# perplexity per token (exp of the mean cross-entropy of tokens 2 … T given the ones before), measured with
# labkit.load_smollm2() in float32; see text_perplexity in the chapter
MEASURED = {"ppl_ordered": 17.85, "ppl_shuffled": 4282.2}
_TOLERANCE = 0.05  # relative: bfloat16 or another number of threads round differently


class _NotMeasured(NotImplementedError):
    pass


def _check_predict_measure_explain(answer: Any) -> str:
    if not isinstance(answer, dict):
        raise Hint("pass a dict: dict(prediction=..., ppl_ordered=..., ppl_shuffled=..., explanation=...)")
    keys = ("prediction", "ppl_ordered", "ppl_shuffled", "explanation")
    missing = [k for k in keys if k not in answer]
    if missing:
        raise Hint(f"the dict lacks {missing}; it needs the keys {list(keys)}")
    if any(answer[k] is Ellipsis or answer[k] is None for k in keys):
        raise _NotMeasured  # a stub value: reported as not done yet
    prediction = answer["prediction"]
    if prediction not in ("ordered", "shuffled"):
        raise Hint(f"prediction should be \"ordered\" or \"shuffled\", got {prediction!r}")
    measured = {}
    for key in ("ppl_ordered", "ppl_shuffled"):
        measured[key] = expect_number(answer[key], key, " (a perplexity)")
    for key, value in measured.items():
        known = MEASURED[key]
        if math.isclose(value, known, rel_tol=_TOLERANCE):
            continue
        other = "ppl_shuffled" if key == "ppl_ordered" else "ppl_ordered"
        if math.isclose(value, MEASURED[other], rel_tol=_TOLERANCE):
            raise Hint("ppl_ordered and ppl_shuffled are swapped: measure ORDERED for ppl_ordered, SHUFFLED for ppl_shuffled")
        if value > 0 and math.isclose(value, math.log(known), rel_tol=_TOLERANCE):
            raise Hint(f"{key} = {value:.3g} looks like the loss (the mean cross-entropy), not the perplexity: "
                       "take math.exp of it")
        raise Hint(f"{key} = {value:.4g} is not what SmolLM2 gives for that text (measure it with "
                   "text_perplexity(model, tokenizer, ORDERED or SHUFFLED) on the chapter's model)")
    explanation = answer["explanation"]
    if explanation not in EXPLANATIONS:
        raise Hint(f"explanation should be one of {sorted(EXPLANATIONS)}, got {explanation!r}")
    if explanation != RIGHT_EXPLANATION:
        if explanation == "a":
            raise Hint("explanation a: perplexity is per token, an average, so more tokens do not add up to more "
                       "surprise; and the two texts have nearly the same tokens. Look again at what differs")
        raise Hint("explanation c: both texts have exactly the same words, so each word is as familiar in one "
                   "as in the other. Look again at what differs")
    lower = "ordered" if measured["ppl_ordered"] < measured["ppl_shuffled"] else "shuffled"
    verdict = "as you predicted" if prediction == lower else f"you predicted {prediction!r}: the measurement decides"
    ratio = measured["ppl_shuffled"] / measured["ppl_ordered"]
    return f"{lower} is less surprising, {verdict}; the shuffle multiplies the perplexity by {ratio:.1f}"


def _answer(**changes: Any) -> dict[str, Any]:
    answer = dict(prediction="ordered", explanation=RIGHT_EXPLANATION, **MEASURED)
    answer.update(changes)
    return answer


exercise(
    "06.11",
    title="Predict, measure, explain: word order",
    reference=lambda: _answer(),
    stub=lambda: dict(prediction=..., ppl_ordered=..., ppl_shuffled=..., explanation=...),
    wrong=[
        lambda: _answer(explanation="a"),
        lambda: _answer(explanation="c"),
        lambda: _answer(ppl_ordered=MEASURED["ppl_shuffled"], ppl_shuffled=MEASURED["ppl_ordered"]),  # swapped
        lambda: _answer(ppl_ordered=math.log(MEASURED["ppl_ordered"])),                                # the loss
        lambda: _answer(ppl_ordered=1.0, ppl_shuffled=2.0),                                            # made up
        lambda: _answer(prediction="longer"),
    ],
)(_check_predict_measure_explain)
