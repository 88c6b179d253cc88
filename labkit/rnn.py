"""Recurrent networks, written to be read: an Elman RNN layer, an LSTM layer and a character model.

Before attention, sequence models read text one token at a time and carried what they had read in
a **hidden state**, a vector updated at every step (chapter 06a, "Before attention"):

    Elman RNN:  h_t = tanh(x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh)
    LSTM:       i, f, g, o = σ(·), σ(·), tanh(·), σ(·) of x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh
                c_t = f ⊙ c_{t-1} + i ⊙ g            the cell: forget some, write some
                h_t = o ⊙ tanh(c_t)                  the output: read some

Each layer is a plain loop over time steps. Parameter names and layouts are those of a single-layer
``torch.nn.RNN`` / ``torch.nn.LSTM`` (``weight_ih_l0`` (G·H, C), ``weight_hh_l0`` (G·H, H),
``bias_ih_l0``, ``bias_hh_l0``; the LSTM's G = 4 gates stacked in the order i, f, g, o), so a
``state_dict`` loads either way. Shapes are batch_first: B batch, T time, C input channels,
H hidden size, V vocabulary; a state is (1, B, H), like PyTorch's (layers first, even with batch_first).

    >>> model = CharRNN(vocab_size=65, hidden=128)             # embedding → LSTM → linear head
    >>> logits = model(torch.zeros(2, 8, dtype=torch.long))    # (B, T, V) = (2, 8, 65)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from .gpt import _check_sampling, sample_next

# A layer's state: h (1, B, H) for an RNN, the pair (h, c) for an LSTM.
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]
CELLS = ("lstm", "rnn")


class RNNLayer(nn.Module):
    """One Elman RNN layer (tanh), a loop over time: x (B, T, C) → outputs (B, T, H), last h (1, B, H).

    The same computation and parameters as ``torch.nn.RNN(C, H, batch_first=True)``.

    Chapter 06a builds it by hand and proves it equal to torch.nn.RNN.
    """

    gates = 1  # how many blocks of H rows the weights stack (the LSTM has 4)

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        G, H = self.gates, hidden_size
        self.weight_ih_l0 = nn.Parameter(torch.empty(G * H, input_size))  # reads the input
        self.weight_hh_l0 = nn.Parameter(torch.empty(G * H, H))           # reads the previous state
        self.bias_ih_l0 = nn.Parameter(torch.empty(G * H))
        self.bias_hh_l0 = nn.Parameter(torch.empty(G * H))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's initialisation: every parameter uniform in (-1/√H, 1/√H)."""
        bound = 1 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, C) and the state h (1, B, H) (zeros if None) → outputs (B, T, H), last h (1, B, H)."""
        B, T, _ = x.shape
        h_t = x.new_zeros(B, self.hidden_size) if h is None else h[0]
        from_input = x @ self.weight_ih_l0.T + self.bias_ih_l0  # (B, T, H): every step's input part at once
        outputs = []
        for t in range(T):  # the recurrence: step t needs h_{t-1}, so the steps run one after another
            h_t = torch.tanh(from_input[:, t] + h_t @ self.weight_hh_l0.T + self.bias_hh_l0)  # (B, H)
            outputs.append(h_t)
        return torch.stack(outputs, dim=1), h_t[None]


class LSTMLayer(RNNLayer):
    """One LSTM layer, a loop over time: x (B, T, C) → outputs (B, T, H), last state (h, c), each (1, B, H).

    The same computation and parameters as ``torch.nn.LSTM(C, H, batch_first=True)``: four gates
    from one matrix product, stacked in PyTorch's order input i, forget f, candidate g, output o.

    Chapter 06a builds its gates by hand and proves it equal to torch.nn.LSTM.
    """

    gates = 4

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x (B, T, C) and the state (h, c), each (1, B, H) (zeros if None) → outputs (B, T, H), (h, c)."""
        B, T, _ = x.shape
        if state is None:
            h_t = c_t = x.new_zeros(B, self.hidden_size)
        else:
            h_t, c_t = state[0][0], state[1][0]
        from_input = x @ self.weight_ih_l0.T + self.bias_ih_l0  # (B, T, 4H): every step's input part at once
        outputs = []
        for t in range(T):
            gates = from_input[:, t] + h_t @ self.weight_hh_l0.T + self.bias_hh_l0  # (B, 4H)
            i, f, g, o = gates.chunk(4, dim=1)                                        # each (B, H)
            i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
            c_t = f * c_t + i * g       # keep a share f of the old cell, write a share i of the new candidate
            h_t = o * torch.tanh(c_t)   # show a share o of the cell as the output
            outputs.append(h_t)
        return torch.stack(outputs, dim=1), (h_t[None], c_t[None])


OUR_LAYERS: dict[str, type[nn.Module]] = {"lstm": LSTMLayer, "rnn": RNNLayer}
TORCH_LAYERS: dict[str, type[nn.Module]] = {"lstm": nn.LSTM, "rnn": nn.RNN}  # fused: one C++ kernel per layer


@dataclass
class CharRNNConfig:
    """Everything that decides a ``CharRNN``'s shape. There is no block_size: a recurrent network
    has no longest context (``train_lm`` needs ``block_size=…``, the length of its training windows)."""

    vocab_size: int = 65
    hidden: int = 256
    cell: str = "lstm"
    n_layer: int = 1
    fused: bool = False

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden", "n_layer"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a whole number ≥ 1, got {value!r}")
        if self.cell not in CELLS:
            raise ValueError(f'cell must be "lstm" or "rnn", got {self.cell!r}')

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class CharRNN(nn.Module):
    """A recurrent language model: token ids (B, T) → next-token logits (B, T, V).

    Embedding (V → H), ``n_layer`` recurrent layers (``cell`` "lstm" or "rnn", our loops above),
    a linear head (H → V). ``fused=True`` swaps in ``torch.nn.LSTM`` / ``torch.nn.RNN`` (the same
    parameter names, so the weights load either way; only faster). Train it with
    ``labkit.train_lm(model, ids, steps=…, batch_size=…, block_size=…)``: the windows are cut at
    ``block_size`` tokens and each starts from a zero state (truncated backpropagation through time).

    Chapter 06a trains it on the GPT's text and compares them.
    """

    def __init__(self, vocab_size: int, hidden: int = 256, cell: str = "lstm", n_layer: int = 1,
                 fused: bool = False) -> None:
        super().__init__()
        self.config = CharRNNConfig(vocab_size=vocab_size, hidden=hidden, cell=cell, n_layer=n_layer, fused=fused)
        layer = TORCH_LAYERS[cell] if fused else OUR_LAYERS[cell]
        kw: dict[str, Any] = {"batch_first": True} if fused else {}
        self.embedding = nn.Embedding(vocab_size, hidden)                               # (B, T) → (B, T, H)
        self.layers = nn.ModuleList([layer(hidden, hidden, **kw) for _ in range(n_layer)])  # (B, T, H) → (B, T, H)
        self.head = nn.Linear(hidden, vocab_size)                                        # (B, T, H) → (B, T, V)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) → logits (B, T, V), starting from a zero state."""
        return self.forward_with_state(idx)[0]

    def forward_with_state(
        self, idx: torch.Tensor, states: list[State] | list[None] | None = None
    ) -> tuple[torch.Tensor, list[State]]:
        """Token ids (B, T) and each layer's state (None: zeros) → logits (B, T, V) and the new states:
        feed them back in and the model continues reading where it stopped."""
        if idx.dim() != 2 or idx.is_floating_point():
            raise ValueError(f"idx must hold integer token ids of shape (B, T), got {idx.dtype} of shape "
                             f"{tuple(idx.shape)}: one sequence of shape (T,) becomes a batch of one with idx[None]")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.config.vocab_size):
            raise ValueError(f"token ids must be in 0 … {self.config.vocab_size - 1} (the model's vocab_size), "
                             f"got ids from {int(idx.min())} to {int(idx.max())}: build the model with "
                             f"vocab_size=tokenizer.vocab_size")
        given: list[State | None] = list(states) if states is not None else [None] * len(self.layers)  # None: zeros
        new_states: list[State] = []
        x = self.embedding(idx)  # (B, T, H)
        for k, layer in enumerate(self.layers):
            x, state = layer(x, given[k])  # (B, T, H), the layer's last state
            new_states.append(state)
        return self.head(x), new_states

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, T: int | None = None) -> float:
        """Training FLOPs per token, 6·N without the embedding (a lookup, not a product). T changes
        nothing: unlike attention, a recurrent step costs the same at every position."""
        return 6.0 * (self.num_parameters() - self.embedding.weight.numel())

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, *, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Continue ``idx`` (B, T) by ``max_new_tokens`` tokens; returns (B, T + new). Sampling as in
        ``GPT.generate`` (temperature 0 is greedy).

        The prompt is read once; after that each step feeds only the newest token and the carried
        state: constant work and memory per token, whatever the length so far. (A GPT without a KV
        cache re-reads its whole context at every step; with one, its cache grows with every token.)
        """
        _check_sampling(temperature, top_k, top_p, max_new_tokens)
        was_training = self.training
        self.eval()
        logits, states = self.forward_with_state(idx)  # read the prompt once
        for _ in range(max_new_tokens):
            next_id = sample_next(logits[:, -1, :], temperature, top_k, top_p, generator)  # (B, 1)
            idx = torch.cat([idx, next_id], dim=1)
            logits, states = self.forward_with_state(next_id, states)  # one token in, the state carried on
        self.train(was_training)
        return idx
