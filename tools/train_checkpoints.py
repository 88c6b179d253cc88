"""Train the GPT checkpoints the course ships (checkpoints/<name>/), with the course's own code.

    python tools/train_checkpoints.py shakespeare_char          # train (or resume) and export
    python tools/train_checkpoints.py tang_char base_bpe
    python tools/train_checkpoints.py shakespeare_char --export  # export the run as it stands

The recipes and the training live in labkit/recipes.py (also `python -m labkit train`, which
torchrun can start); this script is the command that made the shipped checkpoints.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labkit.recipes import RECIPES, corpus, main  # noqa: E402,F401  (tests read RECIPES and corpus from here)

if __name__ == "__main__":
    raise SystemExit(main(prog="python tools/train_checkpoints.py"))
