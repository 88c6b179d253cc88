"""A scalar autograd engine (自动求导) in the spirit of Karpathy's micrograd, and a tiny MLP built on it.

Every `Value` holds one number (`data`), the derivative of the final output with respect to
it (`grad`), the Values it was computed from (`_prev`), the operation that made it (`_op`)
and a `_backward` function that applies the chain rule (链式法则) for that one operation:
it reads `out.grad` and adds the local derivative times `out.grad` into each input's `.grad`.
`backward()` sorts the graph so every node comes after the nodes it feeds, then calls the
`_backward` of each node from the output back to the leaves: that is backpropagation (反向传播).

    a, b = Value(2.0, label="a"), Value(-3.0, label="b")
    c = (a * b + 1).tanh()
    c.backward()
    a.grad, b.grad            # dc/da, dc/db
    print(draw_graph(c))      # the computation graph as text; plot_graph(c) draws it

Chapter 03 builds this engine cell by cell; this file is the clean copy that later chapters use.
"""
from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Sequence

from matplotlib.figure import Figure

__all__ = ["Value", "draw_graph", "plot_graph", "topological_order", "Module", "Neuron", "Layer", "MLP"]

Number = int | float


def _as_value(x: Value | Number) -> Value:
    """Wrap a plain number as a constant Value (so `a + 1` and `2 * a` work)."""
    if isinstance(x, Value):
        return x
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"a Value combines with another Value or a plain int/float, got {type(x).__name__} {x!r}")
    return Value(x)


class Value:
    """One number in a computation graph, with the gradient of the output with respect to it.

    data: the number computed in the forward pass.
    grad: d(output)/d(this), filled in by `output.backward()`; 0.0 until then.
    """

    __slots__ = ("data", "grad", "_backward", "_prev", "_op", "label")

    def __init__(self, data: Number, _children: Sequence[Value] = (), _op: str = "", label: str = "") -> None:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise TypeError(f"Value holds one plain number (int or float), got {type(data).__name__} {data!r}; "
                            "for a tensor element use .item()")
        self.data = float(data)
        self.grad = 0.0
        self._backward: Callable[[], None] = lambda: None  # a leaf has no inputs to pass gradient to
        self._prev: tuple[Value, ...] = tuple(_children)
        self._op = _op
        self.label = label

    def __repr__(self) -> str:
        name = f"{self.label}=" if self.label else ""
        return f"Value({name}data={self.data:.4g}, grad={self.grad:.4g})"

    # ------------------------------------------------------------------ the operations
    def __add__(self, other: Value | Number) -> Value:
        other = _as_value(other)
        out = Value(self.data + other.data, (self, other), "+")

        def _backward() -> None:  # d(a+b)/da = 1, d(a+b)/db = 1
            self.grad += out.grad
            other.grad += out.grad

        out._backward = _backward
        return out

    def __mul__(self, other: Value | Number) -> Value:
        other = _as_value(other)
        out = Value(self.data * other.data, (self, other), "*")

        def _backward() -> None:  # d(a*b)/da = b, d(a*b)/db = a
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad

        out._backward = _backward
        return out

    def __pow__(self, exponent: Number) -> Value:
        if isinstance(exponent, Value) or isinstance(exponent, bool) or not isinstance(exponent, (int, float)):
            raise TypeError(f"Value ** k needs a plain int/float exponent k, got {type(exponent).__name__}; "
                            "for a Value exponent write (k * a.log()).exp()")
        if self.data == 0 and exponent < 0:
            raise ZeroDivisionError(f"0 ** {exponent} is infinite: the base is 0 and the exponent negative")
        if self.data < 0 and not float(exponent).is_integer():
            raise ValueError(
                f"({self.data:g}) ** {exponent:g} is not a real number (it would be complex): a negative base "
                "needs a whole-number exponent. Keep the base positive (for the root of a size |a|, write (a * a) ** 0.25)"
            )
        try:
            result = self.data ** exponent
        except OverflowError:
            raise OverflowError(f"{self.data:g} ** {exponent:g} is too large for a float (the largest is about "
                                "1.8e308): scale the base down") from None
        out = Value(result, (self,), f"**{exponent:g}")

        def _backward() -> None:  # d(a**k)/da = k * a**(k-1)
            if exponent == 0:
                return  # a ** 0 is 1 whatever a is: no gradient (torch gives 0 too, also at a = 0)
            if self.data == 0 and exponent < 1:
                raise ZeroDivisionError(
                    f"the slope of a ** {exponent:g} at a = 0 is infinite, so its gradient cannot be computed: "
                    f"keep a away from 0, e.g. (a + 1e-8) ** {exponent:g}"
                )
            self.grad += exponent * self.data ** (exponent - 1) * out.grad

        out._backward = _backward
        return out

    def __neg__(self) -> Value:
        return self * -1

    def __sub__(self, other: Value | Number) -> Value:
        return self + (-_as_value(other))

    def __truediv__(self, other: Value | Number) -> Value:
        other = _as_value(other)
        if other.data == 0:
            raise ZeroDivisionError(f"dividing {self!r} by a Value that is 0")
        return self * other ** -1

    def __radd__(self, other: Number) -> Value:  # 1 + a
        return self + other

    def __rmul__(self, other: Number) -> Value:  # 2 * a
        return self * other

    def __rsub__(self, other: Number) -> Value:  # 1 - a
        return _as_value(other) + (-self)

    def __rtruediv__(self, other: Number) -> Value:  # 1 / a
        return _as_value(other) / self

    def relu(self) -> Value:
        out = Value(max(self.data, 0.0), (self,), "relu")

        def _backward() -> None:  # slope 1 where the input was positive, 0 elsewhere (torch uses 0 at 0)
            self.grad += (1.0 if self.data > 0 else 0.0) * out.grad

        out._backward = _backward
        return out

    def tanh(self) -> Value:
        t = math.tanh(self.data)
        out = Value(t, (self,), "tanh")

        def _backward() -> None:  # d tanh(a)/da = 1 - tanh(a)**2
            self.grad += (1 - t * t) * out.grad

        out._backward = _backward
        return out

    def sigmoid(self) -> Value:
        x = self.data  # the numerically stable form: never exp of a large positive number
        s = 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))
        out = Value(s, (self,), "sigmoid")

        def _backward() -> None:  # d sigmoid(a)/da = s * (1 - s)
            self.grad += s * (1 - s) * out.grad

        out._backward = _backward
        return out

    def exp(self) -> Value:
        try:
            e = math.exp(self.data)
        except OverflowError:
            raise OverflowError(
                f"exp({self.data:g}) is too large for a float (exp of anything above 709.78 is): subtract the "
                "largest value before exp, as a stable softmax does (exp(x - max)), or scale the inputs down"
            ) from None
        out = Value(e, (self,), "exp")

        def _backward() -> None:  # d exp(a)/da = exp(a)
            self.grad += e * out.grad

        out._backward = _backward
        return out

    def log(self) -> Value:
        if self.data <= 0:
            raise ValueError(f"log needs a positive number, got {self.data:g}; "
                             "a probability that reached 0 is often the cause (clamp it, or use log-softmax)")
        out = Value(math.log(self.data), (self,), "log")

        def _backward() -> None:  # d log(a)/da = 1/a
            self.grad += (1 / self.data) * out.grad

        out._backward = _backward
        return out

    # ------------------------------------------------------------------ backpropagation
    def backward(self) -> None:
        """Fill in `.grad` of every Value this one depends on: d(self)/d(that Value).

        Gradients *add up* (a Value used twice gets both contributions), so set them to zero
        between two calls, as `Module.zero_grad()` does for a model's parameters.
        """
        order = topological_order(self)
        self.grad = 1.0  # d(self)/d(self)
        for node in reversed(order):  # from the output back to the leaves
            node._backward()


def topological_order(root: Value) -> list[Value]:
    """Every Value `root` depends on, each listed after all of the Values it was computed from.

    Written without recursion so that long chains (a sum of thousands of terms) do not hit
    Python's recursion limit; it visits nodes in the same order as the recursive version.
    """
    order: list[Value] = []
    visited: set[int] = set()
    stack: list[tuple[Value, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))  # come back to it after its inputs
        for child in reversed(node._prev):
            if id(child) not in visited:
                stack.append((child, False))
    return order


# ---------------------------------------------------------------------- looking at the graph
def _node_text(node: Value) -> str:
    name = f"{node.label} " if node.label else ""
    return f"{name}data={node.data:.4f} grad={node.grad:.4f}"


def draw_graph(root: Value, max_nodes: int = 200) -> str:
    """The computation graph as an indented text tree, output first, inputs underneath.

    Each line: `[op] label data=... grad=...`. A Value used twice is drawn once in full; later
    it appears as "(shown above)". Graphs with more than `max_nodes` lines are cut short.
    """
    lines: list[str] = []
    shown: set[int] = set()

    def visit(node: Value, prefix: str, connector: str, child_prefix: str) -> None:
        if len(lines) >= max_nodes:
            return
        op = f"[{node._op}] " if node._op else ""
        again = id(node) in shown and bool(node._prev)
        lines.append(f"{prefix}{connector}{op}{_node_text(node)}{'  (shown above)' if again else ''}")
        if again:
            return
        shown.add(id(node))
        for i, child in enumerate(node._prev):
            last = i == len(node._prev) - 1
            visit(child, prefix + child_prefix, "└── " if last else "├── ", "    " if last else "│   ")

    visit(root, "", "", "")
    if len(lines) >= max_nodes:
        lines.append(f"... (cut at {max_nodes} lines)")
    return "\n".join(lines)


def _columns(root: Value) -> list[list[Value]]:
    """Nodes in columns, left to right: an operation sits one column right of its latest input.

    Inputs (leaves) sit just left of the first operation that uses them. Within a column,
    nodes are ordered by the average row of their inputs, which keeps most arrows short.
    """
    order = topological_order(root)
    column: dict[int, int] = {}
    for node in order:  # inputs before outputs
        if node._prev:
            column[id(node)] = 1 + max(column.get(id(child), 0) for child in node._prev)
    users: dict[int, list[Value]] = {}
    for node in order:
        for child in node._prev:
            users.setdefault(id(child), []).append(node)
    for node in order:
        if not node._prev:  # a leaf: just before its first user (or alone, if the graph is one Value)
            column[id(node)] = min((column[id(u)] for u in users.get(id(node), [])), default=1) - 1
    columns: list[list[Value]] = [[] for _ in range(max(column.values()) + 1)]
    for node in order:
        columns[column[id(node)]].append(node)
    row: dict[int, float] = {}
    for nodes in columns:
        def average_input_row(node: Value) -> float:
            rows = [row[id(child)] for child in node._prev if id(child) in row]
            return sum(rows) / len(rows) if rows else -1.0
        nodes.sort(key=average_input_row)  # stable: leaves keep their order of appearance
        for i, node in enumerate(nodes):
            row[id(node)] = i - (len(nodes) - 1) / 2
    return columns


def plot_graph(root: Value, figsize: tuple[float, float] | None = None, max_nodes: int = 60) -> Figure:
    """Draw the computation graph with matplotlib: inputs on the left, the output on the right.

    Each box is a Value (label, data, grad); the small circle in front of a box is the
    operation that made it, with arrows from its inputs. No graphviz needed.
    """
    from labkit.plots import new_figure  # imported here: the engine itself needs no plotting

    columns = _columns(root)
    count = sum(len(nodes) for nodes in columns)
    if count > max_nodes:
        raise ValueError(f"the graph has {count} nodes, too many to draw legibly (max_nodes={max_nodes}); "
                         "draw a smaller expression, or print draw_graph(value) instead")
    n_cols, n_rows = len(columns), max(len(nodes) for nodes in columns)
    spacing = 2.4
    fig = new_figure(figsize or (max(4.0, 1.6 * n_cols), max(1.8, 1.1 * n_rows)))
    ax = fig.add_subplot()
    position: dict[int, tuple[float, float]] = {}
    for c, nodes in enumerate(columns):
        for r, node in enumerate(nodes):
            position[id(node)] = (c * spacing, -(r - (len(nodes) - 1) / 2))
    box = dict(boxstyle="round,pad=0.3", facecolor="#e8f0fe", edgecolor="#3367d6")
    op_box = dict(boxstyle="circle,pad=0.2", facecolor="#fff3e0", edgecolor="#e65100")
    arrow = dict(arrowstyle="->", color="#666666", shrinkA=2, shrinkB=2)
    for nodes in columns:
        for node in nodes:
            x, y = position[id(node)]
            name = f"{node.label}\n" if node.label else ""
            ax.text(x, y, f"{name}data {node.data:.3g}\ngrad {node.grad:.3g}", ha="center", va="center",
                    fontsize=8, bbox=box, zorder=3)
            if not node._prev:
                continue
            ox = x - 0.95  # the operation's circle, just left of its box
            ax.text(ox, y, node._op, ha="center", va="center", fontsize=8, bbox=op_box, zorder=3)
            ax.annotate("", xy=(x - 0.55, y), xytext=(ox + 0.2, y), arrowprops=arrow, zorder=2)
            for child in dict.fromkeys(node._prev):  # a*a: one arrow
                cx, cy = position[id(child)]
                span = round((x - cx) / spacing)
                bend = 0.0 if span <= 1 else (-0.3 if cy >= y else 0.3)  # long arrows bow outwards, around boxes
                ax.annotate("", xy=(ox - 0.22, y), xytext=(cx + 0.55, cy), zorder=1,
                            arrowprops={**arrow, "connectionstyle": f"arc3,rad={bend}"})
    ax.set_xlim(-0.8, (n_cols - 1) * spacing + 0.8)
    ax.set_ylim(-n_rows / 2 - 0.1, n_rows / 2 + 0.1)
    ax.axis("off")
    return fig


# ---------------------------------------------------------------------- a tiny MLP on Values
class Module:
    """What every model part has: its parameters, and a way to reset their gradients."""

    def parameters(self) -> list[Value]:
        return []

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = 0.0


_ACTIVATIONS: dict[str, Callable[[Value], Value]] = {
    "tanh": Value.tanh, "relu": Value.relu, "sigmoid": Value.sigmoid, "linear": lambda v: v,
}


class Neuron(Module):
    """One neuron (神经元): activation(w · x + b), with n_inputs weights drawn from U(-1, 1)."""

    def __init__(self, n_inputs: int, activation: str = "tanh", rng: random.Random | None = None) -> None:
        if not isinstance(n_inputs, int) or n_inputs < 1:
            raise ValueError(f"a neuron needs at least one input, got n_inputs={n_inputs!r}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        rng = rng or random.Random()
        self.w = [Value(rng.uniform(-1, 1), label="w") for _ in range(n_inputs)]
        self.b = Value(0.0, label="b")
        self.activation = activation

    def __call__(self, x: Sequence[Value | Number]) -> Value:
        if len(x) != len(self.w):
            raise ValueError(f"this neuron has {len(self.w)} weights but got {len(x)} inputs")
        total = sum((wi * xi for wi, xi in zip(self.w, x)), self.b)
        return _ACTIVATIONS[self.activation](total)

    def parameters(self) -> list[Value]:
        return self.w + [self.b]

    def __repr__(self) -> str:
        return f"Neuron({len(self.w)}, {self.activation})"


class Layer(Module):
    """n_outputs neurons that all read the same inputs; returns a list (or one Value if n_outputs == 1)."""

    def __init__(self, n_inputs: int, n_outputs: int, activation: str = "tanh",
                 rng: random.Random | None = None) -> None:
        if not isinstance(n_outputs, int) or n_outputs < 1:
            raise ValueError(f"a layer needs at least one neuron, got n_outputs={n_outputs!r}")
        self.neurons = [Neuron(n_inputs, activation, rng) for _ in range(n_outputs)]

    def __call__(self, x: Sequence[Value | Number]) -> Value | list[Value]:
        out = [neuron(x) for neuron in self.neurons]
        return out[0] if len(out) == 1 else out

    def parameters(self) -> list[Value]:
        return [p for neuron in self.neurons for p in neuron.parameters()]

    def __repr__(self) -> str:
        return f"Layer([{', '.join(map(repr, self.neurons))}])"


class MLP(Module):
    """A multilayer perceptron (多层感知机): MLP(3, [4, 4, 1]) maps 3 inputs through two hidden layers of 4.

    Hidden layers use `activation`; the last layer is linear (raw scores), as in torch models.
    """

    def __init__(self, n_inputs: int, layer_sizes: Iterable[int], activation: str = "tanh",
                 seed: int | None = None) -> None:
        sizes = [n_inputs, *layer_sizes]
        if len(sizes) < 2:
            raise ValueError("an MLP needs at least one layer size, e.g. MLP(3, [4, 1])")
        rng = random.Random(seed)
        last = len(sizes) - 2
        self.layers = [Layer(sizes[i], sizes[i + 1], activation if i < last else "linear", rng)
                       for i in range(len(sizes) - 1)]

    def __call__(self, x: Sequence[Value | Number]) -> Value | list[Value]:
        out = self.layers[0](x)
        for layer in self.layers[1:]:
            out = layer(out if isinstance(out, list) else [out])
        return out

    def parameters(self) -> list[Value]:
        return [p for layer in self.layers for p in layer.parameters()]

    def __repr__(self) -> str:
        return f"MLP([{', '.join(map(repr, self.layers))}])"
