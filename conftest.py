"""Settings for running the notebooks under nbval (`make nbval`)."""
from __future__ import annotations

# After a cell has finished, nbval waits at most 5 seconds (hard-coded) for each of the cell's
# remaining output messages; a busy 2-core machine sometimes takes longer after a long training
# cell, which failed a passing notebook in CI. Give the outputs a minute. (nbval issue #136.)
OUTPUT_TIMEOUT_S = 60


def pytest_collection_modifyitems(items):
    for item in items:
        if hasattr(item, "output_timeout"):
            item.output_timeout = OUTPUT_TIMEOUT_S
