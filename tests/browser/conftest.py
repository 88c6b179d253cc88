"""Fixtures for the real-browser tests: a throw-away JupyterLab server and a headless Chromium.

What is known to work on these machines (see NOTES.md, "A real browser on JupyterLab"):
Debian's /usr/bin/chromium driven by Playwright through ``executable_path`` (never
``playwright install``: it downloads a browser), and JupyterLab on 127.0.0.1 with an empty
token, fresh config/runtime/settings/workspace folders, and news/update checks off. The
server serves a temporary folder that holds *copies* of the notebooks under test, because
JupyterLab's autosave writes outputs back.

Environment knobs:
    LABKIT_CHROMIUM   path of the Chromium to drive (default /usr/bin/chromium)
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path(os.environ.get("LABKIT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SERVER_START_TIMEOUT_S = 90

# JupyterLab settings for the test server: no news/update toast, every cell kept in the page
# (with windowing, cells scrolled out of view leave the DOM and cannot be checked).
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder drives a browser: mark it so that `-m "not browser"` skips it."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LabServer:
    """A running JupyterLab: its base `url` and the `root` folder it serves."""

    url: str
    root: Path
    log: Path

    def add_notebook(self, source: Path) -> str:
        """Copy `source` (and nothing else) into the served folder; returns its name there."""
        target = self.root / source.name
        shutil.copyfile(source, target)
        return target.name

    def write_notebook(self, name: str, notebook: dict) -> str:
        """Write `notebook` (nbformat JSON) into the served folder as `name`; returns `name`."""
        (self.root / name).write_text(json.dumps(notebook, ensure_ascii=False))
        return name

    def shutdown_kernels(self) -> None:
        """Stop every kernel the server runs (a finished test's kernel would keep its memory)."""
        with urllib.request.urlopen(f"{self.url}/api/kernels", timeout=10) as response:
            kernels = json.loads(response.read())
        for kernel in kernels:
            request = urllib.request.Request(f"{self.url}/api/kernels/{kernel['id']}", method="DELETE")
            urllib.request.urlopen(request, timeout=30).close()

    def log_tail(self, n: int = 40) -> str:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(lines[-n:])


def _lab_environment(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTERLAB_SETTINGS_DIR", "JUPYTERLAB_WORKSPACES_DIR", "JUPYTER_DATA_DIR"):
        folder = tmp / name.lower()
        folder.mkdir()
        env[name] = str(folder)
    for relative, values in LAB_SETTINGS.items():
        path = Path(env["JUPYTERLAB_SETTINGS_DIR"]) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env.pop("MPLBACKEND", None)  # it would leak into the kernels and hide inline figures
    return env


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """JupyterLab on 127.0.0.1 and a free port, without token or password; stopped at the end."""
    tmp = tmp_path_factory.mktemp("jupyterlab")
    root = tmp / "notebooks"
    root.mkdir()
    port = _free_port()
    log = tmp / "server.log"
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser",
        "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
        "--IdentityProvider.token=", "--ServerApp.password=",
        "--ServerApp.disable_check_xsrf=True",  # lets the `lab` fixture stop kernels through the REST API (else 403)
        f"--ServerApp.root_dir={root}", "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    with open(log, "w") as log_file:
        server = subprocess.Popen(
            command, cwd=root, env=_lab_environment(tmp), stdout=log_file, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,  # its own process group: kernels included
        )
    lab = LabServer(url=f"http://127.0.0.1:{port}", root=root, log=log)
    try:
        _wait_until_answering(lab, server)
        yield lab
    finally:
        _stop(server)


def _wait_until_answering(lab: LabServer, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with code {server.returncode} before answering:\n{lab.log_tail()}")
        try:
            with urllib.request.urlopen(f"{lab.url}/api/status", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    raise RuntimeError(f"jupyter lab did not answer on {lab.url} within {SERVER_START_TIMEOUT_S} s:\n{lab.log_tail()}")


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM lets the server shut its kernels down; whatever is left of its group is killed."""
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(server.pid, signal.SIGKILL)  # the group this fixture started (server and kernels)
    except (ProcessLookupError, PermissionError):
        pass
    server.wait(timeout=15)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Headless Debian Chromium driven by Playwright (skips when Chromium or Playwright is missing)."""
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's `chromium` (apt-get install chromium fonts-dejavu-core) or set LABKIT_CHROMIUM")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (pip install playwright)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def lab(lab_server: LabServer) -> Iterator[LabServer]:
    """The session's JupyterLab, with every kernel stopped after the test."""
    yield lab_server
    try:
        lab_server.shutdown_kernels()
    except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
        warnings.warn(f"could not stop the test's kernels (they keep their memory until the session ends): {error}", stacklevel=1)


@pytest.fixture
def page(browser) -> Iterator[object]:
    """A fresh browser tab, 1280×1000; the page's JavaScript errors are kept in `page.js_errors`."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    tab = context.new_page()
    tab.js_errors = []
    tab.on("pageerror", lambda error: tab.js_errors.append(str(error)))
    try:
        yield tab
    finally:
        context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """test-artifacts/ at the repository root (git-ignored): screenshots go there."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
