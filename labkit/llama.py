"""A Llama-architecture decoder, written as the difference from the course's GPT (``labkit.gpt``).

Chapter 06d ("a real LLM: from GPT-2 to Llama") derives it piece by piece. The skeleton is the
GPT's: token embedding, a stack of pre-norm blocks ``x + attention(norm(x))`` then
``x + mlp(norm(x))``, a final norm, a head tied to the embedding. Five things change:

==================  ==========================================  =====================================
                    GPT (GPT-2)                                  Llama (SmolLM2, Llama 2/3, Qwen, …)
==================  ==========================================  =====================================
norm                LayerNorm: centre, scale, shift              RMSNorm: scale by 1/rms, no centring
positions           a learned table added to the input           RoPE: q and k rotated by position
MLP                 Linear → GELU → Linear (4× wide)             SwiGLU: down(silu(gate(x)) · up(x))
attention heads     one key/value head per query head            GQA: n_head queries share n_kv_head
biases              everywhere                                   none
==================  ==========================================  =====================================

Shapes: B batch, T time (tokens), C channels (``n_embd``), V vocabulary, H query heads
(``n_head``), K key/value heads (``n_kv_head``), D ``head_dim`` = C / H.

    >>> config = LlamaConfig(vocab_size=100, n_layer=2, n_embd=48, n_head=6, n_kv_head=2, n_hidden=128)
    >>> model = Llama(config)
    >>> logits = model(torch.zeros(2, 8, dtype=torch.long))      # (B, T, V) = (2, 8, 100)

A pretrained Llama comes from a GGUF file: ``labkit.load_smollm2()`` (see ``labkit.smollm2``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .gpt import KVCache, LayerCache, _check_sampling, fused_attention, sample_next

__all__ = ["LlamaConfig", "RMSNorm", "Rotary", "apply_rotary", "Attention", "SwiGLU", "LlamaBlock", "Llama"]


@dataclass
class LlamaConfig:
    """Everything that decides a Llama's shape; the defaults are SmolLM2-135M's.

    Chapter 06d reads it from SmolLM2's GGUF file.
    """

    vocab_size: int = 49152
    block_size: int = 8192  # the longest context the model was trained for
    n_layer: int = 30
    n_embd: int = 576
    n_head: int = 9  # query heads
    n_kv_head: int = 3  # key/value heads, each shared by n_head // n_kv_head query heads
    n_hidden: int = 1536  # the SwiGLU MLP's width
    rope_base: float = 100_000.0  # RoPE's θ: the slowest rotation turns once every ~2π·θ tokens
    norm_eps: float = 1e-5
    tie_embeddings: bool = True  # the head reads with the token embedding's matrix

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_embd", "n_head", "n_kv_head", "n_hidden"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number ≥ 1, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.n_head % self.n_kv_head:
            raise ValueError(
                f"n_head ({self.n_head}) must be a multiple of n_kv_head ({self.n_kv_head}): "
                "each key/value head serves the same number of query heads"
            )
        if self.head_dim % 2:
            raise ValueError(f"head_dim = n_embd / n_head must be even for RoPE's pairs, got {self.head_dim}")
        if self.rope_base <= 1 or self.norm_eps <= 0:
            raise ValueError(f"rope_base must be > 1 and norm_eps > 0, got {self.rope_base} and {self.norm_eps}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict[str, int | float | bool]:
        return asdict(self)


class RMSNorm(nn.Module):
    """x / rms(x) · weight over the last dimension: LayerNorm without centring and without a bias.

    Computed in float32 whatever the input's dtype (as Llama does), then cast back. (…, C) → (…, C).
    """

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return self.weight * normed.to(x.dtype)


class Rotary(nn.Module):
    """Rotary position embedding's angles: cos and sin (T, D) for positions start … start + T - 1.

    Channel pair (i, i + D/2) of a head turns by angle pos · θ^(-2i/D): fast for small i,
    slow for large i. Rotating q and k by their positions makes q·k depend on the distance
    between the tokens only — a relative position, with nothing to learn.
    """

    inv_freq: torch.Tensor  # (D/2,) θ^(-2i/D), a buffer

    def __init__(self, head_dim: int, base: float) -> None:
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))  # (D/2,)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, start: int, T: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        pos = torch.arange(start, start + T, device=self.inv_freq.device).float()  # (T,)
        angles = torch.outer(pos, self.inv_freq)  # (T, D/2)
        angles = torch.cat([angles, angles], dim=-1)  # (T, D): the same angle for i and i + D/2
        return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each channel pair (i, i + D/2) of x (B, heads, T, D) by its angle; cos, sin (T, D).

    (a, b) → (a cos − b sin, b cos + a sin), written for all pairs at once with the halves swapped.
    """
    first, second = x.chunk(2, dim=-1)
    swapped = torch.cat([-second, first], dim=-1)  # (−b, a)
    return x * cos + swapped * sin


class Attention(nn.Module):
    """Causal self-attention with rotary positions and grouped-query attention (GQA).

    H query heads, but only K key/value heads: query head h reads key/value head h // (H / K).
    The cache then holds K heads instead of H (3× smaller for SmolLM2). No biases.
    """

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.n_kv_head, config.head_dim
        self.q_proj = nn.Linear(config.n_embd, config.n_head * config.head_dim, bias=False)
        self.k_proj = nn.Linear(config.n_embd, config.n_kv_head * config.head_dim, bias=False)
        self.v_proj = nn.Linear(config.n_embd, config.n_kv_head * config.head_dim, bias=False)
        self.o_proj = nn.Linear(config.n_head * config.head_dim, config.n_embd, bias=False)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: LayerCache | None = None
    ) -> torch.Tensor:
        """(B, T, C) → (B, T, C). With a ``cache``, x holds only the new tokens (cos, sin: their angles)."""
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        k = self.k_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, K, T, D)
        v = self.v_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, K, T, D)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)  # positions enter here, not at the input
        if cache is not None:
            k, v = cache.append(k, v)  # all tokens so far: (B, K, T_seen, D), already rotated
        # GQA: each key/value head serves H / K query heads in a row: repeat it that many times
        group = self.n_head // self.n_kv_head
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)  # (B, H, T_seen, D)
        y = _causal_attention(q, k, v)  # (B, H, T, D)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim))


def _causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ / √D, causal) v for q (B, H, Tq, D), k and v (B, H, Tk, D), the queries being
    the last Tq of the Tk positions (as in ``labkit.gpt.CausalSelfAttention.attend``, whose
    `fused_attention` it shares: short bf16 contexts to be differentiated run in float32 on a CPU)."""
    Tq, Tk = q.shape[2], k.shape[2]
    if Tq == Tk:
        return fused_attention(q, k, v, is_causal=True)
    if Tq == 1:  # one new token sees every cached one: no mask needed
        return fused_attention(q, k, v)
    mask = torch.ones(Tq, Tk, dtype=torch.bool, device=q.device).tril(diagonal=Tk - Tq)
    return fused_attention(q, k, v, attn_mask=mask)


class SwiGLU(nn.Module):
    """The gated MLP: down(silu(gate(x)) · up(x)). (B, T, C) → (B, T, C) through n_hidden channels.

    GPT's MLP is Linear → GELU → Linear; here a second projection (``up``) is multiplied by
    the activated ``gate``, so the network chooses per channel how much passes.
    """

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.n_embd, config.n_hidden, bias=False)
        self.up_proj = nn.Linear(config.n_embd, config.n_hidden, bias=False)
        self.down_proj = nn.Linear(config.n_hidden, config.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaBlock(nn.Module):
    """One block, the same diagram as GPT's: x + attention(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(config.n_embd, config.norm_eps)
        self.attn = Attention(config)
        self.mlp_norm = RMSNorm(config.n_embd, config.norm_eps)
        self.mlp = SwiGLU(config)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: LayerCache | None = None
    ) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin, cache)
        x = x + self.mlp(self.mlp_norm(x))
        return x


class Llama(nn.Module):
    """A Llama language model: token ids (B, T) → next-token logits (B, T, vocab_size).

    Unlike GPT there is no position table: positions enter through ``Rotary`` inside attention.

    Chapter 06d builds its parts by hand from the course's GPT (RMSNorm, RoPE, SwiGLU, GQA).
    """

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.n_embd)
        self.blocks = nn.ModuleList([LlamaBlock(config) for _ in range(config.n_layer)])
        self.norm = RMSNorm(config.n_embd, config.norm_eps)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        self.rotary = Rotary(config.head_dim, config.rope_base)
        for module in self.modules():  # a fresh model starts small and random, as GPT does
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Token ids (B, T) → logits (B, T, V). With a ``cache``, idx holds only the new tokens and
        their positions continue after the ``len(cache)`` tokens already seen."""
        return self.lm_head(self.hidden_states(idx, cache))

    def _check_ids(self, idx: torch.Tensor, start: int = 0) -> None:
        """Clear errors for token ids (B, T) that this model cannot read after ``start`` cached tokens."""
        if idx.dim() != 2 or idx.is_floating_point():
            raise ValueError(
                f"idx must hold integer token ids of shape (B, T), got {idx.dtype} of shape {tuple(idx.shape)}: "
                "one sequence of shape (T,) becomes a batch of one with idx[None]"
            )
        T = idx.shape[1]
        if start + T > self.config.block_size:
            raise ValueError(
                f"a sequence of {start + T} tokens is longer than this model's block_size {self.config.block_size}: "
                f"crop it (idx[:, -{self.config.block_size}:])"
            )
        if idx.numel() and not 0 <= int(idx.min()) <= int(idx.max()) < self.config.vocab_size:
            raise ValueError(
                f"token ids must be in 0 … {self.config.vocab_size - 1}, got ids from {int(idx.min())} to "
                f"{int(idx.max())}: were they made by another tokenizer?"
            )

    def hidden_states(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Token ids (B, T) → the final hidden states (B, T, C), after the last norm."""
        start = len(cache) if cache is not None else 0
        self._check_ids(idx, start)
        x = self.embed(idx)  # (B, T, C): no position embedding is added
        cos, sin = self.rotary(start, idx.shape[1], x.dtype)  # (T, D) each
        for i, block in enumerate(self.blocks):
            x = block(x, cos, sin, cache.layers[i] if cache is not None else None)
        return self.norm(x)

    def _check_block(self, block: int) -> None:
        if not 0 <= block <= self.config.n_layer:
            raise ValueError(
                f"block must be in 0 … {self.config.n_layer} (this model has {self.config.n_layer} blocks), "
                f"got {block}: block k means 'the input of blocks[k]', and {self.config.n_layer} the output of the last"
            )

    def hidden_states_entering(self, idx: torch.Tensor, block: int) -> torch.Tensor:
        """Token ids (B, T) → the hidden states (B, T, C) that enter ``blocks[block]`` (no cache).

        ``block`` 0 gives the token embeddings; ``n_layer`` the last block's output before the final
        norm. Cache them once and ``hidden_states_from`` runs only the top blocks: chapter 07e
        fine-tunes SmolLM2's top blocks this way.
        """
        self._check_block(block)
        self._check_ids(idx)
        x = self.embed(idx)  # (B, T, C)
        cos, sin = self.rotary(0, idx.shape[1], x.dtype)  # (T, D) each
        for layer in self.blocks[:block]:
            x = layer(x, cos, sin)
        return x

    def hidden_states_from(self, x: torch.Tensor, block: int) -> torch.Tensor:
        """Hidden states (B, T, C) entering ``blocks[block]`` → the final hidden states (B, T, C), after
        the last norm: ``hidden_states_from(hidden_states_entering(idx, k), k)`` equals ``hidden_states(idx)``."""
        self._check_block(block)
        if x.dim() != 3 or x.shape[-1] != self.config.n_embd:
            raise ValueError(
                f"x must be hidden states of shape (B, T, {self.config.n_embd}), got shape {tuple(x.shape)}: "
                "make them with hidden_states_entering(idx, block)"
            )
        cos, sin = self.rotary(0, x.shape[1], x.dtype)
        for layer in self.blocks[block:]:
            x = layer(x, cos, sin)
        return self.norm(x)

    def num_parameters(self) -> int:
        """Parameter count; the tied embedding / head matrix counts once."""
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------------ generation

    @torch.no_grad()
    def stream(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        use_cache: bool = True,
        stop_token: int | None = None,
        generator: torch.Generator | None = None,
        prefix: KVCache | None = None,
    ) -> Iterator[int]:
        """Yield new token ids one at a time as they are generated, for one sequence idx (1, T).

        Sampling as in ``GPT.generate``: ``temperature`` 0 is greedy, ``top_k`` / ``top_p`` cut the
        tail. ``stop_token`` (e.g. ``<|im_end|>``'s id) ends the stream; it is yielded last. With
        ``use_cache`` each step feeds only the new token (a KV cache of n_kv_head heads per layer).
        ``prefix`` (from ``prefill``) holds the keys and values of tokens read before: idx is then
        only what follows them, and the prefix is never recomputed (nor changed: it serves again).
        """
        _check_sampling(temperature, top_k, top_p, max_new_tokens)
        if idx.dim() != 2 or idx.shape[0] != 1:
            raise ValueError(f"stream generates for one sequence of shape (1, T), got shape {tuple(idx.shape)}")
        seen = 0 if prefix is None else len(prefix)
        if prefix is not None and (not use_cache or idx.shape[1] == 0):
            raise ValueError("a prefix cache needs use_cache=True and at least one token after it in idx "
                             f"(got use_cache={use_cache}, {idx.shape[1]} tokens)")
        if seen + idx.shape[1] + max_new_tokens > self.config.block_size:
            raise ValueError(
                f"{seen + idx.shape[1]} prompt tokens + max_new_tokens={max_new_tokens} exceed the model's "
                f"block_size {self.config.block_size}: shorten the prompt or ask for fewer tokens"
            )
        was_training = self.training
        self.eval()
        try:
            cache = prefix.copy() if prefix is not None else KVCache(self.config.n_layer) if use_cache else None
            new = idx  # what the model has not seen yet
            for _ in range(max_new_tokens):
                hidden = self.hidden_states(new, cache)[:, -1, :]  # (1, C): only the last position predicts
                logits = self.lm_head(hidden)  # (1, V): the next token's scores
                next_id = sample_next(logits.float(), temperature, top_k, top_p, generator)  # (1, 1)
                token = int(next_id)
                yield token
                if token == stop_token:
                    return
                idx = torch.cat([idx, next_id], dim=1)
                new = next_id if cache is not None else idx
        finally:
            self.train(was_training)

    @torch.no_grad()
    def prefill(self, idx: torch.Tensor) -> KVCache:
        """Read the tokens idx (1, T) once and return their KV cache, to pass as ``prefix`` to
        ``stream`` / ``generate`` as often as you like: a prompt that many requests share (a system
        prompt, few-shot examples) is computed once. API vendors sell this as "prompt caching";
        chapter 07e caches each task's three solved examples."""
        if idx.dim() != 2 or idx.shape[0] != 1 or idx.shape[1] == 0:
            raise ValueError(f"prefill reads one sequence of shape (1, T) with T ≥ 1, got shape {tuple(idx.shape)}")
        if idx.shape[1] > self.config.block_size:
            raise ValueError(f"{idx.shape[1]} tokens exceed the model's block_size {self.config.block_size}")
        was_training = self.training
        self.eval()
        try:
            cache = KVCache(self.config.n_layer)
            self.hidden_states(idx, cache)
        finally:
            self.train(was_training)
        return cache

    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        use_cache: bool = True,
        stop_token: int | None = None,
        generator: torch.Generator | None = None,
        on_token: Callable[[int], None] | None = None,
        prefix: KVCache | None = None,
    ) -> torch.Tensor:
        """Continue idx (1, T) by up to ``max_new_tokens`` tokens; returns (1, T + new) (with a
        ``prefix``, idx and the new tokens: not the prefix's tokens, which the cache does not keep).

        ``on_token(id)`` is called with each new token as soon as it exists (print it for a live
        reply); the other arguments are ``stream``'s.
        """
        new: list[int] = []
        for token in self.stream(
            idx, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
            use_cache=use_cache, stop_token=stop_token, generator=generator, prefix=prefix,
        ):
            new.append(token)
            if on_token is not None:
                on_token(token)
        return torch.cat([idx, torch.tensor([new], dtype=idx.dtype, device=idx.device)], dim=1)

    def extra_repr(self) -> str:
        c = self.config
        return (f"{self.num_parameters() / 1e6:.1f}M parameters, {c.n_layer} layers, {c.n_head} heads "
                f"({c.n_kv_head} KV), width {c.n_embd}, MLP {c.n_hidden}, RoPE base {c.rope_base:g}")
