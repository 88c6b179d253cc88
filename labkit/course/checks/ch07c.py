"""Checks for chapter 07c (project practice III, part 3: instruction tuning).

The stub cells in ``chapters/07c_instruction_tuning.ipynb``::

    def training_pair(prompt_ids, response_ids, end_id):
        raise NotImplementedError  # TODO: (x, y) for one example, y = -100 where the next token is still the prompt
    check("07.7", training_pair)

    def answer_ids(model, prompt_ids, end_id, max_new_tokens):
        raise NotImplementedError  # TODO: greedy answer tokens, without the prompt, stopped at the end marker
    check("07.8", answer_ids)

    prediction = ...  # TODO: "a", "b" or "c": decide BEFORE you run the next cell
    committed = prediction  # the measurement cell's first line
    measured = ...     # TODO: the padding share of batches of 64 grouped by length, printed above
    explanation = ...  # TODO: "a", "b" or "c"
    check("07.16", dict(committed=committed, prediction=prediction, measured=measured, explanation=explanation))

07.7 is checked against `labkit.instruct.InstructionCollator` on lists of token ids. 07.8 uses a
tiny stand-in for a GPT (`ScriptedGPT`) whose likeliest next token is read from a fixed table, so
the right answer is known token by token; it is a `labkit.GPT`, so ``model.generate`` works too.
07.16 recomputes the padding of the chapter's batches from the training set's row lengths (about a
second, once). Every check runs in well under a second and leaves the notebook's random stream alone.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from labkit.course.checks.predict import PERCENTAGE, PredictMeasureExplain
from labkit.course.exercises import Hint, exercise, expect_callable
from labkit.gpt import GPT, GPTConfig
from labkit.instruct import IGNORE_INDEX

END = 15  # the end marker's id in the checks (the last id of a 16-token vocabulary, as in the chapter's BPE)


def _not_done(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError  # what an untouched stub function does


def _as_ids(value: Any, what: str) -> list[int]:
    """A 1-D tensor, list or tuple of whole numbers → list[int]; a Hint for anything else."""
    if isinstance(value, torch.Tensor):
        if value.ndim != 1:
            raise Hint(f"{what} should be one row of token ids (a 1-D tensor or a list), got a tensor of shape "
                       f"{tuple(value.shape)}" + ("; drop the batch dimension (tensor[0])" if value.ndim == 2 else ""))
        if value.is_floating_point():
            raise Hint(f"{what} holds floats ({value.dtype}); token ids and -100 are whole numbers: use dtype=torch.long")
        return [int(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        ids = []
        for v in value:
            if isinstance(v, torch.Tensor) and v.numel() == 1 and not v.is_floating_point():
                v = int(v.item())
            if isinstance(v, bool) or not isinstance(v, int):
                raise Hint(f"{what} should hold whole numbers (token ids), got {type(v).__name__} {v!r}"[:200])
            ids.append(int(v))
        return ids
    raise Hint(f"{what} should be a 1-D tensor or a list of token ids, got {type(value).__name__}")


# --------------------------------------------------------------------------- 07.7 one masked training pair


def _reference_training_pair(prompt_ids: list[int], response_ids: list[int], end_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = list(prompt_ids) + list(response_ids) + [end_id]  # the whole example, ending with the marker
    x = torch.tensor(ids[:-1])                               # what the model reads
    y = torch.tensor(ids[1:])                                # the next token at each position
    y[: len(prompt_ids) - 1] = IGNORE_INDEX                  # the next token is still the prompt: not graded
    return x, y


_PAIR_CASES = [  # (prompt ids, response ids): a one-token answer, a longer one, a long prompt
    ([7, 3, 9, 4, 11], [2]),
    ([5, 1, 8], [6, 12, 10, 13]),
    ([4, 4, 2, 9, 1, 3, 14, 6], [8, 0, 7]),
]


def _check_training_pair(training_pair: Callable) -> str:
    expect_callable(training_pair, "training_pair")
    for prompt, response in _PAIR_CASES:
        call = f"training_pair({prompt}, {response}, end_id={END})"
        got = training_pair(list(prompt), list(response), END)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise Hint(f"{call} should return two things, (x, y); got {type(got).__name__}"[:300])
        x, y = _as_ids(got[0], f"x from {call}"), _as_ids(got[1], f"y from {call}")
        want_x, want_y = (t.tolist() for t in _reference_training_pair(prompt, response, END))
        ids = prompt + response + [END]
        if x == want_x and y == want_y:
            continue
        if IGNORE_INDEX in x:
            raise Hint(f"{call}: x holds {IGNORE_INDEX}; x is what the model reads, token ids only. Put "
                       f"{IGNORE_INDEX} in y, where it means 'do not grade this position'")
        if len(x) != len(y):
            raise Hint(f"{call}: x has {len(x)} tokens and y {len(y)}; they must pair up position by position")
        if len(x) == len(ids) - 2:
            raise Hint(f"{call}: x and y are one token short: append end_id to the response first. The model "
                       "must learn to write the end marker, or it will never stop answering")
        if len(x) == len(ids):
            raise Hint(f"{call}: x has {len(x)} tokens, as many as the whole example: x is all of it but the "
                       "last token, y all of it but the first (the next token at each position)")
        if len(x) != len(want_x):
            raise Hint(f"{call}: x should have {len(want_x)} tokens (prompt + response + end marker, less one), "
                       f"got {len(x)}")
        if x == ids[1:] and y[len(prompt) - 1:] == ids[len(prompt) - 1:-1]:
            raise Hint(f"{call}: x and y are swapped: x = ids[:-1] is what the model reads, y = ids[1:] what "
                       "it should predict next")
        if x != want_x:
            raise Hint(f"{call}: x should be {want_x}, got {x}")
        masked = [i for i, t in enumerate(y) if t == IGNORE_INDEX]
        if not masked and y == ids[1:]:
            raise Hint(f"{call}: nothing in y is {IGNORE_INDEX}, so the prompt is graded too. Set y to "
                       f"{IGNORE_INDEX} where the next token is still part of the prompt: the first "
                       f"len(prompt_ids) - 1 = {len(prompt) - 1} positions")
        if not masked and 0 in y[: len(prompt) - 1] and y[len(prompt) - 1:] == want_y[len(prompt) - 1:]:
            raise Hint(f"{call}: the prompt's positions in y are 0, which is a real token id (the model would be "
                       f"trained to predict token 0). Use {IGNORE_INDEX}, the value cross-entropy skips")
        if masked == list(range(len(prompt))):
            raise Hint(f"{call}: y masks {len(prompt)} positions, one too many. Position len(prompt_ids) - 1 = "
                       f"{len(prompt) - 1} is the prompt's last token, and the token after it is the response's "
                       "first: that prediction must be graded. Mask the first len(prompt_ids) - 1 positions")
        if masked and masked[0] >= len(prompt) - 1:
            raise Hint(f"{call}: y masks the response ({masked[0]}…) instead of the prompt; grade the response "
                       "and the end marker, skip the prompt")
        raise Hint(f"{call}: y should be {want_y}, got {y}")
    return "the model is graded on the answer and on stopping, never on repeating the question"


def _no_end_marker(prompt_ids: list[int], response_ids: list[int], end_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = list(prompt_ids) + list(response_ids)
    x, y = torch.tensor(ids[:-1]), torch.tensor(ids[1:])
    y[: len(prompt_ids) - 1] = IGNORE_INDEX
    return x, y


def _mask_one_too_many(prompt_ids: list[int], response_ids: list[int], end_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _reference_training_pair(prompt_ids, response_ids, end_id)
    y[: len(prompt_ids)] = IGNORE_INDEX
    return x, y


def _no_mask(prompt_ids: list[int], response_ids: list[int], end_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = list(prompt_ids) + list(response_ids) + [end_id]
    return torch.tensor(ids[:-1]), torch.tensor(ids[1:])


def _mask_with_zero(prompt_ids: list[int], response_ids: list[int], end_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _no_mask(prompt_ids, response_ids, end_id)
    y[: len(prompt_ids) - 1] = 0
    return x, y


def _not_shifted(prompt_ids: list[int], response_ids: list[int], end_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.tensor(list(prompt_ids) + list(response_ids) + [end_id])
    y = ids.clone()
    y[: len(prompt_ids)] = IGNORE_INDEX
    return ids, y


def _swapped(prompt_ids: list[int], response_ids: list[int], end_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = list(prompt_ids) + list(response_ids) + [end_id]
    x, y = torch.tensor(ids[1:]), torch.tensor(ids[:-1])
    y[: len(prompt_ids) - 1] = IGNORE_INDEX
    return x, y


def _mask_x_too(prompt_ids: list[int], response_ids: list[int], end_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _reference_training_pair(prompt_ids, response_ids, end_id)
    x[: len(prompt_ids) - 1] = IGNORE_INDEX
    return x, y


def _mask_the_response(prompt_ids: list[int], response_ids: list[int], end_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _no_mask(prompt_ids, response_ids, end_id)
    y[len(prompt_ids) - 1:] = IGNORE_INDEX
    return x, y


exercise(
    "07.7",
    title="One training pair, the prompt masked",
    reference=lambda: _reference_training_pair,
    stub=lambda: _not_done,
    wrong=[
        lambda: _no_end_marker,
        lambda: _mask_one_too_many,
        lambda: _no_mask,
        lambda: _mask_with_zero,
        lambda: _not_shifted,
        lambda: _swapped,
        lambda: _mask_x_too,
        lambda: _mask_the_response,
    ],
)(_check_training_pair)


# --------------------------------------------------------------------------- 07.8 answer, stop at the end marker

# After token t, the scripted model's likeliest next token is NEXT[t]. 1 → 2 → 3 → END answers in two tokens,
# 7 ↔ 8 never ends, 9 → 10 → … → 14 → END is long, 0 → END is an empty answer.
NEXT = [END, 2, 3, END, 9, 6, END, 8, 7, 10, 11, 12, 13, 14, END, 0]


class ScriptedGPT(GPT):
    """A tiny `GPT` whose logits do not come from its weights: at every position, the token
    ``NEXT[t]`` after token t gets logit 1 and every other token 0 — so greedy decoding follows
    the table, and sampling would wander off it. ``forward(idx (B, T)) → logits (B, T, 16)``;
    ``generate`` (inherited) works, with or without its KV cache. It counts its calls and stops
    a loop that calls it more than ``call_limit`` times."""

    table: torch.Tensor  # NEXT, a buffer

    def __init__(self, call_limit: int = 40) -> None:
        with torch.random.fork_rng(devices=[]):  # building the (unused) weights draws no random numbers of yours
            torch.manual_seed(0)
            super().__init__(GPTConfig(vocab_size=16, block_size=32, n_layer=1, n_head=1, n_embd=8))
        self.eval()
        self.calls, self.call_limit = 0, call_limit
        self.register_buffer("table", torch.tensor(NEXT), persistent=False)

    def forward(self, idx: torch.Tensor, cache: Any = None) -> torch.Tensor:
        self.calls += 1
        if self.calls > self.call_limit:
            raise Hint(f"your function called the model more than {self.call_limit} times for one answer: does the "
                       "loop stop after max_new_tokens new tokens, and when the model writes end_id?")
        if not isinstance(idx, torch.Tensor) or idx.ndim != 2:
            raise Hint(f"the model takes token ids of shape (B, T), one row per sequence, got "
                       f"{tuple(idx.shape) if isinstance(idx, torch.Tensor) else type(idx).__name__}: "
                       "torch.tensor([prompt_ids]) makes a batch of one")
        return F.one_hot(self.table[idx], 16).float()  # (B, T, 16)


_ANSWER_CASES = [  # (prompt ids, max_new_tokens, what the greedy answer is)
    ([4, 1], 10, [2, 3]),                   # ends with the marker after two tokens
    ([9, 7], 6, [8, 7, 8, 7, 8, 7]),        # never ends: max_new_tokens tokens
    ([5, 0], 5, []),                        # the very first new token is the end marker: an empty answer
    ([7, 9], 4, [10, 11, 12, 13]),          # would end later than max_new_tokens
    ([3, 1, 5], 8, [6]),                    # one token, then the marker
]


def _reference_answer_ids(model: torch.nn.Module, prompt_ids: list[int], end_id: int, max_new_tokens: int) -> list[int]:
    idx = torch.tensor([prompt_ids])                          # (1, T)
    answer: list[int] = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = model(idx)                               # (1, T, V)
            next_id = int(logits[0, -1].argmax())             # greedy: the likeliest token after the last one
            if next_id == end_id:                             # the model says the answer is over
                break
            answer.append(next_id)
            idx = torch.cat([idx, torch.tensor([[next_id]])], dim=1)
    return answer


def _greedy_chain(start: int, max_new_tokens: int) -> list[int]:
    chain, token = [], start
    for _ in range(max_new_tokens):
        token = NEXT[token]
        if token == END:
            break
        chain.append(token)
    return chain


def _check_answer_ids(answer_ids: Callable) -> str:
    expect_callable(answer_ids, "answer_ids")
    with torch.random.fork_rng(devices=[]):  # a sampling answer draws from a fixed stream, not the notebook's
        torch.manual_seed(0)
        for prompt, max_new, want in _ANSWER_CASES:
            call = f"answer_ids(model, {prompt}, end_id={END}, max_new_tokens={max_new})"
            model = ScriptedGPT(call_limit=max_new + 5)
            got = _as_ids(answer_ids(model, list(prompt), END, max_new), f"what {call} returned")
            if got == want:
                continue
            if got[: len(prompt)] == prompt and got[len(prompt):] in (want, want + [END]):
                raise Hint(f"{call} returned {got}: it starts with the prompt. Return only the new tokens, "
                           "the answer (out[0, len(prompt_ids):] after generate)")
            if got == want + [END]:
                raise Hint(f"{call} returned {got}, ending with the end marker {END}. Leave it out: it says "
                           "where the answer stops, it is not part of it")
            if END in got and got[: got.index(END)] == want:
                raise Hint(f"{call} returned {got}: it goes on after the end marker {END}. Stop at the first "
                           "end_id the model writes, and return what came before it")
            if len(got) > max_new:
                raise Hint(f"{call} returned {len(got)} tokens; write at most max_new_tokens = {max_new}")
            if got[: len(want)] == want and len(got) > len(want):
                raise Hint(f"{call} returned {got}; the answer is {want}: the model wrote end_id after it, and "
                           "generation should stop there")
            if got and (got == _greedy_chain(prompt[0], max_new) or set(got) == {NEXT[prompt[0]]}):
                raise Hint(f"{call} returned {got}: those follow the prompt's *first* token. The next token "
                           "comes from the logits at the last position, logits[0, -1]")
            again = _as_ids(answer_ids(ScriptedGPT(call_limit=max_new + 5), list(prompt), END, max_new), "again")
            if again != got:
                raise Hint(f"{call} gave {got} once and {again} the next time: it samples. Take the likeliest "
                           "token (argmax, or temperature=0 in generate), so that the answer can be scored")
            raise Hint(f"{call} returned {got}; the greedy answer is {want}")
    return "greedy, cut at the end marker, at most max_new_tokens"


def _with_marker(model, prompt_ids, end_id, max_new_tokens):
    answer = _reference_answer_ids(model, prompt_ids, end_id, max_new_tokens)
    return answer + [end_id] if len(answer) < max_new_tokens else answer


def _with_prompt(model, prompt_ids, end_id, max_new_tokens):
    return list(prompt_ids) + _reference_answer_ids(model, prompt_ids, end_id, max_new_tokens)


def _never_stops(model, prompt_ids, end_id, max_new_tokens):
    out = model.generate(torch.tensor([prompt_ids]), max_new_tokens, temperature=0)
    return out[0, len(prompt_ids):].tolist()


def _first_position(model, prompt_ids, end_id, max_new_tokens):
    idx, answer = torch.tensor([prompt_ids]), []
    for _ in range(max_new_tokens):
        next_id = int(model(idx)[0, 0].argmax())
        if next_id == end_id:
            break
        answer.append(next_id)
        idx = torch.cat([idx, torch.tensor([[next_id]])], dim=1)
    return answer


def _sampled(model, prompt_ids, end_id, max_new_tokens):
    out = model.generate(torch.tensor([prompt_ids]), max_new_tokens, temperature=1.0, stop_tokens={end_id})
    new = out[0, len(prompt_ids):].tolist()
    return new[: new.index(end_id)] if end_id in new else new


def _batch_row(model, prompt_ids, end_id, max_new_tokens):
    return torch.tensor([_reference_answer_ids(model, prompt_ids, end_id, max_new_tokens)])


exercise(
    "07.8",
    title="Answer greedily, stop at the end marker",
    reference=lambda: _reference_answer_ids,
    stub=lambda: _not_done,
    wrong=[
        lambda: _with_marker,
        lambda: _with_prompt,
        lambda: _never_stops,
        lambda: _first_position,
        lambda: _sampled,
        lambda: _batch_row,
    ],
)(_check_answer_ids)


def _answers(fn: Callable, cases: Sequence[tuple[list[int], int, list[int]]] = _ANSWER_CASES) -> list[list[int]]:
    """What ``fn`` answers on the check's cases (for tests)."""
    return [_as_ids(fn(ScriptedGPT(), list(p), END, n), "answer") for p, n, _ in cases]


# --------------------------------------------------------------------------- 07.16 padding at a larger batch


@functools.cache
def _row_lengths() -> tuple[int, ...]:
    """Tokens per training row (prompt + response + end marker, less one), as section 4.1 counts them."""
    from labkit.checkpoints import load_pretrained
    from labkit.data import load_instructions
    from labkit.instruct import InstructionCollator

    with torch.random.fork_rng(devices=[]):
        base, tokenizer, _ = load_pretrained("base_bpe")
    collator = InstructionCollator(tokenizer, base.config.block_size)
    rows = [collator.row(record) for record in load_instructions("train")]
    return tuple(len(row[0]) for row in rows if row is not None)  # every row fits (none is skipped)


@functools.cache
def padding_shares(batch_size: int) -> dict[str, float]:
    """The share of the computed positions that are padding, for batches of ``batch_size`` training rows:
    "random" (cut from a shuffle seeded 1) and "grouped" (section 4.1's recipe, groups of 16 batches,
    seeded 1: `labkit.instruct.length_grouped_batches`). As the measurement cell of 07.16 computes them."""
    from labkit.instruct import length_grouped_batches

    lengths = _row_lengths()

    def share(batches: list[list[int]]) -> float:
        return 1 - sum(lengths) / sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)

    shuffled = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(1)).tolist()
    random_batches = [shuffled[k: k + batch_size] for k in range(0, len(shuffled), batch_size)]
    grouped = length_grouped_batches(lengths, batch_size, torch.Generator().manual_seed(1))
    return {"random": share(random_batches), "grouped": share(grouped)}


def _padding_kind(share: float) -> str:
    before = padding_shares(16)["grouped"]
    return "a" if abs(share - before) < 0.015 else "b" if share > before else "c"


GROUPED_PADDING = PredictMeasureExplain(
    predictions={
        "a": "about the same share as batches of 16 (within 1.5 points)",
        "b": "clearly more padding, as random batches get when they grow",
        "c": "clearly less padding",
    },
    explanations={
        "a": "a batch of 64 is more likely to hold one long row, and every other row is padded up to it",
        "b": "fewer, larger batches mean fewer steps, and so less padding",
        "c": "within a group the rows are sorted by length, so each batch holds a narrow slice of the lengths; "
             "how narrow depends on how many batches a group is cut into (16 either way), not on how many rows "
             "each batch holds",
    },
    measure=lambda: padding_shares(64)["grouped"],
    predicted=_padding_kind,
    explained=lambda share: "c" if abs(share - padding_shares(16)["grouped"]) < 0.015 else "none",
    what="the padding share of batches of 64 grouped by length",
    wrong_explanations={
        "a": "that is why *random* batches get more padding as they grow (compare the two random shares); "
             "a grouped batch's rows were sorted together, so its longest row is close to its shortest",
        "b": "the padding share is padding over everything computed, whatever the number of steps",
    },
    misreadings=(
        (lambda value, true: math.isclose(value, padding_shares(64)["random"], rel_tol=0.01),
         "that is the share of *random* batches of 64; `measured` is the share of the grouped ones"),
        (lambda value, true: math.isclose(value, padding_shares(16)["grouped"], rel_tol=0.01),
         "that is the share of grouped batches of 16; `measured` is the share at batch 64"),
        PERCENTAGE,
    ),
    rel_tol=0.005,
)

GROUPED_PADDING.register(
    "07.16", "Predict, measure, explain: padding at a larger batch", module=__name__,
    wrong_measurements=(lambda: padding_shares(64)["random"], lambda: padding_shares(16)["grouped"],
                        lambda: 100 * padding_shares(64)["grouped"]),
)
