"""The course's own checkpoints: a GPT, its tokenizer and its notes in one directory, and the ones it ships.

    directory/
        config.json          the GPTConfig
        model.safetensors    the weights (the tied embedding / lm_head matrix once)
        tokenizer.json       the tokenizer, if the model has one (labkit.tokenizers)
        meta.json            free-form notes: validation loss, the command that trained it, …

``save_checkpoint`` writes one, ``load_checkpoint`` reads it back, ``load_pretrained`` loads one of
the GPTs in ``checkpoints/`` (trained by ``tools/train_checkpoints.py``). Every damaged file is
named with what to do about it (``labkit.files``). Chapter 06b saves its pretrained model; 06a,
06c and 07b–07e load the shipped ones.
"""

from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from .files import DamagedFileError, listing, read_json, read_safetensors
from .gpt import GPT, GPTConfig

__all__ = ["CHECKPOINTS_DIR", "SHIPPED", "load_checkpoint", "load_pretrained", "save_checkpoint", "shipped_history",
           "continue_shipped_run"]

CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE, META_FILE = "config.json", "model.safetensors", "tokenizer.json", "meta.json"


def save_checkpoint(
    model: GPT,
    directory: str | os.PathLike,
    *,
    tokenizer: Any = None,
    meta: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write a GPT, and what is needed to use it again, to a directory; returns its path.

    config.json          the GPTConfig
    model.safetensors    the weights; the tied token embedding / lm_head matrix is stored once
    tokenizer.json       the tokenizer, if one is given (CharTokenizer, BPETokenizer from labkit.tokenizers)
    meta.json            free-form notes (``meta``: val loss, the command that trained it, …)

    ``dtype=torch.bfloat16`` (or float16) stores the weights in half the bytes; `load_checkpoint`
    turns them back into float32.

    Chapter 06b saves its pretrained model with it.
    """
    if not isinstance(model, GPT):
        raise TypeError(
            f"save_checkpoint saves a labkit GPT, got a {type(model).__name__}; pass the GPT itself "
            "(model.module under DDP, model._orig_mod after torch.compile)"
        )
    if model.lm_head.weight is not model.transformer.wte.weight:
        raise ValueError("this GPT's lm_head no longer shares the token embedding's weight; they must be tied")
    if dtype is not None and not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point type such as torch.bfloat16, got {dtype}")
    meta = dict(meta or {})
    if "tokenizer_class" in meta:
        raise ValueError("meta's key 'tokenizer_class' is save_checkpoint's own (it names the tokenizer's class)")
    try:
        json.dumps(meta)
    except TypeError as error:
        raise ValueError(f"meta must hold plain JSON values (numbers, text, lists, dicts): {error}; "
                         "turn tensors into numbers with .item()") from None

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_FILE).write_text(json.dumps(model.config.to_dict(), indent=2) + "\n", encoding="utf-8")
    # safetensors refuses two names for one tensor, so the tied lm_head.weight is left out; it is wte's
    weights = {
        name: (tensor if dtype is None else tensor.to(dtype)).contiguous()
        for name, tensor in model.state_dict().items()
        if name != "lm_head.weight"
    }
    save_file(weights, directory / WEIGHTS_FILE, metadata={"format": "pt"})
    (directory / TOKENIZER_FILE).unlink(missing_ok=True)  # never leave an older run's tokenizer behind
    if tokenizer is not None:
        meta["tokenizer_class"] = _save_tokenizer(tokenizer, directory / TOKENIZER_FILE)
    (directory / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return directory


def load_checkpoint(
    directory: str | os.PathLike, device: str | torch.device | None = None
) -> tuple[GPT, Any, dict[str, Any]]:
    """Read a directory written by `save_checkpoint`: (model in eval mode, tokenizer or None, meta).

    Chapter 06a loads the shipped models with it.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"no checkpoint directory at {directory}: write one with save_checkpoint(model, {str(directory)!r})"
        )
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (directory / name).is_file():
            raise FileNotFoundError(
                f"{directory} has no {name}, so save_checkpoint did not write it (it holds: {listing(directory)})"
            )
    fix = _checkpoint_fix(directory)
    config = read_json(directory / CONFIG_FILE, fix)
    if not isinstance(config, dict):
        raise DamagedFileError(directory / CONFIG_FILE,
                               f"should hold a JSON object of GPTConfig fields, got a {type(config).__name__}", fix)
    if "model_type" in config:
        raise ValueError(f"{directory} holds a Hugging Face checkpoint; read it with GPT.from_gpt2({str(directory)!r})")
    unknown = sorted(set(config) - {f.name for f in fields(GPTConfig)})
    if unknown:
        raise ValueError(f"{directory / CONFIG_FILE} has fields GPTConfig does not know: {unknown}")
    try:
        gpt_config = GPTConfig(**config)
    except (TypeError, ValueError) as error:
        raise DamagedFileError(directory / CONFIG_FILE, f"is damaged: {error}", fix) from None
    model = GPT(gpt_config)
    weights, _ = read_safetensors(directory / WEIGHTS_FILE, fix)
    if "transformer.wte.weight" in weights:
        weights["lm_head.weight"] = weights["transformer.wte.weight"]  # tied: one matrix, two names
    try:
        model.load_state_dict(weights)  # copies into the parameters: wte and lm_head stay one tensor
    except RuntimeError as error:
        raise ValueError(f"the weights in {directory / WEIGHTS_FILE} do not fit its config.json: {error}") from None
    meta_path = directory / META_FILE
    meta = read_json(meta_path, fix) if meta_path.is_file() else {}
    if not isinstance(meta, dict):
        raise DamagedFileError(meta_path, f"should hold a JSON object (the checkpoint's notes), got a {type(meta).__name__}", fix)
    tokenizer_class = meta.pop("tokenizer_class", None)
    try:
        tokenizer = _load_tokenizer(tokenizer_class, directory / TOKENIZER_FILE) if tokenizer_class else None
    except DamagedFileError as error:  # its own fix says to save the tokenizer again: say this checkpoint's
        if error.path != directory / TOKENIZER_FILE:
            raise  # GPT-2's ranks file, which has its own fix
        raise error.with_fix(fix) from None
    if device is not None:
        model.to(device)
    return model.eval(), tokenizer, meta


def _checkpoint_fix(directory: Path) -> str:
    """What to do about a damaged file of the checkpoint in ``directory``: a shipped one is restored."""
    if directory.name in SHIPPED and directory.resolve().parent == Path(CHECKPOINTS_DIR).resolve():
        return (f"Restore it with `git checkout -- checkpoints/{directory.name}`, or retrain it with "
                f"`python tools/train_checkpoints.py {directory.name}`.")
    return f"Write the checkpoint again from the trained model with save_checkpoint(model, {str(directory)!r})."


def _tokenizer_class(name: str) -> Any:
    from labkit import tokenizers  # imported only when a checkpoint has a tokenizer

    cls = getattr(tokenizers, name, None)
    return cls if isinstance(cls, type) else None


def _save_tokenizer(tokenizer: Any, path: Path) -> str:
    """Write the tokenizer (if it has a file) and return its class name, which load_checkpoint needs."""
    name = type(tokenizer).__name__
    if _tokenizer_class(name) is not type(tokenizer):
        raise TypeError(
            f"save_checkpoint keeps the tokenizers of labkit.tokenizers (CharTokenizer, BPETokenizer, GPT2Tokenizer), "
            f"got a {type(tokenizer).__module__}.{name}: save it yourself next to the checkpoint"
        )
    if name != "GPT2Tokenizer":  # GPT-2's tokenizer is rebuilt from the ranks file shipped with the course
        tokenizer.save(path)
    return name


def _load_tokenizer(name: str, path: Path) -> Any:
    if name == "GPT2Tokenizer":
        from labkit.tokenizers import gpt2_tokenizer

        return gpt2_tokenizer()
    cls = _tokenizer_class(name)
    if cls is None or not hasattr(cls, "load"):
        raise ValueError(f"the checkpoint's tokenizer class {name!r} is not one of labkit.tokenizers'")
    if not path.is_file():
        raise FileNotFoundError(f"the checkpoint names a {name} but {path} is missing")
    return cls.load(path)


# ====================================================================== the checkpoints the course ships

CHECKPOINTS_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
SHIPPED = ("shakespeare_char", "shakespeare_char_tiny", "tang_char", "tang_char_tiny", "base_bpe", "instruct_bpe")


def load_pretrained(name: str, device: str | torch.device | None = None) -> tuple[GPT, Any, dict[str, Any]]:
    """One of the GPTs the course ships, trained by ``tools/train_checkpoints.py``:
    "shakespeare_char", "tang_char" (character level), "shakespeare_char_tiny" and "tang_char_tiny"
    (chapter 06b's two runs),
    "base_bpe" (byte-level BPE, English and Chinese) or "instruct_bpe" (base_bpe instruction-tuned by
    chapter 07c's training). Returns
    (model in eval mode, tokenizer, meta) — meta holds the validation loss and the command that
    trained it.

    Chapter 06c samples from the shipped models; 07b and 07c fine-tune base_bpe.
    """
    if name not in SHIPPED:
        raise ValueError(f"unknown checkpoint {name!r}; the course ships {', '.join(SHIPPED)}")
    directory = CHECKPOINTS_DIR / name
    if not (directory / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(
            f"the shipped checkpoint {name!r} is missing from {directory}: restore it with "
            f"`git checkout -- checkpoints/{name}`, or retrain it with `python tools/train_checkpoints.py {name}`"
        )
    return load_checkpoint(directory, device)


def shipped_history(name: str) -> dict[str, list[float]]:
    """The ``history.csv`` a shipped run wrote: column (step, train_loss, val_loss, …) → one value per
    evaluation."""
    import csv

    if name not in SHIPPED:
        raise ValueError(f"unknown checkpoint {name!r}; the course ships {', '.join(SHIPPED)}")
    path, fix = CHECKPOINTS_DIR / name / "history.csv", f"Restore it with `git checkout -- checkpoints/{name}`"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing. {fix}")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        history = {key: [float(row[key]) for row in rows] for key in (rows[0] if rows else {})}
    except (ValueError, TypeError, UnicodeDecodeError, csv.Error) as error:
        raise DamagedFileError(path, f"cannot be read as the run's history ({error})", fix) from None
    if not {"step", "val_loss"} <= history.keys():
        raise DamagedFileError(path, f"has no step and val_loss columns (it has {', '.join(history) or 'no rows'})", fix)
    return history


def continue_shipped_run(name: str, step: int, live_val_loss: float, *, tolerance: float = 0.02) -> dict[str, list[float]]:
    """Live, then shipped (chapters 06b and 07c): a notebook trains the first ``step`` steps of a run
    whose whole is shipped as checkpoint ``name`` (made by the same code, settings and seed), then
    continues from the shipped weights. This checks that the live run *is* that run: its validation
    loss at ``step`` must equal the shipped history's there, within ``tolerance`` (another machine
    rounds differently; on the machine that made the checkpoint they agree to every printed digit).
    Prints both; returns the shipped history (``shipped_history``).
    """
    history = shipped_history(name)
    at = dict(zip((int(s) for s in history["step"]), history["val_loss"]))
    if step not in at:
        raise ValueError(f"the shipped run {name!r} has no evaluation at step {step}: it evaluated at steps "
                         f"{', '.join(str(s) for s in at)}; stop the live run at one of them")
    gap = abs(live_val_loss - at[step])
    print(f"validation loss at step {step}: live {live_val_loss:.4f}, shipped run {at[step]:.4f}: "
          + ("the same run" if gap < 1e-3 else f"{gap:.3f} apart (another machine rounds differently)"))
    if not gap < tolerance:
        raise ValueError(f"the live run left the shipped run's path (validation loss {live_val_loss:.4f} vs "
                         f"{at[step]:.4f} at step {step}): did a cell above change? Restart the kernel and run all cells")
    return history
