"""Sequence to sequence: Chinese numerals ↔ numbers, and an encoder–decoder transformer.

Chapter 09c builds it by hand. The task has a checkable answer and data made on the spot:
``chinese_numeral(3005) == "三千零五"``; the model reads the numeral and writes the digits.

The model is the course GPT's parts (chapter 06a: ``CausalSelfAttention``, ``MLP``, pre-norm
residual blocks) plus one new layer, **cross-attention**: queries from the decoder, keys and
values from the encoder's output (the "memory"). Shapes: B batch, S source length, T target
length, C channels (``n_embd``), V vocabulary.

    >>> vocab = NumeralVocab()
    >>> model = EncoderDecoder(Seq2SeqConfig(vocab_size=len(vocab)))
    >>> src, tgt = vocab.encode_batch(["三千零五"], ["3005"])
    >>> logits = model(src, tgt[:, :-1])                       # (B, T, V) = (1, 5, 25)
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .gpt import MLP, CausalSelfAttention, GPTConfig

DIGITS = "零一二三四五六七八九"
SMALL_UNITS = ["", "十", "百", "千"]
LARGEST = 99_999_999  # 九千九百九十九万九千九百九十九


# ==================================================================================== the task


def _four_digits(n: int) -> str:
    """0 < n < 10000 → its numeral, with 零 for each run of zeros between digits."""
    text, zero = "", False
    for position in (3, 2, 1, 0):
        digit = n // 10**position % 10
        if digit == 0:
            zero = bool(text)  # a zero matters only between digits already written and later ones
            continue
        if zero:
            text += "零"
            zero = False
        text += DIGITS[digit] + SMALL_UNITS[position]
    return text


def chinese_numeral(n: int) -> str:
    """The Chinese numeral of a whole number 0 ≤ n ≤ 99,999,999, as it is written out.

    Rules: digit + unit (十 百 千, then 万 for the upper four digits); one 零 for each run of zeros
    between two written digits (1005 → 一千零五, 1050 → 一千零五十); a leading 一十 is said 十
    (15 → 十五, but 115 → 一百一十五). Chapter 09c generates its translation pairs with it.
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be a whole number (int), got {type(n).__name__} {n!r}")
    if not 0 <= n <= LARGEST:
        raise ValueError(f"n must be between 0 and {LARGEST:,}, got {n:,}: larger numbers need 亿")
    if n == 0:
        return "零"
    high, low = divmod(n, 10_000)
    text = _four_digits(high) + "万" if high else ""
    if low:
        if high and low < 1000:
            text += "零"  # 10005 → 一万零五: the thousands place is empty
        text += _four_digits(low)
    if text.startswith("一十"):
        text = text[1:]  # 十五, not 一十五 (only at the very start)
    return text


class NumeralVocab:
    """Characters ↔ ids for both sides of the task: padding, start, end, the 10 digits 0-9,
    and the Chinese numeral characters. One vocabulary serves the source and the target."""

    PAD, BOS, EOS = 0, 1, 2

    def __init__(self) -> None:
        self.itos = ["<pad>", "<s>", "</s>", *"0123456789", *DIGITS, *"十百千万"]
        self.stoi = {ch: i for i, ch in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        """A string → ids, no start or end marks."""
        unknown = sorted({ch for ch in text if ch not in self.stoi})
        if unknown:
            raise ValueError(f"characters {unknown} are not in the vocabulary (digits 0-9 and {DIGITS}十百千万); "
                             f"got text {text!r}")
        return [self.stoi[ch] for ch in text]

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Ids → a string, stopping at the first end mark, skipping padding and start marks."""
        out = []
        for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids):
            if i == self.EOS:
                break
            if i not in (self.PAD, self.BOS):
                out.append(self.itos[i])
        return "".join(out)

    def encode_batch(self, sources: Sequence[str], targets: Sequence[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Sources → (B, S) ids padded with PAD; targets → (B, T) ids ``<s> … </s>`` padded with PAD.
        Without targets the second tensor is empty (B, 0)."""
        src = _pad([self.encode(s) for s in sources], self.PAD)
        if targets is None:
            return src, torch.zeros(len(sources), 0, dtype=torch.long)
        if len(targets) != len(sources):
            raise ValueError(f"sources and targets must pair up, got {len(sources)} sources and {len(targets)} targets")
        tgt = _pad([[self.BOS, *self.encode(t), self.EOS] for t in targets], self.PAD)
        return src, tgt


def _pad(rows: list[list[int]], pad: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [pad] * (width - len(r)) for r in rows], dtype=torch.long)


def split_numbers(count: int, held_out: float, *, low: int = 1, high: int = 99_999,
                  seed: int = 0) -> tuple[list[int], list[int]]:
    """``count`` different numbers drawn from low … high, split into (train, held_out): the held-out
    numbers are never seen in training. A private generator: the caller's random stream stays put."""
    if not 0 < held_out < 1:
        raise ValueError(f"held_out must be a fraction between 0 and 1, got {held_out}")
    if not 0 < count <= high - low + 1:
        raise ValueError(f"count must be between 1 and {high - low + 1} (the numbers in {low} … {high}), got {count}")
    generator = torch.Generator().manual_seed(seed)
    picked = (torch.randperm(high - low + 1, generator=generator)[:count] + low).tolist()
    cut = round(count * (1 - held_out))
    return picked[:cut], picked[cut:]


# ==================================================================================== metrics


def edit_distance(a: Sequence[object], b: Sequence[object]) -> int:
    """Levenshtein distance: the fewest insertions, deletions and substitutions turning a into b."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def character_error_rate(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Σ edit distance / Σ reference length over pairs (speech recognition's CER); 0 is perfect.
    It can exceed 1 when the predictions are much longer than the references. Chapter 09c."""
    if len(predictions) != len(references):
        raise ValueError(f"predictions and references must pair up, got {len(predictions)} and {len(references)}")
    total = sum(len(r) for r in references)
    if total == 0:
        raise ValueError("the references are all empty: a character error rate needs some characters")
    return sum(edit_distance(p, r) for p, r in zip(predictions, references)) / total


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """The share of predictions equal to their reference, character for character. Chapter 09c."""
    if len(predictions) != len(references) or not references:
        raise ValueError(f"need as many predictions as references (≥ 1), got {len(predictions)} and {len(references)}")
    return sum(p == r for p, r in zip(predictions, references)) / len(references)


# ==================================================================================== the model


@dataclass
class Seq2SeqConfig:
    """An encoder–decoder's shape. ``block_size`` bounds both the source and the target length.
    Chapter 09c."""

    vocab_size: int = 25
    block_size: int = 24
    n_layer: int = 2  # encoder blocks; the decoder has as many
    n_head: int = 4
    n_embd: int = 64
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number ≥ 1, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")

    def gpt_config(self) -> GPTConfig:
        """The same sizes as a GPTConfig (the decoder's self-attention and MLP are GPT's)."""
        return GPTConfig(vocab_size=self.vocab_size, block_size=self.block_size, n_layer=self.n_layer,
                         n_head=self.n_head, n_embd=self.n_embd, dropout=self.dropout, attention="manual")


class CrossAttention(nn.Module):
    """Multi-head attention of queries x (B, T, C) over a memory (B, S, C) → (B, T, C).

    Nothing is causal here: every query may look at every memory position except padding
    (``memory_pad`` (B, S), True where the memory is padding). With x = memory it is the encoder's
    bidirectional self-attention. ``keep_weights=True`` keeps the last weights (B, n_head, T, S)
    in ``self.weights`` for a picture. Chapter 09c writes it by hand; it equals
    ``nn.MultiheadAttention`` given the same weights.
    """

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.n_head, self.n_embd = n_head, n_embd
        self.q_proj = nn.Linear(n_embd, n_embd)      # queries from the decoder
        self.kv_proj = nn.Linear(n_embd, 2 * n_embd)  # keys and values from the memory
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.dropout = nn.Dropout(dropout)
        self.keep_weights = False
        self.weights: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_pad: torch.Tensor | None = None) -> torch.Tensor:
        B, T, C = x.shape
        S = memory.shape[1]
        hs = C // self.n_head
        q = self.q_proj(x).view(B, T, self.n_head, hs).transpose(1, 2)                    # (B, nh, T, hs)
        k, v = (t.view(B, S, self.n_head, hs).transpose(1, 2) for t in self.kv_proj(memory).split(C, dim=2))
        scores = q @ k.transpose(-2, -1) / math.sqrt(hs)                                    # (B, nh, T, S)
        if memory_pad is not None:
            scores = scores.masked_fill(memory_pad[:, None, None, :], float("-inf"))
        weights = F.softmax(scores, dim=-1)
        if self.keep_weights:
            self.weights = weights.detach()
        y = (self.dropout(weights) @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class EncoderBlock(nn.Module):
    """Pre-norm: x + attention(norm(x)) over the whole source (no causal mask), then x + mlp(norm(x))."""

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CrossAttention(config.n_embd, config.n_head, config.dropout)  # x attends to x
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config.gpt_config())

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, pad)
        return x + self.mlp(self.ln_2(x))


class DecoderBlock(nn.Module):
    """GPT's block with one more step in the middle: causal self-attention, then cross-attention
    to the encoder's memory, then the MLP, each pre-norm on a residual path. (B, T, C) → (B, T, C)."""

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config.gpt_config())
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.cross = CrossAttention(config.n_embd, config.n_head, config.dropout)  # New: look at the source
        self.ln_3 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config.gpt_config())

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_pad: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        x = x + self.cross(self.ln_2(x), memory, memory_pad)  # New
        return x + self.mlp(self.ln_3(x))


class EncoderDecoder(nn.Module):
    """The original transformer's shape (Vaswani et al., 2017), pre-norm as GPT-2: an encoder reads
    the source (B, S) all at once; a decoder writes the target one token at a time, attending to
    what it wrote (causal) and to the encoder's output (cross-attention). Chapter 09c.

    forward(src (B, S), tgt_in (B, T)) → logits (B, T, V); padding (id 0) in src is masked.
    """

    def __init__(self, config: Seq2SeqConfig, pad_id: int = NumeralVocab.PAD) -> None:
        super().__init__()
        self.config, self.pad_id = config, pad_id
        self.tok = nn.Embedding(config.vocab_size, config.n_embd)  # shared by both sides and the head
        self.src_pos = nn.Embedding(config.block_size, config.n_embd)
        self.tgt_pos = nn.Embedding(config.block_size, config.n_embd)
        self.encoder = nn.ModuleList([EncoderBlock(config) for _ in range(config.n_layer)])
        self.ln_enc = nn.LayerNorm(config.n_embd)
        self.decoder = nn.ModuleList([DecoderBlock(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.tok.weight  # weight tying, as in GPT
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def _check(self, ids: torch.Tensor, name: str) -> None:
        if ids.dim() != 2 or ids.dtype != torch.long:
            raise ValueError(f"{name} must be token ids of shape (B, length), dtype long; got shape "
                             f"{tuple(ids.shape)}, dtype {ids.dtype}")
        if ids.shape[1] > self.config.block_size:
            raise ValueError(f"{name} has length {ids.shape[1]}, longer than block_size {self.config.block_size}")

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """src (B, S) → (memory (B, S, C), padding mask (B, S))."""
        self._check(src, "src")
        pad = src == self.pad_id
        x = self.tok(src) + self.src_pos(torch.arange(src.shape[1], device=src.device))
        for block in self.encoder:
            x = block(x, pad)
        return self.ln_enc(x), pad

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """tgt_in (B, T) and the memory → logits (B, T, V)."""
        self._check(tgt_in, "tgt_in")
        x = self.tok(tgt_in) + self.tgt_pos(torch.arange(tgt_in.shape[1], device=tgt_in.device))
        for block in self.decoder:
            x = block(x, memory, pad)
        return self.lm_head(self.ln_f(x))

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        memory, pad = self.encode(src)
        return self.decode(tgt_in, memory, pad)

    def loss(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: predict tgt[:, 1:] from tgt[:, :-1]; padding is not scored."""
        logits = self(src, tgt[:, :-1])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt[:, 1:].reshape(-1), ignore_index=self.pad_id)

    @torch.no_grad()
    def translate(self, src: torch.Tensor, max_len: int, bos: int = NumeralVocab.BOS, eos: int = NumeralVocab.EOS) -> torch.Tensor:
        """Greedy decoding for a batch: (B, S) → (B, ≤ max_len) ids after ``<s>``; a row that has
        written ``</s>`` keeps writing ``</s>``. The encoder runs once; the decoder once per token."""
        was_training = self.training
        self.eval()
        memory, pad = self.encode(src)
        out = torch.full((src.shape[0], 1), bos, dtype=torch.long, device=src.device)
        done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
        for _ in range(max_len):
            next_id = self.decode(out, memory, pad)[:, -1].argmax(-1)
            next_id = torch.where(done, torch.full_like(next_id, eos), next_id)
            out = torch.cat([out, next_id[:, None]], dim=1)
            done |= next_id == eos
            if done.all():
                break
        self.train(was_training)
        return out[:, 1:]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


# ==================================================================================== training


def train_steps(loss_fn: Callable[[torch.Tensor], torch.Tensor], model: nn.Module, n_examples: int, *,
                steps: int, batch_size: int = 128, lr: float = 3e-3, seed: int = 0,
                on_step: Callable[[int, float], None] | None = None) -> list[float]:
    """AdamW with a linear warm-up then cosine decay; each step draws ``batch_size`` example indices
    (a private generator) and calls ``loss_fn(indices)``. Returns the loss of every step. Chapter 09c
    trains the encoder–decoder and the decoder-only baseline with it, step for step the same."""
    if steps < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"steps and batch_size must be ≥ 1 and lr > 0, got steps={steps}, "
                         f"batch_size={batch_size}, lr={lr}")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    losses = []
    model.train()
    for step in range(steps):
        loss = loss_fn(torch.randint(n_examples, (batch_size,), generator=generator))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if on_step is not None:
            on_step(step, losses[-1])
    model.eval()
    return losses


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    """(fn(), seconds it took)."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


# ==================================================================================== the baseline


def decoder_only_batch(vocab: NumeralVocab, sources: Sequence[str], targets: Sequence[str],
                       width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same pairs for a decoder-only GPT: one sequence ``[pad…] source <s> target </s>``, the
    source left-padded to ``width`` so that ``<s>`` always sits at position ``width``.
    Returns (x (B, L), y (B, L)): y is x shifted by one, -1 (not scored) except on the target and ``</s>``."""
    rows, labels = [], []
    for source, target in zip(sources, targets, strict=True):
        src = vocab.encode(source)
        if len(src) > width:
            raise ValueError(f"source {source!r} has {len(src)} characters, more than width={width}")
        prompt = [vocab.PAD] * (width - len(src)) + src + [vocab.BOS]
        answer = vocab.encode(target) + [vocab.EOS]
        rows.append(prompt + answer)
        labels.append([-1] * (len(prompt) - 1) + answer)
    full = max(len(r) for r in rows)
    x = torch.tensor([r + [vocab.PAD] * (full - len(r)) for r in rows])
    y = torch.tensor([r + [-1] * (full - len(r)) for r in labels])
    return x, y


@torch.no_grad()
def decoder_only_translate(model: nn.Module, vocab: NumeralVocab, sources: Sequence[str], width: int,
                           max_len: int) -> list[str]:
    """Greedy answers of a decoder-only model trained on ``decoder_only_batch``'s sequences."""
    model.eval()
    prompts = torch.tensor([[vocab.PAD] * (width - len(s)) + vocab.encode(s) + [vocab.BOS] for s in sources])
    out = prompts
    for _ in range(max_len):
        next_id = model(out)[:, -1].argmax(-1, keepdim=True)
        out = torch.cat([out, next_id], dim=1)
        if bool((out[:, prompts.shape[1]:] == vocab.EOS).any(dim=1).all()):
            break
    return [vocab.decode(row) for row in out[:, prompts.shape[1]:]]
