"""Every notebook as a learner runs it: Run All twice in one kernel, from a clean checkout.

A learner clones the repository, opens a notebook in JupyterLab with no ``build/`` folder yet,
runs all cells, changes something and runs all cells again in the same kernel. Each notebook
here does exactly that, on the configured backend, with the default SQLite folder pointed at a
folder that does not exist yet. It fails on any error, and on any stderr output that contains a
traceback or a warning: a notebook shows an expected warning on purpose, it never leaks one.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from snippets.config import SQLITE_DIR_VAR
from snippets.lab.chapters import chapters
from tools.run_notebooks import execute

NOTEBOOKS = chapters()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_run_all_twice_in_one_kernel(path: Path, tmp_path: Path) -> None:
    fresh_build = tmp_path / "build" / "db"  # created by nothing but the notebook itself
    env = {**os.environ, SQLITE_DIR_VAR: str(fresh_build)}
    _, outcome = execute(path, runs=2, env=env, progress=False)
    assert outcome.status == "ok", outcome.detail
    assert len(outcome.seconds) == 2
    assert outcome.noise == [], "\n\n".join(outcome.noise)
