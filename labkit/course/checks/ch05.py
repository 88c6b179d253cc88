"""Checks for chapter 05 (project practice I: the articles' MLP and CNN).

The stub cells in ``chapters/05_practice_cnn.ipynb``::

    def normalize(images, mean, std):
        raise NotImplementedError  # TODO: (N, 28, 28) uint8 -> (N, 1, 28, 28) float32
    check("05.1", normalize)

    def stratified_split(labels, val_fraction, seed):
        raise NotImplementedError  # TODO: return (train_indices, val_indices)
    check("05.2", stratified_split)

    def shift(images, dx, dy):
        raise NotImplementedError  # TODO: a new tensor (N, 1, H, W), shifted, filled with 0
    check("05.3", shift)

    def build_deeper_cnn():
        raise NotImplementedError  # TODO: an nn.Module taking (B, 1, 28, 28) and returning logits (B, 10)
    check("05.4", build_deeper_cnn)

    def class_scores(cm, c):
        raise NotImplementedError  # TODO: return (precision, recall, f1)
    check("05.5", class_scores)

    prediction = ...  # TODO: "a", "b" or "c", BEFORE running the measurement cell
    committed = prediction  # (the measurement cell's first line)
    measured = ...     # TODO: the convolution's share of the multiply-adds, as the measurement cell printed it
    explanation = ...  # TODO: "a", "b" or "c"
    check("05.6", dict(committed=committed, prediction=prediction, measured=measured, explanation=explanation))

Every check runs in well under a second and leaves the notebook's random stream alone.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from labkit.course.checks.predict import PERCENTAGE, PredictMeasureExplain
from labkit.course.exercises import Hint, close, exercise, expect_callable, expect_number, expect_tensor, same_shape


def _not_done(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError  # what an untouched stub function does


# --------------------------------------------------------------------------- 05.1 normalize


def _reference_normalize(images: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    return ((images.float() / 255 - mean) / std).unsqueeze(1)


def _check_normalize(normalize: Callable) -> str:
    expect_callable(normalize, "normalize")
    generator = torch.Generator().manual_seed(5)
    images = torch.randint(0, 256, (6, 28, 28), dtype=torch.uint8, generator=generator)
    images[:, :4] = 0  # some background, as in real digits
    before = images.clone()
    mean, std = 0.2, 0.3  # deliberately not this batch's own statistics
    got = expect_tensor(normalize(images, mean, std), "normalize(images, mean, std)")
    if not torch.equal(images, before):
        raise Hint("normalize changed the images you passed in; compute a new tensor instead "
                   "(avoid in-place operations such as images.sub_(...))")
    if got.shape == (6, 28, 28):
        raise Hint("the result has shape (N, 28, 28); the model wants a channel dimension: (N, 1, 28, 28). "
                   "Add it with .unsqueeze(1)")
    same_shape(got, (6, 1, 28, 28), "normalize(images, mean, std)")
    if not got.is_floating_point():
        raise Hint(f"the result has dtype {got.dtype}; it should be float32: convert with images.float() first")
    if got.dtype != torch.float32:
        raise Hint(f"the result has dtype {got.dtype}; use float32 (images.float()), the dtype the model's weights have")
    expected = _reference_normalize(images, mean, std)
    if got.max() > 100:
        raise Hint(f"values reach {got.max().item():.0f}: scale the pixels to [0, 1] first (divide by 255), "
                   "then subtract the mean and divide by the std")
    x = images.float() / 255
    if torch.allclose(got.squeeze(1), x - mean / std, atol=1e-4):
        raise Hint("you computed x - mean / std: division comes before subtraction, "
                   "so write (x - mean) / std with the brackets")
    if torch.allclose(got.squeeze(1), (x - mean) * std, atol=1e-4):
        raise Hint("you multiplied by the std; normalising divides by it: (x - mean) / std")
    if torch.allclose(got.squeeze(1), (x - x.mean()) / x.std(), atol=1e-3):
        raise Hint("you used this batch's own mean and std; use the `mean` and `std` arguments "
                   "(the training split's statistics), so that every split is normalised the same way")
    return close(got, expected, atol=1e-5, what="normalize(images, mean=0.2, std=0.3)")


exercise(
    "05.1",
    title="Normalise images",
    reference=lambda: _reference_normalize,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda images, mean, std: (images.float() / 255 - mean) / std,               # no channel dim
        lambda: lambda images, mean, std: ((images.float() - mean) / std).unsqueeze(1),      # not scaled to [0, 1]
        lambda: lambda images, mean, std: (images.float() / 255 - mean / std).unsqueeze(1),  # precedence
        lambda: lambda images, mean, std: ((images.float() / 255 - mean) * std).unsqueeze(1),
        lambda: lambda images, mean, std: (lambda x: ((x - x.mean()) / x.std()).unsqueeze(1))(images.float() / 255),
        lambda: lambda images, mean, std: ((images.double() / 255 - mean) / std).unsqueeze(1),  # float64
        lambda: lambda images, mean, std: ((images // 255 - mean) / std).unsqueeze(1),        # integer division
        lambda: lambda images, mean, std: np.zeros((len(images), 1, 28, 28), dtype=np.float32),  # NumPy
    ],
)(_check_normalize)


# --------------------------------------------------------------------------- 05.2 stratified split


def _reference_stratified_split(labels: torch.Tensor, val_fraction: float, seed: int):
    generator = torch.Generator().manual_seed(seed)
    val_parts = []
    for c in torch.unique(labels):
        indices = torch.nonzero(labels == c).flatten()
        indices = indices[torch.randperm(len(indices), generator=generator)]
        val_parts.append(indices[: round(len(indices) * val_fraction)])
    val = torch.cat(val_parts)
    is_train = torch.ones(len(labels), dtype=torch.bool)
    is_train[val] = False
    return torch.nonzero(is_train).flatten(), val


def _check_labels() -> torch.Tensor:
    """Sorted, unbalanced labels (like a file that was never shuffled): 5 classes, 40..120 images."""
    counts = [60, 40, 120, 45, 85]
    return torch.cat([torch.full((n,), c, dtype=torch.int64) for c, n in enumerate(counts)])


def _as_index_tensor(value: Any, what: str) -> torch.Tensor:
    tensor = expect_tensor(value, what)
    if tensor.is_floating_point() or tensor.dtype == torch.bool:
        raise Hint(f"{what} should hold integer indices (int64), got dtype {tensor.dtype}; "
                   "torch.nonzero and torch.randperm give int64 indices")
    if tensor.ndim != 1:
        raise Hint(f"{what} should be 1-D (a list of indices), got shape {tuple(tensor.shape)}; try .flatten()")
    return tensor.long()


def _one_split(split: Callable, labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    result = split(labels.clone(), fraction, seed)
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise Hint(f"stratified_split should return two tensors (train_indices, val_indices), got {type(result).__name__}"
                   + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else ""))
    return _as_index_tensor(result[0], "train_indices"), _as_index_tensor(result[1], "val_indices")


def _check_stratified_split(split: Callable) -> None:
    expect_callable(split, "stratified_split")
    labels = _check_labels()
    n, fraction = len(labels), 0.2
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        train, val = _one_split(split, labels, fraction, seed=0)
        if len(val) > len(train):
            raise Hint(f"val_indices has {len(val)} indices and train_indices {len(train)}, with val_fraction=0.2: "
                       "return (train_indices, val_indices) in that order, with the fraction going to validation")
        everything = torch.cat([train, val])
        if everything.min() < 0 or everything.max() >= n:
            raise Hint(f"indices must lie in 0..{n - 1} (positions in `labels`), got values from "
                       f"{int(everything.min())} to {int(everything.max())}")
        common = set(train.tolist()) & set(val.tolist())
        if common:
            raise Hint(f"{len(common)} indices are in both train and validation (for example {min(common)}): "
                       "every image must go to exactly one of them")
        if len(set(everything.tolist())) != len(everything):
            raise Hint("an index appears twice in the same split: each image should be used once")
        if len(everything) != n:
            raise Hint(f"train and validation together hold {len(everything)} indices, but there are {n} labels: "
                       "every image must go to one of them")
        for c in range(5):
            total = int((labels == c).sum())
            in_val = int((labels[val] == c).sum())
            if abs(in_val - total * fraction) >= 1:
                raise Hint(f"class {c} has {total} images, so with val_fraction=0.2 about {total * fraction:g} of them "
                           f"should go to validation, but {in_val} did. Split each class separately "
                           "(torch.nonzero(labels == c)) and take round(count * val_fraction) of it")
        again = _one_split(split, labels, fraction, seed=0)
        if not (torch.equal(train, again[0]) and torch.equal(val, again[1])):
            raise Hint("two calls with seed=0 gave different splits: draw the random order from a generator seeded "
                       "with `seed` (torch.Generator().manual_seed(seed)), so a split can be reproduced")
        other = _one_split(split, labels, fraction, seed=1)
        if set(other[1].tolist()) == set(val.tolist()):
            raise Hint("seed=0 and seed=1 gave the same validation images: the split should be random "
                       "(shuffle each class with torch.randperm and the seeded generator), not the first images of each class")


exercise(
    "05.2",
    title="A stratified validation split",
    reference=lambda: _reference_stratified_split,
    stub=lambda: _not_done,
    wrong=[
        lambda: _plain_random_split,            # not stratified
        lambda: _first_of_each_class,           # not random
        lambda: _swapped_split,                 # (val, train)
        lambda: _overlapping_split,             # train keeps every index
        lambda: _unseeded_split,                # not reproducible
        lambda: _float_indices_split,           # indices as floats
    ],
)(_check_stratified_split)


def _plain_random_split(labels: torch.Tensor, val_fraction: float, seed: int):
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    n_val = round(len(labels) * val_fraction)
    return order[n_val:], order[:n_val]


def _first_of_each_class(labels: torch.Tensor, val_fraction: float, seed: int):
    val = torch.cat([torch.nonzero(labels == c).flatten()[: round(int((labels == c).sum()) * val_fraction)]
                     for c in torch.unique(labels)])
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[val] = False
    return torch.nonzero(mask).flatten(), val


def _swapped_split(labels: torch.Tensor, val_fraction: float, seed: int):
    train, val = _reference_stratified_split(labels, val_fraction, seed)
    return val, train


def _overlapping_split(labels: torch.Tensor, val_fraction: float, seed: int):
    _, val = _reference_stratified_split(labels, val_fraction, seed)
    return torch.arange(len(labels)), val


def _unseeded_split(labels: torch.Tensor, val_fraction: float, seed: int):
    parts = []
    for c in torch.unique(labels):
        indices = torch.nonzero(labels == c).flatten()
        parts.append(indices[torch.randperm(len(indices))][: round(len(indices) * val_fraction)])
    val = torch.cat(parts)
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[val] = False
    return torch.nonzero(mask).flatten(), val


def _float_indices_split(labels: torch.Tensor, val_fraction: float, seed: int):
    train, val = _reference_stratified_split(labels, val_fraction, seed)
    return train.float(), val.float()


# --------------------------------------------------------------------------- 05.3 shift


def _reference_shift(images: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    height, width = images.shape[-2:]
    out = torch.zeros_like(images)
    # rows/columns of the output that receive pixels, and the input rows/columns they come from
    out[..., max(dy, 0):height + min(dy, 0), max(dx, 0):width + min(dx, 0)] = \
        images[..., max(-dy, 0):height + min(-dy, 0), max(-dx, 0):width + min(-dx, 0)]
    return out


_SHIFTS = [(2, 0), (0, 3), (-1, 2), (3, -2), (0, 0), (-4, -1)]


def _check_shift(shift: Callable) -> str:
    expect_callable(shift, "shift")
    # Every pixel has its own value, so a wrong shift is easy to tell apart from a right one.
    images = (torch.arange(2 * 1 * 7 * 9, dtype=torch.float32).reshape(2, 1, 7, 9) + 1) / 200
    before = images.clone()
    note = "exact"
    for dx, dy in _SHIFTS:
        got = expect_tensor(shift(images, dx, dy), f"shift(images, dx={dx}, dy={dy})")
        if not torch.equal(images, before):
            raise Hint("shift changed the images you passed in; build a new tensor (torch.zeros_like(images)) instead")
        same_shape(got, tuple(images.shape), f"shift(images, dx={dx}, dy={dy})")
        expected = _reference_shift(images, dx, dy)
        if torch.allclose(got, expected):
            note = close(got, expected, what=f"shift(images, dx={dx}, dy={dy})")
            continue
        if torch.allclose(got, torch.roll(images, shifts=(dy, dx), dims=(-2, -1))):
            raise Hint(f"with dx={dx}, dy={dy} the pixels that leave one edge come back in on the other: that is "
                       "torch.roll's wrap-around. Pixels coming in from outside should be 0 (background)")
        if torch.allclose(got, _reference_shift(images, -dx, -dy)):
            raise Hint(f"with dx={dx}, dy={dy} the image moved the wrong way: positive dx moves it right "
                       "(towards larger column numbers), positive dy moves it down (larger row numbers)")
        if torch.allclose(got, _reference_shift(images, dy, dx)):
            raise Hint(f"with dx={dx}, dy={dy} the image moved {dy} right and {dx} down: dx and dy are swapped. "
                       "Columns (the last dimension, W) go with dx, rows (H) with dy")
        return close(got, expected, what=f"shift(images, dx={dx}, dy={dy})")
    return note


exercise(
    "05.3",
    title="Shift images by hand",
    reference=lambda: _reference_shift,
    stub=lambda: _not_done,
    wrong=[
        lambda: lambda images, dx, dy: torch.roll(images, shifts=(dy, dx), dims=(-2, -1)),  # wraps around
        lambda: lambda images, dx, dy: _reference_shift(images, -dx, -dy),                   # wrong way
        lambda: lambda images, dx, dy: _reference_shift(images, dy, dx),                     # swapped
        lambda: _shift_in_place,
        lambda: lambda images, dx, dy: _reference_shift(images, dx, dy)[:, 0],               # lost the channel
        lambda: lambda images, dx, dy: 1 - _reference_shift(1 - images, dx, dy),            # fills with 1
    ],
)(_check_shift)


def _shift_in_place(images: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    images.copy_(_reference_shift(images, dx, dy))
    return images


# --------------------------------------------------------------------------- 05.4 a deeper CNN

DEEPER_CNN_PARAMETERS = 320 + 18_496 + 204_928 + 1_290  # conv1, conv2, dense 1600 -> 128, dense 128 -> 10
ARTICLES_CNN_PARAMETERS = 693_962


def _reference_deeper_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),    # (B, 32, 26, 26) -> (B, 32, 13, 13)
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),   # (B, 64, 11, 11) -> (B, 64, 5, 5)
        nn.Flatten(),                                       # (B, 1600)
        nn.Linear(64 * 5 * 5, 128), nn.ReLU(),
        nn.Linear(128, 10),
    )


def _check_deeper_cnn(build: Callable) -> str:
    expect_callable(build, "build_deeper_cnn")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build()
        if not isinstance(model, nn.Module):
            raise Hint(f"build_deeper_cnn() should return an nn.Module (for example an nn.Sequential), "
                       f"got {type(model).__name__}")
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if len(convs) != 2:
            raise Hint(f"the model should have 2 nn.Conv2d layers, it has {len(convs)}")
        wanted = [(1, 32), (32, 64)]
        got_channels = [(c.in_channels, c.out_channels) for c in convs]
        if got_channels != wanted:
            raise Hint("the convolutions should map 1 -> 32 and 32 -> 64 channels, got "
                       + " and ".join(f"{i} -> {o}" for i, o in got_channels))
        for conv in convs:
            if tuple(conv.kernel_size) != (3, 3):
                raise Hint(f"the kernels should be 3×3, got {tuple(conv.kernel_size)}")
            if conv.padding not in ((0, 0), "valid"):
                raise Hint(f"a convolution has padding {conv.padding}; Keras's default (padding='valid') means no "
                           "padding, which is PyTorch's default too (padding=0)")
        if len(linears) != 2 or linears[-1].out_features != 10 or linears[0].out_features != 128:
            shapes = ", ".join(f"{m.in_features} -> {m.out_features}" for m in linears) or "none"
            raise Hint(f"after Flatten there should be two nn.Linear layers, ? -> 128 and 128 -> 10; got: {shapes}")

        inputs_seen: dict[str, torch.Tensor] = {}
        hooks = [layer.register_forward_pre_hook(lambda m, args, key=key: inputs_seen.__setitem__(key, args[0]))
                 for key, layer in (("conv2", convs[1]), ("dense1", linears[0]), ("dense2", linears[1]))]
        x = torch.randn(3, 1, 28, 28)
        try:
            model.eval()
            with torch.no_grad():
                out = model(x)
        except RuntimeError as error:
            first_line = str(error).strip().splitlines()[0]
            raise Hint("the model fails on a batch (3, 1, 28, 28); most likely the first Linear layer does not take "
                       "as many features as Flatten gives. Work the size out layer by layer: a 3×3 convolution "
                       "without padding makes each side 2 pixels shorter, a 2×2 max-pool halves it (rounding down); "
                       f"or print x.shape after each layer. PyTorch said: {first_line}") from None
        finally:
            for hook in hooks:
                hook.remove()
        out = expect_tensor(out, "the model's output")
        same_shape(out, (3, 10), "the model's output for a batch (3, 1, 28, 28)")
        if (out >= 0).all() and torch.allclose(out.sum(dim=1), torch.ones(3), atol=1e-4):
            raise Hint("the outputs are probabilities (they sum to 1): leave out the softmax. "
                       "The model should return logits; nn.CrossEntropyLoss applies the softmax itself")
        for key, layer in (("conv2", "first convolution"), ("dense1", "second convolution"), ("dense2", "first Linear layer")):
            if key in inputs_seen and (inputs_seen[key] < 0).any():
                raise Hint(f"negative values come out of the {layer} and reach the next layer: "
                           f"add a ReLU after the {layer}")
        total = sum(p.numel() for p in model.parameters())
        if total != DEEPER_CNN_PARAMETERS:
            raise Hint(f"the model has {total:,} parameters, the two-block CNN has {DEEPER_CNN_PARAMETERS:,}: "
                       "compare your layers with the description (kernels, channels, 128 hidden units)")
    return (f"{total:,} parameters: about a third of the articles' CNN ({ARTICLES_CNN_PARAMETERS:,}), "
            "because the second pooling shrinks what the dense layer sees from 5,408 to 1,600 numbers")


def _articles_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(32 * 13 * 13, 128), nn.ReLU(), nn.Linear(128, 10))


def _deeper_cnn_wrong_flatten() -> nn.Module:
    model = _reference_deeper_cnn()
    model[7] = nn.Linear(64 * 13 * 13, 128)  # forgot that the second block shrinks the image
    return model


def _deeper_cnn_with_padding() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10),
    )


def _deeper_cnn_no_second_relu() -> nn.Module:
    model = _reference_deeper_cnn()
    model[4] = nn.Identity()
    return model


def _deeper_cnn_with_softmax() -> nn.Module:
    return nn.Sequential(_reference_deeper_cnn(), nn.Softmax(dim=1))


exercise(
    "05.4",
    title="A deeper CNN",
    reference=lambda: _reference_deeper_cnn,
    stub=lambda: _not_done,
    wrong=[
        lambda: _articles_cnn,                   # one block only
        lambda: _deeper_cnn_wrong_flatten,       # shape error at the first Linear
        lambda: _deeper_cnn_with_padding,        # padding='same'
        lambda: _deeper_cnn_no_second_relu,
        lambda: _deeper_cnn_with_softmax,
        lambda: lambda: "a model",               # not a module
    ],
)(_check_deeper_cnn)


# --------------------------------------------------------------------------- 05.5 scores of one class

# rows: true class, columns: predicted class. Class 3 is never predicted; class 4 never occurs.
_CHECK_CM = torch.tensor([
    [50, 3, 7, 0, 0],
    [10, 30, 0, 0, 2],
    [5, 15, 20, 0, 0],
    [4, 0, 6, 0, 0],
    [0, 0, 0, 0, 0],
])


def _reference_class_scores(cm: torch.Tensor, c: int) -> tuple[float, float, float]:
    cm = torch.as_tensor(cm)
    true_positives = cm[c, c].item()
    predicted = cm[:, c].sum().item()   # column: everything predicted c
    actual = cm[c, :].sum().item()      # row: everything that really is c
    precision = true_positives / predicted if predicted else 0.0
    recall = true_positives / actual if actual else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _check_class_scores(class_scores: Callable) -> None:
    expect_callable(class_scores, "class_scores")
    for c in range(5):
        result = class_scores(_CHECK_CM.clone(), c)
        if not isinstance(result, (tuple, list)) or len(result) != 3:
            raise Hint(f"class_scores should return three numbers (precision, recall, f1), got {type(result).__name__}"
                       + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else ""))
        got = [expect_number(v, f"{name} of class {c}") for v, name in zip(result, ("precision", "recall", "f1"))]
        precision, recall, f1 = _reference_class_scores(_CHECK_CM, c)
        if any(math.isnan(v) for v in got):
            raise Hint(f"class {c} gives NaN: it is never {'predicted' if c == 3 else 'present'}, so a score is 0/0. "
                       "Return 0 in that case (check the denominator before dividing)")
        if c < 3 and math.isclose(got[0], recall, abs_tol=1e-6) and math.isclose(got[1], precision, abs_tol=1e-6):
            raise Hint(f"for class {c} your precision and recall are swapped: precision divides by the column "
                       "(everything predicted c, cm[:, c].sum()), recall by the row (everything that is c, cm[c, :].sum())")
        for value, expected, name in zip(got, (precision, recall, f1), ("precision", "recall", "F1")):
            if not math.isclose(value, expected, abs_tol=1e-6):
                if name == "F1" and math.isclose(value, (precision + recall) / 2, abs_tol=1e-6):
                    raise Hint(f"for class {c} your F1 is the plain average of precision and recall; F1 is their "
                               "harmonic mean, 2 * precision * recall / (precision + recall)")
                raise Hint(f"the {name} of class {c} should be {expected:.4f}, got {value:.4f} "
                           f"(rows of cm are true classes, columns predicted classes)")


def _swapped_scores(cm: torch.Tensor, c: int) -> tuple[float, float, float]:
    precision, recall, f1 = _reference_class_scores(cm, c)
    return recall, precision, f1


def _mean_f1(cm: torch.Tensor, c: int) -> tuple[float, float, float]:
    precision, recall, _ = _reference_class_scores(cm, c)
    return precision, recall, (precision + recall) / 2


def _nan_for_zero(cm: torch.Tensor, c: int):
    cm = torch.as_tensor(cm).double()
    precision = cm[c, c] / cm[:, c].sum()
    recall = cm[c, c] / cm[c, :].sum()
    return precision, recall, 2 * precision * recall / (precision + recall)


def _accuracy_for_all(cm: torch.Tensor, c: int) -> tuple[float, float, float]:
    accuracy = (cm.diagonal().sum() / cm.sum()).item()
    return accuracy, accuracy, accuracy


exercise(
    "05.5",
    title="Precision, recall and F1 of one class",
    reference=lambda: _reference_class_scores,
    stub=lambda: _not_done,
    wrong=[
        lambda: _swapped_scores,
        lambda: _mean_f1,
        lambda: _nan_for_zero,
        lambda: _accuracy_for_all,
    ],
)(_check_class_scores)


# --------------------------------------------------------------------------- 05.6 predict, measure, explain


def multiply_adds(model: nn.Module) -> dict[str, int]:
    """Multiply-adds per layer for one (1, 1, 28, 28) image, counted by forward hooks on a real forward
    pass: a Conv2d does in_channels·kh·kw per output number, a Linear in_features per output number.
    The measurement of 05.6 (chapter 05's measurement cell writes the same hooks out)."""
    counts: dict[str, int] = {}

    def hook(name: str) -> Callable[..., None]:
        def record(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            if isinstance(module, nn.Conv2d):
                per_output = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
            else:
                assert isinstance(module, nn.Linear)
                per_output = module.in_features
            counts[name] = output.numel() * per_output
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    for handle in handles:
        handle.remove()
    return counts


def _conv_share() -> float:
    with torch.random.fork_rng(devices=[]):  # the layers' random weights do not come from the notebook's stream
        model = _articles_cnn()
    counts = multiply_adds(model)
    return counts["0"] / sum(counts.values())


def _conv_parameter_share() -> float:
    with torch.random.fork_rng(devices=[]):
        model = _articles_cnn()
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    return sum(p.numel() for p in conv.parameters()) / sum(p.numel() for p in model.parameters())


def _share_kind(share: float) -> str:
    return "a" if share < 0.005 else "b" if share < 0.08 else "c"


CONV_WORK = PredictMeasureExplain(
    predictions={
        "a": "about 0.05 %, its share of the parameters",
        "b": "a few per cent",
        "c": "a fifth or more",
    },
    explanations={
        "a": "each of the convolution's 288 weights is used at every one of the 26 × 26 output positions "
             "(weight sharing), so it does 676 multiply-adds per weight; each weight of a dense layer is used "
             "once per image",
        "b": "ReLU and max-pooling, which belong to the convolution's block, do most of its work",
        "c": "the convolution has more parameters than model.parameters() shows: its outputs count too",
    },
    measure=_conv_share,
    predicted=_share_kind,
    explained=lambda share: "a" if share > 100 * _conv_parameter_share() else "none",
    what="the convolution's share of the multiply-adds for one image (a fraction, 0 … 1)",
    wrong_explanations={
        "b": "ReLU and max-pooling multiply nothing and have no weights; the hooks count only Conv2d and Linear. "
             "Look at how often each convolution weight is used",
        "c": "an output is not a parameter: it is computed anew for every image and nothing trains it. "
             "Look at how often each convolution weight is used",
    },
    misreadings=(
        PERCENTAGE,
        (lambda value, true: math.isclose(value, _conv_parameter_share(), rel_tol=0.02),
         "that is the convolution's share of the parameters; the question is its share of the multiply-adds"),
    ),
)


CONV_WORK.register(
    "05.6", "Predict, measure, explain: where a CNN's work is", module=__name__,
    wrong_measurements=(
        lambda: _conv_parameter_share(),  # the parameter share
        lambda: 100 * _conv_share(),  # a percentage
    ),
)
