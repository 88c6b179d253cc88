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
