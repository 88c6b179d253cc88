"""Tests of `labkit.finetune`: freezing and counting, the GPT classifier (pooling and padding),
LoRA (a fresh adapter changes nothing, only adapters train, merging, saving and loading)."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from labkit.finetune import (
    GPTClassifier,
    LoRALinear,
    apply_lora,
    encode_batch,
    freeze,
    gpt_hidden_states,
    load_adapters,
    lora_state_dict,
    merge_lora,
    parameter_counts,
    save_adapters,
    trainable_summary,
    training_memory,
    unfreeze,
)
from labkit.gpt import GPT, GPTConfig
from labkit.tokenizers import BPETokenizer
from labkit.training import fit

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.py

TEXT = (
    "The film was a delight from start to finish, warm and funny. "
    "A dull, tedious mess; I left before the end. "
    "Great acting, a clever plot and a moving score. "
    "Boring and far too long, with nothing to say. "
) * 20


@pytest.fixture(scope="module")
def tokenizer() -> BPETokenizer:
    return BPETokenizer.train(TEXT, vocab_size=300)


def tiny_gpt(vocab_size: int = 300, seed: int = 0) -> GPT:
    """A seeded two-layer GPT (block_size 32) in eval mode."""
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=16)).eval()


def ids(*shape: int, seed: int = 1, high: int = 300) -> torch.Tensor:
    return torch.randint(high, shape, generator=torch.Generator().manual_seed(seed))


def trainable_names(model: nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


# ====================================================================== freezing and counting


def test_freeze_all_then_unfreeze_by_glob_and_prefix():
    gpt = tiny_gpt()
    freeze(gpt)
    assert parameter_counts(gpt) == {"trainable": 0, "total": gpt.num_parameters()}
    unfreeze(gpt, "transformer.h.0.*")
    block0 = sum(p.numel() for p in gpt.transformer.h[0].parameters())
    assert parameter_counts(gpt)["trainable"] == block0
    assert all(name.startswith("transformer.h.0.") for name in trainable_names(gpt))
    unfreeze(gpt, ["transformer.ln_f", "transformer.wpe.weight"])
    extra = gpt.transformer.ln_f.weight.numel() * 2 + gpt.transformer.wpe.weight.numel()
    assert parameter_counts(gpt)["trainable"] == block0 + extra
    freeze(gpt, "transformer.h")  # a prefix stops at a dot: "transformer.h" is the whole stack, not "transformer.hx"
    assert parameter_counts(gpt)["trainable"] == extra


def test_a_tied_weight_answers_to_both_names_and_counts_once():
    gpt = tiny_gpt()
    freeze(gpt)
    unfreeze(gpt, "lm_head")  # lm_head.weight *is* transformer.wte.weight
    assert gpt.transformer.wte.weight.requires_grad
    assert parameter_counts(gpt)["trainable"] == 300 * 16
    assert parameter_counts(gpt)["total"] == gpt.num_parameters()


def test_a_name_that_matches_nothing_lists_the_top_level_names():
    gpt = tiny_gpt()
    with pytest.raises(ValueError, match=r"'transformr\.h\.0'.*transformer, lm_head"):
        freeze(gpt, "transformr.h.0")
    with pytest.raises(ValueError, match="names must be"):
        freeze(gpt, [])
    assert parameter_counts(gpt)["trainable"] == gpt.num_parameters()  # nothing changed on error


def test_trainable_summary_is_a_table_with_the_share_trained():
    gpt = tiny_gpt()
    freeze(gpt)
    unfreeze(gpt, "transformer.ln_f")
    text = trainable_summary(gpt, depth=2)
    total = gpt.num_parameters()
    assert f"{total:,}" in text
    assert [line for line in text.splitlines() if line.startswith("transformer.ln_f")][0].split()[1:] == [
        "32", "32", "100.00%"]
    last_row = [line for line in text.splitlines() if line.startswith("total")][0]
    assert last_row.split() == ["total", "32", f"{total:,}", f"{100 * 32 / total:.2f}%"]
    assert "lm_head.weight is transformer.wte.weight" in text
    with pytest.raises(ValueError, match="depth"):
        trainable_summary(gpt, depth=0)


# ====================================================================== the classifier


def test_hidden_states_are_what_the_lm_head_reads():
    gpt = tiny_gpt()
    idx = ids(2, 10)
    hidden = gpt_hidden_states(gpt, idx)
    assert hidden.shape == (2, 10, 16)
    torch.testing.assert_close(gpt.lm_head(hidden), gpt(idx))


def test_encode_batch_pads_right_and_keeps_the_start(tokenizer):
    texts = ["Great acting.", "A dull, tedious mess; I left before the end. Boring and far too long."]
    batch = encode_batch(tokenizer, texts, block_size=8, pad_id=299)
    first = tokenizer.encode(texts[0])
    assert batch.dtype == torch.long and batch.shape == (2, 8)
    assert batch[0, : len(first)].tolist() == first and (batch[0, len(first):] == 299).all()
    assert batch[1].tolist() == tokenizer.encode(texts[1])[:8]  # truncated: the first 8 tokens
    assert encode_batch(tokenizer, texts[:1], block_size=8, pad_id=0).shape == (1, len(first))  # T = longest
    with pytest.raises(ValueError, match="text number 1"):
        encode_batch(tokenizer, ["ok", ""], block_size=8, pad_id=0)
    with pytest.raises(TypeError, match="list"):
        encode_batch(tokenizer, "one text", block_size=8, pad_id=0)


def test_encode_batch_can_keep_the_end(tokenizer):
    texts = ["Great acting.", "A dull, tedious mess; I left before the end. Boring and far too long."]
    batch = encode_batch(tokenizer, texts, block_size=8, pad_id=299, keep="end")
    first = tokenizer.encode(texts[0])
    assert len(first) < 8 and batch[0, : len(first)].tolist() == first  # a short text is whole either way
    assert batch[1].tolist() == tokenizer.encode(texts[1])[-8:]          # truncated: the last 8 tokens
    with pytest.raises(ValueError, match="keep.*'middle'"):
        encode_batch(tokenizer, texts, block_size=8, pad_id=0, keep="middle")


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_padding_never_changes_a_rows_logits(tokenizer, pooling):
    pad = 299
    texts = ["Great acting.", "A dull, tedious mess; I left before the end."]
    classifier = GPTClassifier(tiny_gpt(), num_classes=3, pad_id=pad, pooling=pooling).eval()
    batch = encode_batch(tokenizer, texts, block_size=32, pad_id=pad)
    logits = classifier(batch)
    assert logits.shape == (2, 3)
    for i, text in enumerate(texts):
        alone = torch.tensor([tokenizer.encode(text)])  # no padding at all
        torch.testing.assert_close(classifier(alone)[0], logits[i], atol=1e-5, rtol=0)
    more_padding = torch.cat([batch, torch.full((2, 5), pad)], dim=1)
    torch.testing.assert_close(classifier(more_padding), logits, atol=1e-5, rtol=0)


def test_last_and_mean_pooling_read_the_real_tokens():
    pad = 0
    classifier = GPTClassifier(tiny_gpt(), num_classes=2, pad_id=pad, pooling="last").eval()
    row = ids(1, 6, seed=3).clamp(min=1)  # no pad id among the real tokens
    padded = torch.cat([row, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    hidden = gpt_hidden_states(classifier.gpt, row)[0]  # (6, C)
    torch.testing.assert_close(classifier(padded)[0], classifier.head(hidden[-1]), atol=1e-5, rtol=0)
    classifier.pooling = "mean"
    torch.testing.assert_close(classifier(padded)[0], classifier.head(hidden.mean(dim=0)), atol=1e-5, rtol=0)
    assert classifier.lengths(padded).tolist() == [6]


def test_classifier_errors_speak_clearly():
    gpt = tiny_gpt()
    with pytest.raises(ValueError, match="pooling"):
        GPTClassifier(gpt, 2, pad_id=0, pooling="max")
    with pytest.raises(ValueError, match="pad_id"):
        GPTClassifier(gpt, 2, pad_id=300)
    with pytest.raises(TypeError, match="labkit GPT"):
        GPTClassifier(nn.Linear(2, 2), 2, pad_id=0)
    classifier = GPTClassifier(gpt, 2, pad_id=0)
    with pytest.raises(ValueError, match="row 1 holds only padding"):
        classifier(torch.tensor([[5, 0], [0, 0]]))
    with pytest.raises(ValueError, match="block_size 32"):
        classifier(ids(1, 33).clamp(min=1))


# ====================================================================== LoRA


def test_lora_linear_computes_base_plus_scaled_low_rank_update():
    torch.manual_seed(0)
    base = nn.Linear(6, 5)
    lora = LoRALinear(base, rank=2, alpha=4)
    x = torch.randn(3, 6)
    torch.testing.assert_close(lora(x), base(x), atol=0, rtol=0)  # B = 0: nothing changes
    nn.init.normal_(lora.lora_B.weight)
    A, B = lora.lora_A.weight, lora.lora_B.weight  # (r, in), (out, r)
    assert A.shape == (2, 6) and B.shape == (5, 2)
    torch.testing.assert_close(lora(x), base(x) + (4 / 2) * x @ A.T @ B.T)
    assert not base.weight.requires_grad and not base.bias.requires_grad
    assert A.requires_grad and B.requires_grad and A.abs().sum() > 0  # A random, B trained from zero
    for bad in ({"rank": 0, "alpha": 1}, {"rank": 2, "alpha": 0}, {"rank": 2, "alpha": 1, "dropout": 1.0}):
        with pytest.raises(ValueError):
            LoRALinear(nn.Linear(2, 2), **bad)


def test_a_fresh_lora_equals_the_base_model_exactly():
    gpt = tiny_gpt()
    idx = ids(2, 12)
    before = gpt(idx)
    wrapped = apply_lora(gpt, targets=("c_attn", "c_proj", "c_fc", "lm_head"), rank=4, alpha=8)  # c_proj: attn + mlp
    assert len(wrapped) == 2 * 4 + 1 and "lm_head" in wrapped and "transformer.h.1.mlp.c_proj" in wrapped
    assert torch.equal(gpt(idx), before)
    assert all(".lora_A." in name or ".lora_B." in name for name in trainable_names(gpt))
    assert parameter_counts(gpt)["trainable"] == sum(t.numel() for t in lora_state_dict(gpt).values())


def test_apply_lora_errors():
    gpt = tiny_gpt()
    with pytest.raises(ValueError, match=r"c_atn.*c_attn, c_fc, c_proj, lm_head"):
        apply_lora(gpt, targets="c_atn")
    with pytest.raises(ValueError, match="rank must be"):
        apply_lora(gpt, rank=0)
    apply_lora(gpt, targets="c_attn")
    with pytest.raises(ValueError, match="already has LoRA"):
        apply_lora(gpt, targets="c_attn")
    apply_lora(gpt, targets="c_fc", rank=2)  # other layers may get adapters afterwards


def test_training_changes_only_the_adapters_and_the_head():
    classifier = GPTClassifier(tiny_gpt(), num_classes=2, pad_id=0)
    apply_lora(classifier, targets=("c_attn",), rank=4, alpha=8)
    unfreeze(classifier, "head")
    before = {name: t.clone() for name, t in classifier.state_dict().items()}
    x = ids(16, 10, seed=5).clamp(min=1)
    y = (x[:, 0] % 2).long()
    fit(classifier, TensorDataset(x, y), epochs=2, lr=1e-2, batch_size=8, verbose=False, seed=0)
    changed = {name for name, t in classifier.state_dict().items() if not torch.equal(t, before[name])}
    expected = {f"gpt.transformer.h.{i}.attn.c_attn.lora_{m}.weight" for i in range(2) for m in "AB"}
    assert changed == expected | {"head.weight", "head.bias"}


def test_merge_equals_unmerged_and_gives_plain_linears_back():
    gpt = tiny_gpt()
    names_before = list(gpt.state_dict())
    apply_lora(gpt, targets=("c_attn", "c_fc", "lm_head"), rank=4, alpha=16)
    torch.manual_seed(1)
    for t in lora_state_dict(gpt).values():  # as if trained: B no longer zero
        with torch.no_grad():
            t.normal_(std=0.1)
    idx = ids(2, 12)
    unmerged = gpt(idx)
    merged_names = merge_lora(gpt)
    assert len(merged_names) == 5
    assert not any(isinstance(m, LoRALinear) for m in gpt.modules())
    assert type(gpt.transformer.h[0].attn.c_attn) is nn.Linear
    assert list(gpt.state_dict()) == names_before
    torch.testing.assert_close(gpt(idx), unmerged, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="no LoRA adapters"):
        merge_lora(gpt)


def test_adapters_file_is_small_and_reloads_to_equal_outputs(tmp_path):
    classifier = GPTClassifier(tiny_gpt(), num_classes=3, pad_id=0)
    apply_lora(classifier, targets=("c_attn", "c_proj"), rank=4, alpha=8)
    unfreeze(classifier, "head")
    torch.manual_seed(2)
    with torch.no_grad():
        for p in classifier.parameters():
            if p.requires_grad:
                p.normal_(std=0.1)
    path = save_adapters(classifier, tmp_path / "adapters.safetensors", extra="head")
    adapters = lora_state_dict(classifier)
    assert len(adapters) == 2 * 3 * 2  # 2 layers × (c_attn, attn.c_proj, mlp.c_proj) × (A, B)
    numbers = sum(t.numel() for t in adapters.values()) + 3 * 16 + 3
    assert path.stat().st_size < 4 * numbers + 4096  # float32 numbers plus a small header
    assert path.stat().st_size < 4 * classifier.gpt.num_parameters() / 3

    fresh = GPTClassifier(tiny_gpt(), num_classes=3, pad_id=0)  # the same base weights (seed 0)
    apply_lora(fresh, targets=("c_attn", "c_proj"), rank=4, alpha=8)
    loaded = load_adapters(fresh, path)
    assert set(loaded) == set(adapters) | {"head.weight", "head.bias"}
    x = ids(2, 10).clamp(min=1)
    torch.testing.assert_close(fresh.eval()(x), classifier.eval()(x), atol=0, rtol=0)


def test_loading_adapters_with_other_settings_fails_clearly(tmp_path):
    gpt = tiny_gpt()
    apply_lora(gpt, targets="c_attn", rank=4, alpha=8)
    path = save_adapters(gpt, tmp_path / "a.safetensors")
    other_rank = tiny_gpt()
    apply_lora(other_rank, targets="c_attn", rank=2, alpha=8)
    with pytest.raises(ValueError, match=r"(?s)rank.*4.*rank.*2.*apply_lora\(model, targets=\('c_attn',\), rank=4, alpha=8\)"):
        load_adapters(other_rank, path)
    other_targets = tiny_gpt()
    apply_lora(other_targets, targets=("c_attn", "c_fc"), rank=4, alpha=8)
    with pytest.raises(ValueError, match="c_fc: no LoRA in the file"):
        load_adapters(other_targets, path)
    with pytest.raises(ValueError, match="other LoRA settings"):
        load_adapters(tiny_gpt(), path)  # no apply_lora at all
    with pytest.raises(ValueError, match="no LoRA adapters to save"):
        save_adapters(tiny_gpt(), tmp_path / "b.safetensors")
    with pytest.raises(FileNotFoundError):
        load_adapters(gpt, tmp_path / "missing.safetensors")



def test_a_damaged_adapters_file_names_itself_and_the_fix(tmp_path):
    gpt = tiny_gpt()
    apply_lora(gpt, targets="c_attn", rank=4, alpha=8)
    path = save_adapters(gpt, tmp_path / "a.safetensors")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # cut short, as an interrupted copy leaves it
    with pytest.raises(ValueError, match=r"(?s)a\.safetensors is damaged.*cut short.*save_adapters\(model, ") as error:
        load_adapters(gpt, path)
    assert "False" not in str(error.value)

# --------------------------------------------------------------------------- memory of a training step


def test_training_memory_counts_weights_gradients_adam_and_saved_activations():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3))
    x, y = torch.randn(8, 10), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    sizes = training_memory(model, x, y)
    n = sum(p.numel() for p in model.parameters())
    assert sizes["weights"] == sizes["gradients"] == 4 * n
    assert sizes["optimizer"] == 2 * 4 * n
    # saved for backward: x (8×10, for the first weight's gradient), the ReLU's output (8×20, saved by
    # the ReLU and by the second layer: one tensor, counted once), the log-softmax (8×3), the targets
    # (8 int64) and the loss's divisor (one float); the weights the layers save are not counted again
    assert sizes["activations"] == 4 * (8 * 10 + 8 * 20 + 8 * 3) + 8 * 8 + 4
    assert sizes["total"] == sum(v for k, v in sizes.items() if k != "total")
    assert all(p.grad is None for p in model.parameters())


def test_training_memory_shrinks_when_the_body_is_frozen():
    classifier = GPTClassifier(tiny_gpt(), num_classes=2, pad_id=0)
    x, y = ids(4, 12), torch.tensor([0, 1, 1, 0])
    full = training_memory(classifier, x, y)
    freeze(classifier, "gpt")
    head_only = training_memory(classifier, x, y)
    assert head_only["weights"] == full["weights"]
    assert head_only["gradients"] == 4 * (16 * 2 + 2)
    assert head_only["activations"] < full["activations"] / 10  # nothing before the head is kept
    apply_lora(classifier, targets=("c_attn",), rank=2, alpha=4)
    unfreeze(classifier, "head")
    lora = training_memory(classifier, x, y, optimizer_states=0)
    assert lora["optimizer"] == 0 and head_only["activations"] < lora["activations"]


def test_training_memory_needs_something_to_train():
    model = nn.Linear(3, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="nothing in this model trains"):
        training_memory(model, torch.randn(2, 3), torch.tensor([0, 1]))


def test_classifier_cuts_columns_of_padding_without_changing_logits():
    classifier = GPTClassifier(tiny_gpt(), num_classes=3, pad_id=0).eval()
    x = ids(3, 10, high=299) + 1
    x[0, 6:] = 0
    x[1, 4:] = 0
    x[2, 7:] = 0
    padded = torch.cat([x, torch.zeros(3, 20, dtype=torch.long)], dim=1)  # 30 columns, 23 of them padding
    seen = []
    handle = classifier.gpt.transformer.wte.register_forward_hook(lambda m, args, out: seen.append(args[0].shape))
    with torch.no_grad():
        torch.testing.assert_close(classifier(padded), classifier(x))
    handle.remove()
    assert seen == [(3, 7), (3, 7)]
