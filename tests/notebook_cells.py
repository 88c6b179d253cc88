"""Reading a notebook's cells without running it (the chapter tests check how notebooks are wired)."""
from __future__ import annotations

import json
from pathlib import Path


def cells(path: Path) -> list[dict]:
    """Every cell of the notebook at `path`, as nbformat JSON dicts."""
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def code_cells(path: Path) -> list[str]:
    """The source of each code cell, in order."""
    return ["".join(cell["source"]) for cell in cells(path) if cell["cell_type"] == "code"]


# The real-browser test (tests/browser) runs a slice of each chapter: the cells its widget needs.
BROWSER_TEST = "browser-test"    # the tag of the one widget cell the browser test uses
BROWSER_SETUP = "browser-setup"  # the tag of the cells that widget needs (without any: every cell before it)
# A cell's metadata {"labkit": {"browser_stand_in": source}}: the source the browser slice runs in
# that cell's place. For a long training run whose result the widget only displays (07c trains for
# minutes; its stand-in loads the shipped checkpoint made by the same recipe): nbval still runs the
# cell itself, and the browser test checks the widget, not the training, in a fraction of the time.
STAND_IN = "browser_stand_in"


def stand_in(cell: dict) -> str | None:
    """The source the browser slice runs in place of `cell`, or None (it runs the cell itself)."""
    return cell.get("metadata", {}).get("labkit", {}).get(STAND_IN)


def tagged_cell_index(path: Path) -> int | None:
    """The index (among all cells) of the notebook's cell tagged "browser-test", or None."""
    found = [i for i, cell in enumerate(cells(path)) if BROWSER_TEST in cell.get("metadata", {}).get("tags", [])]
    assert len(found) <= 1, f"{path.name}: tag exactly one cell {BROWSER_TEST!r}, found {len(found)}"
    return found[0] if found else None


def widget_slice(path: Path) -> tuple[dict, int]:
    """The notebook the browser test runs for `path`'s widget, and the widget cell's index in it.

    Its code cells tagged "browser-setup" (each replaced by its stand-in, if it has one) and then
    the widget cell; without such tags, every code cell up to the widget. Outputs are cleared, as
    a learner's Run All would."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    index = tagged_cell_index(path)
    assert index is not None, f"{path.name} has no cell tagged {BROWSER_TEST!r}"
    before = [cell for cell in notebook["cells"][:index] if cell["cell_type"] == "code"]
    setup = [cell for cell in before if BROWSER_SETUP in cell.get("metadata", {}).get("tags", [])]
    cells = [*(setup or before), notebook["cells"][index]]
    for cell in cells:
        cell["outputs"], cell["execution_count"] = [], None
        if stand_in(cell) is not None:
            cell["source"] = stand_in(cell)
    return {**notebook, "cells": cells}, len(cells) - 1


def run_widget_slice(path: Path, *, with_widget: bool = True) -> dict:
    """Execute `path`'s browser slice (`widget_slice`) in a fresh namespace, without a kernel, and
    return the namespace: a chapter test then calls the widget's drawing function at the sliders'
    ends. Figures go to matplotlib's Agg backend; `with_widget=False` stops before the widget cell."""
    import matplotlib
    import torch

    matplotlib.use("Agg")
    notebook, index = widget_slice(path)
    namespace: dict = {}
    threads = torch.get_num_threads()  # a notebook may set its own number of threads: the tests keep theirs
    try:
        for i, cell in enumerate(notebook["cells"][: index + 1 if with_widget else index]):
            exec(compile("".join(cell["source"]), f"<{path.stem} slice cell {i}>", "exec"), namespace)
    finally:
        torch.set_num_threads(threads)
    return namespace
