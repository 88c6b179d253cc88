"""A GPT, written to be read: configuration, causal self-attention, the block, the model, sampling.

The model follows GPT-2 (and nanoGPT's ``model.py``): token + position embeddings, a stack of
pre-norm blocks — ``x + attention(norm(x))`` then ``x + mlp(norm(x))`` — a final norm and a
linear head that shares its weight with the token embedding. Shapes: B batch, T time (tokens),
C channels (``n_embd``), V vocabulary.

    >>> config = GPTConfig.preset("gpt-micro", vocab_size=65)
    >>> model = GPT(config)
    >>> logits = model(torch.zeros(2, 8, dtype=torch.long))      # (B, T, V) = (2, 8, 65)

Sizes are data, not code: ``PRESETS`` goes from a few thousand parameters to GPT-2 small.
``GPT.from_gpt2`` reads Hugging Face's GPT-2; ``labkit.checkpoints`` keeps the course's own models
(config.json + model.safetensors + tokenizer.json) and loads the ones it ships.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .files import DamagedFileError, listing, read_json, read_safetensors, read_torch_file

# Model sizes as a lookup table (minGPT's idea). vocab_size and block_size may be overridden.
PRESETS: dict[str, dict[str, Any]] = {
    "gpt-micro": dict(n_layer=1, n_head=2, n_embd=16, block_size=32),  # ~3k parameters + embeddings
    "gpt-nano": dict(n_layer=3, n_head=3, n_embd=48, block_size=64),
    "char-tiny": dict(n_layer=4, n_head=4, n_embd=128, block_size=64),  # the chapter's 3-minute CPU run
    "char-small": dict(n_layer=6, n_head=6, n_embd=192, block_size=128),
    "char-medium": dict(n_layer=6, n_head=6, n_embd=384, block_size=256),  # nanoGPT's shakespeare_char
    "bpe-small": dict(n_layer=6, n_head=8, n_embd=256, block_size=256),  # the shipped base model
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768, vocab_size=50257, block_size=1024),  # 124M
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024, vocab_size=50257, block_size=1024),  # 350M
}


@dataclass
class GPTConfig:
    """Everything that decides a GPT's shape. ``attention`` picks "manual" (written out) or "sdpa"
    (PyTorch's fused ``scaled_dot_product_attention``); both compute the same thing.

    Chapter 06a builds the GPT it configures; 06b pretrains it.
    """

    vocab_size: int = 65
    block_size: int = 64  # the longest context the model sees
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    attn_dropout: float | None = None  # dropout on the attention weights; None: the same as ``dropout``
    bias: bool = True  # biases in Linear layers and LayerNorms, as in GPT-2
    attention: str = "sdpa"

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number ≥ 1, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}): each head gets "
                f"n_embd / n_head channels. Try n_embd={self.n_head * max(1, round(self.n_embd / self.n_head))}."
            )
        for name in ("dropout", "attn_dropout"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if self.attention not in ("manual", "sdpa"):
            raise ValueError(f'attention must be "manual" or "sdpa", got {self.attention!r}')

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> GPTConfig:
        """A configuration from ``PRESETS``, with any field overridden: ``preset("gpt-nano", vocab_size=65)``."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"GPTConfig has no field(s) {unknown}; the fields are {sorted(known)}")
        return cls(**{**PRESETS[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LayerCache:
    """One layer's keys and values of the tokens seen so far, each (B, n_head, T_seen, head_size)."""

    def __init__(self) -> None:
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add this step's keys and values (B, n_head, T_new, head_size); return all of them so far."""
        if self.keys is None or self.values is None:
            self.keys, self.values = k, v
        else:
            self.keys = torch.cat([self.keys, k], dim=2)
            self.values = torch.cat([self.values, v], dim=2)
        return self.keys, self.values


class KVCache:
    """The key/value cache of a whole model: one ``LayerCache`` per block.

    During generation each new token only needs its own query, key and value: the keys and
    values of earlier tokens never change, so we keep them instead of recomputing them.
    """

    def __init__(self, n_layer: int) -> None:
        self.layers = [LayerCache() for _ in range(n_layer)]

    def __len__(self) -> int:
        """How many tokens the cache holds."""
        keys = self.layers[0].keys
        return 0 if keys is None else keys.shape[2]

    def copy(self) -> KVCache:
        """A cache of the same tokens that can grow without changing this one (``append`` makes new
        tensors, so the two share the keys and values seen so far and nothing after): one cached
        prompt prefix serves many continuations (chapter 07e)."""
        twin = KVCache(0)
        for layer in self.layers:
            twin.layers.append(LayerCache())
            twin.layers[-1].keys, twin.layers[-1].values = layer.keys, layer.values
        return twin


# Below this many queries, PyTorch's CPU attention kernel differentiates bf16 several times slower than
# float32 on the machines we measured (benchmarks/attention_bf16.py prints the grid: the gap closes with
# the length, and from about 192 on which is faster depends on the head size), so `fused_attention`
# computes short bf16 contexts in float32.
BF16_ATTENTION_IN_FP32_BELOW = 192


def fused_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, attn_mask: torch.Tensor | None = None,
                    dropout_p: float = 0.0, is_causal: bool = False) -> torch.Tensor:
    """PyTorch's fused ``scaled_dot_product_attention`` for q (B, nh, Tq, hs), k and v (B, nh, Tk, hs),
    with one exception for speed: bf16 attention on a CPU that will be differentiated (autocast's
    training steps, chapter 08a) runs in float32 when Tq < ``BF16_ATTENTION_IN_FP32_BELOW``, and its
    output is rounded back to bf16. The result differs from bf16's only by bf16's own rounding."""
    if (q.dtype == torch.bfloat16 and q.device.type == "cpu" and torch.is_grad_enabled()
            and q.shape[-2] < BF16_ATTENTION_IN_FP32_BELOW):
        with torch.autocast("cpu", enabled=False):
            y = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=attn_mask,
                                               dropout_p=dropout_p, is_causal=is_causal)
        return y.to(torch.bfloat16)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where each position sees only itself and earlier positions."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head, self.n_embd, self.attention = config.n_head, config.n_embd, config.attention
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # query, key, value at once
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        # attention-weight dropout stops PyTorch from using its fused kernel on a CPU (about 2.4x slower
        # steps), so a config may keep it at 0 while dropping out elsewhere (attn_dropout=0.0)
        self.dropout = config.dropout if config.attn_dropout is None else config.attn_dropout
        self.attn_dropout = nn.Dropout(self.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cache: LayerCache | None = None) -> torch.Tensor:
        """(B, T, C) → (B, T, C). With a ``cache``, x holds only the new tokens."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        # (B, T, C) → (B, n_head, T, head_size): each head attends on its own slice of channels
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if cache is not None:
            k, v = cache.append(k, v)  # keys and values of all tokens so far: (B, n_head, T_seen, hs)
        y = self.attend(q, k, v)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again
        return self.resid_dropout(self.c_proj(y))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """softmax(q kᵀ / √d, causal) v for q (B, nh, Tq, hs) and k, v (B, nh, Tk, hs), Tq ≤ Tk.

        The queries are the last Tq positions, so query i may see keys 0 … Tk - Tq + i.
        """
        Tq, Tk = q.shape[2], k.shape[2]
        if self.attention == "sdpa":
            dropout = self.dropout if self.training else 0.0
            if Tq == Tk:
                return fused_attention(q, k, v, dropout_p=dropout, is_causal=True)
            mask = torch.ones(Tq, Tk, dtype=torch.bool, device=q.device).tril(diagonal=Tk - Tq)
            return fused_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        # written out: scores, mask the future, softmax, weighted sum of values
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(k.shape[-1])  # (B, nh, Tq, Tk)
        future = torch.ones(Tq, Tk, dtype=torch.bool, device=q.device).triu(diagonal=Tk - Tq + 1)
        scores = scores.masked_fill(future, float("-inf"))
        weights = self.attn_dropout(F.softmax(scores, dim=-1))
        return weights @ v  # (B, nh, Tq, hs)


class MLP(nn.Module):
    """Position-wise feed-forward: widen 4×, GELU, project back. (B, T, C) → (B, T, C)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2's GELU
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """One transformer block: communicate (attention), then compute (MLP), each on a residual path."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cache: LayerCache | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache)
        x = x + self.mlp(self.ln_2(x))
        return x


class GPTBody(nn.ModuleDict):
    """GPT's ``transformer``: a ModuleDict, so that the weights keep GPT-2's and nanoGPT's names
    (``transformer.wte.weight`` …), whose parts are named here for editors and type checkers."""

    wte: nn.Embedding  # token embedding
    wpe: nn.Embedding  # position embedding
    drop: nn.Dropout
    h: nn.ModuleList   # the blocks
    ln_f: nn.LayerNorm

    def _get_name(self) -> str:
        return "ModuleDict"  # print(model) reads as nanoGPT's does


class GPT(nn.Module):
    """A GPT language model: token ids (B, T) → next-token logits (B, T, vocab_size).

    Chapter 06a builds it block by block; 06b pretrains it; 06c samples from it with a KV cache.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = GPTBody(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),  # token embedding
            wpe=nn.Embedding(config.block_size, config.n_embd),  # position embedding
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying: one matrix reads and writes tokens
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale the residual projections by 1/√(2·n_layer)
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Token ids (B, T) → logits (B, T, vocab_size). With a ``cache``, idx holds only the new
        tokens and their positions continue after the ``len(cache)`` tokens already seen."""
        return self.lm_head(self.hidden_states(idx, cache))  # (B, T, V)

    def hidden_states(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Token ids (B, T) → the final hidden states (B, T, C): what lm_head reads (a classifier
        reads them too)."""
        _check_idx(idx)
        B, T = idx.shape
        start = len(cache) if cache is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(
                f"a sequence of {start + T} tokens is longer than this model's block_size "
                f"{self.config.block_size}: crop it (idx[:, -{self.config.block_size}:]) "
                f"or build a GPT with a larger block_size"
            )
        pos = torch.arange(start, start + T, device=idx.device)
        try:
            tok_emb = self.transformer.wte(idx)  # (B, T, C)
        except IndexError:
            raise ValueError(
                f"token ids must be in 0 … {self.config.vocab_size - 1} (the model's vocab_size), "
                f"got ids from {int(idx.min())} to {int(idx.max())}: the tokenizer and the model don't "
                f"match — build the model with vocab_size=tokenizer.vocab_size"
            ) from None
        x = self.transformer.drop(tok_emb + self.transformer.wpe(pos))  # (B, T, C) + (T, C)
        for i, block in enumerate(self.transformer.h):
            x = block(x, cache.layers[i] if cache is not None else None)
        return self.transformer.ln_f(x)  # (B, T, C)

    # ------------------------------------------------------------------ size and cost

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Parameter count (the tied embedding is counted once). ``non_embedding`` leaves out the
        position embedding and the token embedding, the convention of scaling-law papers."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.transformer.wpe.weight.numel() + self.transformer.wte.weight.numel()
        return n

    def flops_per_token(self, T: int | None = None) -> float:
        """Training FLOPs per token (forward + backward) at context length T: 6·N for the weights
        plus 12·n_layer·T·n_embd for attention's scores and weighted sums (PaLM, appendix B)."""
        c = self.config
        T = c.block_size if T is None else T
        n = self.num_parameters() - self.transformer.wpe.weight.numel()
        return 6 * n + 12 * c.n_layer * T * c.n_embd

    # ------------------------------------------------------------------ GPT-2's weights

    @classmethod
    def from_gpt2(cls, source: Any, *, config: Any = None, attention: str = "sdpa", dropout: float = 0.0) -> GPT:
        """A GPT holding the weights of a Hugging Face GPT-2, in eval mode.

        ``source`` is one of:

        - a ``transformers.GPT2LMHeadModel`` (or ``GPT2Model``);
        - its ``state_dict()``, with ``config=`` its ``GPT2Config`` or the dict of its config.json;
        - a directory written by ``save_pretrained`` (config.json + model.safetensors, or
          pytorch_model.bin): reading it needs no ``transformers``, only local files.

        With internet and ``pip install transformers``, the real 124M GPT-2 takes two lines::

            from transformers import GPT2LMHeadModel
            model = GPT.from_gpt2(GPT2LMHeadModel.from_pretrained("gpt2"))  # or "gpt2-medium", …

        (``GPT2LMHeadModel.from_pretrained("gpt2").save_pretrained("gpt2-weights")`` once keeps a copy
        that ``GPT.from_gpt2("gpt2-weights")`` reads offline.) The names match ours one to one, but
        Hugging Face keeps the four big projections as ``Conv1D`` with (in, out) weights, the
        transpose of ``nn.Linear``'s (out, in), so those are transposed on the way in. GPT-2 was
        trained with dropout 0.1: pass ``dropout=0.1`` to fine-tune it the same way.
        """
        hf_config, hf_weights = _read_gpt2_source(source, config)
        model = cls(_gpt2_config(hf_config, attention=attention, dropout=dropout))
        _copy_gpt2_weights(model, hf_weights)
        return model.eval()

    # ------------------------------------------------------------------ sampling

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        use_cache: bool = True,
        stop_tokens: set[int] | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Continue ``idx`` (B, T) by ``max_new_tokens`` tokens; returns (B, T + new).

        ``temperature`` 0 picks the most likely token (greedy); ``top_k`` keeps the k likeliest,
        ``top_p`` the smallest set whose probabilities sum to p. With ``use_cache`` each step
        feeds only the new token through the model (a KV cache) — the same tokens, faster.
        ``stop_tokens`` ends generation once every sequence has produced one of them.
        """
        _check_sampling(temperature, top_k, top_p, max_new_tokens)
        _check_idx(idx)
        if idx.shape[1] == 0:
            raise ValueError(
                f"generate continues a prompt, but idx has no tokens (shape {tuple(idx.shape)}): "
                "start from at least one token, e.g. torch.tensor([tokenizer.encode(\"\\n\")])"
            )
        was_training = self.training
        self.eval()
        cache = KVCache(self.config.n_layer) if use_cache else None
        block = self.config.block_size
        fed = 0  # how many tokens of idx the cache holds
        finished = torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)
        for _ in range(max_new_tokens):
            if cache is not None and idx.shape[1] <= block:
                logits = self(idx[:, fed:], cache)  # only the tokens the cache has not seen
                fed = idx.shape[1]
            else:  # no cache, or the context outgrew block_size: recompute on the last block tokens
                logits = self(idx[:, -block:])
            next_id = sample_next(logits[:, -1, :], temperature, top_k, top_p, generator)  # (B, 1)
            idx = torch.cat([idx, next_id], dim=1)
            if stop_tokens:
                finished |= torch.isin(next_id[:, 0], torch.tensor(sorted(stop_tokens), device=idx.device))
                if bool(finished.all()):
                    break
        self.train(was_training)
        return idx


def _check_idx(idx: torch.Tensor) -> None:
    """Token ids must be an integer tensor (B, T): what forward and generate take."""
    if not torch.is_tensor(idx):
        raise ValueError(f"idx must hold integer token ids of shape (B, T), got a {type(idx).__name__}: "
                         "a list of ids becomes a batch of one with torch.tensor([ids])")
    if idx.dim() != 2 or idx.is_floating_point():
        raise ValueError(
            f"idx must hold integer token ids of shape (B, T), got {idx.dtype} of shape {tuple(idx.shape)}: "
            "one sequence of shape (T,) becomes a batch of one with idx[None]"
        )


def _check_sampling(temperature: float, top_k: int | None, top_p: float | None, max_new_tokens: int) -> None:
    if temperature < 0:
        raise ValueError(f"temperature must be ≥ 0 (0 means always the most likely token), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be ≥ 1 (or None for no limit), got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1] (or None for no limit), got {top_p}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be ≥ 0, got {max_new_tokens}")


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick one next token per row from logits (B, V); returns ids (B, 1)."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    probs = F.softmax(filter_logits(logits / temperature, top_k, top_p), dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set to -inf the logits (B, V) that top-k / top-p sampling may not pick."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, [-1]]  # (B, 1): the k-th largest logit
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = F.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        drop = cumulative - F.softmax(sorted_logits, dim=-1) >= top_p  # mass before this token already ≥ p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


def with_attention(config: GPTConfig, attention: str) -> GPTConfig:
    """A copy of ``config`` using the other attention implementation ("manual" or "sdpa")."""
    return replace(config, attention=attention)


# ====================================================================== GPT-2's weights from Hugging Face

# Hugging Face's GPT-2 keeps these as Conv1D, whose weight is (in, out): the transpose of nn.Linear's.
_CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# Older GPT-2 files also hold each layer's causal mask as a buffer; it is not a weight (we build masks).
_GPT2_MASK_BUFFERS = (".attn.bias", ".attn.masked_bias")


def _read_gpt2_source(source: Any, config: Any) -> tuple[dict[str, Any], Mapping[str, torch.Tensor]]:
    """(GPT-2 config as a dict, GPT-2 weights by name) from a model, a state_dict or a directory."""
    if isinstance(source, (str, os.PathLike)):
        if config is not None:
            raise ValueError("a checkpoint directory brings its own config.json: leave out config=")
        return _read_gpt2_directory(Path(source))
    if isinstance(source, GPT):
        raise TypeError("this is already a labkit GPT: copy it with copy.deepcopy(model), no conversion needed")
    if isinstance(source, nn.Module):
        if config is None and not hasattr(source, "config"):
            raise TypeError(f"expected a Hugging Face GPT2LMHeadModel (it has .config), got a {type(source).__name__}")
        return _config_as_dict(source.config if config is None else config), source.state_dict()
    if isinstance(source, Mapping):
        if config is None:
            raise ValueError(
                "a state_dict alone does not say how many heads the model has: pass its configuration too, "
                "GPT.from_gpt2(state_dict, config=hf_model.config) (a GPT2Config, or the dict of its config.json)"
            )
        return _config_as_dict(config), source
    raise TypeError(
        "GPT.from_gpt2 takes a Hugging Face GPT2LMHeadModel, its state_dict (with config=…) or the path "
        f"of a directory written by save_pretrained; got a {type(source).__name__}"
    )


def _config_as_dict(config: Any) -> dict[str, Any]:
    if isinstance(config, Mapping):
        return dict(config)
    if hasattr(config, "to_dict"):  # transformers.GPT2Config
        return config.to_dict()
    raise TypeError(f"config must be a GPT2Config or a dict like its config.json, got a {type(config).__name__}")


def _read_gpt2_directory(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a ``save_pretrained`` directory with plain files: config.json and the weights."""
    if not path.exists():
        hint = ""
        if not path.is_absolute() and len(path.parts) <= 2:  # "gpt2", "openai-community/gpt2": names on the hub
            hint = (
                f". labkit reads local files only; if {str(path)!r} is a model on the Hugging Face hub, fetch it with "
                f"transformers (needs internet): GPT.from_gpt2(GPT2LMHeadModel.from_pretrained({str(path)!r}))"
            )
        raise FileNotFoundError(f"no checkpoint directory at {path}{hint}")
    if path.is_file():
        raise ValueError(f"{path} is a file: give the directory that holds config.json and the weights ({path.parent})")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} has no config.json: no Hugging Face checkpoint (it holds: {listing(path)})")
    fix = (f"Save the model there again (needs internet for the hub): "
           f"GPT2LMHeadModel.from_pretrained(name).save_pretrained({str(path)!r})")
    config = read_json(path / "config.json", fix)
    if not isinstance(config, dict):
        raise DamagedFileError(path / "config.json", f"should hold a JSON object, got a {type(config).__name__}", fix)
    if (path / "model.safetensors").is_file():
        return config, read_safetensors(path / "model.safetensors", fix)[0]
    if (path / "model.safetensors.index.json").is_file():  # a big model split in several files
        index = read_json(path / "model.safetensors.index.json", fix)
        weights: dict[str, torch.Tensor] = {}
        try:
            shards = sorted(set(index["weight_map"].values()))
        except (KeyError, TypeError, AttributeError):
            raise DamagedFileError(path / "model.safetensors.index.json", "has no weight_map of name → file", fix) from None
        for shard in shards:
            weights.update(read_safetensors(path / shard, fix)[0])
        return config, weights
    if (path / "pytorch_model.bin").is_file():
        return config, read_torch_file(path / "pytorch_model.bin", fix)
    raise FileNotFoundError(
        f"{path} has a config.json but no weights: expected model.safetensors or pytorch_model.bin "
        f"(it holds: {listing(path)})"
    )


def _gpt2_config(hf: dict[str, Any], *, attention: str, dropout: float) -> GPTConfig:
    """Our GPTConfig for a Hugging Face GPT-2 config, after checking that GPT can hold such a model."""
    model_type = hf.get("model_type", "gpt2")
    if model_type != "gpt2":
        raise ValueError(f"this is a {model_type!r} configuration, not GPT-2's: GPT.from_gpt2 reads GPT-2 models only")
    block_size: int = hf.get("n_positions", hf.get("n_ctx")) or 0  # n_ctx: the name in the oldest config files
    missing = [k for k in ("vocab_size", "n_layer", "n_head", "n_embd") if k not in hf]
    missing += [] if block_size else ["n_positions"]
    if missing:
        raise ValueError(f"the GPT-2 configuration lacks {missing}: is it a GPT2Config / GPT-2 config.json?")
    n_embd = hf["n_embd"]
    problems = []
    if hf.get("activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
        problems.append(f"activation_function is {hf['activation_function']!r}; GPT uses GPT-2's 'gelu_new'")
    if hf.get("n_inner") not in (None, 4 * n_embd):
        problems.append(f"n_inner is {hf['n_inner']}; GPT's MLP is 4·n_embd = {4 * n_embd} wide")
    if not math.isclose(hf.get("layer_norm_epsilon", 1e-5), 1e-5):
        problems.append(f"layer_norm_epsilon is {hf['layer_norm_epsilon']}; GPT's LayerNorms use 1e-5")
    if not hf.get("scale_attn_weights", True):
        problems.append("scale_attn_weights is False; GPT divides attention scores by √head_size")
    if hf.get("scale_attn_by_inverse_layer_idx", False):
        problems.append("scale_attn_by_inverse_layer_idx is True; GPT scales the attention of every layer alike")
    if hf.get("add_cross_attention", False):
        problems.append("add_cross_attention is True; GPT has self-attention only")
    if not hf.get("tie_word_embeddings", True):
        problems.append("tie_word_embeddings is False; GPT's lm_head shares the token embedding's weight")
    if problems:
        raise ValueError("this GPT-2 configuration is shaped differently from GPT:\n  - " + "\n  - ".join(problems))
    return GPTConfig(
        vocab_size=hf["vocab_size"], block_size=block_size, n_layer=hf["n_layer"], n_head=hf["n_head"],
        n_embd=n_embd, dropout=dropout, bias=True, attention=attention,
    )


def _copy_gpt2_weights(model: GPT, hf_weights: Mapping[str, torch.Tensor]) -> None:
    """Copy GPT-2's weights into ``model``: same names (after "transformer."), Conv1D ones transposed."""
    # GPT2LMHeadModel says "transformer.h.0.attn.c_attn.weight"; GPT2Model and the hub's files say "h.0.…"
    theirs = {
        name if name.startswith(("transformer.", "lm_head.")) else "transformer." + name: tensor
        for name, tensor in hf_weights.items()
        if not name.endswith(_GPT2_MASK_BUFFERS)
    }
    ours = model.state_dict()  # tensors sharing storage with the model's parameters
    needed = [name for name in ours if name != "lm_head.weight"]  # lm_head.weight *is* wte.weight
    missing = [name for name in needed if name not in theirs]
    unexpected = [name for name in theirs if name not in ours]
    if missing or unexpected:
        c = model.config
        report = [f"missing ({len(missing)}): {_few(missing)}"] if missing else []
        report += [f"unexpected ({len(unexpected)}): {_few(unexpected)}"] if unexpected else []
        raise ValueError(
            f"these weights do not fit a GPT-2 with n_layer={c.n_layer}: " + "; ".join(report)
            + ". Check that the configuration belongs to these weights and that they are GPT-2's."
        )
    with torch.no_grad():
        for name in needed:
            weight = theirs[name].t() if name.endswith(_CONV1D_WEIGHTS) else theirs[name]
            if weight.shape != ours[name].shape:
                raise ValueError(
                    f"{name} has shape {tuple(weight.shape)} in the weights, but the configuration asks for "
                    f"{tuple(ours[name].shape)}: the configuration does not belong to these weights"
                )
            ours[name].copy_(weight)
    lm_head = theirs.get("lm_head.weight")
    if lm_head is not None and not torch.equal(lm_head, theirs["transformer.wte.weight"]):
        raise ValueError("these weights have an lm_head different from the token embedding; GPT ties the two")


def _few(names: list[str], limit: int = 4) -> str:
    return ", ".join(names[:limit]) + (", …" if len(names) > limit else "")
