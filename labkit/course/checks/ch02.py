"""Checks for chapter 02 (concepts): splits, broadcasting, gradients, parameters and hyperparameters.

The stub cells in ``chapters/02_concepts.ipynb``::

    def split_indices(n, val_fraction, test_fraction, seed):
        raise NotImplementedError  # TODO: (train, val, test) index tensors, disjoint, covering 0..n-1
    check("02.1", split_indices)

    def pairwise_squared_distances(a, b):
        raise NotImplementedError  # TODO: (N, D) and (M, D) -> (N, M), no Python loops
    check("02.2", pairwise_squared_distances)

    def mse_gradients(x, y, w, b):
        raise NotImplementedError  # TODO: (dL/dw, dL/db) for L = mean((x @ w + b - y) ** 2)
    check("02.3", mse_gradients)

    def mlp_parameter_count(sizes):
        raise NotImplementedError  # TODO: e.g. [784, 128, 10] -> 101770
    check("02.4", mlp_parameter_count)

    hyperparameters = ...  # TODO: the set of CANDIDATES that you choose rather than learn
    check("02.5", hyperparameters)

    prediction = ...  # TODO: "a", "b" or "c", BEFORE running the measurement cell
    committed = prediction  # (the measurement cell's first line)
    measured = ...     # TODO: the loss that the measurement cell printed
    explanation = ...  # TODO: "a", "b" or "c"
    check("02.6", dict(committed=committed, prediction=prediction, measured=measured, explanation=explanation))

    points = ...  # TODO: the widget's "data points" from which on degree 10 stays "about right for this data"
    check("02.7", points)

02.7 recomputes section 5's widget: the same fixed pool of points, validation points and least
squares (float64), for every position of its "data points" slider (well under a second, then cached).
"""
from __future__ import annotations

import functools
from collections.abc import Iterable
from numbers import Integral
from typing import Any

import torch
from torch import nn

from labkit.course.checks.predict import PredictMeasureExplain
from labkit.course.exercises import Hint, close, exercise, expect_callable, expect_tensor, same_shape


def _not_done(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError  # what an untouched stub function does


# --------------------------------------------------------------------------- 02.1


# (n, val_fraction, test_fraction, seed): uneven sizes, so rounding and the order of the three matter.
_SPLIT_CASES = [(1000, 0.1, 0.2, 0), (101, 0.15, 0.15, 1), (10, 0.2, 0.1, 2), (7, 0.0, 0.3, 3)]
_SPLIT_NAMES = ("train", "val", "test")


def _as_index_tensor(value: Any, name: str, n: int) -> torch.Tensor:
    if isinstance(value, (list, tuple, range)):
        raise Hint(f"the {name} indices should be a torch.Tensor, got a Python {type(value).__name__}; "
                   "slices of torch.randperm(n) are tensors already: return them as they are")
    tensor = expect_tensor(value, f"the {name} indices")
    if tensor.is_floating_point() or tensor.dtype == torch.bool:
        raise Hint(f"the {name} indices should be whole numbers (dtype int64, as torch.randperm gives), "
                   f"got dtype {tensor.dtype}")
    if tensor.dim() != 1:
        raise Hint(f"the {name} indices should be a 1-D tensor, got shape {tuple(tensor.shape)}")
    if tensor.numel() and (tensor.min() < 0 or tensor.max() >= n):
        raise Hint(f"for n={n} every index must be in 0..{n - 1}, but the {name} indices run from "
                   f"{int(tensor.min())} to {int(tensor.max())}")
    return tensor.long()


def _call_split(split_indices: Any, n: int, val_fraction: float, test_fraction: float, seed: int) -> list[torch.Tensor]:
    result = split_indices(n, val_fraction, test_fraction, seed)
    if result is None:
        raise Hint("split_indices returned None: did you forget `return train, val, test`?")
    if not isinstance(result, (tuple, list)) or len(result) != 3:
        raise Hint(f"split_indices should return three tensors (train, val, test), got {type(result).__name__}"
                   + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else ""))
    return [_as_index_tensor(part, name, n) for part, name in zip(result, _SPLIT_NAMES)]


def _is_contiguous_block(indices: torch.Tensor) -> bool:
    if indices.numel() < 10:
        return False
    ordered = indices.sort().values
    return bool((ordered.diff() == 1).all())


def _check_split_indices(split_indices: Any) -> str:
    expect_callable(split_indices, "split_indices")
    # fork_rng: whatever seeding the learner's function does, the notebook's random stream is untouched.
    with torch.random.fork_rng(devices=[]):
        for n, val_fraction, test_fraction, seed in _SPLIT_CASES:
            where = f"split_indices({n}, {val_fraction}, {test_fraction}, seed={seed})"
            parts = _call_split(split_indices, n, val_fraction, test_fraction, seed)
            for part, name in zip(parts, _SPLIT_NAMES):
                if part.unique().numel() != part.numel():
                    raise Hint(f"{where}: the {name} indices contain the same index twice. Drawing with "
                               "torch.randint picks some indices more than once (and misses others); "
                               "shuffle all of them once with torch.randperm(n) and cut that into pieces")
            for i in range(3):
                for j in range(i + 1, 3):
                    shared = torch.isin(parts[i], parts[j]).sum().item()
                    if shared:
                        raise Hint(f"{where}: {shared} indices are in both {_SPLIT_NAMES[i]} and {_SPLIT_NAMES[j]}. "
                                   "The splits must not overlap, or the model is scored on pictures it trained on; "
                                   "cut one shuffled permutation (torch.randperm(n)) into three pieces")
            covered = sum(part.numel() for part in parts)
            if covered != n:
                raise Hint(f"{where}: the three splits hold {covered} indices, but there are {n}: "
                           f"{n - covered} {'example was' if n - covered == 1 else 'examples were'} lost. Round the val "
                           "and test sizes, then give train what is left (n - n_val - n_test), so that rounding loses nothing")
            sizes = [part.numel() for part in parts]
            for name, size, fraction in (("val", sizes[1], val_fraction), ("test", sizes[2], test_fraction)):
                if abs(size - n * fraction) >= 1:
                    swapped = abs(sizes[1] - n * test_fraction) < 1 and abs(sizes[2] - n * val_fraction) < 1
                    raise Hint(f"{where}: {name} should hold about {n * fraction:g} indices ({fraction:.0%} of {n}), "
                               f"got {size}" + (". Did you return (train, test, val)? The order is (train, val, test)"
                                                if swapped else ""))
            blocks = [name for part, name in zip(parts, _SPLIT_NAMES) if _is_contiguous_block(part)]
            if blocks:
                raise Hint(f"{where}: the {blocks[0]} indices are one unbroken block of consecutive numbers. "
                           "Shuffle before cutting: data files are often sorted (by class, by date, by source), "
                           "and a block would then hold only some kinds of example")
            torch.randn(100)  # other code draws random numbers in between
            again = _call_split(split_indices, n, val_fraction, test_fraction, seed)
            if not all(torch.equal(a, b) for a, b in zip(parts, again)):
                raise Hint(f"{where} gave a different split when called again with the same seed: use the seed, "
                           "e.g. torch.randperm(n, generator=torch.Generator().manual_seed(seed))")
        n, val_fraction, test_fraction, seed = _SPLIT_CASES[0]
        first = _call_split(split_indices, n, val_fraction, test_fraction, seed)
        other = _call_split(split_indices, n, val_fraction, test_fraction, seed + 1)
        if all(torch.equal(a, b) for a, b in zip(first, other)):
            raise Hint(f"seeds {seed} and {seed + 1} gave exactly the same split: the `seed` argument should "
                       "choose the shuffle (torch.Generator().manual_seed(seed))")
    return "disjoint, complete, shuffled and reproducible"


def _reference_split_indices(n: int, val_fraction: float, test_fraction: float, seed: int):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    return order[n_val + n_test:], order[:n_val], order[n_val:n_val + n_test]


def _split_without_shuffle(n, val_fraction, test_fraction, seed):
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    order = torch.arange(n)
    return order[n_val + n_test:], order[:n_val], order[n_val:n_val + n_test]


def _split_with_replacement(n, val_fraction, test_fraction, seed):
    g = torch.Generator().manual_seed(seed)
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    return (torch.randint(0, n, (n - n_val - n_test,), generator=g), torch.randint(0, n, (n_val,), generator=g),
            torch.randint(0, n, (n_test,), generator=g))


def _split_truncating(n, val_fraction, test_fraction, seed):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_train, n_val = int(n * (1 - val_fraction - test_fraction)), int(n * val_fraction)
    n_test = int(n * test_fraction)
    return order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:n_train + n_val + n_test]


def _split_swapped(n, val_fraction, test_fraction, seed):
    train, val, test = _reference_split_indices(n, val_fraction, test_fraction, seed)
    return train, test, val


def _split_unseeded(n, val_fraction, test_fraction, seed):
    order = torch.randperm(n)
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    return order[n_val + n_test:], order[:n_val], order[n_val:n_val + n_test]


exercise(
    "02.1",
    title="Split indices into train, validation and test",
    reference=lambda: _reference_split_indices,
    stub=lambda: _not_done,
    wrong=[
        lambda: _split_without_shuffle,
        lambda: _split_with_replacement,
        lambda: _split_truncating,
        lambda: _split_swapped,
        lambda: _split_unseeded,
        lambda: lambda n, v, t, seed: _reference_split_indices(n, v, t, 0),   # ignores the seed
        lambda: lambda n, v, t, seed: [p.tolist() for p in _reference_split_indices(n, v, t, seed)],  # lists
    ],
)(_check_split_indices)


# --------------------------------------------------------------------------- 02.2


def _distance_cases() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(2)
    return [(torch.randn(5, 3, generator=g), torch.randn(4, 3, generator=g)),
            (torch.randn(1, 2, generator=g), torch.randn(6, 2, generator=g)),
            (torch.randn(7, 1, generator=g), torch.randn(7, 1, generator=g)),
            (torch.randn(30, 16, generator=g), torch.randn(20, 16, generator=g))]


def _reference_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(dim=-1)


def _matches(got: torch.Tensor, expected: torch.Tensor) -> bool:
    return got.shape == expected.shape and torch.allclose(got.double(), expected.double(), atol=1e-4, rtol=1e-4)


def _check_pairwise_distances(pairwise_squared_distances: Any) -> None:
    expect_callable(pairwise_squared_distances, "pairwise_squared_distances")
    for a, b in _distance_cases():
        n, m, d = len(a), len(b), a.shape[1]
        what = f"pairwise_squared_distances(a {tuple(a.shape)}, b {tuple(b.shape)})"
        got = expect_tensor(pairwise_squared_distances(a.clone(), b.clone()), what)
        expected = _reference_distances(a, b)
        if tuple(got.shape) == (m, n) and n != m:
            raise Hint(f"{what} has shape {(m, n)}: rows and columns are swapped. Entry [i, j] is the distance "
                       f"from a[i] to b[j], so the result is (N, M) = {(n, m)}: a[:, None, :] - b[None, :, :]")
        if tuple(got.shape) == (n, m, d):
            raise Hint(f"{what} has shape {(n, m, d)}: these are the squared differences per coordinate; "
                       "sum them over the last axis (.sum(dim=-1)) to get one number per pair")
        same_shape(got, (n, m), what)
        if not got.is_floating_point():
            raise Hint(f"{what} should hold floats, got dtype {got.dtype}")
        if _matches(got ** 2, expected):
            raise Hint(f"{what} holds distances, not squared distances (torch.cdist takes a square root): "
                       "square them, or better, skip the square root")
        if _matches(got * d, expected) and d > 1:
            raise Hint(f"{what} is the mean over the {d} coordinates, not the sum: use .sum(dim=-1)")
        if _matches(got, (a[:, None, :] - b[None, :, :]).sum(dim=-1)):
            raise Hint(f"{what} adds up the plain differences; square each difference before summing "
                       "(otherwise +1 and -1 cancel out)")
        close(got, expected, atol=1e-4, rtol=1e-4, what=what)


exercise(
    "02.2",
    title="Pairwise squared distances by broadcasting",
    reference=lambda: _reference_distances,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda a, b: torch.cdist(a, b),                                        # not squared
        lambda: lambda a, b: ((b[:, None, :] - a[None, :, :]) ** 2).sum(-1),           # (M, N)
        lambda: lambda a, b: (a[:, None, :] - b[None, :, :]) ** 2,                     # not summed
        lambda: lambda a, b: ((a[:, None, :] - b[None, :, :]) ** 2).mean(-1),          # mean, not sum
        lambda: lambda a, b: (a[:, None, :] - b[None, :, :]).sum(-1),                  # not squared before summing
        lambda: lambda a, b: (a ** 2).sum(-1)[:, None] + (b ** 2).sum(-1)[None, :] + 2 * a @ b.T,  # sign of 2ab
    ],
)(_check_pairwise_distances)


# --------------------------------------------------------------------------- 02.3


def _gradient_cases() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(3)
    cases = []
    for n, d in ((5, 3), (1, 1), (8, 2)):
        cases.append((torch.randn(n, d, generator=g), torch.randn(n, generator=g),
                      torch.randn(d, generator=g), torch.randn((), generator=g)))
    return cases


def _autograd_gradients(x, y, w, b) -> tuple[torch.Tensor, torch.Tensor]:
    w, b = w.clone().requires_grad_(True), b.clone().requires_grad_(True)
    loss = ((x @ w + b - y) ** 2).mean()
    loss.backward()
    return w.grad, b.grad


def _reference_mse_gradients(x, y, w, b):
    residual = x @ w + b - y                   # (N,): prediction minus target
    n = len(y)
    return 2 / n * x.T @ residual, 2 / n * residual.sum()


def _check_mse_gradients(mse_gradients: Any) -> None:
    expect_callable(mse_gradients, "mse_gradients")
    for x, y, w, b in _gradient_cases():
        n, d = x.shape
        what = f"for x {tuple(x.shape)}"
        result = mse_gradients(x.clone(), y.clone(), w.clone(), b.clone())
        if result is None:
            raise Hint("mse_gradients returned None: did you forget `return grad_w, grad_b`?")
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise Hint(f"mse_gradients should return two tensors (grad_w, grad_b), got {type(result).__name__}")
        grad_w = expect_tensor(result[0], "grad_w")
        grad_b = expect_tensor(result[1], "grad_b")
        want_w, want_b = _autograd_gradients(x, y, w, b)
        if grad_b.numel() == n and n > 1:
            raise Hint(f"{what}, grad_b has {n} numbers, one per example; b is one number shared by all {n} "
                       "examples, so its gradient adds up (and averages) their contributions: one number")
        if grad_b.numel() != 1:
            raise Hint(f"grad_b should be one number (shape ()), got shape {tuple(grad_b.shape)}")
        same_shape(grad_w, (d,), f"{what}, grad_w (one number per weight)")
        grad_b = grad_b.reshape(())
        for name, got, want in (("grad_w", grad_w, want_w), ("grad_b", grad_b, want_b)):
            if _matches(got, want):
                continue
            if _matches(got * 2, want):
                raise Hint(f"{what}, {name} is half of the right value: the derivative of r² is 2·r")
            if _matches(got, want * n) and n > 1:
                raise Hint(f"{what}, {name} is {n} times too big: the loss is a mean over the {n} examples, "
                           f"so every gradient gets a factor 1/N")
            if _matches(got, -want):
                raise Hint(f"{what}, {name} has the wrong sign: with r = x @ w + b - y (prediction minus target), "
                           "dL/dw = 2/N · xᵀ r; if you wrote r = y - prediction, its derivative brings a minus sign")
            close(got, want, atol=1e-5, rtol=1e-4, what=f"{what}, {name}")


exercise(
    "02.3",
    title="Gradients of the mean squared error by hand",
    reference=lambda: _reference_mse_gradients,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda x, y, w, b: tuple(g / 2 for g in _reference_mse_gradients(x, y, w, b)),         # no 2
        lambda: lambda x, y, w, b: tuple(g * len(y) for g in _reference_mse_gradients(x, y, w, b)),    # sum, not mean
        lambda: lambda x, y, w, b: tuple(-g for g in _reference_mse_gradients(x, y, w, b)),            # sign
        lambda: lambda x, y, w, b: (_reference_mse_gradients(x, y, w, b)[0], 2 / len(y) * (x @ w + b - y)),  # unsummed
        lambda: lambda x, y, w, b: (2 * (x @ w + b - y).mean() * w, 2 * (x @ w + b - y).mean()),       # w for x
    ],
)(_check_mse_gradients)


# --------------------------------------------------------------------------- 02.4


_SIZE_CASES = [[784, 10], [784, 128, 10], [3, 1], [2, 4, 4, 1], [5, 5]]


def _reference_mlp_parameter_count(sizes: list[int]) -> int:
    return sum(n_in * n_out + n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))


def _built_count(sizes: list[int]) -> int:
    with torch.random.fork_rng(devices=[]):  # the layers' random weights do not come from the notebook's stream
        layers = [nn.Linear(n_in, n_out) for n_in, n_out in zip(sizes[:-1], sizes[1:])]
    return sum(p.numel() for layer in layers for p in layer.parameters())


def _check_mlp_parameter_count(mlp_parameter_count: Any) -> None:
    expect_callable(mlp_parameter_count, "mlp_parameter_count")
    for sizes in _SIZE_CASES:
        got = mlp_parameter_count(list(sizes))
        expected = _built_count(sizes)
        if got is None:
            raise Hint("mlp_parameter_count returned None: did you forget `return`?")
        if isinstance(got, torch.Tensor):
            raise Hint(f"mlp_parameter_count should return a Python int, got a tensor {got!r}; convert it with int(...)")
        if isinstance(got, float) and got == expected:
            raise Hint(f"mlp_parameter_count({sizes}) returned the float {got!r}: a count is a whole number, "
                       "return an int (use // instead of /, or int(...))")
        if isinstance(got, bool) or not isinstance(got, Integral):
            raise Hint(f"mlp_parameter_count should return a whole number (int), got {type(got).__name__} {got!r}")
        if got == expected:
            continue
        pairs = list(zip(sizes[:-1], sizes[1:]))
        weights = sum(a * b for a, b in pairs)
        diagnosis = {
            weights: "that counts the weights only: every layer also has a bias, one number per output unit",
            weights + sum(a for a, _ in pairs): "each layer's bias has one number per OUTPUT unit (n_out), "
                                                "not per input: nn.Linear(n_in, n_out) holds n_in·n_out + n_out numbers",
            weights + sum(sizes): "the input is not a layer and has no bias: count n_in·n_out + n_out for each "
                                  "pair of neighbouring sizes",
            len(pairs): "that is the number of layers; count the numbers inside each one",
        }.get(int(got), "for each pair of neighbouring sizes (n_in, n_out) add n_in·n_out weights and n_out biases")
        raise Hint(f"mlp_parameter_count({sizes}) returned {got}, expected {expected}: {diagnosis}")


exercise(
    "02.4",
    title="Count an MLP's parameters from its sizes",
    reference=lambda: _reference_mlp_parameter_count,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda sizes: sum(a * b for a, b in zip(sizes[:-1], sizes[1:])),             # no biases
        lambda: lambda sizes: sum(a * b + a for a, b in zip(sizes[:-1], sizes[1:])),         # bias per input
        lambda: lambda sizes: sum(a * b for a, b in zip(sizes[:-1], sizes[1:])) + sum(sizes),  # input bias too
        lambda: lambda sizes: float(_reference_mlp_parameter_count(sizes)),                  # a float
        lambda: lambda sizes: len(sizes) - 1,                                                # counts layers
    ],
)(_check_mlp_parameter_count)


# --------------------------------------------------------------------------- 02.5


PARAMETERS = {
    "weights of the first layer": "the optimizer changes them at every step: they are in model.parameters()",
    "bias of the output layer": "it is learned like the weights: loss.backward() computes its gradient",
    "kernel values of a convolution": "the w in y = f(x * w + b) is learned from the data, like any weight",
}
HYPERPARAMETERS = {
    "learning rate": "you pass it to the optimizer (fit(lr=...)); no gradient ever changes it",
    "batch size": "you choose it (fit(batch_size=...)); training never changes it",
    "number of epochs": "you choose how long to train (fit(epochs=...))",
    "hidden width": "you choose it when you build the model (nn.Linear(784, width)); it decides how many parameters there are",
    "number of layers": "you choose the model's structure before training starts",
    "kernel size of a convolution": "you choose the kernel's size (3×3, 5×5); training learns only the values inside it",
}
CANDIDATES = [
    "learning rate", "weights of the first layer", "hidden width", "batch size", "bias of the output layer",
    "number of epochs", "kernel values of a convolution", "number of layers", "kernel size of a convolution",
]


def _check_hyperparameters(answer: Any) -> str:
    if isinstance(answer, str):
        raise Hint(f"expected a set of names, got the single string {answer!r}; "
                   "write {\"learning rate\", \"batch size\", ...} with every hyperparameter in it")
    if isinstance(answer, dict) or not isinstance(answer, Iterable) or isinstance(answer, torch.Tensor):
        raise Hint(f"expected a set of names from CANDIDATES, like {{\"learning rate\", ...}}, got {type(answer).__name__}")
    names = list(answer)
    if not all(isinstance(name, str) for name in names):
        odd = next(name for name in names if not isinstance(name, str))
        raise Hint(f"every item should be a name (a string) copied from CANDIDATES, got {odd!r}")
    chosen = {name.strip().lower() for name in names}
    unknown = sorted(chosen - set(CANDIDATES))
    if unknown:
        raise Hint(f"{unknown[0]!r} is not one of the candidates; copy names exactly from CANDIDATES: {CANDIDATES}")
    if not chosen:
        raise Hint("the set is empty: some of the candidates are chosen by you, not learned")
    # Only how many are wrong, never which: a hint naming each misplaced item would let trial and error
    # solve the exercise without the rule. The rule is the hint.
    wrong = (chosen & set(PARAMETERS)) | (set(HYPERPARAMETERS) - chosen)
    if wrong:
        count = f"{len(wrong)} of the {len(CANDIDATES)} {'is' if len(wrong) == 1 else 'are'} sorted wrongly"
        raise Hint(f"{count}. Ask of each candidate: does training change it (loss.backward() gives it a gradient "
                   "and the optimizer updates it: a parameter), or do you choose it before training starts and "
                   "no gradient ever touches it (a hyperparameter)?")
    return f"{len(HYPERPARAMETERS)} hyperparameters chosen, {len(PARAMETERS)} parameters learned"


exercise(
    "02.5",
    title="Parameters or hyperparameters?",
    reference=lambda: set(HYPERPARAMETERS),
    stub=lambda: ...,
    wrong=[
        lambda: set(CANDIDATES),                                         # everything
        lambda: set(PARAMETERS),                                         # exactly the wrong ones
        lambda: set(HYPERPARAMETERS) - {"kernel size of a convolution"},
        lambda: set(HYPERPARAMETERS) | {"kernel values of a convolution"},
        lambda: "learning rate",                                         # one string
        lambda: set(),
        lambda: set(HYPERPARAMETERS) | {"dropout"},                      # not a candidate
    ],
)(_check_hyperparameters)


# --------------------------------------------------------------------------- 02.6 predict, measure, explain


def perfect_predictions() -> tuple[torch.Tensor, torch.Tensor]:
    """(predictions (100, 1), targets (100,)): a model's output column and its labels, equal value for value."""
    targets = torch.linspace(0.0, 1.0, 100)
    return targets.clone()[:, None], targets


def _broadcast_loss() -> float:
    predictions, targets = perfect_predictions()
    return ((predictions - targets) ** 2).mean().item()


def _loss_kind(loss: float) -> str:
    return "a" if loss == 0 else "c"


SHAPE_TRAP = PredictMeasureExplain(
    predictions={
        "a": "0: every prediction equals its target",
        "b": "an error: the shapes (100, 1) and (100,) differ",
        "c": "a number above 0",
    },
    explanations={
        "a": "broadcasting lines the shapes up from the right: (100, 1) and (100,) fit and are stretched to "
             "(100, 100), so every prediction is compared with every target, not only with its own",
        "b": "float32 rounding: the predictions are not exactly equal to the targets",
        "c": "PyTorch flattens both to (100,) and then rounds the differences",
    },
    measure=_broadcast_loss,
    predicted=_loss_kind,
    explained=lambda loss: "a" if loss > 0.01 else "none",
    what="((predictions - targets) ** 2).mean() for the (100, 1) predictions and (100,) targets",
    wrong_explanations={
        "b": "the predictions are copies of the targets, bit for bit (targets.clone()): rounding makes nothing "
             "differ here, and rounding errors are near 1e-7, not near 0.17. Print (predictions - targets).shape",
        "c": "nothing is flattened: print (predictions - targets).shape and apply section 1's rule",
    },
    misreadings=(
        (lambda value, true: value == 0, "0 is what the loss would be if the shapes matched; copy what the "
                                         "measurement cell printed for the (100, 1) and (100,) tensors"),
    ),
)


SHAPE_TRAP.register(
    "02.6", "Predict, measure, explain: a loss over mismatched shapes", module=__name__,
    wrong_measurements=(
        lambda: 0.0,  # what one expects, not what is measured
        lambda: 100 * 100,  # the number of entries, not the loss
    ),
)


# --------------------------------------------------------------------------- 02.7 how much data degree 10 needs

POLY_NOISE, POLY_MAX_DEGREE, POLY_DEGREE = 0.3, 14, 10  # section 5: the noise, the degrees shown, the question's
POINTS_SLIDER = range(15, 201, 5)                        # the widget's "data points" slider
ABOUT_RIGHT = 1.15  # the widget's verdict: "about right" within 15% of the best degree's validation error


def _poly_points(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Section 5's make_points: x uniform in [-1, 1], y = sin(6x + 0.5) + noise, float64."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(n, generator=generator, dtype=torch.float64) * 2 - 1
    return x, torch.sin(6 * x + 0.5) + POLY_NOISE * torch.randn(n, generator=generator, dtype=torch.float64)


@functools.lru_cache(maxsize=1)
def degree_verdicts() -> dict[int, tuple[float, int]]:
    """For each position n of the slider: (degree 10's validation error / the best degree's, the best degree),
    as the widget computes them (its pool: seed 3, its 2,000 validation points: seed 1)."""
    val_x, val_y = _poly_points(2000, 1)
    pool_x, pool_y = _poly_points(200, 3)
    # the columns 1, x, x², ..., x^14 once: degree d's are the first d + 1 (the same numbers the widget computes)
    val_powers, pool_powers = (torch.stack([x**k for k in range(POLY_MAX_DEGREE + 1)], dim=-1) for x in (val_x, pool_x))

    verdicts, threads = {}, torch.get_num_threads()
    torch.set_num_threads(1)  # 570 tiny least-squares fits: waking a second thread for each costs more than it saves
    try:
        for n in POINTS_SLIDER:
            x, y = pool_powers[:n], pool_y[:n, None]
            errors = torch.stack([
                ((val_powers[:, : d + 1] @ torch.linalg.lstsq(x[:, : d + 1], y).solution)[:, 0] - val_y).pow(2).mean()
                for d in range(POLY_MAX_DEGREE + 1)])
            best = int(errors.argmin())
            verdicts[n] = (float(errors[POLY_DEGREE] / errors[best]), best)
    finally:
        torch.set_num_threads(threads)
    return verdicts


def stays_about_right_from() -> int:
    """The fewest points from which on degree 10 is "about right" at every later position of the slider."""
    verdicts = degree_verdicts()
    return min(n for n in POINTS_SLIDER if all(verdicts[m][0] <= ABOUT_RIGHT for m in POINTS_SLIDER if m >= n))


def _times(ratio: float) -> str:
    """A ratio of validation errors, with enough digits to tell it from the verdict's 1.15."""
    return f"{ratio:.3f}×" if ratio < 2 else f"{ratio:.0f}×"


def _check_points(points: Any) -> str:
    if points is Ellipsis:
        raise NotImplementedError("replace ... with a number of points: in section 5's widget set the degree to 10 "
                                  "and move 'data points' up from 15, reading the title of the left panel")
    if isinstance(points, bool) or not isinstance(points, Integral):
        raise Hint(f"points should be a whole number of data points (a position of the slider), got {points!r:.40}")
    points = int(points)
    if points not in POINTS_SLIDER:
        raise Hint(f"the 'data points' slider goes from {POINTS_SLIDER.start} to {POINTS_SLIDER.stop - 1} in steps of "
                   f"{POINTS_SLIDER.step}; {points} is not one of its positions")
    verdicts, answer = degree_verdicts(), stays_about_right_from()
    ratio, best = verdicts[points]
    if points == answer:
        return (f"degree 10 is about right from {answer} points on: its validation error is {_times(ratio)} the best "
                f"degree's there (the best: {best}), and within {ABOUT_RIGHT:.2f}× at every larger size")
    if points > answer:
        raise Hint(f"degree 10 is about right at {points} points, and it stays so from fewer points on: "
                   "move the slider down until the title stops saying 'about right', one step at a time")
    if ratio <= ABOUT_RIGHT:
        again = next(m for m in POINTS_SLIDER if m > points and verdicts[m][0] > ABOUT_RIGHT)
        raise Hint(f"at {points} points degree 10 is about right, but at {again} it is not again (its validation error "
                   f"{_times(verdicts[again][0])} the best degree's): these few points happened to suit it. More data "
                   "should make a verdict hold; find where it holds for good")
    verdict = ("the widget calls it underfitting: with these points a higher degree does better" if best > POLY_DEGREE
               else "still overfitting: its wiggles follow the noise")
    raise Hint(f"at {points} points degree 10's validation error is {_times(ratio)} the best degree's (the best: {best}); "
               f"{verdict}. Add points")


exercise(
    "02.7",
    title="How much data does degree 10 need?",
    reference=stays_about_right_from,
    stub=lambda: ...,
    wrong=[
        lambda: 25,     # about right by luck: 30 overfits again
        lambda: 15,     # the slider's start: far overfitting
        lambda: 65,     # just before: still 1.15× and more
        lambda: 100,    # about right, but not the fewest
        lambda: 72,     # not a position of the slider
        lambda: 70.0,   # not a whole number
    ],
)(_check_points)

