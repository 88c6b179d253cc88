"""How fast is labkit's byte-level BPE? Training time, encoding speed, and a tiktoken check.

Trains `BPETokenizer` on ~1 MB of English to a few vocabulary sizes and times it, then encodes
~5 MB of text, and compares with GPT-2's tokenizer (tiktoken, written in Rust) on the same text.

The English text is the shipped Shakespeare if `labkit.data` offers it, else Python's own
documentation (the `pydoc_data` topics and the standard library's docstrings), which every
Python installation carries; so this runs anywhere, offline.

    python benchmarks/tokenizers.py                       # 1 MB, vocab 2048 and 4096
    python benchmarks/tokenizers.py --mb 0.2 --vocab 512  # quicker
"""
from __future__ import annotations

import argparse
import ast
import sysconfig
import time
from pathlib import Path

from labkit.tokenizers import BPETokenizer, compare_tokenizers, gpt2_tokenizer


class Timer:
    """Wall-clock and CPU seconds of a `with` block: on a busy shared machine the CPU time is
    the fairer number (wall time counts the time other processes held the cores)."""

    def __enter__(self) -> Timer:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    def __str__(self) -> str:
        return f"{self.wall:6.2f} s wall, {self.cpu:6.2f} s CPU"


def python_docs_text(n_chars: int) -> str:
    """About `n_chars` of English: the pydoc topics, then stdlib docstrings, in a fixed order."""
    import pydoc_data.topics

    parts = [pydoc_data.topics.topics[key] for key in sorted(pydoc_data.topics.topics)]
    size = sum(map(len, parts))
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.glob("*.py")):
        if size >= n_chars:
            break
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    parts.append(doc)
                    size += len(doc)
    return "\n\n".join(parts)[:n_chars]


def python_source_text(n_chars: int) -> str:
    """About `n_chars` of Python source code from the standard library (for encoding speed)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    parts, size = [], 0
    for path in sorted(stdlib.rglob("*.py")):
        if size >= n_chars:
            break
        try:
            parts.append(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            continue
        size += len(parts[-1])
    return "".join(parts)[:n_chars]


def english_text(n_chars: int) -> tuple[str, str]:
    """(text, where it came from): Shakespeare if shipped, else Python's documentation."""
    try:
        from labkit.data import load_text  # added with chapter 06's datasets

        text = load_text("shakespeare")
        if len(text) >= n_chars:
            return text[:n_chars], "shakespeare"
    except Exception:  # not shipped yet, or too short: fall back to text every Python has
        pass
    return python_docs_text(n_chars), "Python's documentation"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=1.0, help="size of the training text in MB")
    parser.add_argument("--vocab", type=int, nargs="+", default=[2048, 4096], help="vocabulary sizes")
    parser.add_argument("--encode-mb", type=float, default=5.0, help="size of the text to encode in MB")
    args = parser.parse_args()

    text, source = english_text(int(args.mb * 1_000_000))
    print(f"training text: {len(text):,} characters ({len(text.encode()):,} bytes) of {source}")
    tokenizers = {}
    for vocab_size in args.vocab:
        with Timer() as timer:
            tok = BPETokenizer.train(text, vocab_size)
        tokenizers[f"bpe-{vocab_size}"] = tok
        print(f"train BPE to vocab {vocab_size:>5}: {timer}  ({len(tok.merges)} merges)")

    try:
        tokenizers["gpt2"] = gpt2_tokenizer()
    except (ImportError, FileNotFoundError) as error:
        print(f"(GPT-2 left out: {error})")

    big = python_source_text(int(args.encode_mb * 1_000_000))
    for name, tok in tokenizers.items():
        if isinstance(tok, BPETokenizer):
            tok = BPETokenizer(tok.merges, tok.special_tokens, tok.pattern)  # empty chunk cache
        with Timer() as timer:
            ids = tok.encode(big)
        print(f"encode {len(big) / 1e6:.1f} MB of Python source with {name:>12}: {timer} "
              f"({len(big) / len(ids):.2f} chars/token)")

    print("\non the training text itself:")
    show(compare_tokenizers(text, tokenizers))

    try:
        from labkit.data import load_poems

        chinese = "\n".join(load_poems())[: int(args.mb * 1_000_000)]
    except Exception as error:  # not shipped: skip the Chinese half
        print(f"(Chinese left out: {error})")
        return
    print(f"\nChinese: {len(chinese):,} characters ({len(chinese.encode()):,} bytes) of Tang poems")
    for vocab_size in args.vocab:
        with Timer() as timer:
            tok = BPETokenizer.train(chinese, vocab_size)
        print(f"train BPE to vocab {vocab_size:>5}: {timer}")
        tokenizers[f"bpe-zh-{vocab_size}"] = tok
    show(compare_tokenizers(chinese, tokenizers))


def show(rows: list[dict]) -> None:
    for row in rows:
        print(f"  {row['tokenizer']:>12}: {row['tokens']:>9,} tokens, {row['chars_per_token']:.2f} chars/token, "
              f"{row['bytes_per_token']:.2f} bytes/token, round trip {'ok' if row['round_trip'] else 'FAILED'}")


if __name__ == "__main__":
    main()
