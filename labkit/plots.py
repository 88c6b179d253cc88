"""Pictures of data and results: image grids, mistakes, confusion matrices, training curves.

Every function returns a matplotlib `Figure` and none calls ``plt.show()``: the notebook
decides. The figures are made without pyplot (a `NotebookFigure`, a plain Figure that
knows how to show itself), so they never pile up in pyplot's list of open figures and are
never shown twice. A figure appears when it is a cell's last value, or with
``display(fig)`` anywhere else; ``fig.savefig("x.png")`` works as usual.
"""
from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure
from matplotlib.ticker import MaxNLocator

__all__ = [
    "plot_confusion_matrix",
    "show_images",
    "show_mistakes",
    "plot_history",
    "draw_history",
    "new_figure",
    "NotebookFigure",
]

WRONG_COLOUR = "#d62728"  # red: wrong predictions
RIGHT_COLOUR = "#222222"  # near-black: right predictions and plain labels


class NotebookFigure(Figure):
    """A matplotlib Figure that a notebook shows as a PNG image, even if pyplot was never used.

    Jupyter's matplotlib support switches itself on only when pyplot first makes a figure;
    until then a plain Figure would show as the bare text "<Figure size ...>".
    """

    def __repr__(self) -> str:  # "<Figure size 640x480 with 1 Axes>", as for any Figure
        return super().__repr__().replace(type(self).__name__, "Figure", 1)

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()


def new_figure(figsize: tuple[float, float]) -> NotebookFigure:
    """A figure outside pyplot, laid out automatically (titles, labels and colorbars fit).

    Use it instead of ``plt.figure`` for a figure that should not stay in pyplot's list of
    open figures, such as one redrawn in place by a live plot.
    """
    return NotebookFigure(figsize=figsize, layout="constrained")


def root_figure(fig: Figure | SubFigure) -> Figure:
    """`fig` itself, or the Figure that holds it if it is a SubFigure (the one that is saved and shown)."""
    return fig if isinstance(fig, Figure) else fig.figure


def _to_numpy(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
        if values.dtype in (torch.bfloat16, torch.float16):
            values = values.float()  # numpy has no bfloat16
        return values.numpy()
    return np.asarray(values)


def _name(label: int, class_names: Sequence[str] | None) -> str:
    if class_names is None:
        return str(label)
    if not 0 <= label < len(class_names):
        raise ValueError(f"label {label} has no name: class_names has {len(class_names)} names (0..{len(class_names) - 1})")
    return str(class_names[label])


# ---------------------------------------------------------------------------------------
# Confusion matrix
# ---------------------------------------------------------------------------------------
def _text_colour_on(rgba: tuple[float, ...] | np.ndarray) -> str:
    """Black or white, whichever contrasts more with a background colour (WCAG luminance)."""
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgba[:3]]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    # Contrast with white is 1.05 / (L + 0.05), with black (L + 0.05) / 0.05: equal at L ≈ 0.18.
    return "white" if 1.05 / (luminance + 0.05) > (luminance + 0.05) / 0.05 else "black"


def plot_confusion_matrix(
    cm: Any,
    class_names: Sequence[str] | None = None,
    normalize: bool = False,
    title: str | None = None,
    ax: Axes | None = None,
    figsize: tuple[float, float] | None = None,
    cmap: str = "Blues",
) -> Figure:
    """Draw a confusion matrix (C, C): rows are true classes, columns predicted classes.

    Each cell shows its count, or with ``normalize=True`` the percentage of its row (of the
    samples of that true class, how many went where), so the diagonal reads as per-class
    recall. `cm` comes from `labkit.metrics.confusion_matrix`. Draws into `ax` if given.

    Chapter 02 draws one; 05 and 07b read mistakes from theirs.
    """
    counts = _to_numpy(cm).astype(float)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"a confusion matrix must be square (C, C), got shape {counts.shape}")
    n = counts.shape[0]
    if class_names is None:
        class_names = [str(i) for i in range(n)]
    if len(class_names) != n:
        raise ValueError(f"class_names has {len(class_names)} names but the matrix has {n} classes")

    if normalize:
        row_sums = counts.sum(axis=1, keepdims=True)
        values = np.divide(counts * 100, row_sums, out=np.zeros_like(counts), where=row_sums != 0)
        vmax = 100.0
    else:
        values = counts
        vmax = max(float(values.max()), 1.0)

    fig: Figure | SubFigure
    if ax is None:
        side = max(4.5, 0.55 * n + 2.5)
        fig = new_figure(figsize or (side + 1.0, side))
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    image = ax.imshow(values, cmap=cmap, vmin=0, vmax=vmax, interpolation="nearest")
    bar = fig.colorbar(image, ax=ax, shrink=0.8)
    bar.set_label("% of the true class" if normalize else "number of samples")

    if n <= 30:  # beyond that the numbers would be too small to read
        fontsize = 10 if n <= 10 else max(5, int(100 / n))
        for i in range(n):
            for j in range(n):
                value = values[i, j]
                if normalize:
                    text = "0" if value == 0 else f"{value:.0f}%" if value >= 9.95 else f"{value:.1f}%"
                else:
                    text = f"{int(value)}"
                colour = _text_colour_on(image.cmap(image.norm(value)))
                if value == 0 and colour == "black":
                    colour = "#a0a0a0"  # grey zeros, so the real confusions stand out
                ax.text(j, i, text, ha="center", va="center", fontsize=fontsize, color=colour)
    if n <= 60:
        ax.set_xticks(range(n), labels=[str(c) for c in class_names], rotation=45, ha="right", rotation_mode="anchor")
        ax.set_yticks(range(n), labels=[str(c) for c in class_names])
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    if title is None:
        title = "Confusion matrix (% of each true class)" if normalize else "Confusion matrix"
    ax.set_title(title)
    return root_figure(fig)


# ---------------------------------------------------------------------------------------
# Image grids
# ---------------------------------------------------------------------------------------
def _images_for_display(images: Any) -> np.ndarray:
    """Images as a float array in [0, 1]: (N, H, W) for grayscale or (N, H, W, 3) for colour.

    Accepts (N, H, W), (N, 1, H, W), (N, 3, H, W), (N, H, W, 3) and a single (H, W) image;
    uint8 is read as 0..255; floats already within [0, 1] are kept; any other floats
    (for example normalised to mean 0, std 1) are rescaled by the batch's min and max.
    """
    if isinstance(images, (list, tuple)):
        images = torch.stack([torch.as_tensor(_to_numpy(im)) for im in images])
    arr = _to_numpy(images)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim == 4:
        if arr.shape[1] in (1, 3):  # channels first, PyTorch's layout
            arr = np.moveaxis(arr, 1, -1)
        elif arr.shape[-1] not in (1, 3):
            raise ValueError(
                f"4-D images must be (N, 1 or 3, H, W) or (N, H, W, 1 or 3), got shape {arr.shape}"
            )
        if arr.shape[-1] == 1:
            arr = arr[..., 0]
    if arr.ndim not in (3, 4):
        raise ValueError(f"images must be (N, H, W), (N, 1, H, W) or (N, 3, H, W), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError("got 0 images: there is nothing to show")

    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == bool:
        return arr.astype(np.float32)
    arr = arr.astype(np.float32)
    low, high = float(arr.min()), float(arr.max())
    if low >= 0.0 and high <= 1.0:
        return arr
    if high == low:
        return np.zeros_like(arr)
    return (arr - low) / (high - low)


def _image_grid(
    images: np.ndarray,
    captions: Sequence[str],
    colours: Sequence[str],
    ncols: int,
    title: str,
    figsize: tuple[float, float] | None,
) -> Figure:
    """Images (N, H, W[, 3]) in [0, 1] on a grid, one caption above each."""
    n = len(images)
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be a positive int, got {ncols!r}")
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    lines = max((c.count("\n") + 1 for c in captions), default=0)
    cell_height = 1.25 + 0.17 * lines
    fig = new_figure(figsize or (max(1.3 * ncols, 3.0), cell_height * nrows + (0.35 if title else 0)))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for k, ax in enumerate(axes):
        if k >= n:
            fig.delaxes(ax)  # no empty frames after the last image
            continue
        image = images[k]
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if captions[k]:
            ax.set_title(captions[k], fontsize=9, color=colours[k], pad=3)
    if title:
        fig.suptitle(title)
    return fig


def _captions(
    targets: Sequence[int] | None, preds: Sequence[int] | None, class_names: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    """Captions "label", "pred: p" or "true → pred" and their colours (red when wrong)."""
    if targets is None and preds is None:
        return [], []
    captions, colours = [], []
    for k in range(len(targets) if targets is not None else len(preds or ())):
        if preds is None and targets is not None:
            captions.append(_name(targets[k], class_names))
            colours.append(RIGHT_COLOUR)
        elif targets is None and preds is not None:
            captions.append(f"pred: {_name(preds[k], class_names)}")
            colours.append(RIGHT_COLOUR)
        elif targets is not None and preds is not None:
            captions.append(f"{_name(targets[k], class_names)} → {_name(preds[k], class_names)}")
            colours.append(WRONG_COLOUR if targets[k] != preds[k] else RIGHT_COLOUR)
    # Long "true → pred" captions would run into the neighbours: break them before the arrow.
    if any(len(c) > 14 for c in captions):
        captions = [c.replace(" → ", "\n→ ") for c in captions]
    return captions, colours


def _labels_list(values: Any, name: str, count: int) -> list[int] | None:
    if values is None:
        return None
    arr = _to_numpy(values)
    if arr.ndim == 2:  # logits or probabilities (N, C)
        arr = arr.argmax(axis=1)
    arr = arr.reshape(-1)
    if len(arr) < count:
        raise ValueError(f"got {count} images but only {len(arr)} {name}")
    return [int(v) for v in arr[:count]]


def show_images(
    images: Any,
    labels: Any = None,
    class_names: Sequence[str] | None = None,
    preds: Any = None,
    ncols: int = 8,
    title: str | None = None,
    max_images: int = 64,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Show images on a grid, captioned with their label, or "true → pred" when `preds` are given.

    `images`: (N, H, W), (N, 1, H, W) or (N, 3, H, W), as uint8 or float (normalised
    images are rescaled for display). `labels` and `preds`: class numbers (N,) (`preds`
    may also be logits (N, C)). Wrong predictions are captioned in red. At most
    `max_images` images are drawn (the first ones), so a whole data set cannot freeze
    the notebook. Pass ``title=""`` for no title.

    Chapter 00 shows the first images with it.
    """
    arr = _images_for_display(images)
    arr = arr[:max_images]
    n = len(arr)
    targets = _labels_list(labels, "labels", n)
    predicted = _labels_list(preds, "preds", n)
    captions, colours = _captions(targets, predicted, class_names)
    if not captions:
        captions, colours = [""] * n, [RIGHT_COLOUR] * n
    if title is None:
        if targets is not None and predicted is not None:
            wrong = sum(t != p for t, p in zip(targets, predicted))
            title = f"{wrong} of {n} predictions wrong (red)"
        else:
            title = f"{n} images"
    return _image_grid(arr, captions, colours, ncols, title, figsize)


def _is_probabilities(outputs: torch.Tensor) -> bool:
    """Whether (N, C) outputs already are probabilities (each row in [0, 1] summing to 1)."""
    return bool(
        outputs.min() >= 0
        and outputs.max() <= 1
        and torch.allclose(outputs.sum(dim=1), torch.ones(len(outputs), dtype=outputs.dtype), atol=1e-3)
    )


def _percent(probability: float) -> str:
    """A probability as a percentage that never reads 100% unless it is exactly 1."""
    if probability >= 0.995 and probability < 1.0:
        return f"{math.floor(probability * 1000) / 10:.1f}%"
    return f"{probability:.0%}"


def show_mistakes(
    images: Any,
    targets: Any,
    outputs: Any,
    class_names: Sequence[str] | None = None,
    n: int = 16,
    ncols: int = 8,
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Show the images the model got wrong, captioned "true → pred".

    `images`: (N, ...) as for `show_images`, or a Dataset yielding (x, y) pairs (only the
    shown images are read from it); `targets`: true labels (N,); `outputs`: either
    predicted labels (N,) — mistakes are shown in data order — or logits / probabilities
    (N, C), for example from `labkit.evaluation.predict` — then the *most confident* mistakes
    come first, each with the probability the model gave its wrong answer.
    At most `n` images are shown.

    Chapter 05 shows its CNN's mistakes.
    """
    t = torch.as_tensor(_to_numpy(targets)).long().reshape(-1)
    out = torch.as_tensor(_to_numpy(outputs))
    if out.ndim == 2:
        probs = out.double() if _is_probabilities(out) else out.double().softmax(dim=1)
        confidence, preds = probs.max(dim=1)
    elif out.ndim == 1:
        confidence, preds = None, out.long()
    else:
        raise ValueError(f"outputs must be labels (N,) or logits (N, C), got shape {tuple(out.shape)}")
    if len(preds) != len(t):
        raise ValueError(f"targets and outputs must have the same length, got {len(t)} and {len(preds)}")
    if hasattr(images, "__len__") and len(images) != len(t):
        raise ValueError(f"got {len(images)} images but {len(t)} targets: they must match one to one")

    wrong = torch.nonzero(preds != t).flatten()
    total = len(t)
    if len(wrong) == 0:
        fig = new_figure(figsize or (5.0, 1.6))
        ax = fig.add_subplot()
        ax.set_axis_off()
        ax.text(0.5, 0.5, f"No mistakes: all {total} predictions are right.", ha="center", va="center", fontsize=12)
        ax.set_title(title if title is not None else "Mistakes")
        return fig
    if confidence is not None:
        order = torch.argsort(confidence[wrong], descending=True, stable=True)
        wrong = wrong[order]
    shown = wrong[:n].tolist()

    picked: np.ndarray | list[Any]
    if isinstance(images, (torch.Tensor, np.ndarray)):
        picked = _to_numpy(images)[shown]
    else:  # a Dataset (or list): read only the images we show
        items = [images[i] for i in shown]
        picked = [item[0] if isinstance(item, (tuple, list)) else item for item in items]
    arr = _images_for_display(picked)

    captions, colours = _captions(t[shown].tolist(), preds[shown].tolist(), class_names)
    if confidence is not None:
        percents = [_percent(float(confidence[i])) for i in shown]
        captions = [f"{c} ({p})" if "\n" in c else f"{c}\n{p}" for c, p in zip(captions, percents)]
    if title is None:
        share = f"{len(wrong)} of {total} wrong ({len(wrong) / total:.1%})"
        title = f"Most confident mistakes — {share}" if confidence is not None else f"Mistakes — {share}"
    return _image_grid(arr, captions, colours, ncols, title, figsize)


# ---------------------------------------------------------------------------------------
# Training curves
# ---------------------------------------------------------------------------------------
_SPLITS = (("train", "C0"), ("val", "C1"), ("running", "C7"))  # running: fit(eval_train=True)'s running means
_LINESTYLES = ("-", "--", ":", "-.")


def _metric_names(history: Mapping[str, Sequence[float]], metrics: Sequence[str] | None) -> list[str]:
    """The metrics to draw beside the loss: by default every "train_X" / "val_X" but loss."""
    keys = list(history.keys())
    if metrics is not None:
        if isinstance(metrics, str):
            metrics = [metrics]
        names = []
        for name in metrics:
            if not any(k in keys for k in (name, f"train_{name}", f"val_{name}")):
                known = sorted({k.split("_", 1)[1] if k.startswith(("train_", "val_")) else k for k in keys})
                raise ValueError(f"history has no {name!r}; it has {known}")
            names.append(name)
        return [m for m in names if m != "loss"]
    names = []
    for key in keys:
        for prefix, _ in _SPLITS:
            if key.startswith(prefix + "_"):
                name = key[len(prefix) + 1:]
                if name != "loss" and name not in names:
                    names.append(name)
    return names


def _as_floats(values: Sequence[Any]) -> list[float]:
    return [math.nan if v is None else float(v) for v in values]


def _draw_curves(ax: Axes, history: Mapping[str, Sequence[float]], name: str, linestyle: str, with_name: bool) -> int:
    """Draw train / val (or plain) curves of one quantity; returns the number of epochs seen."""
    epochs = 0
    series = [(f"{split}_{name}", split, colour) for split, colour in _SPLITS] + [(name, name, "C2")]
    for key, label, colour in series:
        if key not in history or not len(history[key]):
            continue
        values = _as_floats(history[key])
        x = _as_floats(history["step"]) if "step" in history else range(1, len(values) + 1)
        marker = "o" if len(values) <= 30 else None
        shown_label = f"{label} {name}" if with_name and label != name else label
        ax.plot(x, values, color=colour, linestyle=linestyle, marker=marker, markersize=4, label=shown_label)
        epochs = max(epochs, len(values))
    return epochs


_READABLE = {"lr": "learning rate"}


def _pretty(name: str) -> str:
    """A history key as words: "top5_accuracy" -> "top5 accuracy", "lr" -> "learning rate"."""
    return _READABLE.get(name, name.replace("_", " "))


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def draw_history(
    axes: Axes | Sequence[Axes], history: Mapping[str, Sequence[float]], metrics: Sequence[str] | None = None
) -> None:
    """Clear `axes` and draw `history` into them: the loss in ``axes[0]``, metrics after it.

    Used to redraw a live plot in place, without making a new figure. `history` maps keys
    such as "train_loss", "val_loss", "train_accuracy" to per-epoch lists; missing keys
    (say, no validation data) are simply not drawn. Epochs are numbered from 1.
    Each metric gets its own Axes while there are enough; the last Axes takes the rest.
    """
    axes = [axes] if isinstance(axes, Axes) else list(axes)
    if not axes:
        raise ValueError("draw_history needs at least one Axes to draw the loss into")
    names = _metric_names(history, metrics)
    if names and len(axes) < 2:
        raise ValueError(
            f"history has metrics {names} besides the loss, but only one Axes was given; "
            "pass two Axes (loss, metrics), or metrics=[] to draw only the loss"
        )

    loss_ax = axes[0]
    loss_ax.clear()
    epochs = _draw_curves(loss_ax, history, "loss", "-", with_name=False)
    loss_ax.set_title("Loss")
    loss_ax.set_ylabel("loss")

    metric_axes = axes[1:]
    groups: list[list[str]] = [[name] for name in names[: len(metric_axes) - 1]]
    if metric_axes:
        groups.append(names[len(groups):])  # the last Axes takes every remaining metric
    for ax, group in zip(metric_axes, groups):
        ax.clear()
        for k, name in enumerate(group):
            seen = _draw_curves(ax, history, name, _LINESTYLES[k % len(_LINESTYLES)], with_name=len(group) > 1)
            epochs = max(epochs, seen)
        if len(group) == 1:
            ax.set_title(_capitalised(_pretty(group[0])))
            ax.set_ylabel(_pretty(group[0]))
        else:
            ax.set_title("Metrics")
            ax.set_ylabel("value")
        if not group:
            ax.text(0.5, 0.5, "no metrics recorded", ha="center", va="center", transform=ax.transAxes, color="gray")

    for ax in axes[: 1 + len(groups)]:
        if "step" in history:  # a step-based run (train_lm): x is the optimizer step
            ax.set_xlabel("step")
        elif epochs <= 1:  # one epoch (or none yet): a single tick at epoch 1
            ax.set_xlabel("epoch")
            ax.set_xlim(0.5, 1.5)
            ax.set_xticks([1])
        else:
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        if ax.get_lines():
            ax.legend()


def plot_history(
    history: Mapping[str, Sequence[float]],
    metrics: Sequence[str] | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Training curves side by side: loss (train vs val) first, then one panel per metric.

    `history` is a `labkit.training.History` or any dict of per-epoch lists
    ("train_loss", "val_loss", "train_accuracy", ...). `metrics` picks the other panels
    (default: every train_/val_ metric but the loss; a plain key works too, such as
    ``metrics=["accuracy", "lr"]`` for the learning rate). Beyond three metrics the last
    panel holds the rest.

    Chapter 00 shows the curves `fit` draws (this is the static version, also for saved runs).
    """
    names = _metric_names(history, metrics)
    ncols = 1 + min(len(names), 3)
    width = 5.5 if ncols <= 2 else 4.5
    fig = new_figure(figsize or (width * ncols, 4.0))
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    draw_history(list(axes), history, metrics)
    return fig
