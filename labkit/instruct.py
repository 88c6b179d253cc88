"""Instruction tuning: teach a pretrained GPT to answer instead of merely continuing text.

Chapter 07 builds each part by hand; this module keeps the clean versions.

- An example is a dict with "instruction", "input" (may be empty) and "output" — the format of
  Stanford's Alpaca data. `format_prompt` writes it as the text the model reads::

      ### Instruction:
      Translate to French.

      ### Input:
      good morning

      ### Response:

  (the Input block is left out when the input is empty); the model learns to write the output
  and then the tokenizer's end marker "<|endoftext|>".
- `InstructionCollator` / `collate_instructions` turn examples into (x, y) for next-token
  training where y is ``IGNORE_INDEX`` (-100) on the prompt and the padding: the loss
  (`instruction_loss`) counts only the response and its end marker — the model is not graded
  on repeating the question.
- `respond` asks a model one question and returns its answer, cut at the end marker;
  `exact_match` / `normalized_exact_match` score answers against references.

Shapes: B batch, T time (tokens), V vocabulary size.
"""
from __future__ import annotations

import unicodedata
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from .tokenizers import ENDOFTEXT

if TYPE_CHECKING:
    from .gpt import GPT

__all__ = [
    "IGNORE_INDEX",
    "format_prompt",
    "end_of_text_id",
    "encode_example",
    "InstructionCollator",
    "collate_instructions",
    "instruction_loss",
    "length_grouped_batches",
    "response_loss",
    "train_instructions",
    "respond",
    "normalize_answer",
    "exact_match",
    "normalized_exact_match",
]

IGNORE_INDEX = -100  # F.cross_entropy's default ignore_index: targets with this value add nothing to the loss

Example = Mapping[str, str]


# ====================================================================== the prompt


def _check_example(example: Any, index: int | None = None, *, needs_output: bool = False) -> None:
    where = f"example {index}" if index is not None else "the example"
    if not isinstance(example, Mapping):
        raise TypeError(f'{where} must be a dict with "instruction", "input" and "output", got a {type(example).__name__}')
    instruction = example.get("instruction")
    if not isinstance(instruction, str) or not instruction.strip():
        raise ValueError(f'{where} needs a non-empty "instruction" string, got {instruction!r}')
    if not isinstance(example.get("input", ""), str):
        raise ValueError(f'{where}: "input" must be a string ("" for none), got {example["input"]!r}')
    if needs_output and not isinstance(example.get("output"), str):
        raise ValueError(f'{where} needs an "output" string to train on, got {example.get("output")!r}')


def format_prompt(example: Example) -> str:
    """The prompt of an example, up to and including "### Response:\\n" (Alpaca's layout; the
    Input block only when "input" is not empty). The model's answer follows it.

    Chapter 07c writes the prompt format by hand first.
    """
    _check_example(example)
    prompt = f"### Instruction:\n{example['instruction']}\n\n"
    if example.get("input", ""):
        prompt += f"### Input:\n{example['input']}\n\n"
    return prompt + "### Response:\n"


def end_of_text_id(tokenizer: Any) -> int:
    """The id of the tokenizer's "<|endoftext|>", which ends every response."""
    special = getattr(tokenizer, "special_tokens", None) or {}
    if ENDOFTEXT not in special:
        raise ValueError(
            f"this {type(tokenizer).__name__} has no {ENDOFTEXT!r} token to end a response with: use a "
            f"BPETokenizer (trained with special_tokens=({ENDOFTEXT!r},), the default) or gpt2_tokenizer()"
        )
    return int(special[ENDOFTEXT])


def encode_example(example: Example, tokenizer: Any) -> tuple[list[int], list[int]]:
    """(prompt ids, response ids ending with the end marker's id).

    The two parts are encoded apart, so no token straddles the boundary between prompt and
    response — exactly as at answer time, when the prompt is encoded alone.
    """
    _check_example(example, needs_output=True)
    prompt = tokenizer.encode(format_prompt(example))
    response = tokenizer.encode(example["output"]) + [end_of_text_id(tokenizer)]
    return prompt, response


# ====================================================================== batches for training


class InstructionCollator:
    """Examples → (x (B, T), y (B, T)) for next-token training on the responses only.

    Row by row, the tokens are prompt + response + end marker; x is all of them but the last,
    y all of them but the first (the next token at each position). y is ``IGNORE_INDEX`` where
    the next token is still part of the prompt, and on the padding; x is padded with ``pad_id``
    (default: the end marker's id). T is the longest row of the batch, at most ``block_size``.

    A row longer than block_size keeps its whole prompt and as much of the response as fits
    (a response cut short loses its end marker). An example whose prompt alone leaves no room for
    one response token raises an error — or, with ``skip_too_long=True``, is left out with a warning.
    Use it as a DataLoader's ``collate_fn``, or call it on a whole list (`collate_instructions`).

    Chapter 07c builds the loss mask by hand, then uses this.
    """

    def __init__(self, tokenizer: Any, block_size: int, pad_id: int | None = None, *,
                 skip_too_long: bool = False) -> None:
        if not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"block_size must be a whole number ≥ 1, got {block_size!r}")
        self.tokenizer, self.block_size, self.skip_too_long = tokenizer, block_size, skip_too_long
        self.end_id = end_of_text_id(tokenizer)
        self.pad_id = self.end_id if pad_id is None else pad_id

    def row(self, example: Example, index: int | None = None) -> tuple[list[int], list[int]] | None:
        """One example → (x ids, y ids) of equal length, or None if its prompt is too long to keep."""
        _check_example(example, index, needs_output=True)  # an error names the example by its index
        prompt, response = encode_example(example, self.tokenizer)
        if len(prompt) > self.block_size:  # x must hold the whole prompt to predict the first response token
            if self.skip_too_long:
                return None
            raise ValueError(
                f"example {index}'s prompt is {len(prompt)} tokens, more than block_size {self.block_size}: "
                f"no room is left for its response. Shorten its instruction/input, use a larger block_size, "
                f"or pass skip_too_long=True to leave such examples out"
            )
        ids = (prompt + response)[: self.block_size + 1]  # keep the prompt, cut the response's end
        x, y = ids[:-1], ids[1:]
        y[: len(prompt) - 1] = [IGNORE_INDEX] * (len(prompt) - 1)  # targets inside the prompt: not graded
        return x, y

    def __call__(self, examples: Sequence[Example]) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(examples, Mapping):
            raise TypeError("expected a list of examples; for one example, pass [example]")
        rows = [self.row(example, i) for i, example in enumerate(examples)]
        kept = [row for row in rows if row is not None]
        if len(kept) < len(rows):
            warnings.warn(f"left out {len(rows) - len(kept)} of {len(rows)} examples whose prompt is longer "
                          f"than block_size {self.block_size}", stacklevel=2)
        if not kept:
            raise ValueError(f"no example left to train on (got {len(rows)}; prompts longer than "
                             f"block_size {self.block_size} were left out)")
        T = max(len(x) for x, _ in kept)
        x_batch = torch.full((len(kept), T), self.pad_id, dtype=torch.long)
        y_batch = torch.full((len(kept), T), IGNORE_INDEX, dtype=torch.long)
        for i, (x, y) in enumerate(kept):
            x_batch[i, : len(x)] = torch.tensor(x)
            y_batch[i, : len(y)] = torch.tensor(y)
        return x_batch, y_batch


def collate_instructions(
    examples: Sequence[Example], tokenizer: Any, block_size: int, pad_id: int | None = None, *,
    skip_too_long: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """All ``examples`` → one padded (x (N, T), y (N, T)) pair, e.g. for ``TensorDataset(x, y)`` and
    ``fit(..., loss_fn=instruction_loss)``. See `InstructionCollator` for what x and y hold.

    Chapter 07c builds the loss mask by hand, then uses this.
    """
    return InstructionCollator(tokenizer, block_size, pad_id, skip_too_long=skip_too_long)(examples)


def instruction_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of logits (B, T, V) against targets (B, T) over the response tokens only
    (targets equal to ``IGNORE_INDEX`` are skipped).

    Chapter 07c derives why only the response is graded.
    """
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX)


def length_grouped_batches(lengths: Sequence[int], batch_size: int, generator: torch.Generator,
                           group: int = 16) -> list[list[int]]:
    """Batches (lists of indices into ``lengths``) in which rows of similar length come together, in
    random order: the indices are shuffled, cut into chunks of ``group`` batches, each chunk sorted
    by length and cut into batches, and the batches shuffled. Every index appears once. Padding a
    batch to its longest row then costs little (chapter 07c measures how much it saves).

    Chapter 07c builds it by hand and measures the padding it saves.
    """
    if batch_size < 1 or group < 1:
        raise ValueError(f"batch_size and group must be at least 1, got {batch_size} and {group}")
    order = torch.randperm(len(lengths), generator=generator).tolist()
    batches: list[list[int]] = []
    for start in range(0, len(order), batch_size * group):
        chunk = sorted(order[start: start + batch_size * group], key=lambda i: lengths[i])
        batches += [chunk[k: k + batch_size] for k in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


@torch.no_grad()
def response_loss(model: GPT, examples: Sequence[Example], collator: InstructionCollator,
                  batch_size: int = 64) -> float:
    """The mean loss per graded token (response + end marker) of ``model`` on ``examples``,
    evaluated in batches of similar length; the model's train/eval mode is restored.

    Chapter 07c measures the validation loss with it.
    """
    was_training, total, count = model.training, 0.0, 0
    device = next(model.parameters()).device
    model.eval()
    ordered = sorted(examples, key=lambda r: len(format_prompt(r)) + len(r["output"]))
    for i in range(0, len(ordered), batch_size):
        xb, yb = collator(ordered[i: i + batch_size])
        n = int((yb != IGNORE_INDEX).sum())
        total += instruction_loss(model(xb.to(device)), yb.to(device)).item() * n
        count += n
    model.train(was_training)
    return total / count


def train_instructions(
    model: GPT, train_set: Sequence[Example], val_set: Sequence[Example], tokenizer: Any, *,
    epochs: int = 1, lr: float = 1e-3, batch_size: int = 16, warmup_steps: int = 20, clip: float = 1.0,
    evals_per_epoch: int = 3, seed: int = 0, progress: bool = True,
) -> dict[str, list[float]]:
    """Instruction-tune ``model`` in place, as chapter 07c's training cell does by hand: AdamW
    (no weight decay), a warm-up over ``warmup_steps`` then a linear decay to 0, gradients clipped
    to norm ``clip``, batches grouped by length (`length_grouped_batches`, generator seeded with
    ``seed``), the loss on the responses only. The validation loss (`response_loss`) is measured
    ``evals_per_epoch`` times an epoch. Returns the history: lists "step", "train_loss" (mean over
    the steps since the last evaluation), "val_loss", "time" (seconds) and "tokens_per_s".

    ``tools/train_checkpoints.py instruct_bpe`` makes the shipped instruction-tuned checkpoint with it.

    Chapter 07c writes this loop by hand.
    """
    import time

    from .callbacks import ProgressBar
    from .training import FitState, History

    if epochs < 1 or lr <= 0:
        raise ValueError(f"epochs must be at least 1 and lr positive, got epochs={epochs}, lr={lr}")
    device = next(model.parameters()).device
    collator = InstructionCollator(tokenizer, model.config.block_size)
    lengths = [len(collator(train_set[i: i + 1])[0][0]) for i in range(len(train_set))]  # tokens per row
    steps_per_epoch = -(-len(train_set) // batch_size)
    total_steps, eval_every = epochs * steps_per_epoch, max(1, steps_per_epoch // evals_per_epoch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup_steps) * (1 - step / total_steps))
    generator = torch.Generator().manual_seed(seed)
    history: dict[str, list[float]] = {"step": [], "train_loss": [], "val_loss": [], "time": [], "tokens_per_s": []}
    state = FitState(model, optimizer, device, epochs, steps_per_epoch, History(), has_validation=True)
    bar = ProgressBar() if progress else None
    if bar:
        bar.on_fit_start(state)
    model.train()
    start, losses, tokens, window_start = time.perf_counter(), [], 0, time.perf_counter()
    for state.epoch in range(epochs):
        for batch in length_grouped_batches(lengths, batch_size, generator):
            xb, yb = collator([train_set[i] for i in batch])
            loss = instruction_loss(model(xb.to(device)), yb.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            schedule.step()
            state.step, state.loss = state.step + 1, loss.item()
            losses.append(state.loss)
            tokens += xb.numel()
            if bar:
                bar.on_batch_end(state)
            if state.step % eval_every == 0 or state.step == total_steps:
                elapsed = time.perf_counter() - window_start
                history["step"].append(state.step)
                history["train_loss"].append(sum(losses) / len(losses))
                history["val_loss"].append(response_loss(model, val_set, collator))
                history["time"].append(time.perf_counter() - start)
                history["tokens_per_s"].append(tokens / elapsed)
                losses, tokens, window_start = [], 0, time.perf_counter()
        if bar:
            state.history.append({"train_loss": history["train_loss"][-1], "val_loss": history["val_loss"][-1]})
            bar.on_epoch_end(state)
    if bar:
        bar.on_fit_end(state)
    model.eval()
    return history


# ====================================================================== answering and scoring


def respond(
    model: GPT,
    tokenizer: Any,
    example_or_instruction: Example | str,
    input: str = "",
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    *,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> str:
    """The model's answer to an instruction (with an optional input), without the prompt and the
    end marker. ``temperature`` 0 (the default) always takes the likeliest token.

    Chapter 07c asks the base and the tuned model the same questions with it.
    """
    if isinstance(example_or_instruction, str):
        example: Mapping[str, str] = {"instruction": example_or_instruction, "input": input}
    else:
        if input:
            raise ValueError('give input= only with an instruction string; an example brings its own "input"')
        example = example_or_instruction
    end_id = end_of_text_id(tokenizer)
    device = next(model.parameters()).device
    prompt = torch.tensor([tokenizer.encode(format_prompt(example))], device=device)  # (1, T)
    out = model.generate(prompt, max_new_tokens, temperature=temperature, top_k=top_k,
                         stop_tokens={end_id}, generator=generator)
    new = out[0, prompt.shape[1]:].tolist()
    if end_id in new:
        new = new[: new.index(end_id)]  # the answer ends where the model wrote the end marker
    return tokenizer.decode(new)


def normalize_answer(text: str) -> str:
    """Lenient form of an answer: Unicode NFKC (full-width → ordinary characters), case folded,
    punctuation (English and Chinese) removed, runs of spaces made one, ends stripped."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("P"))
    return " ".join(text.split())


def _paired(predictions: Sequence[str], references: Sequence[str]) -> list[tuple[str, str]]:
    if isinstance(predictions, str) or isinstance(references, str):
        raise TypeError("predictions and references must be lists of strings; for one answer, pass [answer]")
    if len(predictions) != len(references):
        raise ValueError(f"got {len(predictions)} predictions but {len(references)} references: they must pair up")
    if not predictions:
        raise ValueError("no predictions to score")
    return list(zip(predictions, references))


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """The share (0 … 1) of predictions equal to their reference, character for character.

    Chapter 07c scores the held-out questions with it.
    """
    pairs = _paired(predictions, references)
    return sum(p == r for p, r in pairs) / len(pairs)


def normalized_exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """The share (0 … 1) of predictions equal to their reference after `normalize_answer` on both:
    "Paris." and " paris" match.

    Chapter 07c compares it with the strict score.
    """
    pairs = _paired(predictions, references)
    return sum(normalize_answer(p) == normalize_answer(r) for p, r in pairs) / len(pairs)
