"""How long each committed notebook took to run, read from its cells' execution times.

    python tools/notebook_times.py               # every notebook in chapters/ and solutions/, and the total
    python tools/notebook_times.py --under 60    # only the paths of those that ran in under 60 s (make test-fast)

The times are those of the run that produced the committed outputs (`make notebooks`, on the
machine that ran it): each code cell's execution started / replied timestamps, summed. Kernel
start-up is not included, so a notebook's wall time is a few seconds more.
"""
from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _stamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def committed_seconds(path: Path) -> float | None:
    """The sum of `path`'s code cells' execution times as committed; None if a code cell has none
    (the notebook was not committed executed)."""
    total = 0.0
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] != "code" or not "".join(cell["source"]).strip():
            continue
        timing = cell.get("metadata", {}).get("execution", {})
        if "iopub.execute_input" not in timing or "shell.execute_reply" not in timing:
            return None
        total += (_stamp(timing["shell.execute_reply"]) - _stamp(timing["iopub.execute_input"])).total_seconds()
    return total


def _shown(path: Path) -> Path:
    """`path` relative to the repository when it is inside it (as make and pytest name it)."""
    path = path.resolve()
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: chapters/ and solutions/)")
    parser.add_argument("--under", type=float, metavar="SECONDS",
                        help="print only the notebooks that ran in under SECONDS, one path per line")
    args = parser.parse_args()
    paths = args.paths or sorted((ROOT / "chapters").glob("*.ipynb")) + sorted((ROOT / "solutions").glob("*.ipynb"))
    times = {_shown(path): committed_seconds(path) for path in paths}
    if args.under is not None:
        for path, seconds in times.items():
            if seconds is not None and seconds < args.under:
                print(path)
        return
    for path, seconds in times.items():
        print(f"{'not executed' if seconds is None else f'{seconds:7.1f} s'}  {path}")
    known = [s for s in times.values() if s is not None]
    print(f"{sum(known):7.1f} s  in all ({sum(known) / 60:.1f} min, {len(known)} notebooks)")


if __name__ == "__main__":
    main()
