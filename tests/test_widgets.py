"""Tests of labkit.widgets.HyperparameterPanel without a browser (the widgets' Python side).

The browser side (does it render and react in JupyterLab?) is tested in tests/browser/.
"""
from __future__ import annotations

import re

import ipywidgets as widgets
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from labkit.callbacks import Callback
from labkit.training import ShapeError
from labkit.widgets import HyperparameterPanel

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
N_FEATURES, N_CLASSES = 8, 3


def make_data(n: int, seed: int) -> TensorDataset:
    """Three Gaussian blobs in 8 dimensions: x (n, 8) float, y (n,) class numbers 0..2."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, N_CLASSES, (n,), generator=g)
    centres = torch.eye(N_CLASSES, N_FEATURES) * 3
    x = centres[y] + torch.randn(n, N_FEATURES, generator=g)
    return TensorDataset(x, y)


@pytest.fixture(scope="module")
def data() -> tuple[TensorDataset, TensorDataset]:
    return make_data(256, seed=1), make_data(64, seed=2)


class ModelMaker:
    """build_model(width, dropout) for the panel that remembers what it was called with."""

    def __init__(self, in_features: int = N_FEATURES) -> None:
        self.in_features = in_features
        self.calls: list[tuple[int, float]] = []

    def __call__(self, width: int, dropout: float) -> nn.Module:
        self.calls.append((width, dropout))
        return nn.Sequential(nn.Linear(self.in_features, width), nn.ReLU(), nn.Dropout(dropout), nn.Linear(width, N_CLASSES))


class Spy(Callback):
    """Records what fit() really ran with, and whether the Train button was disabled meanwhile."""

    def __init__(self, panel_ref: list) -> None:
        self.panel_ref = panel_ref
        self.seen: list[dict] = []

    def on_fit_start(self, state) -> None:
        self.seen.append({
            "lr": state.optimizer.param_groups[0]["lr"],
            "steps_per_epoch": state.steps_per_epoch,
            "epochs": state.epochs,
            "button_disabled": self.panel_ref[0].train_button.disabled,
        })


def body_rows(panel: HyperparameterPanel) -> int:
    return len(re.findall(r"<tr\b", panel.table.value)) - 1  # minus the header row


def test_panel_builds_with_the_starting_values(data):
    panel = HyperparameterPanel(ModelMaker(), *data, lr=1e-2, batch_size=32, epochs=2, width=16, dropout=0.1)
    assert isinstance(panel, widgets.VBox)
    assert panel.config() == {"lr": pytest.approx(1e-2), "batch_size": 32, "epochs": 2, "width": 16, "dropout": 0.1}
    assert isinstance(panel.lr_slider, widgets.FloatLogSlider)
    assert (panel.lr_slider.min, panel.lr_slider.max) == (-5, 0)
    assert list(panel.batch_size_slider.options) == [16, 32, 64, 128, 256, 512]
    assert (panel.epochs_slider.min, panel.epochs_slider.max) == (1, 20)
    assert (panel.dropout_slider.min, panel.dropout_slider.max) == (0.0, 0.8)
    sliders = (panel.lr_slider, panel.batch_size_slider, panel.epochs_slider, panel.width_slider, panel.dropout_slider)
    labels = [s.description for s in sliders]
    assert labels == ["learning rate", "batch size", "epochs", "width", "dropout"]
    assert bytes(panel.image.value).startswith(PNG_MAGIC)  # the "press Train" placeholder
    assert panel.runs == [] and panel.history is None and panel.model is None
    # every part is really shown inside the panel
    shown = set()
    stack = [panel]
    while stack:
        w = stack.pop()
        shown.add(id(w))
        stack.extend(getattr(w, "children", ()))
    for part in (panel.lr_slider, panel.dropout_slider, panel.train_button, panel.status, panel.image, panel.table):
        assert id(part) in shown


def test_slider_values_reach_the_next_run(data):
    maker, ref = ModelMaker(), []
    spy = Spy(ref)
    panel = HyperparameterPanel(maker, *data, fit_kwargs={"callbacks": [spy], "device": "cpu"})
    ref.append(panel)
    panel.lr_slider.value = 1e-2
    panel.batch_size_slider.value = 32
    panel.epochs_slider.value = 2
    panel.width_slider.value = 16
    panel.dropout_slider.value = 0.25
    history = panel.train()

    assert maker.calls == [(16, 0.25)]
    assert spy.seen[0]["lr"] == pytest.approx(1e-2)
    assert spy.seen[0]["steps_per_epoch"] == 256 // 32
    assert spy.seen[0]["epochs"] == 2
    assert spy.seen[0]["button_disabled"] is True  # disabled while training
    assert panel.train_button.disabled is False  # and enabled again afterwards
    assert history is panel.history and history.epochs == 2
    assert panel.model is not None and panel.model[0].out_features == 16
    row = panel.runs[0]
    assert (row["lr"], row["batch_size"], row["epochs"], row["width"], row["dropout"]) == (pytest.approx(1e-2), 32, 2, 16, 0.25)

    panel.epochs_slider.value = 1
    panel.width_slider.value = 64
    panel.train()
    assert maker.calls[-1] == (64, 0.25)
    assert panel.history.epochs == 1 and spy.seen[-1]["epochs"] == 1


def test_train_draws_into_the_image_and_adds_rows(data):
    panel = HyperparameterPanel(ModelMaker(), *data, lr=1e-2, epochs=3, width=32, fit_kwargs={"device": "cpu"})
    placeholder = bytes(panel.image.value)
    children_before = list(panel.children)

    history = panel.train()
    first = bytes(panel.image.value)
    assert history.epochs == 3 and len(history["val_accuracy"]) == 3
    assert first.startswith(PNG_MAGIC) and first != placeholder
    assert len(panel.runs) == 1 and body_rows(panel) == 1
    assert "done" in panel.status.value and "val accuracy" in panel.status.value
    assert f"{history['val_accuracy'][-1]:.1%}" in panel.status.value
    row = panel.runs[0]
    assert row["val_accuracy"] == history["val_accuracy"][-1]
    assert row["train_loss"] == history["train_loss"][-1] and row["val_loss"] == history["val_loss"][-1]
    assert row["seconds"] > 0

    panel.lr_slider.value = 1e-3  # a different run draws different curves
    panel.epochs_slider.value = 2
    panel.train()
    second = bytes(panel.image.value)
    assert second.startswith(PNG_MAGIC) and second != first
    assert list(panel.children) == children_before  # the same single image, replaced, not a new one
    assert len(panel.runs) == 2 and body_rows(panel) == 2
    assert [r["run"] for r in panel.runs] == [1, 2] and panel.runs[1]["epochs"] == 2
    assert "run 2 done" in panel.status.value


def test_the_button_runs_a_training(data):
    panel = HyperparameterPanel(ModelMaker(), *data, epochs=1, width=16, fit_kwargs={"device": "cpu"})
    panel.train_button.click()
    assert len(panel.runs) == 1 and panel.history.epochs == 1


def test_a_shape_error_becomes_a_red_status_line(data):
    wrong = ModelMaker(in_features=N_FEATURES + 1)  # the first layer expects 9 features, the data has 8
    panel = HyperparameterPanel(wrong, *data, epochs=1, fit_kwargs={"device": "cpu"})
    placeholder = bytes(panel.image.value)

    result = panel.train()  # must not raise

    assert result is None
    assert isinstance(panel.error, ShapeError)
    assert "#c62828" in panel.status.value and "ShapeError" in panel.status.value
    assert "failed" in panel.status.value
    assert panel.train_button.disabled is False
    assert panel.runs == [] and panel.history is None and bytes(panel.image.value) == placeholder

    wrong.in_features = N_FEATURES  # fixed: the next press works
    assert panel.train() is not None and len(panel.runs) == 1
    assert "#c62828" not in panel.status.value


def test_error_text_is_escaped(data):
    def broken(width: int, dropout: float) -> nn.Module:
        raise ValueError("width <b>too</b> small")

    panel = HyperparameterPanel(broken, *data, epochs=1)
    panel.train()
    assert "&lt;b&gt;too&lt;/b&gt;" in panel.status.value


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 48}, "batch_size=48 is not one of"),
        ({"width": 100}, "width=100 is not one of"),
        ({"epochs": 30}, "epochs must be a whole number from 1 to max_epochs=20"),
        ({"lr": 5.0}, "lr must be between 1e-5 and 1"),
        ({"dropout": 0.9}, "dropout must be between 0 and 0.8"),
        ({"fit_kwargs": {"epochs": 4}}, "fit_kwargs must not set ['epochs']"),
    ],
)
def test_bad_starting_values_are_explained(data, kwargs, message):
    with pytest.raises(ValueError) as error:
        HyperparameterPanel(ModelMaker(), *data, **kwargs)
    assert message in str(error.value)
