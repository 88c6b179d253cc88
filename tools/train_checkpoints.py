"""Train the GPT checkpoints the course ships (checkpoints/<name>/), with the course's own code.

    python tools/train_checkpoints.py shakespeare_char          # train (or resume) and export
    python tools/train_checkpoints.py tang_char base_bpe
    python tools/train_checkpoints.py shakespeare_char --export  # export the run as it stands

The recipes and the training live in labkit/recipes.py (also `python -m labkit train`, which
torchrun can start); this script is the command that made the shipped checkpoints. It runs with the
course's Python, where labkit is installed (`make setup`; `make checkpoints` runs it).
"""
from __future__ import annotations

from labkit.recipes import RECIPES, corpus, main

__all__ = ["RECIPES", "corpus", "main"]  # tests read RECIPES and corpus from here

if __name__ == "__main__":
    raise SystemExit(main(prog="python tools/train_checkpoints.py"))
