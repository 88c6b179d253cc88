"""How much faster is `BPETokenizer`'s heap-based merge than the rescanning loop it replaced?

Encoding merges the adjacent pair of lowest rank inside each chunk of text, again and again.
The old loop found that pair by rescanning the ranks of all pairs after every merge, so one
chunk of n bytes cost about n² steps: fine for words, slow for a long unsplit chunk, such as
Chinese without punctuation (8,000 characters took seconds). The new one keeps the pairs in a
heap and costs about n·log n. Both are timed here in the same run, on the same chunks, with
the same merges (the shipped base_bpe checkpoint's tokenizer, English and Chinese), and every
result is checked to be the same ids; the script prints each time and the ratio old / new.

    python benchmarks/bpe_encode.py                   # 100 to 8,000 Chinese characters, and English words
    python benchmarks/bpe_encode.py --chars 20000     # one long chunk only (the old loop takes a while)
"""
from __future__ import annotations

import argparse
import time

import regex

from labkit.checkpoints import CHECKPOINTS_DIR
from labkit.data import load_poems, load_text
from labkit.tokenizers import BPETokenizer


def rescanning_encode_chunk(merges: dict[tuple[int, int], int], chunk: bytes) -> list[int]:
    """`BPETokenizer._encode_chunk` as it was before (commit 307363b): rescan every pair's rank
    for the lowest, merge the leftmost occurrence, look up its two neighbours' ranks again."""
    ids = list(chunk)
    never = 1 << 62
    ranks = [merges.get(pair, never) for pair in zip(ids, ids[1:])]
    while ranks:
        new_id = min(ranks)
        if new_id == never:
            break
        i = ranks.index(new_id)
        ids[i : i + 2] = [new_id]
        del ranks[i]
        if i > 0:
            ranks[i - 1] = merges.get((ids[i - 1], new_id), never)
        if i < len(ranks):
            ranks[i] = merges.get((new_id, ids[i + 1]), never)
    return ids


def cpu_seconds(fn, chunks: list[bytes], repeat: int) -> tuple[float, list[list[int]]]:
    """The least CPU time of `repeat` runs of fn over all chunks, and the ids of the last run."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        ids = [fn(chunk) for chunk in chunks]
        best = min(best, time.process_time() - start)
    return best, ids


def compare(label: str, tok: BPETokenizer, chunks: list[bytes], repeat: int) -> None:
    old, old_ids = cpu_seconds(lambda c: rescanning_encode_chunk(tok.merges, c), chunks, repeat)
    new, new_ids = cpu_seconds(tok._encode_chunk, chunks, repeat)
    assert new_ids == old_ids, f"{label}: the two encodings differ"
    tokens = sum(map(len, new_ids))
    print(f"{label:<42} old {old:8.3f} s   new {new:7.3f} s   old/new {old / new:7.1f}x   ({tokens:,} tokens, same ids)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, nargs="+", default=[100, 1000, 8000],
                        help="lengths of the unsplit Chinese chunks, in characters")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the fastest counts")
    args = parser.parse_args()

    tok = BPETokenizer.load(CHECKPOINTS_DIR / "base_bpe" / "tokenizer.json")
    print(f"tokenizer: base_bpe's, {len(tok.merges):,} merges\n")
    han = regex.sub(r"\P{Han}", "", "".join(load_poems()))  # Chinese characters only: no punctuation, one chunk
    for n in args.chars:
        count = max(1, 8000 // n)  # about 8,000 characters at each length
        chunks = [han[i * n : (i + 1) * n].encode("utf-8") for i in range(count)]
        assert all(len(regex.findall(tok.pattern, c.decode())) == 1 for c in chunks)  # each really is one chunk
        compare(f"{count:>3} Chinese chunk(s) of {n:,} characters", tok, chunks, args.repeat if n < 8000 else 1)
    words = sorted(set(regex.findall(tok.pattern, load_text("shakespeare")[:300_000])))
    compare(f"{len(words):,} distinct English chunks (words)", tok, [w.encode("utf-8") for w in words], args.repeat)


if __name__ == "__main__":
    main()
