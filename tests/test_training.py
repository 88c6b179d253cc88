"""Tests of `labkit.fit`: it learns, it reports, it refuses bad input clearly, it loses nothing."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from labkit.callbacks import BestCheckpoint, Callback, EarlyStopping, GradientClipping, LRScheduler
from labkit.evaluation import evaluate
from labkit.training import DtypeError, History, LabelError, ShapeError, fit


def blobs(n: int = 256, classes: int = 3, features: int = 8, seed: int = 0) -> TensorDataset:
    """Well-separated Gaussian blobs: any working classifier reaches ~100% quickly."""
    centres = torch.randn(classes, features, generator=torch.Generator().manual_seed(1234)) * 4
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = centres[y] + torch.randn(n, features, generator=g)
    return TensorDataset(x, y)


def mlp(features: int = 8, classes: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(features, 16), nn.ReLU(), nn.Linear(16, classes))


class ListDataset(Dataset):
    """A plain (non-tensor) dataset, to exercise the ordinary DataLoader path."""

    def __init__(self, data: TensorDataset) -> None:
        self.items = [data[i] for i in range(len(data))]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_fit_learns_and_returns_keras_style_history():
    train, val = blobs(), blobs(seed=1)
    history = fit(mlp(), train, val, epochs=5, lr=1e-2, batch_size=32, verbose=False, seed=0)
    assert isinstance(history, History)
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "epoch_time"):
        assert len(history[key]) == 5, key
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert history["val_accuracy"][-1] > 0.95
    assert history.stop_reason is None
    assert "5 epochs" in repr(history)


def test_fit_is_repeatable_with_a_seed():
    a = fit(mlp(), blobs(), epochs=2, lr=1e-2, batch_size=16, verbose=False, seed=3)
    b = fit(mlp(), blobs(), epochs=2, lr=1e-2, batch_size=16, verbose=False, seed=3)
    assert a["train_loss"] == b["train_loss"]


def test_plain_dataset_and_tensor_dataset_give_the_same_result():
    data = blobs()
    a = fit(mlp(), data, epochs=2, lr=1e-2, batch_size=32, verbose=False, seed=1)
    b = fit(mlp(), ListDataset(data), epochs=2, lr=1e-2, batch_size=32, verbose=False, seed=1)
    assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)


def test_train_metrics_match_a_separate_evaluation_at_the_end_of_an_epoch_with_lr_zero_like_steps():
    # With SGD at a tiny learning rate the model barely moves during the epoch, so the running
    # training loss must be close to the loss evaluate() measures afterwards.
    data = blobs()
    model = mlp()
    before = evaluate(model, data)
    history = fit(model, data, epochs=1, lr=1e-9, batch_size=64, optimizer="sgd", verbose=False)
    assert history["train_loss"][0] == pytest.approx(before["loss"], rel=1e-4)
    assert history["train_accuracy"][0] == pytest.approx(before["accuracy"], rel=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(lr=-0.1), "learning rate (lr) must be > 0, got -0.1"),
        (dict(lr=0), "must be > 0, got 0"),
        (dict(lr=float("nan")), "must be > 0"),
        (dict(epochs=0), "epochs must be > 0, got 0"),
        (dict(batch_size=-4), "batch_size must be > 0, got -4"),
    ],
)
def test_bad_numbers_are_named_with_their_value(kwargs, message):
    args = dict(epochs=1, lr=1e-3, batch_size=8) | kwargs
    with pytest.raises(ValueError) as info:
        fit(mlp(), blobs(), verbose=False, **args)
    assert message in str(info.value)


def test_non_integer_epochs_is_a_type_error():
    with pytest.raises(TypeError, match="epochs must be a whole number, got 2.5"):
        fit(mlp(), blobs(), epochs=2.5, lr=1e-3, batch_size=8, verbose=False)


def test_empty_dataset_is_refused():
    empty = TensorDataset(torch.zeros(0, 8), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="train_data is empty"):
        fit(mlp(), empty, epochs=1, lr=1e-3, batch_size=8, verbose=False)
    with pytest.raises(ValueError, match="val_data is empty"):
        fit(mlp(), blobs(), empty, epochs=1, lr=1e-3, batch_size=8, verbose=False)


def test_shape_mismatch_names_the_layer_and_the_shapes():
    images = TensorDataset(torch.randn(32, 1, 28, 28), torch.zeros(32, dtype=torch.long))
    model = nn.Sequential(nn.Linear(784, 10))  # forgot nn.Flatten()
    with pytest.raises(ShapeError) as info:
        fit(model, images, epochs=1, lr=1e-3, batch_size=8, verbose=False)
    text = str(info.value)
    assert "layer '0'" in text and "Linear(in_features=784" in text
    assert "(2, 1, 28, 28)" in text and "nn.Flatten()" in text
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no wall of torch internals


def test_shape_mismatch_deep_in_a_model_names_the_inner_layer():
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(64, 10))
    images = TensorDataset(torch.randn(8, 28, 28), torch.zeros(8, dtype=torch.long))
    with pytest.raises(ShapeError, match=r"layer '3'.*\(2, 32\).*expects 64 features"):
        fit(model, images, epochs=1, lr=1e-3, batch_size=8, verbose=False)


def test_conv_channel_mismatch_suggests_a_channel_dimension():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.LazyLinear(10))
    images = TensorDataset(torch.randn(8, 28, 28, 3), torch.zeros(8, dtype=torch.long))
    with pytest.raises(ShapeError, match="expects 1 channels"):
        fit(model, images, epochs=1, lr=1e-3, batch_size=8, verbose=False)


def test_labels_out_of_range_are_explained():
    x, y = blobs().tensors
    bad = TensorDataset(x, y + 1)  # labels 1..3 for a 3-output model
    with pytest.raises(LabelError, match=r"0\.\.2 for a model with 3 outputs.*from 1 to 3"):
        fit(mlp(), bad, epochs=1, lr=1e-3, batch_size=8, verbose=False)
    with pytest.raises(LabelError, match="from 1 to 3"):  # the generic-Dataset path
        fit(mlp(), ListDataset(bad), epochs=1, lr=1e-3, batch_size=8, verbose=False)


def test_nan_loss_stops_training_keeps_history_and_says_which_step(capsys):
    class Explode(Callback):
        def on_batch_end(self, state):
            if state.epoch == 1 and state.step == 12:
                with torch.no_grad():
                    state.model[0].weight.fill_(float("inf"))

    model = mlp()
    history = fit(model, blobs(), epochs=5, lr=1e-2, batch_size=32, verbose=False, callbacks=[Explode()])
    assert history.epochs == 1  # the first epoch finished and is kept
    assert "step 13" in history.stop_reason and "epoch 2" in history.stop_reason
    assert "learning rate" in history.stop_reason and "smaller" in history.stop_reason
    assert "step 13" in capsys.readouterr().out


def test_huge_learning_rate_ends_with_a_hint_not_an_exception():
    x, y = blobs().tensors
    history = fit(mlp(), TensorDataset(x * 1e6, y), epochs=3, lr=1e6, batch_size=16, optimizer="sgd", verbose=False)
    assert history.stop_reason is not None and "learning rate" in history.stop_reason


def test_stop_button_keeps_history_and_best_weights(tmp_path):
    class PressStop(Callback):
        def on_batch_end(self, state):
            if state.epoch == 2 and state.step % state.steps_per_epoch == 3:
                raise KeyboardInterrupt

    model = mlp()
    checkpoint = BestCheckpoint(tmp_path / "best.pt")
    history = fit(model, blobs(), blobs(seed=1), epochs=10, lr=1e-2, batch_size=16, verbose=False, callbacks=[checkpoint, PressStop()])
    assert history.epochs == 2
    assert "interrupted" in history.stop_reason
    saved = torch.load(tmp_path / "best.pt", weights_only=True)
    best_epoch = min(range(2), key=lambda e: history["val_loss"][e])
    assert checkpoint.best_epoch == best_epoch
    for key, value in model.state_dict().items():  # the model got the best weights back
        assert torch.equal(value, saved[key])


def test_early_stopping_stops_and_restores_the_best_weights():
    weights = []

    class WorsenAfterEpoch1(Callback):
        """Fakes a validation loss that is best at epoch 1 and never improves after it."""

        def on_epoch_end(self, state):
            state.history["val_loss"][-1] = 1.0 if state.epoch < 2 else 1.0 + state.epoch
            weights.append({k: v.clone() for k, v in state.model.state_dict().items()})

    model = mlp()
    stopper = EarlyStopping(patience=2)
    history = fit(model, blobs(), blobs(seed=1), epochs=20, lr=1e-2, batch_size=32, verbose=False, callbacks=[WorsenAfterEpoch1(), stopper])
    assert history.epochs == 3  # epoch 1 is best; epochs 2 and 3 do not improve on it
    assert "did not improve for 2 epochs" in history.stop_reason
    assert stopper.best_epoch == 0
    assert not torch.equal(weights[0]["0.weight"], weights[2]["0.weight"])
    for key, value in model.state_dict().items():
        assert torch.equal(value, weights[0][key])


def test_monitoring_validation_without_validation_data_is_explained():
    with pytest.raises(ValueError, match="got no val_data"):
        fit(mlp(), blobs(), epochs=1, lr=1e-3, batch_size=8, verbose=False, callbacks=[EarlyStopping()])


def test_gradient_clipping_bounds_the_update():
    seen = []

    class Norm(Callback):
        def on_after_backward(self, state):
            grads = [p.grad for p in state.model.parameters()]
            seen.append(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item())

    x, y = blobs().tensors
    fit(mlp(), TensorDataset(x * 100, y), epochs=1, lr=1e-3, batch_size=32, verbose=False, callbacks=[GradientClipping(0.5), Norm()])
    assert max(seen) <= 0.5 + 1e-5


def test_lr_schedule_is_applied_and_recorded():
    schedule = LRScheduler(lambda opt, total: torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1 - step / total), every="step")
    history = fit(mlp(), blobs(), epochs=4, lr=0.1, batch_size=32, verbose=False, callbacks=[schedule])
    assert history["lr"][0] > history["lr"][1] > history["lr"][2] > history["lr"][3]
    assert history["lr"][-1] == pytest.approx(0.0, abs=1e-12)


def test_frozen_model_is_refused():
    model = mlp()
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        fit(model, blobs(), epochs=1, lr=1e-3, batch_size=8, verbose=False)


def test_regression_with_a_custom_loss_has_no_accuracy():
    x = torch.randn(128, 4)
    data = TensorDataset(x, x.sum(1, keepdim=True))
    history = fit(nn.Linear(4, 1), data, data, epochs=20, lr=0.05, batch_size=16, loss_fn=nn.functional.mse_loss, verbose=False)
    assert "train_accuracy" not in history
    assert history["val_loss"][-1] < 1e-2


def test_a_cross_entropy_module_as_loss_keeps_accuracy():
    history = fit(mlp(), blobs(), epochs=1, lr=1e-2, batch_size=32, loss_fn=nn.CrossEntropyLoss(label_smoothing=0.1), verbose=False)
    assert "train_accuracy" in history


def test_verbose_run_in_a_script_prints_epoch_lines(capsys):
    fit(mlp(), blobs(), epochs=2, lr=1e-2, batch_size=64, verbose=True)
    captured = capsys.readouterr()
    assert "epoch 1/2" in captured.out + captured.err and "train_loss" in captured.out + captured.err


def test_history_plot_draws_the_curves():
    import matplotlib

    matplotlib.use("Agg")
    history = fit(mlp(), blobs(), blobs(seed=1), epochs=3, lr=1e-2, batch_size=32, verbose=False)
    figure = history.plot()
    lines = [line for ax in figure.axes for line in ax.get_lines()]
    assert len(lines) >= 4  # train/val loss, train/val accuracy
    assert any(math.isclose(line.get_ydata()[-1], history["val_loss"][-1]) for line in lines)


@pytest.mark.slow
def test_in_a_notebook_fit_leaves_one_finished_bar_and_one_plot(tmp_path):
    """Run fit in a real kernel: the live plot is one image updated in place (not one per epoch),
    and the progress bar ends as a plain line of text that a saved notebook can show."""
    import nbformat
    from nbclient import NotebookClient

    source = (
        "import torch, labkit\n"
        "from torch import nn\n"
        "from torch.utils.data import TensorDataset\n"
        "x = torch.randn(256, 4); y = (x[:, 0] > 0).long(); data = TensorDataset(x, y)\n"
        "history = labkit.fit(nn.Linear(4, 2), data, data, epochs=3, lr=0.05, batch_size=32, seed=0)"
    )
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
    outputs = notebook.cells[0].outputs
    kinds = [sorted(o.get("data", {})) for o in outputs]
    assert kinds == [["text/plain"], ["image/png", "text/plain"]], kinds
    assert "100%" in outputs[0]["data"]["text/plain"] and "24/24" in outputs[0]["data"]["text/plain"]


def test_eval_train_measures_the_training_set_like_validation_and_keeps_the_running_means():
    data, val = blobs(), blobs(seed=1)
    plain_model, measured_model = mlp(), mlp()
    plain = fit(plain_model, data, val, epochs=3, lr=1e-2, batch_size=16, seed=0, verbose=False)
    measured = fit(measured_model, data, val, epochs=3, lr=1e-2, batch_size=16, seed=0, verbose=False, eval_train=True)
    # measuring changes no weight and no running number
    assert all(torch.equal(a, b) for a, b in zip(plain_model.parameters(), measured_model.parameters()))
    assert measured["running_loss"] == plain["train_loss"] and measured["running_accuracy"] == plain["train_accuracy"]
    # train_* is now the end-of-epoch measurement, exactly what evaluate gives for the final weights
    at_end = evaluate(measured_model, data)
    assert math.isclose(measured["train_loss"][-1], at_end["loss"], rel_tol=1e-6)
    assert math.isclose(measured["train_accuracy"][-1], at_end["accuracy"], rel_tol=1e-6)
    # the first epoch's running mean lags: its first batches met an untrained model
    assert measured["train_accuracy"][0] > measured["running_accuracy"][0]
    assert measured["train_loss"][0] < measured["running_loss"][0]


def test_a_history_with_running_means_draws_them_beside_train_and_val():
    import matplotlib

    matplotlib.use("Agg")
    history = fit(mlp(), blobs(), blobs(seed=1), epochs=2, lr=1e-2, batch_size=32, verbose=False, eval_train=True)
    labels = sorted(line.get_label() for ax in history.plot().axes for line in ax.get_lines())
    assert labels == ["running", "running", "train", "train", "val", "val"]



# ------------------------------------------------------------------ data a learner gets wrong: named, with the fix


def run(data, model=None, **kwargs):
    return fit(model or mlp(), data, epochs=1, lr=1e-2, batch_size=16, verbose=False, **kwargs)


def test_labels_with_an_extra_dimension_say_squeeze():
    x, y = blobs().tensors
    with pytest.raises(LabelError, match=r"class numbers of shape \(N,\).*train_data has labels of shape \(256, 1\)"
                                         r".*y\.squeeze\(1\)") as info:
        run(TensorDataset(x, y[:, None]))
    assert info.value.__cause__ is None and info.value.__suppress_context__
    with pytest.raises(LabelError, match=r"a batch has labels of shape \(2, 1\).*y\.squeeze\(1\)"):
        run(ListDataset(TensorDataset(x, y[:, None])))


def test_one_hot_labels_say_argmax():
    x, y = blobs().tensors
    one_hot = nn.functional.one_hot(y, 3)
    with pytest.raises(LabelError, match=r"one-hot labels of shape \(256, 3\).*y\.argmax\(dim=1\)"):
        run(TensorDataset(x, one_hot))
    # float one-hot (or soft) labels: cross-entropy takes them as probabilities, accuracy cannot
    with pytest.raises(LabelError, match=r"'accuracy' compares.*labels of shape \(256, 3\).*argmax\(dim=1\).*metrics=\(\)"):
        run(TensorDataset(x, one_hot.float()))
    history = run(TensorDataset(x, one_hot.float()), metrics=())
    assert history.epochs == 1 and "train_accuracy" not in history


@pytest.mark.parametrize("name", ["train_data", "val_data"])
def test_a_bare_tensor_without_labels_says_tensordataset(name):
    x, _ = blobs().tensors
    data = {"train_data": x, "val_data": blobs()} if name == "train_data" else {"train_data": blobs(), "val_data": x}
    with pytest.raises(TypeError, match=rf"{name} is a bare tensor of shape \(256, 8\), without labels"
                                        r".*TensorDataset\(x, y\)"):
        fit(mlp(), data["train_data"], data["val_data"], epochs=1, lr=1e-2, batch_size=16, verbose=False)


def test_a_dataset_without_labels_says_what_fit_takes():
    x, _ = blobs().tensors
    with pytest.raises(TypeError, match=r"TensorDataset of 1 tensor\(s\) \(\(256, 8\)\).*TensorDataset\(x, y\)"):
        run(TensorDataset(x))

    class Inputs(Dataset):
        def __len__(self):
            return len(x)

        def __getitem__(self, i):
            return x[i]

    with pytest.raises(TypeError, match=r"train_data\[0\] is a Tensor of shape \(8,\).*\(x, y\)"):
        run(Inputs())
    with pytest.raises(TypeError, match=r"data\[0\] is a Tensor"):
        evaluate(mlp(), Inputs())


def test_byte_images_blame_the_dtype_not_the_shape():
    images = torch.randint(0, 256, (32, 1, 28, 28), dtype=torch.uint8)
    labels = torch.zeros(32, dtype=torch.long)
    mlp_model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with pytest.raises(DtypeError, match=r"layer '1' .*computes in torch.float32.*torch.uint8.*x\.float\(\) / 255") as info:
        run(TensorDataset(images, labels), mlp_model)
    assert isinstance(info.value, TypeError) and "shape" not in str(info.value).split("PyTorch said")[0]
    with pytest.raises(DtypeError, match=r"layer '0' \(Conv2d.*torch.uint8.*x\.float\(\) / 255"):
        run(TensorDataset(images, labels), nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.LazyLinear(10)))
    x, y = blobs().tensors
    with pytest.raises(DtypeError, match=r"torch.float64.*x\.float\(\)"):
        run(TensorDataset(x.double(), y))
    with pytest.raises(DtypeError, match=r"torch.int64.*x\.float\(\)"):
        run(TensorDataset(x.long(), y))


def test_nan_in_the_data_at_the_first_step_blames_the_data_not_the_learning_rate(capsys):
    x, y = blobs().tensors
    x = x.clone()
    x[:, 0] = float("nan")  # every batch, so the very first step
    history = run(TensorDataset(x, y))
    reason = history.stop_reason
    assert "step 1" in reason and "NaN/inf value(s) in its inputs (x)" in reason and "the data is the cause" in reason
    assert "learning rate" not in reason.split("the data is the cause")[0] and "too high" not in reason
    assert "⚠" in capsys.readouterr().out


def test_nan_in_one_example_later_on_still_blames_the_data():
    x, y = blobs().tensors
    x = x.clone()
    x[100, 3] = float("nan")
    history = run(TensorDataset(x, y))
    assert "1 NaN/inf value(s) in its inputs (x)" in history.stop_reason and "too high" not in history.stop_reason


def test_nan_from_the_model_at_the_first_step_says_the_learning_rate_is_not_the_cause():
    class LogOfNegative(nn.Module):
        def forward(self, x):
            return (x - 100).log()  # NaN for these inputs, before any weight changes

    model = nn.Sequential(nn.Linear(8, 3), LogOfNegative())
    history = run(blobs(), model)
    reason = history.stop_reason
    assert "step 1" in reason and "learning rate is not the cause" in reason and "model's output" in reason
    assert "too high" not in reason
