"""Execute notebooks in place, the way they are committed (outputs visible on the web).

    python tools/execute_notebooks.py chapters/05_practice_cnn.ipynb
    python tools/execute_notebooks.py            # every notebook in chapters/ and solutions/

Runs each notebook top to bottom in a fresh kernel of this Python, from the notebook's own
folder, and prints how long it took against its budget. Exits non-zero if a cell fails or a
notebook runs over budget (the notebook is then left as it was).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError

from labkit.threads import SPIN_ENV

ROOT = Path(__file__).resolve().parent.parent
BUDGET_S = 300  # docs/design.md: every notebook runs top to bottom in at most 5 minutes on a 2-core CPU
for _name, _value in SPIN_ENV.items():  # the kernels inherit how torch's threads wait: see labkit.threads
    os.environ.setdefault(_name, _value)


def execute(path: Path, budget: float, tries: int = 2) -> float:
    """Run `path` in place; a cell that hangs past its timeout gets the notebook one more try
    (nbclient very rarely misses a cell's reply while it records widget state)."""
    for attempt in range(1, tries + 1):
        try:
            return _execute_once(path, budget)
        except CellTimeoutError:
            if attempt == tries:
                raise
            print(f"(a cell timed out; trying {path.name} once more)", end=" ", flush=True)
    raise AssertionError("unreachable")


def _execute_once(path: Path, budget: float) -> float:
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=min(600, budget),
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        store_widget_state=True,
    )
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    if elapsed > budget:
        raise RuntimeError(f"{path} took {elapsed:.0f} s, over its budget of {budget:.0f} s: tune its defaults")
    nbformat.write(notebook, path)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="seconds allowed per notebook")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "chapters").glob("*.ipynb")) + sorted((ROOT / "solutions").glob("*.ipynb"))
    failed = 0
    for path in paths:
        print(f"{path} ...", end=" ", flush=True)
        try:
            print(f"{execute(path, args.budget):.1f} s")
        except Exception as error:  # report every notebook, then fail
            failed += 1
            print(f"FAILED\n{str(error)[-3000:]}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
