"""Tests for labkit.tokenizers: characters, byte-level BPE (against slow reference versions
written here from the definition) and GPT-2's tokenizer (against ids published by OpenAI)."""
import json
import random

import pytest
import regex
import torch

from labkit.tokenizers import (
    GPT4_SPLIT_PATTERN,
    BPETokenizer,
    CharTokenizer,
    GPT2Tokenizer,
    Tokenizer,
    compare_tokenizers,
    gpt2_tokenizer,
)

ENGLISH = "The quick brown fox jumps over the lazy dog. It's 2024, isn't it?\n\tTabs  and   spaces."
CHINESE = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"
EMOJI = "I 🙂 tokenizers 👩‍💻🇨🇳!"
SAMPLES = [ENGLISH, CHINESE, EMOJI, "", " ", "\n\n", "a", ENGLISH + CHINESE + EMOJI]


def random_text(rng: random.Random, n: int) -> str:
    """Words from a small alphabet (so pairs repeat, including runs like 'aaaa'), with Chinese,
    emoji, digits, punctuation and odd whitespace thrown in."""
    pieces = ["a", "b", "ab", "aaaa", "th", "e", "the", " ", "  ", "\n", "你", "好", "。", "🙂", "'s",
              "12345", "!", "é", "\t", "<|", "|>"]
    return "".join(rng.choice(pieces) for _ in range(n))


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    rng = random.Random(0)
    text = (ENGLISH + " " + CHINESE + " " + EMOJI + " ") * 20 + random_text(rng, 2000)
    return BPETokenizer.train(text, vocab_size=400)


# ============================================================================ CharTokenizer


def test_char_tokenizer_vocabulary_is_the_sorted_characters():
    tok = CharTokenizer("hello")
    assert tok.chars == ["e", "h", "l", "o"]
    assert tok.vocab_size == 4
    assert tok.encode("hole") == [1, 3, 2, 0]
    assert tok.decode([1, 3, 2, 0]) == "hole"
    assert CharTokenizer(["b", "a"]).encode("ab") == [0, 1]


@pytest.mark.parametrize("text", [ENGLISH, CHINESE, EMOJI, ""])
def test_char_tokenizer_round_trips_its_own_text(text):
    tok = CharTokenizer(text or "x")
    assert tok.decode(tok.encode(text)) == text
    assert len(tok.encode(text)) == len(text)


def test_char_tokenizer_decodes_a_tensor():
    tok = CharTokenizer(ENGLISH)
    ids = torch.tensor(tok.encode(ENGLISH))
    assert tok.decode(ids) == ENGLISH
    with pytest.raises(ValueError, match=r"shape \(T,\).*\(2, "):
        tok.decode(ids.view(2, -1))


def test_char_tokenizer_names_unknown_characters():
    tok = CharTokenizer("abc")
    with pytest.raises(ValueError) as error:
        tok.encode("abcxyx")
    message = str(error.value)
    assert "'x'" in message and "'y'" in message and "'a'" not in message
    assert "different text" in message


def test_char_tokenizer_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one character"):
        CharTokenizer("")
    with pytest.raises(ValueError, match="single characters"):
        CharTokenizer(["ab", "c"])
    with pytest.raises(ValueError, match=r"ids 0 … 2, got \[3\]"):
        CharTokenizer("abc").decode([0, 3])


def test_char_tokenizer_save_and_load(tmp_path):
    tok = CharTokenizer(CHINESE + ENGLISH)
    tok.save(tmp_path / "chars.json")
    again = CharTokenizer.load(tmp_path / "chars.json")
    assert again.chars == tok.chars
    assert again.encode(CHINESE) == tok.encode(CHINESE)
    assert "床" in (tmp_path / "chars.json").read_text(encoding="utf-8")  # readable, not \u escapes


# ============================================================================ BPE: training


def slow_train(text: str, vocab_size: int, special_tokens: tuple[str, ...]) -> dict:
    """BPE training straight from the definition: recount every pair of every chunk occurrence
    before each merge; the most frequent pair wins, ties go to the smallest pair."""
    pieces = regex.split("|".join(map(regex.escape, special_tokens)), text) if special_tokens else [text]
    chunks = [list(c.encode("utf-8")) for p in pieces for c in regex.findall(GPT4_SPLIT_PATTERN, p)]
    merges = {}
    for new_id in range(256, vocab_size - len(special_tokens)):
        counts: dict = {}
        for ids in chunks:
            for pair in zip(ids, ids[1:]):
                counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))
        merges[best] = new_id
        new_chunks = []
        for ids in chunks:
            out, i = [], 0
            while i < len(ids):
                if ids[i : i + 2] == list(best):
                    out.append(new_id)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            new_chunks.append(out)
        chunks = new_chunks
    return merges


def test_bpe_learns_the_obvious_merge_first():
    tok = BPETokenizer.train("ab ab ab ab cd", vocab_size=256 + 2 + 1)
    a, b, space = ord("a"), ord("b"), ord(" ")
    assert list(tok.merges.items()) == [((a, b), 256), ((space, 256), 257)]
    assert tok.token_bytes(257) == b" ab"
    assert tok.encode("ab ab") == [256, 257]


def test_bpe_ties_go_to_the_smallest_pair():
    tok = BPETokenizer.train("ab cd", vocab_size=256 + 1 + 1)  # pairs (a,b) (' ',c) (c,d): once each
    assert list(tok.merges) == [(ord(" "), ord("c"))]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bpe_training_matches_the_slow_definition(seed):
    text = random_text(random.Random(seed), 1500) + "<|endoftext|>" + random_text(random.Random(seed + 10), 500)
    fast = BPETokenizer.train(text, vocab_size=256 + 1 + 120)
    assert fast.merges == slow_train(text, 256 + 1 + 120, ("<|endoftext|>",))
    assert len(fast.merges) == 120 and fast.vocab_size == 256 + 120 + 1
    assert BPETokenizer.train(text, vocab_size=256 + 1 + 120).merges == fast.merges  # deterministic


def test_bpe_never_merges_across_a_special_token():
    # Were "<|endoftext|>" ordinary text, the tie (60 '<', 124 '|') would be merged first.
    tok = BPETokenizer.train("ab<|endoftext|>" * 20, vocab_size=256 + 1 + 1)
    assert tok.merges == {(ord("a"), ord("b")): 256}
    assert tok.special_tokens == {"<|endoftext|>": 257}
    assert tok.encode("ab<|endoftext|>ab") == [256, 257, 256]


def test_bpe_vocab_size_too_small_is_explained():
    with pytest.raises(ValueError, match=r"vocab_size must be ≥ 257 \(256 byte tokens \+ 1 special token.*got 256"):
        BPETokenizer.train("hello", vocab_size=256)
    with pytest.raises(ValueError, match="vocab_size must be ≥ 258"):
        BPETokenizer.train("hello", vocab_size=257, special_tokens=("<|a|>", "<|b|>"))
    assert BPETokenizer.train("hello", vocab_size=256, special_tokens=()).vocab_size == 256
    with pytest.raises(ValueError, match="distinct non-empty"):
        BPETokenizer.train("hello", vocab_size=300, special_tokens=("<|a|>", "<|a|>"))


def test_bpe_warns_when_the_text_runs_out_of_pairs():
    with pytest.warns(UserWarning, match="stopped after 2 merges"):
        tok = BPETokenizer.train("abc", vocab_size=300)
    assert tok.vocab_size == 256 + 2 + 1


# ============================================================================ BPE: encoding


def slow_encode(tok: BPETokenizer, text: str) -> list[int]:
    """Encoding from the definition: split into chunks, then apply every merge in the order it
    was learned to the whole chunk."""
    ids = []
    for chunk in regex.findall(tok.pattern, text):
        chunk_ids = list(chunk.encode("utf-8"))
        for (a, b), new_id in tok.merges.items():
            out, i = [], 0
            while i < len(chunk_ids):
                if i + 1 < len(chunk_ids) and chunk_ids[i] == a and chunk_ids[i + 1] == b:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(chunk_ids[i])
                    i += 1
            chunk_ids = out
        ids += chunk_ids
    return ids


def test_bpe_encodes_like_tiktoken_with_the_same_ranks(bpe):
    """tiktoken (Rust) merges by rank too: given our tokens as its ranks, it must agree."""
    import tiktoken

    ranks = {bpe.token_bytes(i): i for i in range(256 + len(bpe.merges))}
    encoding = tiktoken.Encoding("ours", pat_str=bpe.pattern, mergeable_ranks=ranks, special_tokens=bpe.special_tokens)
    rng = random.Random(3)
    for text in SAMPLES + [random_text(rng, 400) for _ in range(10)] + ["hello<|endoftext|>world"]:
        assert bpe.encode(text) == encoding.encode(text, allowed_special="all")


@pytest.mark.parametrize("text", SAMPLES)
def test_bpe_round_trips_any_text(bpe, text):
    ids = bpe.encode(text)
    assert bpe.decode(ids) == text
    assert all(0 <= i < bpe.vocab_size for i in ids)


def test_bpe_encoding_matches_the_slow_definition(bpe):
    rng = random.Random(42)
    for _ in range(30):
        text = random_text(rng, rng.randint(0, 300))
        assert bpe.encode(text, allowed_special="none") == slow_encode(bpe, text)
    assert bpe.encode(ENGLISH + CHINESE) == slow_encode(bpe, ENGLISH + CHINESE)
    assert len(bpe.encode(ENGLISH)) < len(ENGLISH.encode("utf-8"))  # it did learn to compress


def rescanning_encode_chunk(merges: dict, chunk: bytes) -> list[int]:
    """`BPETokenizer._encode_chunk` as it was before it used a heap (commit 307363b): rescan the
    ranks of all adjacent pairs for the lowest, merge the leftmost, repeat. Time grows like n²."""
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


@pytest.fixture(scope="module")
def poem_bpe() -> BPETokenizer:
    from labkit.data import load_poems

    return BPETokenizer.train("\n".join(load_poems()[:1500]), vocab_size=700)


def long_chunks(rng: random.Random) -> list[str]:
    """Texts the split pattern leaves whole: long runs of letters, Chinese without punctuation,
    repeats that overlap ('aaaa…'), emoji and digits."""
    from labkit.data import load_poems

    han = regex.sub(r"\P{Han}", "", "".join(load_poems()[:300]))
    letters = "".join(rng.choice(["a", "b", "ab", "aaaa", "th", "e", "the", "é", "你", "好"]) for _ in range(800))
    return [han[:2500], han[2500:2507], "床" * 701, "a" * 999, "ab" * 700 + "a", letters,
            "🙂" * 300, "1234567890" * 50, "\n" * 500, ""]


def test_bpe_long_chunks_encode_as_the_rescanning_loop_did(bpe, poem_bpe):
    """The heap-based merge gives the very ids of the old quadratic loop, chunk by chunk."""
    rng = random.Random(5)
    for tok in (bpe, poem_bpe):
        texts = long_chunks(rng) + SAMPLES + [random_text(rng, 500) for _ in range(20)]
        for text in texts:
            for chunk in regex.findall(tok.pattern, text) + [text]:
                raw = chunk.encode("utf-8")
                assert tok._encode_chunk(raw) == rescanning_encode_chunk(tok.merges, raw), chunk[:20]


def test_bpe_long_chunks_encode_like_tiktoken(poem_bpe):
    import tiktoken

    tok = poem_bpe
    ranks = {tok.token_bytes(i): i for i in range(256 + len(tok.merges))}
    encoding = tiktoken.Encoding("poems", pat_str=tok.pattern, mergeable_ranks=ranks, special_tokens=tok.special_tokens)
    from labkit.data import load_poems

    for text in long_chunks(random.Random(6)) + load_poems()[2000:2050]:
        assert tok.encode(text) == encoding.encode(text, allowed_special="all")


def test_bpe_encode_names_a_lone_surrogate(bpe):
    """Half of a UTF-16 pair is a str character Python allows but UTF-8 cannot encode."""
    for method in (bpe.encode, bpe.encode_ordinary):
        with pytest.raises(ValueError) as info:
            method("good text, then \ud83d alone<|endoftext|>")
        text = str(info.value)
        assert r"'\ud83d'" in text and "position 16" in text and "surrogatepass" in text
        assert "codec" not in text and info.value.__cause__ is None


def test_bpe_special_tokens(bpe):
    eot = bpe.special_tokens["<|endoftext|>"]
    assert eot == bpe.vocab_size - 1
    text = "hello<|endoftext|>你好<|endoftext|>"
    ids = bpe.encode(text)
    assert ids.count(eot) == 2 and bpe.decode(ids) == text
    assert bpe.encode(text, allowed_special={"<|endoftext|>"}) == ids
    plain = bpe.encode(text, allowed_special="none")  # the same characters, as ordinary text
    assert eot not in plain and bpe.decode(plain) == text
    with pytest.raises(ValueError, match="not special tokens"):
        bpe.encode(text, allowed_special={"<|nope|>"})
    with pytest.raises(ValueError, match="allowed_special must be"):
        bpe.encode(text, allowed_special="some")


def test_bpe_several_special_tokens():
    tok = BPETokenizer.train("hello world " * 5, vocab_size=264, special_tokens=("<|user|>", "<|user|><|end|>"))
    user, user_end = tok.special_tokens["<|user|>"], tok.special_tokens["<|user|><|end|>"]
    assert (user, user_end) == (262, 263)
    assert tok.encode("<|user|>hi<|user|><|end|>")[0] == user and tok.encode("x<|user|><|end|>")[-1] == user_end
    only_user = tok.encode("<|user|><|end|>!", allowed_special={"<|user|>"})  # the longer one is plain text
    assert only_user[0] == user and user_end not in only_user
    assert tok.decode(only_user) == "<|user|><|end|>!"


def test_bpe_decode_takes_tensors_and_checks_ids(bpe):
    ids = bpe.encode(ENGLISH)
    assert bpe.decode(torch.tensor(ids)) == ENGLISH
    with pytest.raises(ValueError, match=f"ids 0 … {bpe.vocab_size - 1}, got \\[{bpe.vocab_size}\\]"):
        bpe.decode([bpe.vocab_size])
    assert bpe.decode([0xE4, 0xBD]) == "�"  # half a Chinese character: replaced, not a crash


def test_bpe_save_and_load_give_identical_encodes(bpe, tmp_path):
    path = tmp_path / "bpe.json"
    bpe.save(path)
    data = json.loads(path.read_text(encoding="utf-8"))  # plain JSON a learner can open
    assert data["type"] == "BPETokenizer" and len(data["merges"]) == len(bpe.merges)
    first = next(iter(bpe.merges))
    assert data["merges"][0][:2] == list(first)
    assert data["merges"][0][2] == bpe.token_bytes(256).decode("utf-8", errors="replace")
    again = BPETokenizer.load(path)
    assert again.merges == bpe.merges and again.special_tokens == bpe.special_tokens
    for text in SAMPLES + [random_text(random.Random(7), 500)]:
        assert again.encode(text) == bpe.encode(text)
    with pytest.raises(ValueError, match="not a CharTokenizer file.*BPETokenizer.load"):
        CharTokenizer.load(path)


def test_tokenizer_load_says_which_file_is_not_a_tokenizer(bpe, tmp_path):
    cases = {
        "picture.png": b"\x89PNG\r\n\x1a\n\x00\x00",  # not text
        "notes.txt": b"hello",  # text, not JSON
        "empty.json": b"",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        for cls in (BPETokenizer, CharTokenizer):
            with pytest.raises(ValueError, match=f"{name} is not a {cls.__name__} file: it is not JSON") as info:
                cls.load(tmp_path / name)
            assert info.value.__cause__ is None
    with pytest.raises(FileNotFoundError, match=r"no BPETokenizer file at .*nope\.json.*\.save\("):
        BPETokenizer.load(tmp_path / "nope.json")
    # JSON, but not a tokenizer's: the file, what its "type" is, and which file load expects
    (tmp_path / "config.json").write_text('{"n_layer": 6}', encoding="utf-8")
    (tmp_path / "other.json").write_text('{"type": "GPTConfig"}', encoding="utf-8")
    with pytest.raises(ValueError, match=r'config\.json is not a BPETokenizer file \(it has no "type" field; a '
                                         r'BPETokenizer file says "type": "BPETokenizer"\).*BPETokenizer\.save writes'):
        BPETokenizer.load(tmp_path / "config.json")
    with pytest.raises(ValueError, match=r"other\.json is not a CharTokenizer file \(its \"type\" is 'GPTConfig', not"):
        CharTokenizer.load(tmp_path / "other.json")


@pytest.mark.parametrize("change, what", [
    (lambda d: d.pop("merges"), "merges"),
    (lambda d: d.__setitem__("merges", [[1]]), "merges"),
    (lambda d: d.__setitem__("merges", [[300, 2, "x"]]), "merge number 0"),
    (lambda d: d.__setitem__("special_tokens", ["<|endoftext|>"]), "special_tokens"),
    (lambda d: d.__setitem__("pattern", "(unclosed"), "pattern"),
])
def test_a_damaged_bpe_file_names_the_file_and_the_field(bpe, tmp_path, change, what):
    path = tmp_path / "bpe.json"
    bpe.save(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError) as info:
        BPETokenizer.load(path)
    text = str(info.value)
    assert str(path) in text and what in text and "save" in text
    assert info.value.__cause__ is None


def test_a_damaged_char_file_names_the_file(tmp_path):
    path = tmp_path / "chars.json"
    path.write_text(json.dumps({"type": "CharTokenizer", "chars": 5}), encoding="utf-8")
    with pytest.raises(ValueError, match=f"{path.name}.*chars"):
        CharTokenizer.load(path)


def test_bpe_rejects_inconsistent_merges():
    with pytest.raises(ValueError, match="expected → 256"):
        BPETokenizer({(97, 98): 300})
    with pytest.raises(ValueError, match="made of earlier ids"):
        BPETokenizer({(97, 257): 256})


# ============================================================================ GPT-2


@pytest.fixture(scope="module")
def gpt2() -> GPT2Tokenizer:
    return gpt2_tokenizer()


# Ids from OpenAI's GPT-2 encoder (encoder.json / vocab.bpe), as quoted widely, e.g. in the
# Hugging Face GPT-2 docs ("Hello world" → [15496, 995]).
GPT2_IDS = {
    "Hello world": [15496, 995],
    "hello world": [31373, 995],
    "Hello, world!": [15496, 11, 995, 0],
    "The quick brown fox jumps over the lazy dog.": [464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13],
    " the": [262],
    "\n": [198],
    "!": [0],
    "a": [64],
    "<|endoftext|>": [50256],
}


@pytest.mark.parametrize("text", list(GPT2_IDS))
def test_gpt2_matches_official_ids(gpt2, text):
    assert gpt2.encode(text) == GPT2_IDS[text]
    assert gpt2.decode(GPT2_IDS[text]) == text


def test_gpt2_interface(gpt2):
    assert gpt2.vocab_size == 50257 and gpt2.name == "gpt2"
    assert gpt2.encoding.n_vocab == 50257  # the tiktoken.Encoding itself is there too
    assert gpt2.token_bytes(995) == b" world"
    assert gpt2.special_tokens == {"<|endoftext|>": 50256}
    for text in SAMPLES:
        assert gpt2.decode(gpt2.encode(text)) == text
    assert 50256 not in gpt2.encode("<|endoftext|>", allowed_special="none")
    assert gpt2.decode(torch.tensor([15496, 995])) == "Hello world"
    assert gpt2_tokenizer() is not gpt2 and gpt2_tokenizer().encoding is gpt2.encoding  # ranks read once


def test_gpt2_missing_file_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="ranks file is missing"):
        gpt2_tokenizer(tmp_path / "nope.tiktoken")


def test_gpt2_damaged_ranks_file_is_named_without_download_advice(tmp_path):
    from labkit.data import gpt2_ranks_path

    damaged = bytearray(gpt2_ranks_path().read_bytes())
    damaged[100] ^= 1
    path = tmp_path / "gpt2.tiktoken"
    path.write_bytes(damaged)
    with pytest.raises(ValueError) as info:
        gpt2_tokenizer(path)
    text = str(info.value)
    assert str(path) in text and "damaged" in text and "git checkout -- datasets/gpt2/gpt2.tiktoken" in text
    assert "download" not in text and "try again" not in text
    assert info.value.__cause__ is None


# ============================================================================ comparing


def test_all_tokenizers_share_one_interface(bpe, gpt2):
    for tok in (CharTokenizer(ENGLISH), bpe, gpt2):
        assert isinstance(tok, Tokenizer)
        assert isinstance(tok.name, str)


def test_compare_tokenizers(bpe, gpt2):
    chars = CharTokenizer(ENGLISH)
    rows = compare_tokenizers(ENGLISH, {"char": chars, "bpe": bpe, "gpt2": gpt2})
    assert [r["tokenizer"] for r in rows] == ["char", "bpe", "gpt2"]
    by_name = {r["tokenizer"]: r for r in rows}
    assert by_name["char"]["tokens"] == len(ENGLISH) and by_name["char"]["chars_per_token"] == 1.0
    assert by_name["gpt2"]["tokens"] == len(gpt2.encode(ENGLISH))
    assert by_name["bpe"]["chars_per_token"] == pytest.approx(len(ENGLISH) / len(bpe.encode(ENGLISH)))
    assert by_name["gpt2"]["vocab_size"] == 50257
    assert all(r["round_trip"] and r["error"] is None for r in rows)

    chinese = {r["tokenizer"]: r for r in compare_tokenizers(CHINESE, {"char": chars, "bpe": bpe})}
    assert chinese["char"]["tokens"] is None and not chinese["char"]["round_trip"]
    assert "never seen" in chinese["char"]["error"]
    assert chinese["bpe"]["round_trip"]
    assert chinese["bpe"]["bytes_per_token"] == pytest.approx(len(CHINESE.encode()) / chinese["bpe"]["tokens"])


def test_decode_takes_numpy_ints_but_not_floats(bpe):
    import numpy as np

    ids = bpe.encode(ENGLISH)
    assert bpe.decode(np.array(ids)) == ENGLISH and bpe.decode(list(np.array(ids))) == ENGLISH
    with pytest.raises(ValueError, match=r"integer ids, got 1.5 \(float\)"):
        bpe.decode([1, 1.5])
