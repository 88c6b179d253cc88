"""Tokenizers: text → a list of integer ids → text again.

Chapter 06 builds three, from the simplest to the one GPT-2 really used, and this module keeps
the clean versions the chapter builds by hand:

- `CharTokenizer`: one id per character of a training text. Tiny vocabulary, long sequences,
  and it cannot encode a character it has never seen.
- `BPETokenizer`: byte-level byte-pair encoding (BPE). It starts from the 256 byte values, so
  ANY text can be encoded (Chinese, emoji, …), then learns merges: the most frequent adjacent
  pair of tokens becomes a new token, again and again, until the vocabulary is as big as asked.
- `gpt2_tokenizer()`: GPT-2's own BPE (50,257 tokens) through OpenAI's `tiktoken` library,
  built offline from the ranks file the course ships.

All three have the same face (`Tokenizer`): ``encode(text) -> list[int]``,
``decode(ids) -> str``, ``vocab_size`` and ``name``, so `compare_tokenizers` can put them
side by side on the same English and Chinese text.

    >>> tok = BPETokenizer.train("low lower lowest " * 50, vocab_size=260)
    >>> tok.decode(tok.encode("lowest 你好 🙂")) == "lowest 你好 🙂"
    True

How `BPETokenizer` works, in the words of Karpathy's minbpe (whose names it keeps):

1. split the text into chunks with a regular expression (words, numbers, punctuation,
   spaces), so a merge never glues the end of one word to the start of the next;
2. count each distinct chunk once, with its number of occurrences;
3. merge the most frequent pair of adjacent ids into a new id; update the pair counts only in
   the chunks that contained that pair (this is what makes training fast); repeat.

Encoding applies the learned merges to each chunk by rank (earliest learned first), exactly
as `tiktoken` does, so the same merges always give the same ids.
"""
from __future__ import annotations

import hashlib
import heapq
import json
import operator
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import regex

if TYPE_CHECKING:
    import tiktoken
    import torch

__all__ = [
    "Tokenizer",
    "CharTokenizer",
    "BPETokenizer",
    "apply_merges",
    "GPT2Tokenizer",
    "gpt2_tokenizer",
    "compare_tokenizers",
    "get_stats",
    "merge",
    "GPT2_SPLIT_PATTERN",
    "GPT4_SPLIT_PATTERN",
]

# GPT-2's pre-tokenizer (its encoder.py): 's 't 're… contractions, a letter run with an optional
# leading space, a number run, a punctuation run, then whitespace.
GPT2_SPLIT_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

# GPT-4's pre-tokenizer ("cl100k_base", as tiktoken ships it). Compared with GPT-2's: case-
# insensitive contractions, numbers cut into pieces of at most 3 digits, and a letter run may
# start with one non-letter (a space, a quote). \p{L} includes Chinese characters, so a Chinese
# clause becomes one chunk, ended by its punctuation (，。！ are not letters): sensible chunks.
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)

ENDOFTEXT = "<|endoftext|>"

# SHA-256 of GPT-2's ranks file: tiktoken's own published checksum of "r50k_base.tiktoken",
# which is the very same file as "gpt2.tiktoken" inside the openai-whisper package.
GPT2_RANKS_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"

AllowedSpecial = Literal["all", "none"] | set[str] | frozenset[str]


@runtime_checkable
class Tokenizer(Protocol):
    """What every tokenizer of the course can do (for type hints)."""

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


def _as_id_list(ids: Sequence[int] | torch.Tensor | Any) -> list[int]:
    """A plain list of ints from a list, a 1-D tensor (T,) or a 1-D numpy array."""
    if hasattr(ids, "tolist"):  # torch.Tensor, numpy.ndarray
        shape = tuple(getattr(ids, "shape", ()))
        if len(shape) != 1:
            raise ValueError(
                f"decode takes one sequence of ids of shape (T,), got shape {shape}; "
                "for a batch (B, T), decode each row: [tok.decode(row) for row in ids]"
            )
        ids = ids.tolist()
    try:
        return [operator.index(i) for i in ids]  # ints, numpy ints; not floats or strings
    except TypeError:
        bad = next(i for i in ids if not hasattr(i, "__index__"))
        raise ValueError(f"decode takes integer ids, got {bad!r} ({type(bad).__name__}) in the sequence") from None


def _check_ids(ids: list[int], vocab_size: int, name: str) -> None:
    bad = sorted({i for i in ids if not 0 <= i < vocab_size})
    if bad:
        raise ValueError(
            f"{name} has ids 0 … {vocab_size - 1}, got {bad[:10]}{' …' if len(bad) > 10 else ''}: "
            "were these ids made by another tokenizer?"
        )


def _read_json(path: str | Path, kind: str) -> dict[str, Any]:
    """The JSON a tokenizer's `save` wrote, after checking that it is one, of this kind."""
    from .files import read_json

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {kind} file at {path}: write one with tokenizer.save({str(path)!r})")
    data = read_json(path, f"{kind}.load reads the JSON file that {kind}.save writes: check the path.",
                     problem=f"is not a {kind} file")
    found = data.get("type") if isinstance(data, dict) else None
    if found != kind:
        if found in ("CharTokenizer", "BPETokenizer"):
            raise ValueError(f"{path} is a {found} file, not a {kind} file: load it with {found}.load")
        what = (f'its "type" is {found!r}, not {kind!r}' if isinstance(data, dict) and "type" in data
                else f'it has no "type" field; a {kind} file says "type": "{kind}"')
        raise ValueError(f"{path} is not a {kind} file ({what}): {kind}.load reads the JSON file that "
                         f"{kind}.save writes; check the path")
    return data


def _damaged(path: str | Path, kind: str, problem: str) -> ValueError:
    """The error for a tokenizer file whose type is right but whose content is not."""
    from .files import DamagedFileError

    return DamagedFileError(path, f"is a damaged {kind} file: {problem}",
                            "Write it again with tokenizer.save(path) from the tokenizer itself (or train it again).")


def _lone_surrogate(text: str) -> ValueError:
    """The error for a text that holds half of a UTF-16 surrogate pair, which UTF-8 cannot encode."""
    found = regex.search(r"[\ud800-\udfff]", text)
    where = f"{found[0]!r} at position {found.start()}" if found else "a lone surrogate"
    return ValueError(
        f"the text holds {where}: half of a UTF-16 pair (a 'lone surrogate'), not a character, and UTF-8 "
        "cannot encode it. Decoding with errors='surrogateescape' or a JSON escape cut in half makes them; "
        "replace them with '�' first, as tiktoken does: "
        "text.encode('utf-16', 'surrogatepass').decode('utf-16', 'replace')"
    )


# ==================================================================================== characters


class CharTokenizer:
    """One id per character: the vocabulary is the sorted set of characters of a text.

    >>> tok = CharTokenizer("hello")
    >>> tok.vocab_size, tok.encode("hole"), tok.decode([0, 2])
    (4, [1, 3, 2, 0], 'el')

    Chapter 06a builds one by hand; 06b pretrains the character-level GPTs with it.
    """

    name = "char"

    def __init__(self, text_or_chars: str | Iterable[str]) -> None:
        chars = sorted(set(text_or_chars))
        if not chars:
            raise ValueError("CharTokenizer needs a text with at least one character, got an empty one")
        not_chars = [c for c in chars if not (isinstance(c, str) and len(c) == 1)]
        if not_chars:
            raise ValueError(f"CharTokenizer takes a text or single characters, got {not_chars[:5]!r}")
        self.chars: list[str] = chars
        self.stoi: dict[str, int] = {c: i for i, c in enumerate(chars)}  # string → id
        self.itos: dict[int, str] = dict(enumerate(chars))  # id → string

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        """Text → ids, one per character."""
        try:
            return [self.stoi[c] for c in text]
        except KeyError:
            unknown = sorted(set(text) - self.stoi.keys())
            shown = ", ".join(repr(c) for c in unknown[:10]) + (" …" if len(unknown) > 10 else "")
            raise ValueError(
                f"CharTokenizer cannot encode {len(unknown)} character(s) it has never seen: {shown}. "
                "It was built from a different text; build it from a text that contains them, "
                "or use a byte-level tokenizer (BPETokenizer) that can encode anything."
            ) from None

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Ids (a list or a tensor of shape (T,)) → text."""
        ids = _as_id_list(ids)
        _check_ids(ids, self.vocab_size, "this CharTokenizer")
        return "".join(self.itos[i] for i in ids)

    def save(self, path: str | Path) -> None:
        """Write the vocabulary to a JSON file."""
        data = {"type": "CharTokenizer", "chars": self.chars}
        Path(path).write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> CharTokenizer:
        """Read a tokenizer written by `save`."""
        chars = _read_json(path, "CharTokenizer").get("chars")
        if not isinstance(chars, list):
            raise _damaged(path, "CharTokenizer", f"its chars should be a list of characters, got {chars!r:.60}") from None
        try:
            return cls(chars)
        except ValueError as error:
            raise _damaged(path, "CharTokenizer", f"its chars: {error}") from None

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


# ==================================================================================== byte-level BPE


def get_stats(ids: Sequence[int], counts: dict[tuple[int, int], int] | None = None) -> dict[tuple[int, int], int]:
    """Count adjacent pairs: [1, 2, 3, 1, 2] → {(1, 2): 2, (2, 3): 1, (3, 1): 1} (added to `counts` if given)."""
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def merge(ids: Sequence[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of `pair`, left to right: merge([1, 2, 3, 1, 2], (1, 2), 4) → [4, 3, 4]."""
    out, i, n = [], 0, len(ids)
    first, second = pair
    while i < n:
        if i + 1 < n and ids[i] == first and ids[i + 1] == second:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _merge_and_count(
    ids: list[int], pair: tuple[int, int], new_id: int, weight: int, changes: defaultdict[tuple[int, int], int]
) -> tuple[list[int], list[tuple[int, int]]]:
    """`merge(ids, pair, new_id)`, also noting in `changes` how each pair's count moves (times
    `weight`, the number of times this word occurs). Returns (new ids, the pairs it created).

    Only the neighbours of a merged pair change: in  x a b y  → x X y  the pairs (x, a), (a, b),
    (b, y) go and (x, X), (X, y) come. When two merges touch (a b a b → X X), the pair between
    them, (b, a), becomes (X, X); so each merge handles its left side, and its right side only
    when no merge follows right after.
    """
    first, second = pair
    out: list[int] = []
    born: list[tuple[int, int]] = []
    start, n = 0, len(ids)
    while True:
        try:
            i = ids.index(first, start)  # jump to the next `first` (a fast scan in C)
        except ValueError:
            break
        if i + 1 == n:
            break
        if ids[i + 1] != second:
            out.extend(ids[start : i + 1])
            start = i + 1
            continue
        out.extend(ids[start:i])
        changes[pair] -= weight
        if out:  # left side: (x, a) → (x, X), where x may itself be a new X
            gone, new = (ids[i - 1], first), (out[-1], new_id)
            changes[gone] -= weight
            changes[new] += weight
            born.append(new)
        next_is_a_merge = i + 3 < n and ids[i + 2] == first and ids[i + 3] == second
        if i + 2 < n and not next_is_a_merge:  # right side: (b, y) → (X, y)
            gone, new = (second, ids[i + 2]), (new_id, ids[i + 2])
            changes[gone] -= weight
            changes[new] += weight
            born.append(new)
        out.append(new_id)
        start = i + 2
    out.extend(ids[start:])
    return out, born


def apply_merges(
    ids: list[int],
    rank_of: Callable[[tuple[int, int]], int | None],
    token_of: Callable[[int], int] | None = None,
) -> list[int]:
    """Byte-pair encode one chunk: merge the adjacent pair of lowest rank (of equal ones, the
    leftmost), repeat until no adjacent pair has a rank. (n,) ids → (m,) ids, m ≤ n. Chapter 06a.

    `rank_of(pair)` is the merge's rank (None: never merged); `token_of(rank)` the id of the token
    that merge makes (None: the rank is that id, as in `BPETokenizer`, where merge 256 makes token
    256). This is minbpe's loop (find the lowest-ranked pair, merge it, repeat) and tiktoken's order,
    in time that grows like n·log n with the chunk's n tokens, not n² (a long unsplit Chinese
    clause has thousands): the tokens form a linked list, and a heap holds (rank, position) of
    every mergeable adjacent pair. Pop the lowest; if the pair there still has that rank, merge it
    and push the (at most two) new pairs it makes with its neighbours; an entry whose pair has
    since changed is skipped ("lazy deletion", as in training). Positions keep their left-to-right
    order, so of equal ranks the leftmost pair merges first.
    """
    n = len(ids)
    heap = []  # (rank, position of the pair's left token)
    for i in range(n - 1):
        rank = rank_of((ids[i], ids[i + 1]))
        if rank is not None:
            heap.append((rank, i))
    if not heap:
        return ids
    ids = list(ids)
    heapq.heapify(heap)
    pop, push = heapq.heappop, heapq.heappush
    after = list(range(1, n + 1))  # after[i]: the position of the token that follows token i (n: none)
    before = list(range(-1, n - 1))  # before[i]: the token before it (-1: none)
    while heap:
        rank, i = pop(heap)
        j = after[i]
        if j == n or ids[i] < 0 or rank_of((ids[i], ids[j])) != rank:
            continue  # out of date: token i was merged away, or a neighbour changed
        new_id = rank if token_of is None else token_of(rank)
        ids[i], ids[j] = new_id, -1  # token i becomes the merged token; token j is gone
        k = after[i] = after[j]
        if k < n:
            before[k] = i
            right = rank_of((new_id, ids[k]))
            if right is not None:
                push(heap, (right, i))
        h = before[i]
        if h >= 0:
            left = rank_of((ids[h], new_id))
            if left is not None:
                push(heap, (left, h))
    return [token for token in ids if token >= 0]


class BPETokenizer:
    """Byte-level BPE: ids 0–255 are the bytes, then one id per learned merge, then special tokens.

    Make one with `BPETokenizer.train(text, vocab_size)` or `BPETokenizer.load(path)`.

    - ``merges``: ordered dict (id, id) → new id, in the order they were learned;
    - ``special_tokens``: dict string → id, e.g. {"<|endoftext|>": 2047}, ids after the merges;
    - ``pattern``: the regular expression that splits text into chunks before merging.

    Chapter 06a trains a byte-level BPE by hand and checks it against this one and GPT-2's.
    """

    def __init__(
        self,
        merges: dict[tuple[int, int], int] | None = None,
        special_tokens: dict[str, int] | None = None,
        pattern: str = GPT4_SPLIT_PATTERN,
        name: str = "bpe",
    ) -> None:
        self.merges: dict[tuple[int, int], int] = dict(merges or {})
        self.special_tokens: dict[str, int] = dict(special_tokens or {})
        self.pattern = pattern
        self.name = name
        self._split = regex.compile(pattern)

        # The vocabulary: id → the bytes it stands for. A merge's bytes are its pair's bytes joined.
        self.vocab: dict[int, bytes] = {i: bytes([i]) for i in range(256)}
        for expected_id, ((a, b), new_id) in enumerate(self.merges.items(), start=256):
            if new_id != expected_id or a >= new_id or b >= new_id:
                raise ValueError(
                    f"merge number {expected_id - 256} is ({a}, {b}) → {new_id}, but merges must give "
                    f"ids 256, 257, … in order, each made of earlier ids (expected → {expected_id})"
                )
            self.vocab[new_id] = self.vocab[a] + self.vocab[b]
        first_special = 256 + len(self.merges)
        for offset, (token, token_id) in enumerate(self.special_tokens.items()):
            if token_id != first_special + offset:
                raise ValueError(
                    f"special token {token!r} has id {token_id}, but special tokens take the ids right "
                    f"after the merges: expected {first_special + offset}"
                )
            self.vocab[token_id] = token.encode("utf-8")
        self._special_splits: dict[frozenset[str], regex.Pattern] = {}  # allowed set → its regex
        self._cache: dict[str, list[int]] = {}  # chunk → ids: text repeats the same words a lot

    # ------------------------------------------------------------------ training

    @classmethod
    def train(
        cls,
        text: str,
        vocab_size: int,
        *,
        special_tokens: Sequence[str] = (ENDOFTEXT,),
        pattern: str = GPT4_SPLIT_PATTERN,
        verbose: bool = False,
        name: str = "bpe",
    ) -> BPETokenizer:
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from `text`.

        Pairs are counted over distinct chunks, weighted by how often each chunk occurs. After a
        merge only the chunks that held the pair are touched, and in them only the pairs next to
        each merge change count. Ties (pairs with the same count) go to the smallest pair (a, b),
        so training is deterministic. Special tokens found in `text` are cut out first: they are
        never merged with their neighbours. Prints progress if `verbose`.
        """
        special_tokens = list(special_tokens)
        if len(set(special_tokens)) != len(special_tokens) or not all(special_tokens):
            raise ValueError(f"special tokens must be distinct non-empty strings, got {special_tokens!r}")
        smallest = 256 + len(special_tokens)
        if not isinstance(vocab_size, int) or vocab_size < smallest:
            raise ValueError(
                f"vocab_size must be ≥ {smallest} (256 byte tokens + {len(special_tokens)} special "
                f"token(s)), got {vocab_size!r}"
            )
        num_merges = vocab_size - smallest

        # 1-2. Split into chunks; keep each distinct chunk once, as a list of byte ids, with its count.
        split = regex.compile(pattern)
        pieces = regex.split("|".join(map(regex.escape, special_tokens)), text) if special_tokens else [text]
        chunk_counts = Counter(chunk for piece in pieces for chunk in split.findall(piece))
        words: list[list[int]] = [list(chunk.encode("utf-8")) for chunk in chunk_counts]
        counts: list[int] = list(chunk_counts.values())

        # Pair counts, and for each pair the words that contain (or once contained) it.
        stats: dict[tuple[int, int], int] = {}
        where: dict[tuple[int, int], list[int]] = {}
        for w, (ids, count) in enumerate(zip(words, counts)):
            for pair in zip(ids, ids[1:]):
                stats[pair] = stats.get(pair, 0) + count
                where.setdefault(pair, []).append(w)
        # A heap of (-count, pair): the top is the most frequent pair, ties → the smallest pair.
        # Counts change as we merge; instead of updating entries we push new ones and skip
        # entries whose count is out of date when they reach the top ("lazy deletion").
        heap = [(-count, pair) for pair, count in stats.items()]
        heapq.heapify(heap)

        merges: dict[tuple[int, int], int] = {}
        vocab = {i: bytes([i]) for i in range(256)}  # only for the verbose report
        report_every = max(1, num_merges // 10)
        while len(merges) < num_merges:
            while heap and stats.get(heap[0][1], 0) != -heap[0][0]:
                heapq.heappop(heap)  # out of date
            if not heap:
                warnings.warn(
                    f"BPE training stopped after {len(merges)} merges: no pair of tokens is left to merge "
                    f"(the text is too short for vocab_size={vocab_size}); the vocabulary has "
                    f"{256 + len(merges) + len(special_tokens)} tokens",
                    stacklevel=2,
                )
                break
            minus_count, pair = heapq.heappop(heap)
            new_id = 256 + len(merges)
            merges[pair] = new_id
            vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]

            # 3. Merge the pair in every word that has it; collect how each pair's count changes.
            changes: defaultdict[tuple[int, int], int] = defaultdict(int)
            for w in set(where.pop(pair)):
                words[w], born = _merge_and_count(words[w], pair, new_id, counts[w], changes)
                for p in born:
                    where.setdefault(p, []).append(w)
            for p, change in changes.items():
                if change == 0:
                    continue
                stats[p] = stats.get(p, 0) + change
                if stats[p] > 0:
                    heapq.heappush(heap, (-stats[p], p))
                else:  # gone for good: a merge only ever makes pairs that hold the new id
                    del stats[p]
                    where.pop(p, None)

            if verbose and (len(merges) <= 10 or len(merges) % report_every == 0 or len(merges) == num_merges):
                print(
                    f"merge {len(merges):>5}/{num_merges}: {pair[0]:>5} + {pair[1]:>5} → {new_id:>5} "
                    f"{vocab[new_id].decode('utf-8', errors='replace')!r} ({-minus_count} times)"
                )

        specials = {token: 256 + len(merges) + i for i, token in enumerate(special_tokens)}
        return cls(merges, specials, pattern=pattern, name=name)

    # ------------------------------------------------------------------ encoding and decoding

    @property
    def vocab_size(self) -> int:
        return 256 + len(self.merges) + len(self.special_tokens)

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes one token stands for: token_bytes(101) → b'e'."""
        if token_id not in self.vocab:
            raise ValueError(f"this BPETokenizer has ids 0 … {self.vocab_size - 1}, got {token_id!r}")
        return self.vocab[token_id]

    def _encode_chunk(self, chunk: bytes) -> list[int]:
        """Apply the merges to one chunk by rank: always the earliest-learned pair first, and of
        several equal pairs the leftmost one (`apply_merges`; a merge's rank is its new id, 256 =
        learned first). Same ids as minbpe's loop and as tiktoken."""
        return apply_merges(list(chunk), self.merges.get)

    def encode_ordinary(self, text: str) -> list[int]:
        """Text → ids, treating special-token strings as ordinary text."""
        try:
            return self._encode_ordinary(text)
        except UnicodeEncodeError:
            raise _lone_surrogate(text) from None

    def _encode_ordinary(self, text: str) -> list[int]:
        ids: list[int] = []
        cache = self._cache
        for chunk in self._split.findall(text):
            chunk_ids = cache.get(chunk)
            if chunk_ids is None:
                chunk_ids = self._encode_chunk(chunk.encode("utf-8"))
                if len(cache) >= 200_000:
                    cache.clear()  # keep memory bounded on huge texts
                cache[chunk] = chunk_ids
            ids.extend(chunk_ids)
        return ids

    def encode(self, text: str, allowed_special: AllowedSpecial = "all") -> list[int]:
        """Text → ids. ``allowed_special`` says which special-token strings in `text` become
        their special id: "all" (default), "none" (all are encoded as ordinary text), or a set
        of them. (tiktoken's default is stricter: it raises if the text contains one.)"""
        if allowed_special == "all":
            allowed = set(self.special_tokens)
        elif allowed_special == "none":
            allowed = set()
        elif isinstance(allowed_special, (set, frozenset)):
            unknown = set(allowed_special) - self.special_tokens.keys()
            if unknown:
                raise ValueError(
                    f"allowed_special has {sorted(unknown)!r}, which are not special tokens of this "
                    f"tokenizer; its special tokens are {sorted(self.special_tokens)!r}"
                )
            allowed = set(allowed_special)
        else:
            raise ValueError(f'allowed_special must be "all", "none" or a set of strings, got {allowed_special!r}')
        try:
            return self._encode(text, allowed)
        except UnicodeEncodeError:
            raise _lone_surrogate(text) from None

    def _encode(self, text: str, allowed: set[str]) -> list[int]:
        if not allowed:
            return self._encode_ordinary(text)
        key = frozenset(allowed)
        if key not in self._special_splits:
            # Longest first, so a special token wins over another one that is a prefix of it.
            alternatives = "|".join(regex.escape(s) for s in sorted(key, key=len, reverse=True))
            self._special_splits[key] = regex.compile(f"({alternatives})")
        ids: list[int] = []
        # split() with a capturing group keeps the separators: odd positions are special tokens.
        for i, part in enumerate(self._special_splits[key].split(text)):
            if i % 2 == 1:
                ids.append(self.special_tokens[part])
            elif part:
                ids.extend(self._encode_ordinary(part))
        return ids

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Ids (a list or a tensor (T,)) → text. Bytes that are not valid UTF-8 (a sequence cut in
        the middle of a character) show as the replacement character '�'."""
        ids = _as_id_list(ids)
        _check_ids(ids, self.vocab_size, "this BPETokenizer")
        return b"".join(self.vocab[i] for i in ids).decode("utf-8", errors="replace")

    # ------------------------------------------------------------------ saving and loading

    def save(self, path: str | Path) -> None:
        """Write the tokenizer to a human-readable JSON file: one merge per line, with its text."""
        lines = [
            "{",
            '  "type": "BPETokenizer",',
            '  "version": 1,',
            f'  "name": {json.dumps(self.name, ensure_ascii=False)},',
            f'  "pattern": {json.dumps(self.pattern, ensure_ascii=False)},',
            f'  "special_tokens": {json.dumps(self.special_tokens, ensure_ascii=False)},',
            '  "merges_note": "[first id, second id, the new token as text]; the new ids are 256, 257, … in order",',
            '  "merges": [',
        ]
        entries = [
            f"    [{a}, {b}, {json.dumps(self.vocab[i].decode('utf-8', errors='replace'), ensure_ascii=False)}]"
            for (a, b), i in self.merges.items()
        ]
        lines += [",\n".join(entries)] if entries else []
        lines += ["  ]", "}", ""]
        Path(path).write_text("\n".join(lines), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> BPETokenizer:
        """Read a tokenizer written by `save`."""
        kind = "BPETokenizer"
        data = _read_json(path, kind)
        try:
            merges = {(int(m[0]), int(m[1])): 256 + i for i, m in enumerate(data["merges"])}
        except (KeyError, TypeError, ValueError, IndexError):
            shown = f"got {data['merges']!r:.60}" if "merges" in data else "it has none"
            raise _damaged(path, kind, f"its merges should be a list of [first id, second id, text], {shown}") from None
        specials, pattern = data.get("special_tokens"), data.get("pattern")
        if not isinstance(specials, dict):
            raise _damaged(path, kind, f"its special_tokens should be a dict text → id, got {specials!r:.60}")
        if not isinstance(pattern, str):
            raise _damaged(path, kind, f"its pattern should be a regular expression, got {pattern!r:.60}")
        try:
            return cls(merges, specials, pattern=pattern, name=data.get("name", "bpe"))
        except regex.error as error:
            raise _damaged(path, kind, f"its pattern {pattern!r:.60} is not a regular expression ({error})") from None
        except ValueError as error:  # merges or special ids out of order: __init__ says which
            raise _damaged(path, kind, str(error)) from None

    def __repr__(self) -> str:
        return (
            f"BPETokenizer(name={self.name!r}, vocab_size={self.vocab_size}, merges={len(self.merges)}, "
            f"special_tokens={list(self.special_tokens)})"
        )


# ==================================================================================== GPT-2 via tiktoken


class GPT2Tokenizer:
    """GPT-2's byte-level BPE (50,257 tokens) run by `tiktoken`, with the course's interface.

    ``encoding`` is the underlying ``tiktoken.Encoding`` for anything beyond encode/decode.
    """

    def __init__(self, encoding: tiktoken.Encoding, name: str = "gpt2") -> None:
        self.encoding = encoding
        self.name = name

    @property
    def vocab_size(self) -> int:
        return self.encoding.n_vocab

    @property
    def special_tokens(self) -> dict[str, int]:
        return {s: self.encoding.encode_single_token(s) for s in self.encoding.special_tokens_set}

    def encode(self, text: str, allowed_special: AllowedSpecial = "all") -> list[int]:
        """Text → ids; ``allowed_special`` as in `BPETokenizer.encode` ("all" by default)."""
        if allowed_special == "none":
            return self.encoding.encode_ordinary(text)
        return self.encoding.encode(text, allowed_special=allowed_special, disallowed_special=())

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Ids (a list or a tensor (T,)) → text."""
        ids = _as_id_list(ids)
        _check_ids(ids, self.vocab_size, "GPT-2's tokenizer")
        return self.encoding.decode(ids, errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes one token stands for: token_bytes(995) → b' world'."""
        _check_ids([token_id], self.vocab_size, "GPT-2's tokenizer")
        return self.encoding.decode_single_token_bytes(token_id)

    def __repr__(self) -> str:
        return f"GPT2Tokenizer(name={self.name!r}, vocab_size={self.vocab_size})"


@lru_cache(maxsize=4)
def _gpt2_encoding(ranks_path: str) -> tiktoken.Encoding:
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    # A damaged or different file would build a wrong GPT-2. tiktoken checks expected_hash too, but
    # its message speaks of a download to try again; this one says which file and how to restore it.
    with open(ranks_path, "rb") as f:
        found = hashlib.file_digest(f, "sha256").hexdigest()
    if found != GPT2_RANKS_SHA256:
        from .files import DamagedFileError

        raise DamagedFileError(
            ranks_path, f"is not GPT-2's ranks file: its sha256 is {found[:12]}…, GPT-2's is {GPT2_RANKS_SHA256[:12]}…, "
            "so it is damaged or a different file",
            "Restore the course's copy with `git checkout -- datasets/gpt2/gpt2.tiktoken` (or rebuild it: "
            "`python datasets/build.py gpt2_bpe`), or give the path of an intact gpt2.tiktoken."
        )
    ranks = load_tiktoken_bpe(ranks_path, expected_hash=GPT2_RANKS_SHA256)
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=GPT2_SPLIT_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={ENDOFTEXT: 50256},
        explicit_n_vocab=50257,
    )


def gpt2_tokenizer(ranks_path: str | Path | None = None) -> GPT2Tokenizer:
    """GPT-2's tokenizer, built offline from the shipped ranks file (``datasets/gpt2/gpt2.tiktoken``).

    >>> gpt2_tokenizer().encode("Hello world")
    [15496, 995]

    Chapter 06a compares it with our BPE; 06c loads GPT-2's weights to go with it.
    """
    if ranks_path is None:
        from labkit.data import gpt2_ranks_path

        ranks_path = gpt2_ranks_path()
    path = Path(ranks_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"GPT-2's ranks file is missing: {path}. It ships with the course as datasets/gpt2/gpt2.tiktoken; "
            "rebuild it with `python datasets/build.py gpt2_bpe`."
        )
    return GPT2Tokenizer(_gpt2_encoding(str(path.resolve())))


# ==================================================================================== comparing


def compare_tokenizers(text: str, tokenizers: dict[str, Tokenizer]) -> list[dict[str, Any]]:
    """Encode the same text with each tokenizer: one row per tokenizer, for the chapter's table.

    Each row: ``tokenizer`` (the dict key), ``vocab_size``, ``tokens`` (how many ids),
    ``chars_per_token`` (higher = shorter sequences for the model), ``bytes_per_token``,
    ``round_trip`` (decode(encode(text)) == text) and ``error`` (why encoding failed, else None:
    a CharTokenizer cannot encode characters it has never seen).

    Chapter 06a tokenizes the same text three ways with it.
    """
    rows = []
    n_bytes = len(text.encode("utf-8"))
    for name, tokenizer in tokenizers.items():
        row: dict[str, Any] = {"tokenizer": name, "vocab_size": tokenizer.vocab_size, "tokens": None,
                               "chars_per_token": None, "bytes_per_token": None, "round_trip": False,
                               "error": None}
        try:
            ids = tokenizer.encode(text)
        except ValueError as error:
            row["error"] = str(error)
        else:
            n = len(ids)
            row.update(
                tokens=n,
                chars_per_token=len(text) / n if n else float("nan"),
                bytes_per_token=n_bytes / n if n else float("nan"),
                round_trip=tokenizer.decode(ids) == text,
            )
        rows.append(row)
    return rows
