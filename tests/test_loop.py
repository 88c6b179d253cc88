"""The training core that `fit` and `train_lm` share (`labkit.loop`)."""
from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from labkit.callbacks import Callback, CallbackList, LRScheduler
from labkit.gpt import GPT, GPTConfig
from labkit.lm import train_lm
from labkit.loop import History, TrainState, atomic_save, make_optimizer, optimizer_step, run_periods
from labkit.training import fit

LABKIT = Path(__file__).resolve().parent.parent / "labkit"


def line_data(n: int = 64) -> TensorDataset:
    x = torch.linspace(-1, 1, n).unsqueeze(1)
    return TensorDataset(x, 3 * x - 1)


def state_for(model: nn.Module, lr: float = 0.1, period: str = "epoch") -> TrainState:
    return TrainState(model, torch.optim.SGD(model.parameters(), lr=lr), torch.device("cpu"), epochs=3,
                      steps_per_epoch=4, history=History(), has_validation=False, period=period)


def test_accumulated_micro_batches_give_the_gradient_of_the_mean_loss():
    torch.manual_seed(0)
    model, data = nn.Linear(1, 1), line_data()
    x, y = data.tensors
    loss = lambda batch: nn.functional.mse_loss(model(batch[0]), batch[1])  # noqa: E731
    state = state_for(model)
    weight_before = model.weight.detach().clone()
    full = torch.autograd.grad(loss((x, y)), model.weight)[0]
    mean_loss = loss((x, y)).item()
    assert optimizer_step(state, [(x[:32], y[:32]), (x[32:], y[32:])], loss, CallbackList([]))
    # SGD without momentum: the step is -lr × the gradient it saw
    assert torch.allclose((weight_before - model.weight.detach()) / 0.1, full, atol=1e-6)
    assert state.step == 1 and math.isclose(state.loss, mean_loss, rel_tol=1e-6)  # the mean over both halves


def test_a_nan_loss_takes_no_step_and_says_which_step(capsys):
    model = nn.Linear(1, 1)
    before = [p.detach().clone() for p in model.parameters()]
    state = state_for(model, period="evaluation")
    nan_loss = lambda batch: model(batch[0]).sum() * float("nan")  # noqa: E731
    assert not optimizer_step(state, [line_data().tensors], nan_loss, CallbackList([]))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert state.stop and state.step == 0
    assert state.history.stop_reason.startswith("the loss became nan at step 1;")
    assert "⚠" in capsys.readouterr().out


class Recorder(Callback):
    def __init__(self) -> None:
        self.events: list[str] = []

    def on_fit_start(self, state): self.events.append("fit_start")
    def on_epoch_start(self, state): self.events.append(f"period_start {state.epoch}")
    def on_after_backward(self, state): self.events.append("after_backward")
    def on_batch_end(self, state): self.events.append(f"step {state.step}")
    def on_epoch_end(self, state): self.events.append(f"measured {state.history.epochs}")
    def on_fit_end(self, state): self.events.append("fit_end")


def test_events_come_in_order_and_each_period_is_measured():
    model = nn.Linear(1, 1)
    state, recorder = state_for(model), Recorder()
    data = line_data().tensors
    loss = lambda batch: nn.functional.mse_loss(model(batch[0]), batch[1])  # noqa: E731
    periods = ([[data]] * 2 for _ in range(2))
    history = run_periods(state, CallbackList([recorder]), periods, loss, lambda: {"train_loss": state.loss},
                          interrupted=lambda s: "stopped")
    assert recorder.events == [
        "fit_start",
        "period_start 0", "after_backward", "step 1", "after_backward", "step 2", "measured 1",
        "period_start 1", "after_backward", "step 3", "after_backward", "step 4", "measured 2",
        "fit_end",
    ]
    assert history.epochs == 2 and history.stop_reason is None


class StopAtStep(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_batch_end(self, state) -> None:
        state.stop = state.stop or state.step >= self.step


def test_a_stop_during_an_epoch_ends_after_that_step_and_still_measures_it():
    torch.manual_seed(0)
    history = fit(nn.Linear(1, 1), line_data(), line_data(), epochs=5, lr=0.01, batch_size=8,
                  loss_fn=nn.functional.mse_loss, callbacks=[StopAtStep(11)], verbose=False)
    assert history.epochs == 2  # epoch 2 (steps 9-16) ended after step 11, and was measured
    assert "val_loss" in history


def tiny_gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig.preset("gpt-micro", vocab_size=11, block_size=8))


def test_a_stop_during_a_language_model_period_ends_after_that_step_and_still_measures_it():
    stream = torch.arange(400) % 11
    history = train_lm(tiny_gpt(), stream, steps=40, batch_size=2, eval_every=10, eval_batches=1,
                       callbacks=[StopAtStep(14)], verbose=False, peak_flops=1e11)
    assert history["step"] == [0.0, 10.0, 14.0]


class PlannedSteps(Callback):
    def on_fit_start(self, state) -> None:
        self.total = state.total_steps


@pytest.mark.parametrize("steps, eval_every", [(40, 10), (45, 10), (7, 100)])
def test_a_schedule_under_train_lm_plans_the_steps_the_run_takes(steps, eval_every):
    """LRScheduler used to plan epochs × steps_per_epoch = (1 + ⌈steps / eval_every⌉) × eval_every
    steps under train_lm (its evaluations counted as epochs): 50 for a 40-step run."""
    planned: list[int] = []
    schedule = LRScheduler(lambda opt, total: planned.append(total) or torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0))
    history = train_lm(tiny_gpt(), torch.arange(400) % 11, steps=steps, batch_size=2, eval_every=eval_every,
                       eval_batches=1, callbacks=[schedule], verbose=False, peak_flops=1e11)
    assert planned == [steps] and history["step"][-1] == steps


def test_a_schedule_under_fit_plans_epochs_times_batches():
    planned: list[int] = []
    schedule = LRScheduler(lambda opt, total: planned.append(total) or torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, total_steps=total))
    fit(nn.Linear(1, 1), line_data(), epochs=3, lr=0.01, batch_size=10, loss_fn=nn.functional.mse_loss,
        callbacks=[schedule], verbose=False)
    assert planned == [3 * 7]  # 64 examples in batches of 10: 7 batches an epoch


def test_make_optimizer_groups_and_errors():
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    groups = make_optimizer("adamw", model, 1e-3, 0.1, decay_matrices_only=True).param_groups
    assert [len(g["params"]) for g in groups] == [1, 3] and [g["weight_decay"] for g in groups] == [0.1, 0.0]
    with pytest.raises(ValueError, match="unknown optimizer 'adamm'"):
        make_optimizer("adamm", model, 1e-3)
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        make_optimizer("adam", model, 1e-3)


def test_atomic_save_leaves_no_partial_file(tmp_path):
    atomic_save({"w": torch.ones(2)}, tmp_path / "deep" / "run.pt")
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["run.pt"]
    assert torch.equal(torch.load(tmp_path / "deep" / "run.pt", weights_only=True)["w"], torch.ones(2))


def _imports(module: Path) -> set[str]:
    """The labkit modules that ``module`` imports when it is imported (not inside functions)."""
    names = set()
    for node in ast.parse(module.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_training_modules_import_in_one_direction():
    """loop ← callbacks ← training / lm, and metrics below them all: no module imports one that imports it."""
    graph = {p.stem: _imports(p) for p in LABKIT.glob("*.py")}
    assert graph["loop"] == set()
    assert "training" not in graph["callbacks"] and "lm" not in graph["callbacks"]
    assert "training" not in graph["metrics"] and "callbacks" not in graph["metrics"]

    def reaches(a: str, b: str, seen: frozenset = frozenset()) -> bool:
        return any(n == b or (n not in seen and n in graph and reaches(n, b, seen | {n})) for n in graph.get(a, ()))

    cycles = sorted(m for m in graph if reaches(m, m))
    assert not cycles, f"modules that import themselves through others: {cycles}"
