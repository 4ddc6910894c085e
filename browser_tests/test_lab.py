"""Every notebook in JupyterLab, in a real browser, as a learner runs it (``make test-lab``).

JupyterLab is started on a free loopback port over a copy of ``notebooks/`` (JupyterLab saves
outputs into the files it runs; the committed notebooks stay clean), with the default SQLite
folder pointed at a folder that does not exist yet, as on a fresh clone. Headless Chromium from
Debian's ``chromium`` package, driven by Playwright (which never downloads a browser here), opens
each notebook, runs *Run All Cells*, waits for the kernel to go idle, and checks that no cell
shows an error or a traceback or warning on stderr. A screenshot of each notebook goes to
``build/lab/``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest
from playwright.sync_api import Browser, Page

from browser_tests.chromium import free_port, require_chromium
from snippets.config import PROJECT_ROOT, SQLITE_DIR_VAR
from snippets.lab.chapters import chapters
from tools.run_notebooks import failing_line, stderr_noise

NOTEBOOKS = chapters()
SHOTS = PROJECT_ROOT / "build" / "lab"
RUN_ALL_TIMEOUT = 120.0
"""Seconds one notebook's Run All may take in the browser (about 20 s is the goal on SQLite)."""

# The notebook's state, read from JupyterLab's own model of the open notebook.
NOTEBOOK_STATE = """(path) => {
    const widget = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    if (!widget || !widget.content || !widget.content.model || !widget.sessionContext
        || !widget.context || widget.context.path !== path) {
        return null;
    }
    const kernel = widget.sessionContext.session && widget.sessionContext.session.kernel;
    return {
        kernel: kernel ? kernel.status : "none",
        notebook: widget.content.model.toJSON(),
    };
}"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A JupyterLab server on a copy of the notebooks; yields its base URL (token included)."""
    require_chromium()
    root = tmp_path_factory.mktemp("lab")
    for notebook in NOTEBOOKS:
        shutil.copy(notebook, root / notebook.name)
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, SQLITE_DIR_VAR: str(root / "fresh-clone" / "build" / "db")}
    log = (root / "jupyterlab.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable, "-m", "jupyterlab", "--no-browser",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
            "--LabApp.expose_app_in_browser=True", "--ServerApp.allow_root=True",
            f"--LabApp.workspaces_dir={root / 'workspaces'}",
            f"--LabApp.user_settings_dir={root / 'settings'}",
        ],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/api/status", params={"token": token}).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not start:\n{(root / 'jupyterlab.log').read_text()}")
            time.sleep(0.2)
        yield f"{base}|{token}"
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def run_all(page: Page, path: str) -> dict[str, Any]:
    """Run All Cells; wait until every code cell ran (or one failed) and the kernel is idle."""
    page.wait_for_function(
        f"(path) => ({NOTEBOOK_STATE})(path)?.kernel === 'idle'", arg=path, timeout=60_000
    )
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    deadline = time.monotonic() + RUN_ALL_TIMEOUT
    time.sleep(1)
    while time.monotonic() < deadline:
        state = page.evaluate(NOTEBOOK_STATE, path)
        cells = [cell for cell in state["notebook"]["cells"] if cell["cell_type"] == "code"]
        ran = all(cell["execution_count"] is not None for cell in cells)
        failed = any(o["output_type"] == "error" for cell in cells for o in cell["outputs"])
        if state["kernel"] == "idle" and (ran or failed):
            return dict(state["notebook"])
        time.sleep(0.5)
    unrun = [i for i, cell in enumerate(state["notebook"]["cells"]) if cell["cell_type"] == "code"
             and cell["execution_count"] is None]  # fmt: skip
    raise TimeoutError(
        f"Run All did not finish within {RUN_ALL_TIMEOUT:.0f} s: kernel {state['kernel']},"
        f" cells not run: {unrun}"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_run_all_in_jupyterlab(lab: str, browser: Browser, path: Path) -> None:
    base, token = lab.split("|")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        # A workspace per notebook, reset: no tab of an earlier notebook is restored.
        page.goto(f"{base}/lab/workspaces/{path.stem}/tree/{path.name}?reset&token={token}")
        started = time.perf_counter()
        notebook = run_all(page, path.name)
        seconds = time.perf_counter() - started
    finally:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SHOTS / f"{path.stem}.png")  # also of a failure, to look at
        page.close()
        for session in httpx.get(f"{base}/api/sessions", params={"token": token}).json():
            httpx.delete(f"{base}/api/sessions/{session['id']}", params={"token": token})
    errors = [
        f"cell {index}, {failing_line(chr(10).join(output['traceback']))}:"
        f" {output['ename']}: {output['evalue']}"
        for index, cell in enumerate(notebook["cells"])
        for output in cell.get("outputs", [])
        if output["output_type"] == "error"
    ]
    assert errors == [], errors
    code_cells = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert all(cell["execution_count"] for cell in code_cells)
    assert stderr_noise(nbformat.from_dict(notebook), run=1) == []
    print(f"{path.name}: Run All in JupyterLab took {seconds:.1f} s")
