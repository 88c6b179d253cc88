"""The progress bar and the live plot send a bounded number of messages to a notebook.

A notebook's outputs reach the browser (and nbval) as messages on the kernel's IOPub channel.
A progress bar that redrew ten times a second sent ~1,700 messages during one two-minute cell
of chapter 06b; on a busy machine ZeroMQ's queue overflowed, the cell's final "idle" message
was dropped, and nbval failed a notebook that had run fine. These tests hold the live
displays to about one message a second, whatever the speed of the training steps.
"""
from __future__ import annotations

import math
from collections import Counter
from queue import Empty

import pytest
import torch
from torch import nn

from labkit import callbacks
from labkit.callbacks import LivePlot, ProgressBar, Throttle
from labkit.training import FitState, History


class FakeClock:
    """Time that moves only when told to: a run of any length takes no real time."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Outputs:
    """Stands in for IPython's ``display``: counts the outputs shown and the updates sent."""

    def __init__(self) -> None:
        self.messages: Counter[str] = Counter()

    def display(self, obj, raw: bool = False, display_id: bool = False):
        self.messages["display"] += 1
        outputs = self

        class Handle:
            def update(self, obj, raw: bool = False) -> None:
                outputs.messages["update"] += 1

        return Handle()


def simulated_run(monkeypatch, step_seconds: float, epoch_seconds: float, run_seconds: float,
                  make_callbacks) -> tuple[Outputs, int]:
    """Drive callbacks through a run of ``run_seconds`` on a fake clock, as a notebook kernel would;
    returns the outputs and how many steps the run had."""
    import IPython.display

    outputs = Outputs()
    monkeypatch.setattr(IPython.display, "display", outputs.display)
    monkeypatch.setattr(callbacks, "in_notebook", lambda: True)
    clock = FakeClock()
    steps_per_epoch = max(1, round(epoch_seconds / step_seconds))
    epochs = max(1, round(run_seconds / epoch_seconds))
    model = nn.Linear(2, 2)
    state = FitState(model, torch.optim.SGD(model.parameters(), lr=0.1), torch.device("cpu"), epochs,
                     steps_per_epoch, History(), has_validation=True)
    hooks = callbacks.CallbackList(make_callbacks(clock))
    hooks.on_fit_start(state)
    for state.epoch in range(epochs):
        for _ in range(steps_per_epoch):
            clock.now += step_seconds
            state.step, state.loss = state.step + 1, 1.0 / (state.step + 1)
            hooks.on_batch_end(state)
        state.history.append({"train_loss": state.loss, "val_loss": state.loss, "lr": 0.1})
        hooks.on_epoch_end(state)
    hooks.on_fit_end(state)
    return outputs, epochs * steps_per_epoch


def most_refreshes(seconds: float, interval: float, relative: float) -> float:
    """What Throttle allows in a run of ``seconds``: one per ``interval`` until interval / relative,
    then one per ``relative`` of the time so far (a logarithm's worth)."""
    knee = interval / relative
    return seconds / interval if seconds <= knee else knee / interval + math.log(seconds / knee) / relative


@pytest.mark.parametrize("step_seconds, run_seconds", [(1e-4, 300), (1e-3, 300), (0.05, 300), (2.0, 300),
                                                      (0.05, 900), (0.01, 3600)])  # a tiny MLP … a slow machine
def test_progress_bar_messages_stay_few_whatever_the_speed_and_length(monkeypatch, step_seconds, run_seconds):
    outputs, steps = simulated_run(monkeypatch, step_seconds, epoch_seconds=max(step_seconds, 0.5),
                                   run_seconds=run_seconds, make_callbacks=lambda clock: [ProgressBar(clock=clock)])
    assert outputs.messages["display"] == 1  # one output, redrawn in place
    sent = outputs.messages["update"]
    assert sent <= most_refreshes(run_seconds, callbacks.NOTEBOOK_REFRESH_S, callbacks.REFRESH_RELATIVE) + 2, (sent, steps)
    assert sent <= 500  # even an hour-long run
    assert sent >= min(steps, 100) * 0.9  # it does keep the learner informed


@pytest.mark.parametrize("epoch_seconds", [0.01, 0.5, 30.0])
def test_live_plot_redraws_at_most_every_two_seconds_and_shows_the_last_epoch(monkeypatch, epoch_seconds):
    plots: list[LivePlot] = []

    def make(clock):
        plots.append(LivePlot(clock=clock))
        return plots

    run_seconds = 40.0  # each figure costs ~0.25 s to draw here
    outputs, _ = simulated_run(monkeypatch, 0.01, epoch_seconds, run_seconds, make)
    figures = outputs.messages["display"] + outputs.messages["update"]
    epochs = round(run_seconds / epoch_seconds)
    assert figures <= min(epochs, most_refreshes(run_seconds, callbacks.NOTEBOOK_PLOT_REFRESH_S,
                                                 2 * callbacks.REFRESH_RELATIVE)) + 2
    assert plots[0].drawn == epochs  # the figure left on show has every epoch


def test_throttle_says_yes_once_per_interval_then_once_per_share_of_the_time_so_far():
    clock = FakeClock()
    throttle = Throttle(1.0, clock)
    answers = []
    for _ in range(50):
        answers.append(throttle.ready())
        clock.now += 0.1
    assert sum(answers) == 5 and answers[0]
    clock, slowing = FakeClock(), Throttle(1.0, FakeClock(), relative=0.1)
    slowing.clock = clock
    times = []
    for _ in range(1000):
        if slowing.ready():
            times.append(clock.now)
        clock.now += 0.5
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert gaps[0] == 1.0 and gaps[-1] >= 0.1 * times[-2]  # every second at first, every 10% of the time later
    with pytest.raises(ValueError, match="≥ 0 seconds"):
        Throttle(-1.0)


@pytest.mark.slow
def test_a_fast_training_cell_sends_about_one_message_a_second_in_a_real_kernel():
    """Count the IOPub messages of a real kernel that runs a fit of many tiny steps for ~12 s.
    Before the fix, tqdm's notebook bar sent ~14 a second here."""
    from jupyter_client.manager import start_new_kernel

    code = (
        "import time, torch, labkit\n"
        "from torch import nn\n"
        "from torch.utils.data import TensorDataset\n"
        "torch.manual_seed(0); torch.set_num_threads(1)\n"
        "x = torch.randn(512, 8); y = (x[:, 0] > 0).long(); data = TensorDataset(x, y)\n"
        "class StopAfter(labkit.Callback):\n"
        "    def on_fit_start(self, state): self.start = time.monotonic()\n"
        "    def on_batch_end(self, state): state.stop = state.stop or time.monotonic() - self.start > 12\n"
        "start = time.monotonic()\n"
        "labkit.fit(nn.Linear(8, 2), data, data, epochs=10_000, lr=0.01, batch_size=2, callbacks=[StopAfter()])\n"
        "print(f'ran {time.monotonic() - start:.1f} s')\n"
    )
    manager, client = start_new_kernel(kernel_name="python3")
    try:
        msg_id = client.execute(code)
        reply = client.get_shell_msg(timeout=300)
        assert reply["content"]["status"] == "ok", reply["content"]
        kinds: Counter[str] = Counter()
        text = ""
        while True:
            try:
                msg = client.get_iopub_msg(timeout=30)
            except Empty:
                break
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kinds[msg["msg_type"]] += 1
            if msg["msg_type"] == "stream":
                text += msg["content"]["text"]
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    seconds = float(text.split("ran ")[1].split(" s")[0])
    live = kinds["display_data"] + kinds["update_display_data"] + kinds["comm_msg"] + kinds["comm_open"]
    assert kinds["status"] == 2, kinds  # busy, then idle: nothing was lost
    assert live <= seconds * (1 / callbacks.NOTEBOOK_REFRESH_S + 1 / callbacks.NOTEBOOK_PLOT_REFRESH_S) + 6, (live, seconds, kinds)
    assert not math.isnan(seconds)
