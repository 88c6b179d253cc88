"""Fine-tuning: freeze what you keep, train what you add — a classifier head, or LoRA adapters.

Chapter 07 builds each part by hand; this module keeps the clean versions.

- `freeze` / `unfreeze` switch ``requires_grad`` by parameter name ("lm_head", "transformer.h.0.*"),
  `parameter_counts` and `trainable_summary` say how much is left to train.
- `GPTClassifier` puts a linear head on a GPT's last hidden states: token ids (B, T) → class
  logits (B, num_classes), so it trains with `labkit.fit` on a ``TensorDataset(idx, labels)``
  made by `encode_batch`.
- LoRA (Hu et al., 2021, "Low-Rank Adaptation"): `LoRALinear` adds a trainable low-rank update
  to a frozen ``nn.Linear``, ``y = W x + (alpha / rank) · B A x``; `apply_lora` puts it on the
  layers you name, `merge_lora` folds it back into W, `save_adapters` / `load_adapters` keep only
  the small matrices A and B in a safetensors file.

    >>> classifier = GPTClassifier(gpt, num_classes=2, pad_id=pad)
    >>> apply_lora(classifier, targets=("c_attn",), rank=8, alpha=16)     # everything else frozen
    >>> unfreeze(classifier, "head")                                       # … but train the new head
    >>> fit(classifier, TensorDataset(encode_batch(tok, texts, 64, pad), labels), epochs=3, lr=1e-3, batch_size=32)

Shapes: B batch, T time (tokens), C channels (``n_embd``), r the LoRA rank.
"""
from __future__ import annotations

import fnmatch
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from .files import read_safetensors
from .gpt import GPT
from .memory import activation_bytes

__all__ = [
    "freeze",
    "unfreeze",
    "parameter_counts",
    "trainable_summary",
    "GPTClassifier",
    "encode_batch",
    "training_memory",
    "LoRALinear",
    "apply_lora",
    "merge_lora",
    "lora_state_dict",
    "save_adapters",
    "load_adapters",
]

Names = str | Sequence[str] | None


# ====================================================================== freezing and counting


def _as_patterns(names: Names) -> list[str] | None:
    if names is None:
        return None
    patterns = [names] if isinstance(names, str) else list(names)
    if not patterns or not all(isinstance(p, str) and p for p in patterns):
        raise ValueError(f"names must be a parameter name, a pattern or a list of them (None for all), got {names!r}")
    return patterns


def _matches(name: str, pattern: str) -> bool:
    """``pattern`` names ``name`` itself, a module above it ("lm_head" → "lm_head.weight") or, with
    * ? [ ], a glob over the whole name ("transformer.h.0.*")."""
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(name, pattern)
    return name == pattern or name.startswith(pattern + ".")


def _top_level_names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_children()] + [name for name, _ in model.named_parameters(recurse=False)]


def _select(model: nn.Module, names: Names) -> list[nn.Parameter]:
    """The parameters named by ``names`` (None: all); an error for a pattern that names nothing."""
    patterns = _as_patterns(names)
    # remove_duplicate=False: a tied weight answers to both its names ("lm_head.weight" is "transformer.wte.weight")
    named = list(model.named_parameters(remove_duplicate=False))
    if patterns is None:
        return [p for _, p in named]
    chosen: dict[int, nn.Parameter] = {}
    for pattern in patterns:
        hits = [p for name, p in named if _matches(name, pattern)]
        if not hits:
            raise ValueError(
                f"no parameter of this {type(model).__name__} is named {pattern!r}. Its top-level names are: "
                f"{', '.join(_top_level_names(model))}. Use a name prefix (\"transformer.h.0\") or a glob "
                f"(\"transformer.h.*.attn.*\"); list(model.state_dict()) shows every name"
            )
        chosen.update((id(p), p) for p in hits)
    return list(chosen.values())


def freeze(model: nn.Module, names: Names = None) -> None:
    """Stop training the named parameters (``requires_grad = False``); ``None`` freezes them all.

    ``names`` are parameter names, module names ("lm_head" freezes "lm_head.weight") or globs
    ("transformer.h.0.*"). A tied weight is one tensor: freezing "lm_head" freezes the token
    embedding too.

    Chapter 07a freezes a CNN's features with it; 07b a GPT's.
    """
    for p in _select(model, names):
        p.requires_grad_(False)


def unfreeze(model: nn.Module, names: Names = None) -> None:
    """Train the named parameters again (``requires_grad = True``); ``None`` unfreezes them all.

    Chapter 07a fine-tunes every layer with it.
    """
    for p in _select(model, names):
        p.requires_grad_(True)


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """``{"trainable": …, "total": …}`` numbers of parameters; a shared (tied) tensor counts once.

    Chapter 07a counts what each method trains.
    """
    params = list(model.parameters())  # parameters() lists a shared tensor once
    return {
        "trainable": sum(p.numel() for p in params if p.requires_grad),
        "total": sum(p.numel() for p in params),
    }


def trainable_summary(model: nn.Module, depth: int = 1) -> str:
    """A table of trainable / total parameters per part of the model (parts named by the first
    ``depth`` parts of module names), then the whole model. print() it.

    Chapter 07a prints it for each transfer method; 07b for LoRA.
    """
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a whole number ≥ 1, got {depth!r}")
    rows: dict[str, list[int]] = {}
    first_name: dict[int, str] = {}
    tied: list[str] = []
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first_name:  # a second name for a tensor already counted
            tied.append(f"{name} is {first_name[id(p)]} (tied, counted once)")
            continue
        first_name[id(p)] = name
        module_path = name.split(".")[:-1]
        part = ".".join(module_path[:depth]) or "(model itself)"
        row = rows.setdefault(part, [0, 0])
        row[0] += p.numel() if p.requires_grad else 0
        row[1] += p.numel()
    counts = parameter_counts(model)
    width = max([len("part"), len("total")] + [len(part) for part in rows])

    def line(label: str, trainable: int, total: int) -> str:
        share = f"{100 * trainable / total:.2f}%" if total else "-"
        return f"{label:<{width}}  {trainable:>12,}  {total:>12,}  {share:>8}"

    lines = [f"{'part':<{width}}  {'trainable':>12}  {'total':>12}  {'trained':>8}"]
    lines += [line(part, trainable, total) for part, (trainable, total) in rows.items()]
    lines += ["-" * len(lines[0]), line("total", counts["trainable"], counts["total"])]
    return "\n".join(lines + tied)


# ====================================================================== a GPT as a classifier


def gpt_hidden_states(gpt: GPT, idx: torch.Tensor) -> torch.Tensor:
    """Token ids (B, T) → the final hidden states (B, T, C): GPT's forward pass without the LM head
    (``GPT.hidden_states``). This is what ``gpt.lm_head`` reads to predict the next token; a
    classifier reads it instead."""
    return gpt.hidden_states(idx)


class GPTClassifier(nn.Module):
    """A GPT body with a linear head n_embd → num_classes: token ids (B, T) → class logits (B, num_classes).

    Rows are right-padded with ``pad_id``. Causal attention never looks right, so padding never
    changes the hidden state of a real token, and the logits of a row do not depend on how much
    padding follows it. ``pooling`` turns the T hidden states of a row into one vector:

    - "last": the hidden state of the row's last real token — the only one that has read the whole text;
    - "mean": the mean over the row's real tokens.

    A row's real tokens run up to its last token that is not ``pad_id``. Columns that hold only
    padding are cut off before the GPT runs, so a batch costs what its longest text costs. The
    GPT's LM head is not used (with weight tying it costs no extra parameters).

    Chapter 07b builds pooling and a head by hand, then uses this.
    """

    def __init__(self, gpt: GPT, num_classes: int, pad_id: int, pooling: str = "last") -> None:
        super().__init__()
        if not isinstance(gpt, GPT):
            raise TypeError(f"GPTClassifier wraps a labkit GPT, got a {type(gpt).__name__}")
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a whole number ≥ 1, got {num_classes!r}")
        if pooling not in ("last", "mean"):
            raise ValueError(f'pooling must be "last" or "mean", got {pooling!r}')
        if not isinstance(pad_id, int) or not 0 <= pad_id < gpt.config.vocab_size:
            raise ValueError(
                f"pad_id must be a token id in 0 … {gpt.config.vocab_size - 1} (the GPT's vocab_size), got {pad_id!r}"
            )
        self.gpt = gpt
        self.pad_id, self.pooling, self.num_classes = pad_id, pooling, num_classes
        self.head = nn.Linear(gpt.config.n_embd, num_classes)
        nn.init.normal_(self.head.weight, mean=0.0, std=0.02)
        nn.init.zeros_(self.head.bias)

    def lengths(self, idx: torch.Tensor) -> torch.Tensor:
        """How many real tokens each row (B, T) has, before its right padding: (B,)."""
        positions = torch.arange(1, idx.shape[1] + 1, device=idx.device)  # 1 … T
        return torch.where(idx != self.pad_id, positions, 0).amax(dim=1)  # last real position + 1

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T), right-padded with pad_id → class logits (B, num_classes)."""
        if idx.dim() != 2 or idx.is_floating_point():
            raise ValueError(f"idx must hold token ids of shape (B, T), got {idx.dtype} of shape {tuple(idx.shape)}")
        lengths = self.lengths(idx)  # (B,)
        if bool((lengths == 0).any()):
            row = int((lengths == 0).nonzero()[0])
            raise ValueError(
                f"row {row} holds only padding (pad_id={self.pad_id}): every text needs at least one token"
            )
        idx = idx[:, : int(lengths.max())]  # columns of padding only: dropping them changes nothing, costs less
        hidden = gpt_hidden_states(self.gpt, idx)  # (B, T, C)
        if self.pooling == "last":
            pooled = hidden[torch.arange(idx.shape[0], device=idx.device), lengths - 1]  # (B, C)
        else:
            real = (torch.arange(idx.shape[1], device=idx.device) < lengths[:, None]).unsqueeze(-1)  # (B, T, 1)
            pooled = (hidden * real).sum(dim=1) / lengths[:, None]  # (B, C)
        return self.head(pooled)  # (B, num_classes)


def encode_batch(tokenizer: Any, texts: Sequence[str], block_size: int, pad_id: int,
                 keep: str = "start") -> torch.Tensor:
    """Texts → one LongTensor (N, T) of token ids, right-padded with ``pad_id``; T is the longest
    text's length, at most block_size.

    A text longer than block_size keeps its START by default (``keep="start"``: its first
    block_size tokens): every row then begins at the beginning of a text, as the documents did in
    pretraining, and the opening of a review or a post usually says what it is about.
    ``keep="end"`` keeps its last block_size tokens instead, where a review often gives its verdict.

    Chapter 07b encodes its reviews with it, and measures which end to keep.
    """
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings; for one text, pass [text]")
    if not isinstance(block_size, int) or isinstance(block_size, bool) or block_size < 1:
        raise ValueError(f"block_size must be a whole number ≥ 1, got {block_size!r}")
    if keep not in ("start", "end"):
        raise ValueError(f'keep must be "start" (the first block_size tokens) or "end" (the last), got {keep!r}')
    encoded = [tokenizer.encode(text) for text in texts]
    rows = [ids[:block_size] if keep == "start" else ids[-block_size:] for ids in encoded]
    if not rows:
        raise ValueError("texts is empty: nothing to encode")
    empty = [i for i, row in enumerate(rows) if not row]
    if empty:
        raise ValueError(f"text number {empty[0]} encodes to no tokens (an empty string?): drop empty texts first")
    T = max(len(row) for row in rows)
    batch = torch.full((len(rows), T), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        batch[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return batch


def training_memory(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: Any = None, optimizer_states: int = 2,
) -> dict[str, int]:
    """Bytes one training step of ``model`` on the batch (x, y) holds, part by part:

    - "weights": every parameter (trained or frozen: the forward pass needs them all);
    - "gradients": one gradient per trainable parameter;
    - "optimizer": ``optimizer_states`` numbers per trainable parameter (Adam/AdamW keep 2, SGD
      with momentum 1, plain SGD 0);
    - "activations": what autograd keeps from the forward pass for the backward pass, measured on
      this batch by running it (tensors that are parameters are not counted again);
    - "total": their sum.

    Frozen parameters cost their weights only; and where nothing before a layer trains, autograd
    keeps nothing for it, which is why training only a head or LoRA adapters uses less memory.
    The model's gradients are left as they were (None). ``loss_fn(model(x), y)`` defaults to cross-entropy.

    Chapter 07b compares the methods' memory with it; 08a derives the formula.
    """
    if isinstance(optimizer_states, bool) or not isinstance(optimizer_states, int) or optimizer_states < 0:
        raise ValueError(f"optimizer_states must be a whole number ≥ 0 (Adam keeps 2), got {optimizer_states!r}")
    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    if not trainable:
        raise ValueError("nothing in this model trains (every parameter has requires_grad=False): "
                         "unfreeze something first")
    loss_fn = loss_fn or nn.functional.cross_entropy
    # each saved storage once, parameters not counted (chapter 08a builds this counter by hand)
    activations = activation_bytes(model, lambda: loss_fn(model(x), y))  # the graph is freed without a backward pass
    sizes = {
        "weights": sum(p.numel() * p.element_size() for p in params),
        "gradients": sum(p.numel() * p.element_size() for p in trainable),
        "optimizer": optimizer_states * sum(p.numel() * p.element_size() for p in trainable),
        "activations": activations,
    }
    sizes["total"] = sum(sizes.values())
    return sizes


# ====================================================================== LoRA


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update: ``y = base(x) + (alpha / rank) · B(A(dropout(x)))``.

    A: in_features → rank, B: rank → out_features, so the update ``B A`` is an
    (out_features, in_features) matrix of rank ≤ ``rank`` held in ``rank · (in + out)`` numbers.
    A starts random (Kaiming, as nn.Linear) and B at zero: a fresh LoRALinear computes exactly what
    ``base`` computes, and training starts from the pretrained model. x (…, in) → y (…, out).

    Chapter 07b builds LoRA from scratch (the low-rank update B·A) and checks this one against it.
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got a {type(base).__name__}")
        _check_lora_settings(rank, alpha, dropout)
        self.base = base
        self.base.requires_grad_(False)
        self.rank, self.alpha, self.scaling = rank, float(alpha), alpha / rank
        factory = dict(device=base.weight.device, dtype=base.weight.dtype)
        self.lora_A = nn.Linear(base.in_features, rank, bias=False, **factory)
        self.lora_B = nn.Linear(rank, base.out_features, bias=False, **factory)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))  # nn.Linear's own initialisation
        nn.init.zeros_(self.lora_B.weight)  # B = 0: the update starts at nothing
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scaling * self.lora_B(self.lora_A(self.dropout(x)))

    def delta_weight(self) -> torch.Tensor:
        """The update this adapter adds to the base weight: (alpha / rank) · B A, (out_features, in_features)."""
        return self.scaling * (self.lora_B.weight @ self.lora_A.weight)

    def merged(self) -> nn.Linear:
        """A plain nn.Linear computing what this LoRALinear computes: weight W + (alpha / rank) · B A."""
        base = self.base
        linear = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None,
                           device=base.weight.device, dtype=base.weight.dtype)
        with torch.no_grad():
            linear.weight.copy_(base.weight + self.delta_weight())
            if base.bias is not None:
                linear.bias.copy_(base.bias)
        linear.weight.requires_grad_(base.weight.requires_grad)
        if base.bias is not None:
            linear.bias.requires_grad_(base.bias.requires_grad)
        return linear

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha:g}"


def _check_lora_settings(rank: int, alpha: float, dropout: float) -> None:
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank must be a whole number ≥ 1, got {rank!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise ValueError(f"alpha must be a number > 0 (the update is scaled by alpha / rank), got {alpha!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` at the dotted ``name`` inside ``model`` ("transformer.h.0.attn.c_attn")."""
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def _lora_modules(model: nn.Module) -> dict[str, LoRALinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def apply_lora(
    model: nn.Module,
    targets: str | Sequence[str] = ("c_attn",),
    rank: int = 8,
    alpha: float = 16,
    dropout: float = 0.0,
) -> list[str]:
    """Replace every ``nn.Linear`` whose name ends with one of ``targets`` by a `LoRALinear`, and
    freeze everything else; returns the names of the wrapped layers.

    ``targets`` are the last parts of module names: "c_attn" (attention's query/key/value),
    "c_proj" (attention's and the MLP's output projections), "c_fc" (the MLP's first layer),
    "lm_head" or a classifier's "head". After this only the A and B matrices train: unfreeze
    what else should learn (``unfreeze(model, "head")`` for a new classifier head).

    Chapter 07b puts LoRA into the GPT's attention with it.
    """
    _check_lora_settings(rank, alpha, dropout)
    targets = [targets] if isinstance(targets, str) else list(targets)
    if not targets:
        raise ValueError('targets is empty: name the layers to adapt, e.g. ("c_attn",) or ("c_attn", "c_proj")')
    wrapped_already = _lora_modules(model)
    linears = {
        name: m for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and not any(name.startswith(w + ".") for w in wrapped_already)
    }

    def targeted(name: str) -> bool:
        return any(name == t or name.endswith("." + t) for t in targets)

    again = [name for name in wrapped_already if targeted(name)]
    if again:
        raise ValueError(
            f"{again[0]} already has LoRA: call merge_lora(model) first, or start again from a fresh model"
        )
    chosen = [name for name in linears if targeted(name)]
    if not chosen:
        kinds = sorted({name.rpartition(".")[2] for name in linears})
        raise ValueError(
            f"no nn.Linear of this {type(model).__name__} is named like {targets}; its Linear layers are "
            f"called: {', '.join(kinds) or 'nothing (it has none)'}"
        )
    freeze(model)
    for name in chosen:
        _set_module(model, name, LoRALinear(linears[name], rank, alpha, dropout))
    return chosen


def merge_lora(model: nn.Module) -> list[str]:
    """Fold every adapter into its base weight (W ← W + (alpha / rank) · B A) and put a plain
    nn.Linear back in its place; returns the merged names. The model computes the same outputs,
    with no extra cost per token. (A LoRA on a tied ``lm_head`` unties it from the token embedding:
    only the output layer was adapted.)

    Chapter 07b merges the adapters and shows the outputs unchanged.
    """
    adapters = _lora_modules(model)
    if not adapters:
        raise ValueError("this model has no LoRA adapters to merge (apply_lora puts them in)")
    for name, module in adapters.items():
        _set_module(model, name, module.merged())
    return list(adapters)


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapters' weights: ``{"…c_attn.lora_A.weight": (r, in), "…c_attn.lora_B.weight": (out, r), …}``."""
    weights = {}
    for name, module in _lora_modules(model).items():
        weights[f"{name}.lora_A.weight"] = module.lora_A.weight.detach()
        weights[f"{name}.lora_B.weight"] = module.lora_B.weight.detach()
    return weights


def _lora_settings(model: nn.Module) -> dict[str, dict[str, float]]:
    """What `load_adapters` must find again: each wrapped layer with its rank and alpha."""
    return {name: {"rank": m.rank, "alpha": m.alpha} for name, m in sorted(_lora_modules(model).items())}


def _apply_lora_call(settings: dict[str, dict[str, float]]) -> str:
    """The apply_lora(...) call that makes these adapters, as text for an error message."""
    targets = tuple(sorted({name.rpartition(".")[2] for name in settings}))
    kinds = {(s["rank"], s["alpha"]) for s in settings.values()}
    if len(kinds) != 1:
        return f"apply_lora once per rank and alpha, on the layers {sorted(settings)}"
    rank, alpha = kinds.pop()
    return f"apply_lora(model, targets={targets}, rank={rank}, alpha={alpha:g})"


def save_adapters(model: nn.Module, path: str | os.PathLike, extra: Names = ()) -> Path:
    """Write only the LoRA weights (and the parameters named in ``extra``, e.g. "head") to a
    safetensors file; returns its path. The file is small — rank · (in + out) numbers per adapted
    layer — and records the LoRA settings, which `load_adapters` checks.

    Chapter 07b saves only the adapters, a small file beside the base model.
    """
    if not _lora_modules(model):
        raise ValueError("this model has no LoRA adapters to save: call apply_lora(model, …) first")
    weights = lora_state_dict(model)
    extra_names: list[str] = []
    if extra:
        named = list(model.named_parameters(remove_duplicate=False))
        saved_ids: set[int] = set()
        for pattern in _as_patterns(extra) or []:
            hits = [(name, p) for name, p in named if _matches(name, pattern)]
            if not hits:
                raise ValueError(f"extra: no parameter is named {pattern!r}; top-level names: "
                                 f"{', '.join(_top_level_names(model))}")
            for name, p in hits:
                if name not in weights and id(p) not in saved_ids:  # a tied tensor is saved under one name
                    saved_ids.add(id(p))
                    extra_names.append(name)
                    weights[name] = p.detach()
    metadata = {"format": "pt", "labkit": "lora-adapters", "lora": json.dumps(_lora_settings(model)),
                "extra": json.dumps(extra_names)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({name: t.contiguous().cpu() for name, t in weights.items()}, path, metadata=metadata)
    return path


def load_adapters(model: nn.Module, path: str | os.PathLike) -> list[str]:
    """Copy adapter weights saved by `save_adapters` into ``model``, which must already have the same
    LoRA layers (``apply_lora`` with the same targets, rank and alpha); returns the names loaded.

    Chapter 07b loads them back into a fresh base model.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no adapters file at {path}: write one with save_adapters(model, {str(path)!r})")
    weights, metadata = read_safetensors(path, f"Save the adapters again from the trained model with save_adapters(model, {str(path)!r})")
    if metadata.get("labkit") != "lora-adapters":
        raise ValueError(f"{path} was not written by save_adapters (its metadata has no LoRA settings)")
    saved, ours = json.loads(metadata["lora"]), _lora_settings(model)
    if saved != ours:
        differences = [f"{name}: {saved.get(name, 'no LoRA')} in the file, {ours.get(name, 'no LoRA')} here"
                       for name in sorted(set(saved) | set(ours)) if saved.get(name) != ours.get(name)]
        raise ValueError(
            f"{path} holds adapters made with other LoRA settings than this model's:\n  - "
            + "\n  - ".join(differences[:6]) + ("\n  - …" if len(differences) > 6 else "")
            + f"\nBuild the model again and call {_apply_lora_call(saved)} before load_adapters"
        )
    params = dict(model.named_parameters(remove_duplicate=False))
    missing = [name for name in weights if name not in params]
    if missing:
        raise ValueError(f"{path} holds weights this model does not have: {missing[:4]}")
    with torch.no_grad():
        for name, tensor in weights.items():
            if tensor.shape != params[name].shape:
                raise ValueError(f"{name} has shape {tuple(tensor.shape)} in {path}, "
                                 f"but {tuple(params[name].shape)} in this model")
            params[name].copy_(tensor)
    return list(weights)
