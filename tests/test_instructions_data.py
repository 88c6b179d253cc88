"""Tests for the instruction-tuning set (datasets/instructions/, chapter 07).

Sizes and balance, the fields, that every exact-match answer really follows from its input,
that each split draws only on the matching part of its sources (no input in two splits, test
reviews only from the review sets' test splits), that the loader checks the checksum, and that
the builder remakes the three files byte for byte from the shipped source files.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

from labkit import data
from labkit.data import DatasetError
from labkit.sums import read_sums

REPO = Path(__file__).resolve().parent.parent
SPLITS = ("train", "val", "test")
PER_PAIR = {"train": 750, "val": 64, "test": 64}  # records per (task, language) in each split
PAIRS = {("sentiment", "en"), ("sentiment", "zh"), ("continue", "en"), ("speaker", "en"),
         ("count_lines", "en"), ("count_lines", "zh"), ("count_chars", "zh"), ("next_line", "zh")}
ANSWERS = {  # the whole set of answers of each closed task
    ("sentiment", "en"): {"positive", "negative"},
    ("sentiment", "zh"): {"正面", "负面"},
    ("count_lines", "en"): {"1", "2", "3", "4", "5"},
    ("count_lines", "zh"): {"四", "八"},
    ("count_chars", "zh"): {"五", "七"},
}
CHINESE_NUMBERS = {"四": 4, "五": 5, "七": 7, "八": 8}
REVIEW_SET = {"en": "rotten_tomatoes", "zh": "chinese_reviews"}


@pytest.fixture(autouse=True)
def real_data_dir(monkeypatch):
    """Every test starts from the repository's datasets/, whatever the caller's environment says."""
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(data, "DATA_DIR", REPO / "datasets")


@cache
def records(split: str) -> tuple[dict[str, str], ...]:
    return tuple(data.load_instructions(split))


def recorded_sha256(file: str) -> str:
    sums, _ = read_sums(REPO / "datasets" / "SHA256SUMS")
    assert file in sums, f"{file} has no line in SHA256SUMS"
    return sums[file]


# --------------------------------------------------------------------------- sizes, fields, balance


@pytest.mark.parametrize("split", SPLITS)
def test_sizes_and_balance_across_tasks_and_languages(split):
    counts = Counter((r["task"], r["lang"]) for r in records(split))
    assert set(counts) == PAIRS
    assert set(counts.values()) == {PER_PAIR[split]}
    assert len(records(split)) == 8 * PER_PAIR[split]
    languages = Counter(r["lang"] for r in records(split))
    assert languages["en"] == languages["zh"] == 4 * PER_PAIR[split]


@pytest.mark.parametrize("split", SPLITS)
def test_fields_are_the_five_strings(split):
    for r in records(split):
        assert list(r) == ["instruction", "input", "output", "task", "lang"]
        assert all(isinstance(value, str) for value in r.values())
        assert r["instruction"] and r["input"] and r["output"], r
        assert r["output"] == r["output"].strip() and r["input"] == r["input"].strip(), r
        assert "\r" not in r["input"] + r["output"] and "\t" not in r["output"]
        assert len(r["instruction"]) + len(r["input"]) + len(r["output"]) <= 400, "fits a small model's context"


@pytest.mark.parametrize("split", SPLITS)
def test_closed_answers_are_short_and_balanced(split):
    for pair, answers in ANSWERS.items():
        found = Counter(r["output"] for r in records(split) if (r["task"], r["lang"]) == pair)
        assert set(found) == answers, pair
        assert max(found.values()) - min(found.values()) <= 1, f"{pair}: answers not balanced: {found}"


def test_instruction_wording_varies_within_each_task():
    for pair in PAIRS:
        wordings = {r["instruction"] for r in records("train") if (r["task"], r["lang"]) == pair}
        assert len(wordings) >= 4, f"{pair}: only {len(wordings)} wordings"


def test_exact_match_tasks_are_the_closed_ones():
    assert set(data.EXACT_MATCH_TASKS) == {task for task, _ in ANSWERS} | {"speaker"}
    assert {task for task, _ in PAIRS} - set(data.EXACT_MATCH_TASKS) == {"continue", "next_line"}



def test_exact_match_questions_are_per_task_seeded_and_in_task_order():
    picked = data.exact_match_questions("test", per_task=12, seed=0)
    tasks = [r["task"] for r in picked]
    assert tasks == sorted(tasks) and Counter(tasks) == {task: 12 for task in set(tasks)}
    assert set(tasks) <= set(data.EXACT_MATCH_TASKS) and all(r["lang"] == "en" for r in picked)
    assert all(r in data.load_instructions("test") for r in picked)
    assert picked == data.exact_match_questions("test", per_task=12, seed=0)     # the same every time
    assert picked != data.exact_match_questions("test", per_task=12, seed=1)
    assert data.exact_match_questions("test", per_task=5)[:5] == picked[:5]      # a prefix of the same order
    chinese = data.exact_match_questions("test", per_task=3, lang="zh")
    assert chinese and all(r["lang"] == "zh" for r in chinese)
    with pytest.raises(ValueError, match="lang='fr'.*'en' and 'zh'"):
        data.exact_match_questions(lang="fr")


# --------------------------------------------------------------------------- answers follow from the inputs


@pytest.mark.parametrize("split", SPLITS)
def test_every_counting_and_speaker_answer_is_right(split):
    for r in records(split):
        task, lang, text, answer = r["task"], r["lang"], r["input"], r["output"]
        if (task, lang) == ("count_lines", "en"):
            assert int(answer) == len(text.split("\n")), r
        elif task in ("count_lines", "count_chars") and lang == "zh":
            lines = re.split("[，。]", text)[:-1]
            assert text[-1] == "。" and len(set(map(len, lines))) == 1, r
            assert CHINESE_NUMBERS[answer] == (len(lines) if task == "count_lines" else len(lines[0])), r
        elif task == "speaker":
            speakers = re.findall(r"^([A-Z0-9][A-Z0-9 ,'&-]*):$", text, flags=re.MULTILINE)
            assert len(speakers) == 2 and speakers[0] != speakers[1], r
            which = 0 if "first" in r["instruction"] else 1
            assert ("second" in r["instruction"]) == (which == 1), r
            assert answer == speakers[which], r
    asks = Counter("first" in r["instruction"] for r in records(split) if r["task"] == "speaker")
    assert abs(asks[True] - asks[False]) <= 1, "first and second speaker asked equally often"


# --------------------------------------------------------------------------- splits: disjoint, no leakage


def test_no_input_is_in_two_splits():
    seen: dict[str, str] = {}
    for split in SPLITS:
        for r in records(split):
            assert r["input"] not in seen, f"{r['input'][:60]!r} is in {seen.get(r['input'])} and {split}"
            seen[r["input"]] = split


@pytest.mark.parametrize("split", SPLITS)
def test_reviews_come_only_from_the_matching_review_split(split):
    for lang, name in REVIEW_SET.items():
        texts, labels = data.load_reviews(name, split)
        label_of = dict(zip(texts, labels))
        positive = "positive" if lang == "en" else "正面"
        for r in records(split):
            if (r["task"], r["lang"]) == ("sentiment", lang):
                assert r["input"] in label_of, f"{split} review not in {name}/{split}.tsv: {r['input'][:60]!r}"
                assert (r["output"] == positive) == (label_of[r["input"]] == 1), r


@pytest.mark.parametrize("split", SPLITS)
def test_passages_come_only_from_the_matching_part_of_the_books(split):
    part = "train" if split == "train" else "val"
    books = [data.load_text(name, part) for name in ("shakespeare", "moby_dick")]
    sources = Counter()
    for r in records(split):
        if r["task"] == "continue":
            found = [i for i, book in enumerate(books) if r["input"] in book and r["output"] in book]
            assert found, f"{split} passage not in the books' {part} part: {r['input'][:60]!r}"
            sources[found[0]] += 1
            assert 110 <= len(r["input"]) <= 200 and 45 <= len(r["output"]) <= 100, r
        elif r["task"] in ("speaker", "count_lines") and r["lang"] == "en":
            assert r["input"] in books[0], f"{split} speech not in Shakespeare's {part} part: {r['input'][:60]!r}"
    assert sources[0] == sources[1] == PER_PAIR[split] // 2, "half Shakespeare, half Moby-Dick"


def test_val_and_test_passages_come_from_different_halves_of_the_val_text():
    for name in ("shakespeare", "moby_dick"):
        val_text = data.load_text(name, "val")
        middle = len(val_text) // 2
        for split, half in (("val", val_text[:middle]), ("test", val_text[middle:])):
            for r in records(split):
                if r["task"] == "continue" and r["input"] in val_text:
                    assert r["input"] in half and r["output"] in half, (name, split, r["input"][:60])


@pytest.mark.parametrize("split", SPLITS)
def test_poems_come_only_from_the_matching_poem_split(split):
    poems = data.load_poems("train" if split == "train" else "val")
    first_lines = {}
    for poem in poems:
        n = poem.index("，")
        first_lines.setdefault(poem[:n], set()).add(poem[n + 1 : 2 * n + 1])
    other_poems = set(data.load_poems("val" if split == "train" else "train"))
    for r in records(split):
        if r["task"] in ("count_lines", "count_chars") and r["lang"] == "zh":
            assert r["input"] in poems and r["input"] not in other_poems, r
        elif r["task"] == "next_line":
            assert r["output"] in first_lines.get(r["input"], ()), r
            assert len(r["input"]) == len(r["output"]) in (5, 7), r
            assert f"{'五' if len(r['input']) == 5 else '七'}言" in r["instruction"] or "言" not in r["instruction"]
    if split != "train":  # val and test share the val poems: each takes its own
        val_poems = {r["input"] for r in records("val") if r["task"] == "count_lines" and r["lang"] == "zh"}
        test_poems = {r["input"] for r in records("test") if r["task"] == "count_lines" and r["lang"] == "zh"}
        assert not val_poems & test_poems


# --------------------------------------------------------------------------- loader and checksum


def test_files_are_in_sha256sums_and_verify():
    for file in data.REGISTRY["instructions"].files:
        assert hashlib.sha256((REPO / "datasets" / file).read_bytes()).hexdigest() == recorded_sha256(file)
    data.verify("instructions")


def test_a_damaged_file_stops_the_loader_with_the_fix(tmp_path, monkeypatch):
    for file in data.REGISTRY["instructions"].files:
        (tmp_path / file).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "datasets" / file, tmp_path / file)
    shutil.copy(REPO / "datasets" / "SHA256SUMS", tmp_path / "SHA256SUMS")
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    assert len(data.load_instructions("val")) == 512  # the copy loads
    file = "instructions/test.jsonl"
    raw = bytearray((tmp_path / file).read_bytes())
    raw[1000] ^= 0x01  # one bit
    (tmp_path / file).write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match="wrong checksum") as info:
        data.load_instructions("test")
    assert info.value.file == file and "python datasets/build.py instructions" in str(info.value)


def test_unknown_split_lists_the_valid_ones():
    with pytest.raises(ValueError, match="'train', 'val', 'test'"):
        data.load_instructions("validation")


# --------------------------------------------------------------------------- the builder


def test_rebuild_from_the_shipped_files_is_byte_identical(build_script, tmp_path):
    for file in build_script.INSTRUCTION_SOURCES:
        (tmp_path / "out" / file).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "datasets" / file, tmp_path / "out" / file)
    (tmp_path / "work").mkdir()
    written = build_script.build_instructions(tmp_path / "out", tmp_path / "work")
    assert written == list(data.REGISTRY["instructions"].files)
    for file in written:
        assert build_script.sha256_of(tmp_path / "out" / file) == recorded_sha256(file), file


def test_builder_stops_when_a_source_file_is_missing(build_script, tmp_path):
    for file in build_script.INSTRUCTION_SOURCES:
        if file != "tang_poems/poems.txt":
            (tmp_path / file).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / "datasets" / file, tmp_path / file)
    with pytest.raises(SystemExit, match=r"(?s)tang_poems/poems.txt is missing.*Build those first"):
        build_script.build_instructions(tmp_path, tmp_path)
    assert not (tmp_path / "instructions").exists(), "nothing is written"


def test_builder_comes_after_its_sources_and_reads_only_shipped_files(build_script):
    names = list(build_script.BUILDERS)
    sources = {file.split("/")[0] for file in build_script.INSTRUCTION_SOURCES}
    registry_folders = {f.split("/")[0]: n for n, e in data.REGISTRY.items() for f in e.files}
    source_sets = {registry_folders[folder] for folder in sources}
    assert source_sets == {"shakespeare", "moby_dick", "tang_poems", "rotten_tomatoes", "chinese_reviews"}
    assert all(names.index(name) < names.index("instructions") for name in source_sets)
    # the Chinese font keeps every character of the Chinese files, instructions included: built after them
    font_sources = {registry_folders[f.split("/")[0]] for f in build_script.CJK_TEXT_SOURCES}
    assert all(names.index(name) < names.index("cjk_font") for name in font_sources)


def test_cut_at_word_never_cuts_a_word(build_script):
    text = "one two three four five six seven eight nine ten eleven twelve"
    for key in ("00000000", "0000ffff", "ffffffff", "12345678"):
        start, end = build_script.cut_at_word(text, 4, 20, 30, key)
        piece = text[start:end]
        assert start == 4 and 15 <= len(piece) <= 30 and piece == piece.strip()
        assert end == len(text) or text[end] == " ", piece
    assert build_script.cut_at_word("short text", 0, 20, 30, "00000000") == (0, 0), "too short: nothing"
