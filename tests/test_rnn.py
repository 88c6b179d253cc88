"""labkit.rnn: the hand-written RNN and LSTM layers equal torch.nn.RNN / torch.nn.LSTM (outputs, final
states and gradients, with weights copied either way), and CharRNN trains with train_lm and samples."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import labkit
from labkit.lm import train_lm
from labkit.rnn import CharRNN, LSTMLayer, RNNLayer
from labkit.tokenizers import CharTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.py

PAIRS = [pytest.param(RNNLayer, nn.RNN, id="rnn"), pytest.param(LSTMLayer, nn.LSTM, id="lstm")]
SHAPES = [(1, 1, 3, 2), (3, 7, 5, 4), (4, 13, 8, 16)]  # (B, T, C, H)


def layer_pair(ours_class, torch_class, C, H, seed, torch_first):
    """Our layer and PyTorch's with the same weights, copied from the one built first."""
    torch.manual_seed(seed)
    reference = torch_class(C, H, batch_first=True)
    ours = ours_class(C, H)
    if torch_first:
        assert not ours.load_state_dict(reference.state_dict()).missing_keys
    else:
        reference.load_state_dict(ours.state_dict())
    return ours, reference


def initial_state(torch_class, B, H, seed):
    g = torch.Generator().manual_seed(seed)
    if torch_class is nn.LSTM:
        return torch.randn(1, B, H, generator=g), torch.randn(1, B, H, generator=g)
    return torch.randn(1, B, H, generator=g)


def as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


@pytest.mark.parametrize("ours_class, torch_class", PAIRS)
@pytest.mark.parametrize("B, T, C, H", SHAPES)
@pytest.mark.parametrize("with_state", [False, True], ids=["zero-state", "given-state"])
@pytest.mark.parametrize("torch_first", [True, False], ids=["torch-into-ours", "ours-into-torch"])
def test_outputs_and_final_states_equal_pytorchs(ours_class, torch_class, B, T, C, H, with_state, torch_first):
    ours, reference = layer_pair(ours_class, torch_class, C, H, seed=B * 100 + T, torch_first=torch_first)
    x = torch.randn(B, T, C, generator=torch.Generator().manual_seed(T))
    state = initial_state(torch_class, B, H, seed=C) if with_state else None
    with torch.no_grad():
        out, last = ours(x, state)
        out_ref, last_ref = reference(x, state)
    assert out.shape == (B, T, H)
    torch.testing.assert_close(out, out_ref, atol=1e-6, rtol=0)
    for mine, theirs in zip(as_tuple(last), as_tuple(last_ref), strict=True):  # h (and c for the LSTM)
        assert mine.shape == (1, B, H)
        torch.testing.assert_close(mine, theirs, atol=1e-6, rtol=0)


@pytest.mark.parametrize("ours_class, torch_class", PAIRS)
@pytest.mark.parametrize("B, T, C, H", SHAPES[1:])
def test_gradients_equal_pytorchs(ours_class, torch_class, B, T, C, H):
    ours, reference = layer_pair(ours_class, torch_class, C, H, seed=7, torch_first=True)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, T, C, generator=g)
    state = initial_state(torch_class, B, H, seed=2)
    out_weights = torch.randn(B, T, H, generator=g)  # a loss that reads every output and the final states
    grads = []
    for layer in (ours, reference):
        xs = x.clone().requires_grad_()
        s0 = tuple(s.clone().requires_grad_() for s in as_tuple(state))
        out, last = layer(xs, s0 if len(s0) == 2 else s0[0])
        loss = (out * out_weights).sum() + sum(s.pow(2).sum() for s in as_tuple(last))
        loss.backward()
        grads.append({**{n: p.grad for n, p in layer.named_parameters()}, "x": xs.grad,
                      **{f"state{k}": s.grad for k, s in enumerate(s0)}})
    mine, theirs = grads
    assert mine.keys() == theirs.keys() and {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"} <= mine.keys()
    for name in mine:
        torch.testing.assert_close(mine[name], theirs[name], atol=1e-5, rtol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


def test_parameter_names_and_shapes_are_pytorchs():
    for ours_class, torch_class, gates in [(RNNLayer, nn.RNN, 1), (LSTMLayer, nn.LSTM, 4)]:
        ours, reference = ours_class(5, 3), torch_class(5, 3, batch_first=True)
        assert {n: p.shape for n, p in ours.named_parameters()} == {n: p.shape for n, p in reference.named_parameters()}
        assert ours.weight_ih_l0.shape == (gates * 3, 5)


# --------------------------------------------------------------------------- the character model

TEXT = "abcdefgh" * 60
TOKENIZER = CharTokenizer(TEXT)


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
@pytest.mark.parametrize("n_layer", [1, 2])
def test_char_rnn_shapes_and_fused_twin(cell, n_layer):
    torch.manual_seed(0)
    model = CharRNN(vocab_size=11, hidden=6, cell=cell, n_layer=n_layer)
    idx = torch.randint(11, (3, 5))
    logits = model(idx)
    assert logits.shape == (3, 5, 11)
    fused = CharRNN(vocab_size=11, hidden=6, cell=cell, n_layer=n_layer, fused=True)
    fused.load_state_dict(model.state_dict())  # the same parameter names: the weights load either way
    torch.testing.assert_close(fused(idx), logits, atol=1e-6, rtol=0)


def test_reading_in_two_parts_with_the_state_carried_equals_reading_at_once():
    torch.manual_seed(0)
    model = CharRNN(vocab_size=11, hidden=8, n_layer=2)
    idx = torch.randint(11, (2, 9))
    whole = model(idx)
    first, states = model.forward_with_state(idx[:, :4])
    second, _ = model.forward_with_state(idx[:, 4:], states)
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole, atol=1e-6, rtol=0)


def test_unknown_cell_is_a_clear_error():
    with pytest.raises(ValueError, match=r'cell must be "lstm" or "rnn", got \'gru\''):
        CharRNN(vocab_size=11, hidden=8, cell="gru")
    with pytest.raises(ValueError, match="hidden must be a whole number"):
        CharRNN(vocab_size=11, hidden=0)
    with pytest.raises(ValueError, match="vocab_size"):
        CharRNN(vocab_size=5, hidden=4)(torch.tensor([[7]]))


def test_train_lm_trains_a_char_rnn_and_needs_block_size():
    ids = torch.tensor(TOKENIZER.encode(TEXT))
    torch.manual_seed(0)
    model = CharRNN(TOKENIZER.vocab_size, hidden=16)
    with pytest.raises(ValueError, match="block_size"):  # an RNN has no context length to take it from
        train_lm(model, ids, steps=1, batch_size=2, verbose=False, device="cpu")
    history = train_lm(model, ids[:400], ids[400:], steps=40, batch_size=8, block_size=16, lr=1e-2, eval_every=20,
                       eval_batches=2, verbose=False, peak_flops=1e11, device="cpu")
    assert history["val_loss"][-1] < 0.5 * history["val_loss"][0]  # the pattern is easy: the loss falls fast


def test_generate_is_reproducible_greedy_at_temperature_0_and_carries_the_state():
    torch.manual_seed(0)
    model = CharRNN(vocab_size=11, hidden=8, n_layer=2)
    prompt = torch.tensor([[1, 2, 3], [4, 5, 6]])
    runs = [model.generate(prompt, 12, temperature=1.0, generator=torch.Generator().manual_seed(3)) for _ in range(2)]
    assert runs[0].shape == (2, 15) and torch.equal(runs[0], runs[1]) and torch.equal(runs[0][:, :3], prompt)

    greedy = model.generate(prompt, 6, temperature=0)
    assert torch.equal(greedy[:, 3], model(prompt)[:, -1].argmax(dim=-1))
    top1 = model.generate(prompt, 6, temperature=1.0, top_k=1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(top1, greedy)
    reread = prompt  # the GPT way without a cache: read the whole context again for every token
    for _ in range(6):
        reread = torch.cat([reread, model(reread)[:, -1].argmax(dim=-1, keepdim=True)], dim=1)
    assert torch.equal(reread, greedy)


def test_exported_from_labkit():
    assert labkit.CharRNN is CharRNN and labkit.LSTMLayer is LSTMLayer and labkit.RNNLayer is RNNLayer
