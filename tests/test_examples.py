"""examples/event_loops.py, run as a script on the configured backend (as notebook 11 does)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from snippets.backends import facts
from snippets.config import PROJECT_ROOT, database_url

SCRIPT = PROJECT_ROOT / "examples" / "event_loops.py"


def run_mode(mode: str) -> tuple[list[dict[str, object]], str]:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), mode],
        cwd=PROJECT_ROOT,
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()], done.stderr


@pytest.mark.parametrize("mode", ["dispose", "nullpool", "per-loop"])
def test_each_fix_works_in_every_loop(mode: str) -> None:
    runs, stderr = run_mode(mode)
    assert [run["ok"] for run in runs] == [True, True, True], runs
    assert stderr == ""


@pytest.mark.parametrize("mode", ["reuse", "thread"])
def test_a_pooled_engine_fails_in_a_second_loop(mode: str) -> None:
    runs, _ = run_mode(mode)
    loop_bound = facts(database_url()).loop_bound_connections
    assert [run["ok"] for run in runs][:2] == [True, not loop_bound], runs
    if loop_bound:
        assert "attached to a different loop" in str(runs[1]["error"])
    if facts(database_url()).label == "PostgreSQL":
        assert "another operation is in progress" in str(runs[2]["error"])


def test_an_unknown_mode_is_refused_with_usage() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "twice"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "usage:" in done.stderr
    assert "per-loop" in done.stderr


async def test_asyncio_run_is_refused_while_a_loop_runs() -> None:
    """What notebook 11 states about Jupyter, whose kernel runs a loop in the cells' thread."""

    async def answer() -> int:
        return 42

    coroutine = answer()
    try:
        with pytest.raises(RuntimeError, match="cannot be called from a running event loop"):
            asyncio.run(coroutine)
    finally:
        coroutine.close()  # it never ran: no "never awaited" warning
