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

Nothing here downloads anything: ``datasets/build.py`` rebuilds the files from the package
registries they came from (see ``datasets/README.md``).
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from torchvision.datasets import MNIST

DATA_DIR_ENV = "LABKIT_DATA_DIR"
DATA_DIR: Path = Path(os.environ.get(DATA_DIR_ENV) or Path(__file__).resolve().parent.parent / "datasets")
SUMS_FILE = "SHA256SUMS"

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
}


def _entry(name: str) -> DatasetEntry:
    """Look a dataset up by name, or say which names exist."""
    if name not in REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(map(repr, REGISTRY))}")
    return REGISTRY[name]


def class_names(name: str) -> list[str]:
    """Class names of a dataset, index = label (``[]`` if it has no classes)."""
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


def _expected_sums() -> dict[str, str]:
    """{relative path: sha256} from the data folder's SHA256SUMS (``sha256sum`` format)."""
    path = data_dir() / SUMS_FILE
    if not path.is_file():
        return {}
    sums = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, file = line.split(maxsplit=1)
            sums[file.lstrip("*")] = digest  # "*" marks binary mode in sha256sum's format
    return sums


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
    expected = _expected_sums()
    if not expected:
        raise DatasetError(name, SUMS_FILE, f"is missing or empty, so no file of {name!r} can be checked")
    for file in entry.files:
        path = root / file
        if file not in expected:
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
    """
    entry = _entry(name)
    tables = [f for f in entry.files if f.endswith(".csv")]
    if len(entry.files) != 1 or len(tables) != 1:
        table_sets = [n for n, e in REGISTRY.items() if len(e.files) == 1 and e.files[0].endswith(".csv")]
        raise ValueError(f"dataset {name!r} is not a table (one CSV file); tables: {', '.join(table_sets)}")
    verify(name)
    with open(data_dir() / tables[0], encoding="utf-8", newline="") as f:
        return [{column: _cell(text) for column, text in row.items()} for row in csv.DictReader(f)]
