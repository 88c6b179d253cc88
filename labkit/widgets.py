"""A hyperparameter panel: sliders, a Train button, a live loss curve and a table of runs.

In a notebook cell::

    panel = HyperparameterPanel(build_model, train_data, val_data)
    panel            # shows the sliders; move them, press Train, compare the runs

Every press of Train builds a fresh model with ``build_model(width, dropout)``, trains it with
`labkit.training.fit` (same seed every run, so only the sliders change the result), draws the
curves into the panel's own image (the last run's curve replaces the previous one) and adds a
row to the results table. ``panel.train()`` does the same from code.
"""
from __future__ import annotations

import html
import io
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as widgets
from torch import nn
from torch.utils.data import Dataset

from .callbacks import Callback, LivePlot
from .training import History, fit

__all__ = ["HyperparameterPanel"]

_RED = "#c62828"
_GREEN = "#2e7d32"
_ORANGE = "#e65100"
_PANEL_KEYS = ("epochs", "lr", "batch_size", "seed", "verbose")
_FIGSIZE = (10.0, 3.6)  # LivePlot's figure size: the placeholder has the same, so nothing jumps


class HyperparameterPanel(widgets.VBox):
    """Sliders for learning rate, batch size, epochs, width and dropout, a Train button, the
    live curve of the current run and a table with one row per run.

    Args:
        build_model: ``build_model(width, dropout) -> nn.Module``, called for every run.
        train_data, val_data: Datasets of ``(x, y)`` pairs, as for `labkit.fit`
            (`val_data` may be None; then the table shows no validation results).
        lr, batch_size, epochs, width, dropout: the sliders' starting values.
        seed: the seed of every run, so runs differ only by their hyperparameters.
        batch_sizes, widths: the choices of the batch-size and width sliders.
        max_epochs: the right end of the epochs slider.
        fit_kwargs: more keyword arguments for `fit` (optimizer, loss_fn, metrics, callbacks,
            device, weight_decay, ...); the panel sets epochs, lr, batch_size, seed, verbose.

    After a run: ``panel.history`` (its `History`), ``panel.model`` (its trained model),
    ``panel.runs`` (the table's rows, one dict per run), ``panel.error`` (the last run's
    error, or None).

    Chapter 05 tunes its CNN with one; chapter 00 shows how sliders work.
    """

    def __init__(
        self,
        build_model: Callable[[int, float], nn.Module],
        train_data: Dataset,
        val_data: Dataset | None,
        *,
        lr: float = 1e-3,
        batch_size: int = 64,
        epochs: int = 3,
        width: int = 128,
        dropout: float = 0.0,
        seed: int = 0,
        batch_sizes: Sequence[int] = (16, 32, 64, 128, 256, 512),
        max_epochs: int = 20,
        widths: Sequence[int] = (16, 32, 64, 128, 256, 512),
        fit_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if not callable(build_model):
            raise TypeError(f"build_model must be a function build_model(width, dropout) -> nn.Module, got {build_model!r}")
        fit_kwargs = dict(fit_kwargs or {})
        clashing = sorted(set(fit_kwargs) & set(_PANEL_KEYS))
        if clashing:
            raise ValueError(
                f"fit_kwargs must not set {clashing}: the panel sets them from its sliders "
                f"(give starting values as HyperparameterPanel(..., lr=..., batch_size=..., epochs=..., seed=...))"
            )
        batch_sizes, widths = _choices("batch_sizes", batch_sizes), _choices("widths", widths)
        _check_start("batch_size", batch_size, batch_sizes, "batch_sizes")
        _check_start("width", width, widths, "widths")
        if not (isinstance(max_epochs, int) and max_epochs >= 1):
            raise ValueError(f"max_epochs must be a whole number >= 1, got {max_epochs!r}")
        if not (isinstance(epochs, int) and 1 <= epochs <= max_epochs):
            raise ValueError(f"epochs must be a whole number from 1 to max_epochs={max_epochs}, got {epochs!r}")
        if not (isinstance(lr, (int, float)) and 1e-5 <= lr <= 1.0):
            raise ValueError(f"lr must be between 1e-5 and 1 (the slider's range), got {lr!r}")
        if not (isinstance(dropout, (int, float)) and 0.0 <= dropout <= 0.8):
            raise ValueError(f"dropout must be between 0 and 0.8 (the slider's range), got {dropout!r}")

        self.build_model = build_model
        self.train_data, self.val_data = train_data, val_data
        self.seed = seed
        self.fit_kwargs = fit_kwargs
        self.history: History | None = None
        self.model: nn.Module | None = None
        self.error: Exception | None = None
        self.runs: list[dict[str, Any]] = []
        self._training = False

        label = {"description_width": "96px"}
        row = widgets.Layout(width="340px")
        self.lr_slider = widgets.FloatLogSlider(
            value=lr, base=10, min=-5, max=0, step=0.25, description="learning rate",
            readout_format=".1e", style=label, layout=row,
        )
        self.batch_size_slider = widgets.SelectionSlider(
            options=list(batch_sizes), value=batch_size, description="batch size", style=label, layout=row,
        )
        self.epochs_slider = widgets.IntSlider(
            value=epochs, min=1, max=max_epochs, step=1, description="epochs", style=label, layout=row,
        )
        self.width_slider = widgets.SelectionSlider(
            options=list(widths), value=width, description="width", style=label, layout=row,
        )
        self.dropout_slider = widgets.FloatSlider(
            value=float(dropout), min=0.0, max=0.8, step=0.05, description="dropout",
            readout_format=".2f", style=label, layout=row,
        )
        self.train_button = widgets.Button(
            description="Train", icon="play", button_style="primary", tooltip="train a fresh model with these values",
            layout=widgets.Layout(width="120px", margin="4px 0 0 100px"),
        )
        self.status = widgets.HTML(
            _status_html("Move the sliders, then press <b>Train</b>. Every run starts from a fresh model "
                         f"with seed {seed}, so only the sliders change the result."),
            layout=widgets.Layout(margin="4px 0 4px 4px"),
        )
        self.image = widgets.Image(value=_placeholder_png(), format="png", layout=widgets.Layout(max_width="100%", height="auto"))
        self.table = widgets.HTML("", layout=widgets.Layout(margin="0 0 0 4px"))
        self.train_button.on_click(lambda _button: self.train())

        left = widgets.VBox([self.lr_slider, self.batch_size_slider, self.epochs_slider], layout=widgets.Layout(margin="0 24px 0 0"))
        right = widgets.VBox([self.width_slider, self.dropout_slider, self.train_button])
        controls = widgets.HBox([left, right], layout=widgets.Layout(flex_flow="row wrap"))
        super().__init__(
            [controls, self.status, self.image, self.table],
            layout=widgets.Layout(border="1px solid #d0d0d0", padding="8px", max_width="840px"),
        )
        self.add_class("labkit-hyperparameter-panel")

    def config(self) -> dict[str, Any]:
        """The sliders' current values: what the next run will use."""
        return {
            "lr": float(self.lr_slider.value),
            "batch_size": int(self.batch_size_slider.value),
            "epochs": int(self.epochs_slider.value),
            "width": int(self.width_slider.value),
            "dropout": round(float(self.dropout_slider.value), 4),
        }

    def train(self) -> History | None:
        """Train a fresh model with the sliders' values (what the Train button does).

        Returns the run's `History`, or None when the run failed; the error is then shown in
        the status line (in red) and kept in ``panel.error`` instead of being raised.
        """
        if self._training:  # a second click while a run is going on
            return None
        self._training = True
        self.train_button.disabled = True
        self.error = None
        config = self.config()
        number = len(self.runs) + 1
        self.status.value = _status_html(f"⏳ run {number}: training with {_describe(config)} …")
        start = time.perf_counter()
        try:
            model = self.build_model(config["width"], config["dropout"])
            if not isinstance(model, nn.Module):
                raise TypeError(f"build_model(width, dropout) must return an nn.Module, got {type(model).__name__}")
            extra = dict(self.fit_kwargs)
            progress = _StatusProgress(self.status, f"⏳ run {number}", _describe(config))
            callbacks: list[Callback] = [progress, LivePlot(image=self.image), *extra.pop("callbacks", ())]
            history = fit(
                model, self.train_data, self.val_data,
                epochs=config["epochs"], lr=config["lr"], batch_size=config["batch_size"],
                seed=self.seed, verbose=False, callbacks=callbacks, **extra,
            )
        except Exception as error:  # shown to the learner, not raised: the panel stays usable
            self.error = error
            self.status.value = _status_html(
                f"✗ run {number} failed ({_describe(config)}):<br>"
                f"<b>{type(error).__name__}</b>: {html.escape(str(error)).replace(chr(10), '<br>')}",
                color=_RED,
            )
            return None
        finally:
            self._training = False
            self.train_button.disabled = False
        seconds = time.perf_counter() - start
        self.model, self.history = model, history
        self.runs.append(_run_row(number, config, history, seconds))
        self.table.value = _table_html(self.runs)
        self.status.value = _done_html(number, history, seconds)
        return history


def _choices(name: str, values: Sequence[int]) -> list[int]:
    values = list(values)
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        raise ValueError(f"{name} must be a non-empty list of whole numbers > 0, got {values!r}")
    return values


def _check_start(name: str, value: int, choices: list[int], choices_name: str) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of the slider's choices {choices_name}={choices}: pick one of them or add it")


class _StatusProgress(Callback):
    """Writes "epoch 2/5" into the status line while a run trains."""

    def __init__(self, status: widgets.HTML, prefix: str, description: str) -> None:
        self.status, self.prefix, self.description = status, prefix, description

    def on_epoch_end(self, state: Any) -> None:
        if state.epoch + 1 < state.epochs:
            self.status.value = _status_html(
                f"{self.prefix}: training with {self.description} … (epoch {state.epoch + 1}/{state.epochs} finished)"
            )


def _lr_text(lr: float) -> str:
    """1.8e-3 the way the slider shows it (not Python's 1.8e-03)."""
    mantissa, exponent = f"{lr:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _describe(config: dict[str, Any]) -> str:
    return (
        f"lr {_lr_text(config['lr'])}, batch size {config['batch_size']}, {config['epochs']} epochs, "
        f"width {config['width']}, dropout {config['dropout']:.2f}"
    )


def _status_html(text: str, color: str | None = None) -> str:
    style = f"color:{color};" if color else ""
    return f'<div class="labkit-status" style="{style}line-height:1.4">{text}</div>'


def _done_html(number: int, history: History, seconds: float) -> str:
    last = history.last()
    if "val_accuracy" in last:
        result = f"val accuracy {last['val_accuracy']:.1%}"
    elif "val_loss" in last:
        result = f"val loss {last['val_loss']:.4f}"
    elif "train_loss" in last:
        result = f"train loss {last['train_loss']:.4f}"
    else:
        result = "no epoch finished"
    text = f"✓ run {number} done: {result} after {history.epochs} epochs in {seconds:.1f} s"
    if history.stop_reason:
        return _status_html(f"{text}<br>stopped: {html.escape(history.stop_reason)}", color=_ORANGE)
    return _status_html(text, color=_GREEN)


def _run_row(number: int, config: dict[str, Any], history: History, seconds: float) -> dict[str, Any]:
    """One row of the results table: the run's hyperparameters and its final results."""
    last = history.last()
    return {
        "run": number,
        **config,
        "epochs_done": history.epochs,
        "train_loss": last.get("train_loss", math.nan),
        "val_loss": last.get("val_loss", math.nan),
        "val_accuracy": last.get("val_accuracy", math.nan),
        "seconds": seconds,
        "stopped": history.stop_reason,
    }


def _number(value: float, fmt: str) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def _table_html(runs: list[dict[str, Any]]) -> str:
    """The runs as an HTML table; the run with the best val accuracy is in bold."""
    scored = [r for r in runs if not math.isnan(r["val_accuracy"])]
    best = max(scored, key=lambda r: r["val_accuracy"])["run"] if scored else None
    heads = ["run", "lr", "batch", "epochs", "width", "dropout", "train loss", "val loss", "val acc", "seconds"]
    cell = 'style="padding:1px 8px;text-align:right;border-bottom:1px solid #e0e0e0"'
    rows = []
    for r in runs:
        epochs = str(r["epochs"]) if r["epochs_done"] == r["epochs"] else f"{r['epochs_done']}/{r['epochs']}"
        values = [
            str(r["run"]), _lr_text(r["lr"]), str(r["batch_size"]), epochs, str(r["width"]), f"{r['dropout']:.2f}",
            _number(r["train_loss"], ".4f"), _number(r["val_loss"], ".4f"), _number(r["val_accuracy"], ".1%"),
            f"{r['seconds']:.1f}",
        ]
        weight = "font-weight:bold;" if r["run"] == best else ""
        title = f' title="stopped: {html.escape(r["stopped"])}"' if r["stopped"] else ""
        rows.append(f'<tr style="{weight}"{title}>' + "".join(f"<td {cell}>{v}</td>" for v in values) + "</tr>")
    header = "".join(f'<th {cell}>{h}</th>' for h in heads)
    return (
        '<table class="labkit-runs" style="border-collapse:collapse;font-size:12px;margin-top:4px">'
        f"<thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _placeholder_png() -> bytes:
    """Empty axes with 'press Train', the same size as the live plot, shown before the first run."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=_FIGSIZE, layout="constrained")
    for ax, name in zip(figure.subplots(1, 2), ("loss", "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.text(0.5, 0.5, "press Train", ha="center", va="center", color="#9e9e9e", transform=ax.transAxes)
    figure.suptitle("no run yet", fontsize=9)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    return buffer.getvalue()
