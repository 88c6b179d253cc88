"""Reading a GGUF file (llama.cpp's format) into a ``labkit.llama.Llama``: metadata, weights, names.

Chapter 06d opens SmolLM2's file with this module. A GGUF file is a header of key → value
metadata (the architecture's sizes, the tokenizer's vocabulary and merges, a chat template)
followed by named tensors, most of them quantized: stored in blocks of 32 weights that share
a scale. ``gguf`` (llama.cpp's own Python reader) parses the file and dequantizes; this
module turns what it reads into our ``LlamaConfig`` and our parameter names.

Three details a loader must get right:

- **shapes**: GGUF lists a matrix's dimensions fastest-first, (in, out); PyTorch's ``Linear``
  stores (out, in). The reader's ``data`` already has rows = out.
- **quantization**: Q4_1 keeps per 32 weights an fp16 scale d, an fp16 minimum m and 32 4-bit
  integers q: w = d·q + m. `dequantize_q4_1_block` spells that out for one block.
- **rotary layout**: llama.cpp rotates channel pairs (0, 1), (2, 3), … of a head, Hugging Face's
  Llama (and ours) rotates (i, i + D/2). llama.cpp's converter therefore permuted the rows of
  the query and key matrices; `unpermute_rotary` puts them back.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .llama import Llama, LlamaConfig, Rotary

if TYPE_CHECKING:
    import gguf

__all__ = [
    "GGUF_MAGIC",
    "open_gguf",
    "read_metadata",
    "llama_config",
    "dequantize_q4_1_block",
    "dequantize_tensor",
    "unpermute_rotary",
    "llama_state_dict",
    "build_llama",
]

GGUF_MAGIC = b"GGUF"
Q4_1_BLOCK_BYTES = 20  # 2 (fp16 d) + 2 (fp16 m) + 16 (32 quants, 4 bits each)

# GGUF tensor name → our parameter name; "{i}" is the block number
_BLOCK_NAMES = {
    "attn_norm": "attn_norm.weight",
    "attn_q": "attn.q_proj.weight",
    "attn_k": "attn.k_proj.weight",
    "attn_v": "attn.v_proj.weight",
    "attn_output": "attn.o_proj.weight",
    "ffn_norm": "mlp_norm.weight",
    "ffn_gate": "mlp.gate_proj.weight",
    "ffn_up": "mlp.up_proj.weight",
    "ffn_down": "mlp.down_proj.weight",
}
_TOP_NAMES = {"token_embd": "embed.weight", "output_norm": "norm.weight", "output": "lm_head.weight"}


def check_magic(path: str | os.PathLike) -> Path:
    """The path, after checking that the file exists and starts with b"GGUF"."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no GGUF file at {path}")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise ValueError(
            f"{path} is not a GGUF file: it starts with {magic!r}, not {GGUF_MAGIC!r}. "
            "Give the path of a .gguf model file (llama.cpp's format)."
        )
    return path


@lru_cache(maxsize=2)
def _reader(path: str, size: int, mtime_ns: int) -> gguf.GGUFReader:
    import gguf

    return gguf.GGUFReader(path)  # memory-maps the file; parsing the header takes a few seconds


def open_gguf(path: str | os.PathLike) -> gguf.GGUFReader:
    """A ``gguf.GGUFReader`` on the file (kept per process: opening parses ~100k vocabulary strings)."""
    path = check_magic(path)
    stat = path.stat()
    try:
        return _reader(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    except (ValueError, IndexError, KeyError) as error:  # a truncated or damaged file
        raise ValueError(
            f"{path} starts like a GGUF file but cannot be read ({error}): it is damaged or cut short; "
            "copy or download it again"
        ) from None


def read_metadata(reader: gguf.GGUFReader, *, arrays: bool = True) -> dict[str, Any]:
    """The header's key → value pairs as plain Python values (strings, numbers, lists).

    ``arrays=False`` leaves out the long arrays (the vocabulary: ~50k strings each).
    """
    from gguf import GGUFValueType

    meta: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue  # the header's own bookkeeping: version, counts
        if not arrays and field.types and field.types[0] == GGUFValueType.ARRAY and len(field.data) > 64:
            continue
        meta[key] = field.contents()
    return meta


def llama_config(meta: dict[str, Any]) -> LlamaConfig:
    """Our ``LlamaConfig`` from a Llama GGUF file's metadata (``llama.block_count`` and friends)."""
    arch = meta.get("general.architecture")
    if arch != "llama":
        raise ValueError(f"this GGUF file holds a {arch!r} model; labkit's Llama reads 'llama' models only")

    def get(key: str) -> Any:
        if f"llama.{key}" not in meta:
            raise ValueError(f"the GGUF metadata lacks 'llama.{key}': is the file complete?")
        return meta[f"llama.{key}"]

    n_embd, n_head = int(get("embedding_length")), int(get("attention.head_count"))
    rope_dim = meta.get("llama.rope.dimension_count", n_embd // n_head)
    if rope_dim != n_embd // n_head:
        raise ValueError(f"RoPE on {rope_dim} of {n_embd // n_head} head channels is not supported: labkit rotates all")
    vocab = meta.get("llama.vocab_size") or len(meta["tokenizer.ggml.tokens"])
    return LlamaConfig(
        vocab_size=int(vocab),
        block_size=int(get("context_length")),
        n_layer=int(get("block_count")),
        n_embd=n_embd,
        n_head=n_head,
        n_kv_head=int(meta.get("llama.attention.head_count_kv", n_head)),
        n_hidden=int(get("feed_forward_length")),
        rope_base=float(meta.get("llama.rope.freq_base", 10_000.0)),
        norm_eps=float(get("attention.layer_norm_rms_epsilon")),
        tie_embeddings=True,  # set to False by llama_state_dict when the file has its own output.weight
    )


def dequantize_q4_1_block(block: bytes | np.ndarray) -> np.ndarray:
    """The 32 float32 weights of one Q4_1 block of 20 bytes, written out by hand.

    bytes 0-1   d, the scale, as float16
    bytes 2-3   m, the minimum, as float16
    bytes 4-19  16 bytes of 4-bit integers q in 0 … 15: byte j holds weight j in its low
                nibble and weight j + 16 in its high nibble
    weight = d · q + m
    """
    raw = np.frombuffer(bytes(block), dtype=np.uint8) if not isinstance(block, np.ndarray) else block.astype(np.uint8)
    if raw.shape != (Q4_1_BLOCK_BYTES,):
        raise ValueError(f"a Q4_1 block is {Q4_1_BLOCK_BYTES} bytes, got {raw.size}")
    d = raw[0:2].view(np.float16).astype(np.float32)[0]
    m = raw[2:4].view(np.float16).astype(np.float32)[0]
    packed = raw[4:20]
    q = np.concatenate([packed & 0x0F, packed >> 4]).astype(np.float32)  # weights 0-15, then 16-31
    return d * q + m


def dequantize_tensor(tensor: Any) -> torch.Tensor:
    """One of ``reader.tensors`` as a float32 torch tensor, (out, in) for a matrix, (n,) for a vector."""
    import gguf

    try:
        values = gguf.dequantize(tensor.data, tensor.tensor_type)
    except NotImplementedError:
        raise ValueError(f"tensor {tensor.name} is stored as {tensor.tensor_type.name}, which gguf cannot dequantize") from None
    shape = tuple(int(n) for n in reversed(tensor.shape))  # GGUF lists (in, out): fastest dimension first
    return torch.from_numpy(np.array(values, dtype=np.float32)).reshape(shape)  # a copy: the file is read-only


def unpermute_rotary(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo llama.cpp's row permutation of a query or key matrix (n_heads · D, C).

    Within each head, llama.cpp's converter reordered rows [0, 1, …, D/2 − 1 | D/2, …, D − 1]
    as [0, D/2, 1, D/2 + 1, …] so that partners sit side by side. Reading the rows as
    (head, i, pair) and swapping to (head, pair, i) restores Hugging Face's order.
    """
    rows, cols = weight.shape
    if rows % (2 * n_heads):
        raise ValueError(f"a matrix with {rows} rows cannot hold {n_heads} heads of an even size")
    half = rows // n_heads // 2
    return weight.reshape(n_heads, half, 2, cols).transpose(1, 2).reshape(rows, cols)


def llama_state_dict(reader: gguf.GGUFReader, config: LlamaConfig) -> dict[str, torch.Tensor]:
    """All tensors of the file, dequantized, under ``Llama``'s parameter names, rotary rows restored."""
    weights: dict[str, torch.Tensor] = {}
    for tensor in reader.tensors:
        name = _our_name(tensor.name)
        value = dequantize_tensor(tensor)
        if name.endswith("attn.q_proj.weight"):
            value = unpermute_rotary(value, config.n_head)
        elif name.endswith("attn.k_proj.weight"):
            value = unpermute_rotary(value, config.n_kv_head)
        weights[name] = value
    return weights


def _our_name(gguf_name: str) -> str:
    """"blk.3.attn_q.weight" → "blocks.3.attn.q_proj.weight"; "token_embd.weight" → "embed.weight"."""
    parts = gguf_name.split(".")
    if parts[0] == "blk" and len(parts) == 4 and parts[2] in _BLOCK_NAMES and parts[3] == "weight":
        return f"blocks.{parts[1]}.{_BLOCK_NAMES[parts[2]]}"
    if len(parts) == 2 and parts[0] in _TOP_NAMES and parts[1] == "weight":
        return _TOP_NAMES[parts[0]]
    raise ValueError(f"unexpected tensor {gguf_name!r} in the GGUF file: labkit's Llama has no place for it")


def build_llama(path: str | os.PathLike, dtype: torch.dtype = torch.float32) -> tuple[Llama, dict[str, Any]]:
    """A ``Llama`` holding the file's weights, in eval mode, and the file's metadata."""
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point type such as torch.float32 or torch.bfloat16, got {dtype}")
    reader = open_gguf(path)
    meta = read_metadata(reader)
    config = llama_config(meta)
    weights = llama_state_dict(reader, config)
    if "lm_head.weight" in weights:
        config.tie_embeddings = False
    with torch.device("meta"):
        model = Llama(config)  # shapes only: the weights come from the file
    expected = {name for name in model.state_dict() if not (config.tie_embeddings and name == "lm_head.weight")}
    missing, unexpected = sorted(expected - weights.keys()), sorted(weights.keys() - expected)
    if missing or unexpected:
        raise ValueError(f"{path}: the tensors do not fit the metadata's Llama: missing {missing[:4]}, unexpected {unexpected[:4]}")
    for name, value in weights.items():
        wanted = model.get_parameter(name).shape
        if value.shape != wanted:
            raise ValueError(f"{path}: {name} has shape {tuple(value.shape)}, the metadata asks for {tuple(wanted)}")
    model.load_state_dict({k: v.to(dtype) for k, v in weights.items()}, strict=False, assign=True)
    if config.tie_embeddings:
        model.lm_head.weight = model.embed.weight
    model.rotary = Rotary(config.head_dim, config.rope_base)  # a real one: the meta model's buffer is empty
    return model.eval(), meta
