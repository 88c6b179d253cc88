"""Shared fixtures for the unit tests."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tests on one CPU thread: on tiny tensors, handing work between threads
    costs far more than the work itself (~100x on a busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def build_script():
    """datasets/build.py, imported as a module (it is a script, not part of labkit)."""
    spec = importlib.util.spec_from_file_location("datasets_build", REPO / "datasets" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
