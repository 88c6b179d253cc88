"""labkit.autograd: every operation's gradient against torch.autograd and finite differences."""
from __future__ import annotations

import math
import random

import pytest
import torch
from matplotlib.figure import Figure

from labkit.autograd import MLP, Layer, Neuron, Value, draw_graph, plot_graph, topological_order

# name -> (function on Values, the same function on torch tensors, inputs)
CASES = {
    "add": (lambda a, b: a + b, lambda a, b: a + b, (1.5, -2.0)),
    "radd": (lambda a, b: 3 + a, lambda a, b: 3 + a, (1.5, -2.0)),
    "sub": (lambda a, b: a - b, lambda a, b: a - b, (1.5, -2.0)),
    "rsub": (lambda a, b: 1 - b, lambda a, b: 1 - b, (1.5, -2.0)),
    "mul": (lambda a, b: a * b, lambda a, b: a * b, (1.5, -2.0)),
    "rmul": (lambda a, b: 2.5 * a, lambda a, b: 2.5 * a, (1.5, -2.0)),
    "div": (lambda a, b: a / b, lambda a, b: a / b, (1.5, -2.0)),
    "rtruediv": (lambda a, b: 2 / b, lambda a, b: 2 / b, (1.5, -2.0)),
    "neg": (lambda a, b: -a, lambda a, b: -a, (1.5, -2.0)),
    "pow3": (lambda a, b: a**3, lambda a, b: a**3, (1.5, -2.0)),
    "pow_half": (lambda a, b: a**0.5, lambda a, b: a**0.5, (1.5, -2.0)),
    "pow_neg": (lambda a, b: b**-2, lambda a, b: b**-2, (1.5, -2.0)),
    "relu_pos": (lambda a, b: a.relu(), lambda a, b: a.relu(), (1.5, -2.0)),
    "relu_neg": (lambda a, b: b.relu(), lambda a, b: b.relu(), (1.5, -2.0)),
    "tanh": (lambda a, b: (a * b).tanh(), lambda a, b: (a * b).tanh(), (0.3, -0.7)),
    "sigmoid": (lambda a, b: (a + b).sigmoid(), lambda a, b: (a + b).sigmoid(), (0.3, -0.7)),
    "sigmoid_far": (lambda a, b: (a * 400).sigmoid(), lambda a, b: (a * 400).sigmoid(), (-2.0, 0.0)),
    "exp": (lambda a, b: (a * b).exp(), lambda a, b: (a * b).exp(), (0.3, -0.7)),
    "log": (lambda a, b: (a * a + b).log(), lambda a, b: (a * a + b).log(), (1.5, -2.0 + 2.5)),
    "used_twice": (lambda a, b: a * a + a, lambda a, b: a * a + a, (1.5, -2.0)),
    "neuron": (lambda a, b: (a * 0.5 + b * -1.5 + 0.2).tanh() * b,
               lambda a, b: (a * 0.5 + b * -1.5 + 0.2).tanh() * b, (0.8, 0.4)),
}


@pytest.mark.parametrize("name", CASES)
def test_value_and_gradient_match_torch(name):
    value_fn, torch_fn, (x, y) = CASES[name]
    a, b = Value(x), Value(y)
    out = value_fn(a, b)
    out.backward()
    ta = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    tb = torch.tensor(y, dtype=torch.float64, requires_grad=True)
    tout = torch_fn(ta, tb)
    tout.backward()
    assert out.data == pytest.approx(tout.item(), rel=1e-12, abs=1e-12)
    torch_grads = [0.0 if t.grad is None else t.grad.item() for t in (ta, tb)]
    assert [a.grad, b.grad] == pytest.approx(torch_grads, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("name", [n for n in CASES if n not in ("relu_pos", "relu_neg", "sigmoid_far")])
def test_gradient_matches_finite_differences(name):
    value_fn, _, (x, y) = CASES[name]
    a, b = Value(x), Value(y)
    value_fn(a, b).backward()
    h = 1e-6
    da = (value_fn(Value(x + h), Value(y)).data - value_fn(Value(x - h), Value(y)).data) / (2 * h)
    db = (value_fn(Value(x), Value(y + h)).data - value_fn(Value(x), Value(y - h)).data) / (2 * h)
    assert [a.grad, b.grad] == pytest.approx([da, db], rel=1e-5, abs=1e-7)


def test_gradients_accumulate_and_leaves_start_at_zero():
    a = Value(3.0)
    assert a.grad == 0.0
    (a + a).backward()
    assert a.grad == 2.0
    (a * 1).backward()
    assert a.grad == 3.0  # added, not replaced: zero the gradients between backward passes


def test_long_chain_does_not_hit_the_recursion_limit():
    xs = [Value(0.001 * i) for i in range(5000)]
    total = sum(xs, Value(0.0))
    total.backward()
    assert all(x.grad == 1.0 for x in xs)
    assert total.data == pytest.approx(sum(0.001 * i for i in range(5000)))


def test_topological_order_puts_inputs_before_outputs():
    a, b = Value(1.0), Value(2.0)
    c = a * b
    d = c + a
    order = topological_order(d)
    assert order[-1] is d and len(order) == 4
    assert order.index(c) > order.index(a) and order.index(c) > order.index(b)


def test_mlp_matches_torch_with_the_same_weights():
    model = MLP(3, [4, 4, 1], seed=0)
    assert len(model.parameters()) == (3 * 4 + 4) + (4 * 4 + 4) + (4 * 1 + 1)
    xs = [[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, 1.0, -1.0]]
    ys = [1.0, -1.0, -1.0, 1.0]
    loss = sum(((model(x) - y) ** 2 for x, y in zip(xs, ys)), Value(0.0))
    model.zero_grad()
    loss.backward()

    weights = [torch.tensor([[w.data for w in n.w] for n in layer.neurons], dtype=torch.float64, requires_grad=True)
               for layer in model.layers]
    biases = [torch.tensor([n.b.data for n in layer.neurons], dtype=torch.float64, requires_grad=True)
              for layer in model.layers]
    h = torch.tensor(xs, dtype=torch.float64)
    for i, (W, b) in enumerate(zip(weights, biases)):
        h = h @ W.T + b
        if i < len(weights) - 1:
            h = torch.tanh(h)
    torch_loss = ((h.squeeze(1) - torch.tensor(ys, dtype=torch.float64)) ** 2).sum()
    torch_loss.backward()
    assert loss.data == pytest.approx(torch_loss.item(), rel=1e-12)
    for layer, W, b in zip(model.layers, weights, biases):
        mine_W = torch.tensor([[w.grad for w in n.w] for n in layer.neurons], dtype=torch.float64)
        mine_b = torch.tensor([n.b.grad for n in layer.neurons], dtype=torch.float64)
        assert torch.allclose(mine_W, W.grad, atol=1e-12)
        assert torch.allclose(mine_b, b.grad, atol=1e-12)


def test_mlp_learns_a_tiny_problem():
    model = MLP(3, [4, 4, 1], seed=1)
    xs = [[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, 1.0, -1.0]]
    ys = [1.0, -1.0, -1.0, 1.0]
    losses = []
    for _ in range(50):
        loss = sum(((model(x) - y) ** 2 for x, y in zip(xs, ys)), Value(0.0))
        model.zero_grad()
        loss.backward()
        for p in model.parameters():
            p.data -= 0.05 * p.grad
        losses.append(loss.data)
    assert losses[-1] < 0.1 * losses[0]


def test_same_seed_same_model_and_layers_return_lists():
    assert [p.data for p in MLP(2, [3, 1], seed=4).parameters()] == [p.data for p in MLP(2, [3, 1], seed=4).parameters()]
    layer = Layer(2, 3, rng=random.Random(0))
    assert isinstance(layer([1.0, 2.0]), list) and len(layer([1.0, 2.0])) == 3
    assert isinstance(Neuron(2, "relu", random.Random(0))([1.0, 2.0]), Value)


def test_draw_graph_text_shows_ops_values_and_shared_nodes():
    a, b = Value(2.0, label="a"), Value(-3.0, label="b")
    c = a * b
    c.label = "c"
    d = (c + a).tanh()
    d.label = "d"
    d.backward()
    text = draw_graph(d)
    lines = text.splitlines()
    assert lines[0].startswith("[tanh] d data=")
    assert any("[+]" in line for line in lines) and any("[*] c" in line for line in lines)
    assert sum("a data=2.0000" in line for line in lines) == 2  # a feeds two nodes
    assert f"grad={a.grad:.4f}" in text


def test_plot_graph_draws_every_node():
    a, b = Value(2.0, label="a"), Value(-3.0, label="b")
    out = (a * b + 1).tanh()
    out.backward()
    fig = plot_graph(out)
    assert isinstance(fig, Figure)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert {"tanh", "+", "*"} <= set(texts)
    assert sum(t.startswith(("a\n", "b\n")) for t in texts) == 2
    with pytest.raises(ValueError, match="too many to draw"):
        plot_graph(sum((Value(1.0) for _ in range(100)), Value(0.0)))


def test_errors_speak_to_the_learner():
    with pytest.raises(ValueError, match="log needs a positive number, got -1"):
        Value(-1.0).log()
    with pytest.raises(TypeError, match="plain number"):
        Value(torch.tensor(1.0))
    with pytest.raises(TypeError, match="plain int/float exponent"):
        Value(2.0) ** Value(3.0)
    with pytest.raises(TypeError, match="combines with another Value"):
        Value(2.0) + "3"
    with pytest.raises(ValueError, match="has 2 weights but got 3 inputs"):
        Neuron(2)([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="activation must be one of"):
        Neuron(2, "gelu")
    assert math.isclose((Value(0.5) / 2).data, 0.25)


def test_results_a_float_cannot_hold_are_explained():
    with pytest.raises(OverflowError, match=r"exp\(1000\) is too large for a float.*709.*subtract the largest") as info:
        Value(1000).exp()
    assert info.value.__cause__ is None and info.value.__suppress_context__
    with pytest.raises(OverflowError, match=r"10 \*\* 400 is too large for a float"):
        Value(10) ** 400
    with pytest.raises(ValueError, match=r"\(-8\) \*\* 0.5 is not a real number.*whole-number exponent"):
        Value(-8) ** 0.5
    assert (Value(-8) ** 3).data == -512 and (Value(-2) ** -1).data == -0.5  # whole exponents are fine
    assert Value(-1000).exp().data == 0.0  # underflow is no error: exp(-1000) is 0 to a float
    root = Value(0.0) ** 0.5
    with pytest.raises(ZeroDivisionError, match=r"slope of a \*\* 0.5 at a = 0 is infinite"):
        root.backward()
