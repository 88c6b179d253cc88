"""labkit.seq2seq (chapter 09c): the numerals are right, the hand-built attention and blocks equal
PyTorch's own (nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer with the
same weights), the metrics are the textbook ones, and bad input gets a clear error."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labkit import seq2seq
from labkit.course.checks import ch09c


@pytest.mark.parametrize("n, text", [
    (0, "零"), (7, "七"), (10, "十"), (15, "十五"), (20, "二十"), (100, "一百"), (101, "一百零一"), (110, "一百一十"),
    (115, "一百一十五"), (1005, "一千零五"), (1050, "一千零五十"), (1500, "一千五百"), (3005, "三千零五"),
    (10000, "一万"), (10005, "一万零五"), (10010, "一万零一十"), (10100, "一万零一百"), (11000, "一万一千"),
    (100000, "十万"), (105000, "十万五千"), (1000001, "一百万零一"), (30050, "三万零五十"), (40506, "四万零五百零六"),
    (99999999, "九千九百九十九万九千九百九十九"),
])
def test_chinese_numerals(n, text):
    assert seq2seq.chinese_numeral(n) == text


def test_numerals_read_back_by_the_rules_for_every_number_up_to_99999():
    assert all(ch09c._reference_from_chinese(seq2seq.chinese_numeral(n)) == n for n in range(100_000))


def test_bad_numbers_get_clear_errors():
    with pytest.raises(ValueError, match="between 0 and"):
        seq2seq.chinese_numeral(-1)
    with pytest.raises(TypeError, match="whole number"):
        seq2seq.chinese_numeral(3.0)
    with pytest.raises(ValueError, match="not in the vocabulary"):
        seq2seq.NumeralVocab().encode("三千x")
    with pytest.raises(ValueError, match="held_out"):
        seq2seq.split_numbers(10, held_out=1.5)


def test_split_is_disjoint_and_leaves_the_global_stream_alone():
    torch.manual_seed(3)
    expected = torch.randn(2)
    torch.manual_seed(3)
    train, held = seq2seq.split_numbers(1000, 0.2)
    assert torch.equal(torch.randn(2), expected)
    assert len(train) == 800 and len(held) == 200 and not set(train) & set(held)


def test_vocab_round_trip_and_padding():
    vocab = seq2seq.NumeralVocab()
    src, tgt = vocab.encode_batch(["三千零五", "十"], ["3005", "10"])
    assert src.shape == (2, 4) and src[1, 1:].eq(vocab.PAD).all()
    assert tgt[0].tolist()[0] == vocab.BOS and vocab.decode(tgt[0]) == "3005" and vocab.decode(tgt[1]) == "10"


def test_cross_attention_equals_multihead_attention_with_biases_and_padding():
    torch.manual_seed(0)
    C, n_head = 16, 4
    mine = seq2seq.CrossAttention(C, n_head)
    for p in mine.parameters():
        nn.init.normal_(p, std=0.3)
    theirs = nn.MultiheadAttention(C, n_head, batch_first=True)
    with torch.no_grad():
        theirs.in_proj_weight.copy_(torch.cat([mine.q_proj.weight, mine.kv_proj.weight]))
        theirs.in_proj_bias.copy_(torch.cat([mine.q_proj.bias, mine.kv_proj.bias]))
        theirs.out_proj.weight.copy_(mine.c_proj.weight)
        theirs.out_proj.bias.copy_(mine.c_proj.bias)
    x, memory = torch.randn(3, 5, C), torch.randn(3, 7, C)
    pad = torch.zeros(3, 7, dtype=torch.bool)
    pad[1, 4:], pad[2, 6:] = True, True
    mine.keep_weights = True
    out, weights = theirs(x, memory, memory, key_padding_mask=pad, average_attn_weights=False)
    torch.testing.assert_close(mine(x, memory, pad), out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mine.weights, weights, atol=1e-6, rtol=1e-5)
    assert mine.weights[1, :, :, 4:].eq(0).all()


def _randomise(module: nn.Module) -> None:
    for p in module.parameters():
        nn.init.normal_(p, std=0.2)


def _gelu(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


def _config() -> seq2seq.Seq2SeqConfig:
    return seq2seq.Seq2SeqConfig(vocab_size=25, n_embd=32, n_head=4, n_layer=1)


def test_encoder_block_equals_transformer_encoder_layer():
    torch.manual_seed(1)
    mine = seq2seq.EncoderBlock(_config())
    _randomise(mine)
    theirs = nn.TransformerEncoderLayer(32, 4, dim_feedforward=128, dropout=0.0, activation=_gelu,
                                        batch_first=True, norm_first=True)
    with torch.no_grad():
        theirs.self_attn.in_proj_weight.copy_(torch.cat([mine.attn.q_proj.weight, mine.attn.kv_proj.weight]))
        theirs.self_attn.in_proj_bias.copy_(torch.cat([mine.attn.q_proj.bias, mine.attn.kv_proj.bias]))
        theirs.self_attn.out_proj.load_state_dict(mine.attn.c_proj.state_dict())
        theirs.norm1.load_state_dict(mine.ln_1.state_dict())
        theirs.norm2.load_state_dict(mine.ln_2.state_dict())
        theirs.linear1.load_state_dict(mine.mlp.c_fc.state_dict())
        theirs.linear2.load_state_dict(mine.mlp.c_proj.state_dict())
    theirs.train()  # training mode (dropout 0): no fast path that zeroes padded rows
    x = torch.randn(2, 6, 32)
    pad = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])
    torch.testing.assert_close(mine(x, pad), theirs(x, src_key_padding_mask=pad), atol=1e-5, rtol=1e-5)


def test_decoder_block_equals_transformer_decoder_layer():
    torch.manual_seed(2)
    mine = seq2seq.DecoderBlock(_config())
    _randomise(mine)
    theirs = nn.TransformerDecoderLayer(32, 4, dim_feedforward=128, dropout=0.0, activation=_gelu,
                                        batch_first=True, norm_first=True)
    with torch.no_grad():
        theirs.self_attn.in_proj_weight.copy_(mine.attn.c_attn.weight)
        theirs.self_attn.in_proj_bias.copy_(mine.attn.c_attn.bias)
        theirs.self_attn.out_proj.load_state_dict(mine.attn.c_proj.state_dict())
        theirs.multihead_attn.in_proj_weight.copy_(torch.cat([mine.cross.q_proj.weight, mine.cross.kv_proj.weight]))
        theirs.multihead_attn.in_proj_bias.copy_(torch.cat([mine.cross.q_proj.bias, mine.cross.kv_proj.bias]))
        theirs.multihead_attn.out_proj.load_state_dict(mine.cross.c_proj.state_dict())
        for norm, ln in ((theirs.norm1, mine.ln_1), (theirs.norm2, mine.ln_2), (theirs.norm3, mine.ln_3)):
            norm.load_state_dict(ln.state_dict())
        theirs.linear1.load_state_dict(mine.mlp.c_fc.state_dict())
        theirs.linear2.load_state_dict(mine.mlp.c_proj.state_dict())
    x, memory = torch.randn(2, 5, 32), torch.randn(2, 6, 32)
    pad = torch.tensor([[False] * 6, [False] * 3 + [True] * 3])
    causal = nn.Transformer.generate_square_subsequent_mask(5)
    want = theirs(x, memory, tgt_mask=causal, memory_key_padding_mask=pad)
    torch.testing.assert_close(mine(x, memory, pad), want, atol=1e-5, rtol=1e-5)


def test_translate_is_greedy_decoding_of_forward():
    torch.manual_seed(4)
    vocab = seq2seq.NumeralVocab()
    model = seq2seq.EncoderDecoder(seq2seq.Seq2SeqConfig(vocab_size=len(vocab), n_embd=32, n_layer=1))
    src, _ = vocab.encode_batch(["三千零五", "十"])
    out = model.translate(src, max_len=4)
    prefix = torch.full((2, 1), vocab.BOS)
    for t in range(out.shape[1]):
        step = model(src, prefix)[:, -1].argmax(-1)
        finished = (prefix[:, 1:] == vocab.EOS).any(dim=1)
        step = torch.where(finished, torch.full_like(step, vocab.EOS), step)
        assert torch.equal(step, out[:, t])
        prefix = torch.cat([prefix, step[:, None]], dim=1)


def test_padding_in_the_source_changes_nothing():
    torch.manual_seed(5)
    vocab = seq2seq.NumeralVocab()
    model = seq2seq.EncoderDecoder(seq2seq.Seq2SeqConfig(vocab_size=len(vocab), n_embd=32, n_layer=1)).eval()
    alone, _ = vocab.encode_batch(["十"])
    padded, _ = vocab.encode_batch(["十", "九万九千九百"])
    tgt = torch.tensor([[vocab.BOS, 4]])
    torch.testing.assert_close(model(alone, tgt)[0], model(padded, tgt.repeat(2, 1))[0], atol=1e-5, rtol=1e-5)


def test_decoder_only_batch_scores_only_the_answer():
    vocab = seq2seq.NumeralVocab()
    x, y = seq2seq.decoder_only_batch(vocab, ["三千零五", "十"], ["3005", "10"], width=5)
    assert x.shape == y.shape
    scored = y != -1
    assert torch.equal(y[:, :-1][scored[:, :-1]], x[:, 1:][scored[:, :-1]])   # y is x shifted by one
    assert vocab.decode(y[0][scored[0]]) == "3005" and int(scored[1].sum()) == 3    # "10" and </s>
    assert x[0, 5] == vocab.BOS and x[1, 5] == vocab.BOS


def test_metrics():
    assert seq2seq.edit_distance("kitten", "sitting") == 3
    assert seq2seq.edit_distance("", "abc") == 3 and seq2seq.edit_distance("305", "3005") == 1
    assert seq2seq.character_error_rate(["305", "12"], ["3005", "12"]) == pytest.approx(1 / 6)
    assert seq2seq.exact_match(["1", "2"], ["1", "3"]) == 0.5
    with pytest.raises(ValueError, match="pair up"):
        seq2seq.character_error_rate(["1"], ["1", "2"])


def test_bad_model_input_gets_clear_errors():
    model = seq2seq.EncoderDecoder(seq2seq.Seq2SeqConfig(vocab_size=25, n_embd=32, n_layer=1, block_size=4))
    with pytest.raises(ValueError, match="longer than block_size"):
        model(torch.zeros(1, 6, dtype=torch.long), torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="dtype long"):
        model(torch.zeros(1, 3), torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="divisible"):
        seq2seq.Seq2SeqConfig(n_embd=30, n_head=4)
