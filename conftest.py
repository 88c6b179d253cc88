"""Settings for running the notebooks under nbval (`make nbval`), and a guard on every cell.

nbval sends a cell to the kernel, waits for the kernel's reply, and only then reads the cell's
outputs from the kernel's IOPub channel. Until then they queue in ZeroMQ, which holds about
1,000 messages a socket and drops the newest after that: a cell that publishes thousands of
messages (a progress bar redrawn ten times a second, a plot per epoch) can lose its final
"idle" message, and nbval then fails a cell that ran fine — on a busy machine, where the
steps are slower and the redraws more. So every cell is held to `MAX_IOPUB_MESSAGES`, far
below that limit, with a message that says which cell and what it sent.
"""
from __future__ import annotations

from collections import Counter

import pytest

# After a cell has finished, nbval waits at most 5 seconds (hard-coded) for each of the cell's
# remaining output messages; a busy 2-core machine sometimes takes longer after a long training
# cell, which failed a passing notebook in CI. Give the outputs a minute. (nbval issue #136.)
OUTPUT_TIMEOUT_S = 60
# labkit's live displays send at most 1.5 messages a second, and fewer as a run grows long
# (tests/test_live_displays.py): ~300 in a 5-minute cell, ~500 in 15 minutes (the cell timeout
# on a busy machine). Below ZeroMQ's 1,000 a socket, with room to spare.
MAX_IOPUB_MESSAGES = 600


def pytest_collection_modifyitems(items):
    for item in items:
        if hasattr(item, "output_timeout"):
            item.output_timeout = OUTPUT_TIMEOUT_S


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """Count the IOPub messages an nbval cell receives; fail the cell when they are too many."""
    notebook = getattr(item, "parent", None)
    if not hasattr(item, "output_timeout") or not hasattr(notebook, "get_kernel_message"):
        return (yield)
    counted: Counter[str] = Counter()
    read = notebook.get_kernel_message

    def counting(*args, **kwargs):
        msg = read(*args, **kwargs)
        counted[msg["msg_type"]] += 1
        return msg

    notebook.get_kernel_message = counting
    try:
        result = yield
    finally:
        del notebook.get_kernel_message  # the class's own method again
    total = sum(counted.values())
    item.user_properties.append(("iopub_messages", total))  # for the summary (reaches it from xdist's workers too)
    if total > MAX_IOPUB_MESSAGES:
        kinds = ", ".join(f"{n} {kind}" for kind, n in counted.most_common())
        pytest.fail(
            f"{item.name} sent {total} messages on the kernel's IOPub channel ({kinds}); the limit is "
            f"{MAX_IOPUB_MESSAGES}. ZeroMQ queues about 1,000 a socket and drops the newest past that: nbval can lose the cell's end. "
            f"Refresh displays less often (labkit's ProgressBar and LivePlot are throttled), or print less.",
            pytrace=False,
        )
    return result


def pytest_terminal_summary(terminalreporter):
    busiest = [(value, report.nodeid) for kind in ("passed", "failed") for report in terminalreporter.stats.get(kind, [])
               if report.when == "call" for name, value in report.user_properties if name == "iopub_messages"]
    if busiest:
        top = sorted(busiest, reverse=True)[:3]
        shown = "; ".join(f"{cell} {n}" for n, cell in top)
        terminalreporter.write_line(f"IOPub messages of the busiest cells (limit {MAX_IOPUB_MESSAGES}): {shown}")
