"""A mixture of experts (MoE): a feed-forward layer whose tokens each use only k of E experts (chapter 08d).

A **router** (one Linear, C → E) scores every expert for every token; each token goes to its
``top_k`` best experts, and the layer's output is the experts' outputs weighted by **gates**:
with k = 1 the router's probability of the chosen expert (Switch Transformer), with k > 1 the
chosen probabilities renormalised to sum to 1 (GShard, Mixtral). Each expert is the GPT's MLP
(`labkit.gpt.MLP`), so a token pays for k MLPs however many experts there are.

Two things keep the experts in use:

- the **load-balancing loss** (Switch Transformer, Fedus et al. 2021, eq. 4):
  ``E · Σ_i f_i · P_i``, where f_i is the share of token choices that went to expert i and P_i
  the mean router probability of expert i. It is 1 when the load is uniform and E when every
  token picks one expert with certainty; training adds ``coefficient × loss`` to the LM loss;
- the **capacity**: each expert takes at most ``ceil(capacity_factor · k · tokens / E)`` tokens
  in a batch; the choices beyond it are **dropped** (the token's residual stream passes on
  without that expert's output). The layer counts them.

    >>> layer = MoE(n_embd=64, n_experts=4, top_k=1)
    >>> y = layer(torch.randn(8, 16, 64))              # (B, T, C) → (B, T, C)
    >>> layer.aux_loss, layer.load, layer.dropped       # of the last forward pass

`use_moe(gpt, n_experts=4)` puts an MoE in place of each block's MLP; `load_balancing_loss(model)`
sums the layers' losses of the last forward pass (``train_lm(..., aux_loss=…)`` adds it).
Shapes: B batch, T tokens, C channels (``n_embd``), N = B·T tokens, E experts, k choices per token.
`train_lm`'s MFU counts every parameter (``GPT.flops_per_token``), so for an MoE it counts the idle experts'
work too and overstates the utilisation; compare tokens per second instead.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .gpt import GPT, MLP, Block, GPTConfig

__all__ = ["MoE", "route", "switch_loss", "capacity", "use_moe", "load_balancing_loss", "moe_layers",
           "expert_load", "parameter_counts"]


def route(router_logits: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k gating. router_logits (N, E) → (probs (N, E), experts (N, k), gates (N, k)).

    ``experts`` are each token's k highest-scoring experts, best first; ``gates`` their weights:
    the probability itself when k = 1 (Switch), the k probabilities renormalised when k > 1.
    """
    if router_logits.dim() != 2:
        raise ValueError(f"router_logits must be (tokens, experts), got shape {tuple(router_logits.shape)}")
    n_experts = router_logits.shape[1]
    if not isinstance(top_k, int) or not 1 <= top_k <= n_experts:
        raise ValueError(f"top_k must be a whole number from 1 to the number of experts ({n_experts}), got {top_k!r}")
    probs = F.softmax(router_logits, dim=-1, dtype=torch.float32)
    top_probs, experts = probs.topk(top_k, dim=-1)
    gates = top_probs if top_k == 1 else top_probs / top_probs.sum(dim=-1, keepdim=True)
    return probs, experts, gates


def switch_loss(probs: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """The Switch Transformer's load-balancing loss E · Σ_i f_i · P_i for probs (N, E), experts (N, k).

    f_i: the share of the N·k choices that went to expert i (counted before any capacity drop);
    P_i: the mean of probs[:, i]. Gradients flow through P only (f comes from an argmax).
    """
    if probs.dim() != 2 or experts.dim() != 2 or probs.shape[0] != experts.shape[0]:
        raise ValueError(f"probs must be (N, E) and experts (N, k) for the same N tokens, got {tuple(probs.shape)} "
                         f"and {tuple(experts.shape)}")
    n_experts = probs.shape[1]
    counts = torch.bincount(experts.reshape(-1), minlength=n_experts).to(probs.dtype)   # (E,)
    f = counts / experts.numel()
    P = probs.mean(dim=0)
    return n_experts * (f * P).sum()


def capacity(n_tokens: int, n_experts: int, top_k: int, capacity_factor: float) -> int:
    """Tokens one expert may take in a batch: ceil(capacity_factor · k · N / E)."""
    return math.ceil(capacity_factor * top_k * n_tokens / n_experts)


class MoE(nn.Module):
    """A top-k routed mixture of ``n_experts`` GPT MLPs. (B, T, C) → (B, T, C).

    After each forward pass: ``aux_loss`` (the Switch loss, a 0-d tensor with gradients),
    ``load`` (E,) the share of choices each expert received (before drops), ``dropped`` how many
    token choices the capacity turned away, ``kept_load`` (E,) the tokens each expert computed.
    ``capacity_factor=None`` never drops.
    """

    def __init__(self, n_embd: int, n_experts: int, top_k: int = 1, capacity_factor: float | None = 1.25,
                 bias: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        for name, value in (("n_embd", n_embd), ("n_experts", n_experts)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number ≥ 1, got {value!r}")
        if not isinstance(top_k, int) or not 1 <= top_k <= n_experts:
            raise ValueError(f"top_k must be from 1 to n_experts ({n_experts}), got {top_k!r}: each token picks "
                             "k different experts")
        if capacity_factor is not None and not capacity_factor > 0:
            raise ValueError(f"capacity_factor must be > 0 (1.0: room for an even share; None: no limit), "
                             f"got {capacity_factor!r}")
        self.n_experts, self.top_k, self.capacity_factor = n_experts, top_k, capacity_factor
        config = GPTConfig(n_embd=n_embd, n_head=1, bias=bias, dropout=dropout)
        self.router = nn.Linear(n_embd, n_experts, bias=False)
        self.experts = nn.ModuleList([MLP(config) for _ in range(n_experts)])
        self.aux_loss = torch.zeros(())
        self.load = torch.zeros(n_experts)
        self.kept_load = torch.zeros(n_experts)
        self.dropped = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.router.in_features:
            raise ValueError(f"MoE expects (B, T, {self.router.in_features}), got shape {tuple(x.shape)}")
        B, T, C = x.shape
        tokens = x.reshape(-1, C)                                        # (N, C)
        N, E, k = tokens.shape[0], self.n_experts, self.top_k
        probs, experts, gates = route(self.router(tokens), k)            # (N, E), (N, k), (N, k)
        self.aux_loss = switch_loss(probs, experts)
        flat_experts = experts.t().reshape(-1)                           # (k·N,) first choices of all tokens first
        flat_tokens = torch.arange(N, device=x.device).repeat(k)         # (k·N,) which token each choice is
        flat_gates = gates.t().reshape(-1)                               # (k·N,)
        one_hot = F.one_hot(flat_experts, E)                             # (k·N, E)
        position = (one_hot.cumsum(dim=0) * one_hot).sum(dim=1) - 1      # place of each choice in its expert's queue
        limit = k * N if self.capacity_factor is None else capacity(N, E, k, self.capacity_factor)
        kept = position < limit                                          # (k·N,) False: dropped
        self.load = one_hot.sum(dim=0).float().detach() / (k * N)
        self.kept_load = (one_hot * kept[:, None]).sum(dim=0).detach().float()
        self.dropped = int((~kept).sum())
        out = torch.zeros_like(tokens)
        for i, expert in enumerate(self.experts):
            chosen = (flat_experts == i) & kept
            if not chosen.any():
                continue
            rows = flat_tokens[chosen]
            out.index_add_(0, rows, expert(tokens[rows]) * flat_gates[chosen, None].to(tokens.dtype))
        return out.reshape(B, T, C)


def use_moe(model: GPT, n_experts: int, top_k: int = 1, capacity_factor: float | None = 1.25,
            copy_mlp: bool = False) -> GPT:
    """Replace each block's MLP of ``model`` by an MoE (in place; returns the model).

    ``copy_mlp=True`` starts every expert as a copy of the block's MLP (an "upcycled" dense model);
    otherwise the experts keep their fresh initialisation (GPT's: normal(0, 0.02), the output
    projection scaled by 1/√(2·n_layer)). The router starts at zero: every expert equally likely.
    """
    if not isinstance(model, GPT):
        raise TypeError(f"use_moe changes a labkit GPT, got a {type(model).__name__}")
    c = model.config
    for block in model.transformer.h:
        assert isinstance(block, Block)
        moe = MoE(c.n_embd, n_experts, top_k, capacity_factor, bias=c.bias, dropout=c.dropout)
        nn.init.zeros_(moe.router.weight)
        for expert in moe.experts:
            if copy_mlp:
                expert.load_state_dict(block.mlp.state_dict())
            else:
                for name, p in expert.named_parameters():
                    if name.endswith("weight"):
                        std = 0.02 / math.sqrt(2 * c.n_layer) if name.startswith("c_proj") else 0.02
                        nn.init.normal_(p, mean=0.0, std=std)
                    else:
                        nn.init.zeros_(p)
        block.mlp = moe.to(next(model.parameters()).device)  # type: ignore[assignment]  # an MoE where an MLP was
    return model


def moe_layers(model: nn.Module) -> list[MoE]:
    """The MoE layers of a model, in order."""
    return [m for m in model.modules() if isinstance(m, MoE)]


def load_balancing_loss(model: nn.Module) -> torch.Tensor:
    """The mean Switch loss of the model's MoE layers in its last forward pass (1.0 = balanced).
    Pass ``aux_loss=lambda m: 0.01 * load_balancing_loss(m)`` to `train_lm`."""
    layers = moe_layers(model)
    if not layers:
        raise ValueError("the model has no MoE layer: build one with use_moe(model, n_experts)")
    return torch.stack([layer.aux_loss for layer in layers]).mean()


def expert_load(model: nn.Module) -> torch.Tensor:
    """(layers, E): the share of token choices each expert of each MoE layer got in the last forward pass."""
    layers = moe_layers(model)
    if not layers:
        raise ValueError("the model has no MoE layer: build one with use_moe(model, n_experts)")
    return torch.stack([layer.load for layer in layers])


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(total, active): all parameters, and those one token uses (k of each layer's E experts).
    The tied embedding counts once; the router counts as active."""
    total = sum(p.numel() for p in model.parameters())                 # parameters() lists a tied one once
    inactive = 0
    for layer in moe_layers(model):
        per_expert = sum(p.numel() for p in layer.experts[0].parameters())
        inactive += (layer.n_experts - layer.top_k) * per_expert
    return total, total - inactive
