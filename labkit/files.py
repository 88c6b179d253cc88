"""Reading the files labkit saves (JSON, safetensors, torch's run files) with errors a learner can read.

A damaged file otherwise stops with a library's message that names no file ("Error while
deserializing header: header too large", "Expecting value: line 1 column 1") or, from
``torch.load``, advice to retry with a setting that would run code from the file. Each reader
here takes ``fix``, what to do about this particular file in plain words, and raises a
`DamagedFileError` that says which file, what is wrong with it, and that fix::

    meta = read_json(directory / "meta.json", fix="Write the checkpoint again with save_checkpoint.")

Torch files are opened with ``weights_only=True`` only (tensors, numbers, text, lists, dicts):
one that holds other Python objects is refused, never opened the unsafe way.
"""
from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["DamagedFileError", "listing", "read_json", "read_safetensors", "read_torch_file"]


class DamagedFileError(ValueError):
    """A file is there but cannot be read as what it should be: ``"{path} {problem}. {fix}"``.

    ``path``, ``problem`` and ``fix`` are kept, so that a caller who knows better what to do
    (a shipped checkpoint is restored with git) can say so: ``error.with_fix("…")``.
    """

    def __init__(self, path: str | os.PathLike, problem: str, fix: str) -> None:
        self.path, self.problem, self.fix = Path(path), problem, fix
        super().__init__(f"{path} {problem}. {fix}")

    def with_fix(self, fix: str) -> DamagedFileError:
        """The same error with another ``fix``."""
        return DamagedFileError(self.path, self.problem, fix)


def read_json(path: str | os.PathLike, fix: str, *, problem: str = "is damaged") -> Any:
    """The JSON value in ``path``; a file that is not UTF-8 JSON raises `DamagedFileError`:
    ``"{path} {problem}: it is not JSON (…). {fix}"``. A missing file raises FileNotFoundError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DamagedFileError(
            path, f"{problem}: it is not JSON text (byte {error.start} is {error.object[error.start]:#04x}, not UTF-8)", fix
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DamagedFileError(
            path, f"{problem}: it is not JSON ({error.msg} at line {error.lineno}, column {error.colno})", fix
        ) from None


def read_safetensors(path: str | os.PathLike, fix: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors by name, the file's metadata) from a safetensors file, or `DamagedFileError`."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except SafetensorError as error:
        reason = str(error).removeprefix("Error while deserializing header: ")
        if "not fully covered" in reason or "too small" in reason:
            reason += ": it was cut short"
        raise DamagedFileError(path, f"is damaged or not a safetensors file ({reason})", fix) from None
    return tensors, metadata


def read_torch_file(path: str | os.PathLike, fix: str, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``, or `DamagedFileError` saying what is wrong.

    Torch's own message for a file with other Python objects advises loading it the unsafe way,
    which runs whatever code the file carries; that advice is never passed on."""
    import torch  # here, so that reading a tokenizer's JSON does not import torch

    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
        if found:
            raise DamagedFileError(
                path, f"holds a Python object of type {found[1]}, not only tensors, numbers and text, so labkit did "
                "not write it; labkit refuses such files, since opening one can run any code it carries", fix
            ) from None
        said = re.search(r"WeightsUnpickler error:\s*([^\n]+?)\.?(\n|$)", str(error))  # e.g. "Unsupported operand 149"
        reason = f" ({said[1]})" if said and "weights_only" not in said[1] else ""
        raise DamagedFileError(path, f"is damaged or not a file torch.save wrote{reason}", fix) from None
    except EOFError:
        raise DamagedFileError(path, "is damaged: it is empty or cut short", fix) from None
    except (RuntimeError, KeyError, ValueError, OSError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        first = str(error).split(". ")[0].strip() if isinstance(error, RuntimeError) else ""
        reason = f" ({first})" if first else ""
        raise DamagedFileError(path, f"is damaged or not a file torch.save wrote{reason}", fix) from None


def listing(path: Path, limit: int = 8) -> str:
    """The names in directory ``path``, sorted, at most ``limit`` of them: for an error that says what is there."""
    names = sorted(p.name for p in path.iterdir())
    return ", ".join(names[:limit]) + (" …" if len(names) > limit else "") if names else "nothing"
