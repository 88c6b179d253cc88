"""The course GPT in other tools' formats: a Hugging Face GPT-2 checkpoint, an ONNX graph, and a
look inside the files (safetensors headers) that carry weights between tools.

The course GPT (`labkit.gpt.GPT`) is GPT-2's architecture, so it maps onto Hugging Face's
``GPT2LMHeadModel`` name for name. Two details differ, and both map exactly:

- Hugging Face keeps the four big projections (``c_attn``, ``c_proj``, ``c_fc``, ``mlp.c_proj``) as
  ``Conv1D`` layers whose weight is (in, out): the transpose of ``nn.Linear``'s (out, in);
- a GPT built with ``bias=False`` has no biases; GPT-2 always has them, so they are written as zeros
  (adding zero changes nothing).

`GPT.from_gpt2` (chapter 06d) reads such a checkpoint back. Chapter 10 derives the mapping.
"""
from __future__ import annotations

import json
import os
import struct
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from .gpt import _CONV1D_WEIGHTS, GPT

__all__ = ["gpt2_name", "to_gpt2_state_dict", "gpt2_config", "save_gpt2", "export_onnx", "onnx_session",
           "onnx_logits", "read_safetensors_header", "time_call"]


def _require_gpt(model: Any, who: str) -> GPT:
    if not isinstance(model, GPT):
        raise TypeError(f"{who} takes a labkit GPT (labkit.gpt.GPT), got a {type(model).__name__}: "
                        "only the course GPT has GPT-2's architecture (a Llama, say, is not GPT-2)")
    return model


def gpt2_name(name: str) -> str:
    """Our state_dict name → the name in a Hugging Face GPT-2 file: the same, since GPT keeps GPT-2's
    names (``transformer.h.0.attn.c_attn.weight``); checked to be one of ours."""
    if not (name.startswith("transformer.") or name == "lm_head.weight"):
        raise ValueError(f"name must be a GPT state_dict name (transformer.… or lm_head.weight), got {name!r}")
    return name


def to_gpt2_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """GPT's weights under Hugging Face GPT-2's names and layouts (what its model.safetensors holds).

    Conv1D weights are transposed: ours (out, in) → theirs (in, out). ``lm_head.weight`` is left out:
    it is the token embedding (tied), as ``save_pretrained`` leaves it out. Missing biases (``bias=False``)
    become zeros. Every tensor is a contiguous float copy on the CPU.
    """
    model = _require_gpt(model, "to_gpt2_state_dict")
    ours = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for name, tensor in ours.items():
        if name == "lm_head.weight":
            continue  # tied to transformer.wte.weight
        weight = tensor.detach().to("cpu")
        if name.endswith(_CONV1D_WEIGHTS):
            weight = weight.t()  # nn.Linear (out, in) → Conv1D (in, out)
        out[gpt2_name(name)] = weight.contiguous().clone()
    if not model.config.bias:  # GPT-2 has a bias in every Linear and LayerNorm: zeros are the exact map
        for name, module in model.named_modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.LayerNorm)) and name != "lm_head":
                width = module.weight.shape[0] if isinstance(module, torch.nn.Linear) else module.normalized_shape[0]
                out[f"{name}.bias"] = torch.zeros(width, dtype=module.weight.dtype)
    return out


def gpt2_config(model: GPT) -> dict[str, Any]:
    """The config.json of a Hugging Face GPT-2 with ``model``'s shape (dropouts as ours)."""
    c = _require_gpt(model, "gpt2_config").config
    attn_drop = c.dropout if c.attn_dropout is None else c.attn_dropout
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": c.vocab_size, "n_positions": c.block_size, "n_embd": c.n_embd, "n_layer": c.n_layer,
        "n_head": c.n_head, "n_inner": None, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
        "resid_pdrop": c.dropout, "embd_pdrop": c.dropout, "attn_pdrop": attn_drop,
        "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True, "bos_token_id": None, "eos_token_id": None, "use_cache": True,
    }


def save_gpt2(model: GPT, directory: str | os.PathLike) -> Path:
    """Write ``model`` as a Hugging Face GPT-2 checkpoint: ``config.json`` + ``model.safetensors``.

    ``transformers.GPT2LMHeadModel.from_pretrained(directory)`` loads it (its logits equal ours), and
    so does ``GPT.from_gpt2(directory)``. The tokenizer is not written: the token ids are the course
    tokenizer's, not GPT-2's, so keep using the course tokenizer with it.
    """
    model = _require_gpt(model, "save_gpt2")
    path = Path(directory)
    if path.exists() and not path.is_dir():
        raise ValueError(f"directory must be a folder, got the file {path}: choose a folder name")
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(gpt2_config(model), indent=2) + "\n")
    save_file(to_gpt2_state_dict(model), str(path / "model.safetensors"), metadata={"format": "pt"})
    return path


def export_onnx(model: torch.nn.Module, path: str | os.PathLike, example: torch.Tensor) -> Path:
    """Export ``model`` (token ids (B, T) → logits (B, T, V), or any one-input module) to an ONNX file,
    with the batch and sequence axes left free, through PyTorch's TorchScript-based exporter."""
    if not torch.is_tensor(example):
        raise TypeError(f"example must be an input tensor for the model, got a {type(example).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    axes = {0: "batch", 1: "sequence"} if example.dim() >= 2 else {0: "batch"}
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer warns that GPT's Python checks (sequence length ≤ block_size) become constants: they only raise errors
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        torch.onnx.export(model, (example,), str(path), input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": axes, "output": axes}, dynamo=False)
    model.train(was_training)
    return path


def onnx_session(path: str | os.PathLike, threads: int | None = None) -> Any:
    """An ONNX Runtime ``InferenceSession`` on the CPU for the file at ``path``."""
    import onnxruntime as ort

    if not Path(path).is_file():
        raise FileNotFoundError(f"no ONNX file at {path}: write one first with export_onnx(model, path, example)")
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_logits(session: Any, idx: torch.Tensor) -> torch.Tensor:
    """Run the ONNX session on ``idx`` and return its output as a torch tensor."""
    name = session.get_inputs()[0].name
    return torch.from_numpy(session.run(None, {name: idx.cpu().numpy()})[0])


def read_safetensors_header(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON header of a safetensors file, read by hand: 8 bytes (little-endian length n), then n
    bytes of JSON: name → {dtype, shape, data_offsets}, plus an optional ``__metadata__``."""
    path = Path(path)
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{path} is too short to be a safetensors file ({len(head)} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > path.stat().st_size:
            raise ValueError(f"{path} says its header is {n:,} bytes, longer than the file: not a safetensors file")
        header: dict[str, Any] = json.loads(f.read(n))
    return header


def time_call(fn: Any, repeats: int = 5) -> float:
    """The best of ``repeats`` wall-clock times of ``fn()`` in seconds, after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best
