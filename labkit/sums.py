"""The checksum file ``datasets/SHA256SUMS`` (``sha256sum``'s format), read and written in one place.

Standard library only: ``datasets/build.py`` (which writes the file) imports it as well as
`labkit.data` (which checks every dataset against it before loading), without pulling in torch.

    >>> sums, malformed = read_sums(Path("datasets/SHA256SUMS"))   # run from the repository's root
    >>> sums["FashionMNIST/raw/t10k-images-idx3-ubyte"][:8], malformed
    ('5b4141f0', [])
"""
from __future__ import annotations

import re
from pathlib import Path

__all__ = ["SUMS_FILE", "read_sums", "format_sums"]

SUMS_FILE = "SHA256SUMS"
_DIGEST = re.compile(r"[0-9a-fA-F]{64}")


def read_sums(path: Path) -> tuple[dict[str, str], list[tuple[int, str]]]:
    """({relative path: lower-case sha256}, [(line number, line)]) from a ``sha256sum`` file; a missing
    file gives ({}, []). The second list holds the lines that are not ``<64 hex digits>  <path>``, so
    that a caller can name them (a damaged line stops only the dataset whose file it named); a ``*``
    before a path (sha256sum's binary mode) is dropped. Chapter 00's doctor and every loader rely on it."""
    path = Path(path)
    if not path.is_file():
        return {}, []
    sums: dict[str, str] = {}
    malformed: list[tuple[int, str]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        parts = line.split(maxsplit=1)
        if len(parts) == 2 and _DIGEST.fullmatch(parts[0]):
            sums[parts[1].lstrip("*")] = parts[0].lower()
        elif line.strip():
            malformed.append((number, line))
    return sums, malformed


def format_sums(sums: dict[str, str]) -> str:
    """``sha256sum``'s format, sorted by path so that the file is the same on every rebuild."""
    return "".join(f"{sums[name]}  {name}\n" for name in sorted(sums))
