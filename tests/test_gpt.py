"""Tests of `labkit.gpt`: sizes, attention, causality, the KV cache, sampling, clear errors, loading
GPT-2's weights from Hugging Face, and our own checkpoints."""
from __future__ import annotations

import json
import sys

import pytest
import torch
from safetensors import safe_open

from labkit.checkpoints import load_checkpoint, save_checkpoint
from labkit.gpt import (
    BF16_ATTENTION_IN_FP32_BELOW,
    GPT,
    PRESETS,
    GPTConfig,
    KVCache,
    filter_logits,
    fused_attention,
    sample_next,
    with_attention,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.py

VOCAB = 11


def tiny(**overrides) -> GPT:
    """A seeded two-layer GPT (block_size 16) in eval mode."""
    torch.manual_seed(0)
    fields = dict(vocab_size=VOCAB, block_size=16, n_layer=2, n_head=2, n_embd=16) | overrides
    return GPT(GPTConfig(**fields)).eval()


def tokens(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(VOCAB, shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ sizes


def textbook_count(V: int, T: int, L: int, C: int) -> int:
    """Embeddings V·C + T·C, per block 12·C² + 13·C (two LayerNorms, qkv, projection, MLP), final LayerNorm."""
    return V * C + T * C + L * (12 * C * C + 13 * C) + 2 * C


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_builds_with_the_textbook_parameter_count(name):
    config = GPTConfig.preset(name, **({} if "vocab_size" in PRESETS[name] else {"vocab_size": 65}))
    with torch.device("meta"):  # shapes only: GPT-2 medium costs no memory here
        model = GPT(config)
    c = config
    assert model.num_parameters() == textbook_count(c.vocab_size, c.block_size, c.n_layer, c.n_embd)


def test_gpt2_preset_is_the_124M_model():
    with torch.device("meta"):
        model = GPT(GPTConfig.preset("gpt2"))
    assert model.num_parameters() == 124_439_808  # Hugging Face's count for "gpt2"
    assert model.num_parameters(non_embedding=True) == 124_439_808 - 50257 * 768 - 1024 * 768
    # nanoGPT's estimate_mfu: 6·N (N without the position embedding) + 12·L·C·T
    assert model.flops_per_token() == 6 * (124_439_808 - 1024 * 768) + 12 * 12 * 768 * 1024


def test_lm_head_and_token_embedding_are_one_matrix():
    model = tiny()
    assert model.lm_head.weight is model.transformer.wte.weight


def test_forward_gives_one_row_of_logits_per_token():
    assert tiny()(tokens(3, 7)).shape == (3, 7, VOCAB)


# ------------------------------------------------------------------ attention and the KV cache


def test_manual_and_sdpa_attention_agree_with_and_without_cache():
    manual = tiny(attention="manual")
    sdpa = GPT(with_attention(manual.config, "sdpa")).eval()
    sdpa.load_state_dict(manual.state_dict())
    idx = tokens(3, 16)
    full = manual(idx)
    assert torch.allclose(sdpa(idx), full, atol=1e-5)
    for model in (manual, sdpa):
        # a prompt of 5 tokens, then 3 at once, then one at a time: each time only the new tokens
        cache = KVCache(model.config.n_layer)
        pieces = [model(idx[:, :5], cache), model(idx[:, 5:8], cache)]
        pieces += [model(idx[:, t : t + 1], cache) for t in range(8, 16)]
        assert len(cache) == 16
        assert torch.allclose(torch.cat(pieces, dim=1), full, atol=1e-5)


def qkv(T: int, dtype: torch.dtype, grad: bool = True) -> list[torch.Tensor]:
    """Queries, keys and values (2, 3, T, 8) in ``dtype``, seeded; leaves that need grad when ``grad``."""
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(2, 3, T, 8, generator=generator).to(dtype).requires_grad_(grad) for _ in range(3)]


def test_short_bf16_attention_to_be_differentiated_runs_in_float32_on_a_cpu():
    q, k, v = qkv(16, torch.bfloat16)
    y = fused_attention(q, k, v, is_causal=True)
    in_fp32 = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True)
    assert y.dtype == torch.bfloat16 and torch.equal(y, in_fp32.to(torch.bfloat16))
    y.sum().backward()
    assert q.grad is not None and q.grad.dtype == torch.bfloat16  # the gradients come back in the inputs' dtype
    in_bf16 = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.allclose(y.float(), in_bf16.float(), atol=0.05)  # the same attention, up to bf16's rounding


@pytest.mark.parametrize("T, grad, dtype", [(16, False, torch.bfloat16), (BF16_ATTENTION_IN_FP32_BELOW, True, torch.bfloat16),
                                            (16, True, torch.float32), (16, True, torch.float16)])
def test_other_attention_is_pytorchs_own(T, grad, dtype):
    """Without gradients (generation), from the threshold's length on, and in other dtypes, fused_attention is
    scaled_dot_product_attention itself."""
    q, k, v = qkv(T, dtype, grad)
    with torch.set_grad_enabled(grad):
        expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        assert torch.equal(fused_attention(q, k, v, is_causal=True), expected)


@pytest.mark.parametrize("attention", ["manual", "sdpa"])
def test_changing_a_token_never_changes_the_logits_before_it(attention):
    model = tiny(attention=attention)
    idx = tokens(1, 16)
    before = model(idx)
    for t in range(16):
        changed = idx.clone()
        changed[0, t] = (idx[0, t] + 1) % VOCAB
        after = model(changed)
        assert torch.allclose(after[:, :t], before[:, :t], atol=1e-6), f"position < {t} saw token {t}"
        assert not torch.allclose(after[:, t], before[:, t], atol=1e-6), f"position {t} did not see its own token"


def test_dropout_makes_training_mode_random_and_eval_mode_repeatable():
    model = tiny(dropout=0.5)
    idx = tokens(2, 8)
    assert torch.equal(model(idx), model(idx))
    model.train()
    assert not torch.equal(model(idx), model(idx))


@pytest.mark.parametrize("attention", ["manual", "sdpa"])
def test_attn_dropout_zero_keeps_attention_exact_while_the_residual_branches_drop_out(attention):
    q, k, v = (torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(i)) for i in range(3))
    both = tiny(attention=attention, dropout=0.5).train()
    assert not torch.equal(both.transformer.h[0].attn.attend(q, k, v), both.transformer.h[0].attn.attend(q, k, v))
    resid_only = tiny(attention=attention, dropout=0.5, attn_dropout=0.0).train()
    attn = resid_only.transformer.h[0].attn
    assert torch.equal(attn.attend(q, k, v), attn.attend(q, k, v))
    assert attn.resid_dropout.p == 0.5
    idx = tokens(2, 8)
    assert not torch.equal(resid_only(idx), resid_only(idx))


@pytest.mark.parametrize("attention", ["manual", "sdpa"])
def test_cached_generation_gives_the_same_tokens_as_uncached_also_past_block_size(attention):
    model = tiny(attention=attention)
    prompt = tokens(2, 3)
    greedy = [model.generate(prompt, 30, temperature=0, use_cache=c) for c in (True, False)]  # 33 > block_size 16
    assert greedy[0].shape == (2, 33)
    assert torch.equal(greedy[0], greedy[1])
    sampled = [
        model.generate(prompt, 30, top_p=0.9, generator=torch.Generator().manual_seed(3), use_cache=c)
        for c in (True, False)
    ]
    assert torch.equal(sampled[0], sampled[1])
    assert len(sampled[0][:, 3:].unique()) > 3  # really sampled: not one token repeated


def test_generation_with_a_seeded_generator_repeats():
    model = tiny()
    runs = [model.generate(tokens(1, 2), 20, generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(runs[0], runs[1])


def test_top_k_1_is_greedy():
    model = tiny()
    prompt = tokens(2, 4)
    greedy = model.generate(prompt, 12, temperature=0)
    top1 = model.generate(prompt, 12, top_k=1, temperature=1.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(top1, greedy)


def test_generation_stops_at_a_stop_token_and_restores_training_mode():
    model = tiny()
    prompt = tokens(1, 4)
    first = int(model.generate(prompt, 1, temperature=0)[0, -1])
    model.train()
    out = model.generate(prompt, 10, temperature=0, stop_tokens={first})
    assert out.shape == (1, 5) and int(out[0, -1]) == first
    assert model.training


# ------------------------------------------------------------------ sampling


def test_top_k_keeps_the_k_largest_logits():
    logits = torch.tensor([[1.0, 3.0, 2.0, 5.0], [0.0, -1.0, 4.0, 2.0]])
    kept = filter_logits(logits, top_k=2) > float("-inf")
    assert kept.tolist() == [[False, True, False, True], [False, False, True, True]]
    assert torch.equal(filter_logits(logits, top_k=10), logits)  # k ≥ V keeps everything


@pytest.mark.parametrize(
    "top_p, kept",
    [(0.45, {1}), (0.6, {1, 3}), (0.8, {1, 3, 4}), (0.9, {0, 1, 3, 4}), (0.99, {0, 1, 2, 3, 4}), (1.0, {0, 1, 2, 3, 4})],
)
def test_top_p_keeps_the_smallest_set_of_likeliest_tokens_reaching_p(top_p, kept):
    probs = torch.tensor([[0.10, 0.50, 0.05, 0.20, 0.15]])  # sorted: 1 (.5), 3 (.2), 4 (.15), 0 (.1), 2 (.05)
    filtered = filter_logits(probs.log(), top_p=top_p)
    assert {i for i in range(5) if filtered[0, i] > float("-inf")} == kept
    survivors = filtered[0] > float("-inf")
    assert torch.allclose(filtered[0][survivors], probs.log()[0][survivors])  # the kept logits are untouched


def test_top_k_then_top_p_on_a_batch():
    probs = torch.tensor([[0.10, 0.50, 0.05, 0.20, 0.15], [0.40, 0.30, 0.20, 0.06, 0.04]])
    kept = filter_logits(probs.log(), top_k=2, top_p=0.6) > float("-inf")
    # row 0: top-2 = {1, 3}, renormalised 0.71 / 0.29 → top-p 0.6 keeps {1}; row 1: {0, 1} → 0.57 / 0.43 → {0, 1}
    assert kept.tolist() == [[False, True, False, False, False], [True, True, False, False, False]]


def test_sample_next_only_picks_allowed_tokens():
    logits = torch.tensor([[1.0, 3.0, 2.0, 5.0]]).expand(400, 4)
    picked = sample_next(logits, temperature=1.0, top_k=2, generator=torch.Generator().manual_seed(0))
    assert picked.shape == (400, 1)
    assert set(picked.flatten().tolist()) == {1, 3}
    assert sample_next(logits[:2], temperature=0).flatten().tolist() == [3, 3]


# ------------------------------------------------------------------ clear errors


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(temperature=-0.5), "temperature must be ≥ 0"),
        (dict(top_k=0), "top_k must be ≥ 1"),
        (dict(top_p=0.0), "top_p must be in"),
        (dict(top_p=1.5), "top_p must be in"),
        (dict(max_new_tokens=-1), "max_new_tokens must be ≥ 0"),
    ],
)
def test_bad_sampling_settings_are_refused(kwargs, message):
    model = tiny()
    kwargs = {"max_new_tokens": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        model.generate(tokens(1, 2), **kwargs)


def test_model_input_errors_say_what_to_do():
    model = tiny()
    with pytest.raises(ValueError, match=r"0 … 10 .*vocab_size=tokenizer.vocab_size"):
        model(torch.tensor([[3, 11]]))
    with pytest.raises(ValueError, match="17 tokens is longer than this model's block_size 16"):
        model(tokens(1, 17))
    with pytest.raises(ValueError, match=r"shape \(B, T\).*idx\[None\]"):
        model(tokens(5))
    with pytest.raises(ValueError, match="integer token ids"):
        model(torch.zeros(1, 4))


@pytest.mark.parametrize("use_cache", [True, False])
def test_generate_names_a_prompt_of_the_wrong_shape_as_forward_does(use_cache):
    model = tiny()
    with pytest.raises(ValueError, match=r"idx must hold integer token ids of shape \(B, T\), got torch.int64 of "
                                         r"shape \(5,\).*idx\[None\]") as info:
        model.generate(tokens(5), 3, use_cache=use_cache)
    assert info.value.__cause__ is None
    with pytest.raises(ValueError, match=r"integer token ids.*torch.float32"):
        model.generate(torch.zeros(1, 4), 3, use_cache=use_cache)
    with pytest.raises(ValueError, match="integer token ids"):
        model.generate(tokens(1, 0).reshape(1, 0, 1), 3, use_cache=use_cache)
    with pytest.raises(ValueError, match=r"got a list: .*torch.tensor\(\[ids\]\)"):
        model.generate([1, 2, 3], 3, use_cache=use_cache)
    with pytest.raises(ValueError, match=r"no tokens \(shape \(1, 0\)\).*at least one token"):
        model.generate(tokens(1, 0), 3, use_cache=use_cache)


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(n_embd=30, n_head=4), r"n_embd \(30\) must be divisible by n_head \(4\).*n_embd=32"),
        (dict(block_size=0), "block_size must be a whole number ≥ 1, got 0"),
        (dict(vocab_size=6.5), "vocab_size must be a whole number"),
        (dict(dropout=1.0), r"dropout must be in \[0, 1\)"),
        (dict(attn_dropout=-0.1), r"attn_dropout must be in \[0, 1\), got -0.1"),
        (dict(attention="flash"), 'attention must be "manual" or "sdpa"'),
    ],
)
def test_bad_configs_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        GPTConfig(**fields)


def test_bad_presets_are_refused():
    with pytest.raises(ValueError, match="unknown preset 'gpt5'; choose one of: gpt-micro"):
        GPTConfig.preset("gpt5")
    with pytest.raises(ValueError, match=r"no field\(s\) \['layers'\]"):
        GPTConfig.preset("gpt-nano", layers=3)


# ------------------------------------------------------------------ GPT-2's weights from Hugging Face


@pytest.fixture(scope="module")
def hf_gpt2():
    """A small randomly initialised Hugging Face GPT-2, every weight and bias perturbed so that a
    forgotten transpose or a bias left at zero shows in the logits."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=2, n_head=2, n_embd=32, vocab_size=100, n_positions=64, bos_token_id=0, eos_token_id=0
    )
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def hf_logits(model, idx: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(idx).logits


def assert_same_logits(ours: GPT, hf_model) -> None:
    idx = torch.randint(100, (2, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(ours(idx), hf_logits(hf_model, idx), atol=1e-5)


@pytest.mark.parametrize("attention", ["manual", "sdpa"])
def test_from_gpt2_model_gives_hugging_faces_logits(hf_gpt2, attention):
    model = GPT.from_gpt2(hf_gpt2, attention=attention)
    assert model.config == GPTConfig(vocab_size=100, block_size=64, n_layer=2, n_head=2, n_embd=32, attention=attention)
    assert not model.training
    assert model.lm_head.weight is model.transformer.wte.weight
    assert_same_logits(model, hf_gpt2)


def test_from_gpt2_state_dict_with_its_config_or_the_config_dict(hf_gpt2):
    assert_same_logits(GPT.from_gpt2(hf_gpt2.state_dict(), config=hf_gpt2.config), hf_gpt2)
    assert_same_logits(GPT.from_gpt2(hf_gpt2.state_dict(), config=hf_gpt2.config.to_dict()), hf_gpt2)


def test_from_gpt2_reads_the_hubs_names_and_ignores_mask_buffers(hf_gpt2):
    # The hub's original files hold GPT2Model's names ("h.0.attn.c_attn.weight", no "transformer.")
    # and each layer's causal mask "h.0.attn.bias"; there is no lm_head.weight (it is wte's).
    weights = dict(hf_gpt2.transformer.state_dict())
    for i in range(2):
        weights[f"h.{i}.attn.bias"] = torch.ones(1, 1, 64, 64).tril()
        weights[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    assert_same_logits(GPT.from_gpt2(weights, config=hf_gpt2.config), hf_gpt2)


def test_from_gpt2_directory_works_without_transformers(hf_gpt2, tmp_path, monkeypatch):
    hf_gpt2.save_pretrained(tmp_path / "safetensors")
    assert (tmp_path / "safetensors" / "model.safetensors").is_file()
    (tmp_path / "bin").mkdir()  # the older format: pytorch_model.bin, read with weights_only=True
    torch.save(hf_gpt2.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
    hf_gpt2.config.to_json_file(tmp_path / "bin" / "config.json")
    monkeypatch.setitem(sys.modules, "transformers", None)  # any `import transformers` now fails
    loaded = [GPT.from_gpt2(tmp_path / "safetensors"), GPT.from_gpt2(str(tmp_path / "bin"))]
    monkeypatch.undo()
    for model in loaded:
        assert_same_logits(model, hf_gpt2)


def test_from_gpt2_lists_missing_and_unexpected_weights(hf_gpt2):
    weights = dict(hf_gpt2.state_dict())
    del weights["transformer.h.1.mlp.c_fc.bias"]
    with pytest.raises(ValueError, match=r"missing \(1\): transformer.h.1.mlp.c_fc.bias"):
        GPT.from_gpt2(weights, config=hf_gpt2.config)
    weights = dict(hf_gpt2.state_dict()) | {"transformer.h.2.ln_1.weight": torch.ones(32)}
    with pytest.raises(ValueError, match=r"unexpected \(1\): transformer.h.2.ln_1.weight"):
        GPT.from_gpt2(weights, config=hf_gpt2.config)
    with pytest.raises(ValueError, match=r"transformer.wte.weight has shape \(100, 32\).*asks for \(101, 32\)"):
        GPT.from_gpt2(hf_gpt2.state_dict(), config=hf_gpt2.config.to_dict() | {"vocab_size": 101})
    with pytest.raises(ValueError, match="pass its configuration too"):
        GPT.from_gpt2(hf_gpt2.state_dict())


def test_from_gpt2_refuses_configs_shaped_differently(hf_gpt2):
    odd = hf_gpt2.config.to_dict() | {
        "activation_function": "relu", "n_inner": 64, "scale_attn_by_inverse_layer_idx": True,
        "tie_word_embeddings": False,
    }
    with pytest.raises(ValueError, match="shaped differently") as error:
        GPT.from_gpt2(hf_gpt2.state_dict(), config=odd)
    for problem in ("'relu'", "n_inner is 64", "scale_attn_by_inverse_layer_idx", "tie_word_embeddings"):
        assert problem in str(error.value)
    with pytest.raises(ValueError, match="'llama' configuration, not GPT-2's"):
        GPT.from_gpt2(hf_gpt2.state_dict(), config={"model_type": "llama"})
    with pytest.raises(ValueError, match=r"lacks \['n_head'\]"):
        GPT.from_gpt2(hf_gpt2.state_dict(), config={"vocab_size": 100, "n_layer": 2, "n_embd": 32, "n_positions": 64})


def test_from_gpt2_paths_without_the_files_are_explained(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"local files only.*GPT2LMHeadModel.from_pretrained\('gpt2'\)"):
        GPT.from_gpt2("gpt2")
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        GPT.from_gpt2(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(FileNotFoundError, match="no weights: expected model.safetensors or pytorch_model.bin"):
        GPT.from_gpt2(tmp_path)
    with pytest.raises(ValueError, match="is a file: give the directory"):
        GPT.from_gpt2(tmp_path / "config.json")
    with pytest.raises(TypeError, match="already a labkit GPT"):
        GPT.from_gpt2(tiny())


# ------------------------------------------------------------------ our own checkpoints


def test_checkpoint_round_trip_keeps_logits_config_meta_and_weight_tying(tmp_path):
    model = tiny(attention="manual", dropout=0.1, bias=False)
    with torch.no_grad():  # a trained model's LayerNorm weights are not all ones
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    meta = {"val_loss": 1.25, "command": "train --steps 10", "note": "莎士比亚"}
    assert save_checkpoint(model, tmp_path / "run", meta=meta) == tmp_path / "run"
    loaded, tokenizer, loaded_meta = load_checkpoint(tmp_path / "run")
    assert tokenizer is None and loaded_meta == meta
    assert loaded.config == model.config and not loaded.training
    assert loaded.lm_head.weight is loaded.transformer.wte.weight
    idx = tokens(2, 16)
    assert torch.equal(loaded(idx), model(idx))
    with safe_open(tmp_path / "run" / "model.safetensors", framework="pt") as f:
        assert "lm_head.weight" not in f.keys() and "transformer.wte.weight" in f.keys()  # stored once
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == model.config.to_dict()


def test_checkpoint_in_bfloat16_is_half_the_size_and_loads_as_float32(tmp_path):
    model = tiny(n_embd=64, n_head=4)
    save_checkpoint(model, tmp_path / "fp32")
    save_checkpoint(model, tmp_path / "bf16", dtype=torch.bfloat16)
    ratio = (tmp_path / "bf16" / "model.safetensors").stat().st_size / (tmp_path / "fp32" / "model.safetensors").stat().st_size
    assert 0.45 < ratio < 0.55
    loaded, _, _ = load_checkpoint(tmp_path / "bf16", device="cpu")
    for name, tensor in loaded.state_dict().items():
        assert tensor.dtype == torch.float32
        assert torch.equal(tensor, model.state_dict()[name].to(torch.bfloat16).float()), name
    assert loaded.lm_head.weight is loaded.transformer.wte.weight


def test_checkpoint_keeps_the_tokenizer(tmp_path):
    from labkit.tokenizers import BPETokenizer, CharTokenizer

    text = "to be or not to be, that is the question"
    for tok in (CharTokenizer(text), BPETokenizer.train(text * 3, 262)):
        model = tiny(vocab_size=tok.vocab_size)
        save_checkpoint(model, tmp_path / "run", tokenizer=tok)
        _, loaded, meta = load_checkpoint(tmp_path / "run")
        assert type(loaded) is type(tok) and meta == {}
        assert loaded.encode(text) == tok.encode(text)
    save_checkpoint(model, tmp_path / "run")  # saving again without one leaves no stale tokenizer behind
    assert load_checkpoint(tmp_path / "run")[1] is None
    assert not (tmp_path / "run" / "tokenizer.json").exists()


def test_checkpoint_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint directory at .*save_checkpoint"):
        load_checkpoint(tmp_path / "nowhere")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text(json.dumps(tiny().config.to_dict()))
    with pytest.raises(FileNotFoundError, match="has no model.safetensors"):
        load_checkpoint(tmp_path / "half")
    (tmp_path / "half" / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 32}))
    (tmp_path / "half" / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match=r"Hugging Face checkpoint; read it with GPT.from_gpt2"):
        load_checkpoint(tmp_path / "half")
    save_checkpoint(tiny(), tmp_path / "run")
    (tmp_path / "run" / "config.json").write_text(json.dumps(tiny(n_layer=3).config.to_dict()))
    with pytest.raises(ValueError, match="do not fit its config.json"):
        load_checkpoint(tmp_path / "run")

    model = tiny()
    with pytest.raises(TypeError, match=r"saves a labkit GPT.*model.module under DDP"):
        save_checkpoint(torch.nn.Linear(2, 2), tmp_path / "x")
    with pytest.raises(ValueError, match=r"plain JSON values.*\.item\(\)"):
        save_checkpoint(model, tmp_path / "x", meta={"loss": torch.tensor(1.0)})
    with pytest.raises(ValueError, match="'tokenizer_class' is save_checkpoint's own"):
        save_checkpoint(model, tmp_path / "x", meta={"tokenizer_class": "mine"})
    with pytest.raises(TypeError, match="save it yourself"):
        save_checkpoint(model, tmp_path / "x", tokenizer=object())
    with pytest.raises(ValueError, match="floating-point"):
        save_checkpoint(model, tmp_path / "x", dtype=torch.int8)
