"""Execute every notebook on the configured database and print a per-notebook summary.

``make run`` calls this. Each ``notebooks/NN_*.ipynb`` runs top to bottom in a fresh kernel, with
the notebook's folder as working directory (as in JupyterLab); the executed copy, outputs and
errors included, is written to ``build/notebooks/``. The exit status is 1 when any notebook fails,
2 when the database URL is unusable or the database does not answer (checked once, first).

Each executed copy records how it ran in its metadata, under ``guide_run``: the database (its
backend and URL, password hidden), Python and the library versions, the date, the outcome and the
seconds; ``make site`` shows it on each page.

``--runs 2`` runs each notebook twice in the same kernel, as a learner who presses Run All
again does. Anything a notebook writes to stderr that looks like a traceback or a warning is
reported as *noise*: a learner cannot tell it from a failure (``tests/test_learner_runs.py``
fails on it).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.metadata
import os
import platform
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from sqlalchemy.engine import URL

from snippets import DatabaseConfigError, DatabaseUnreachableError, check_database
from snippets.backends import FACTS, backend_of
from snippets.config import PROJECT_ROOT, shown_url
from snippets.lab.chapters import chapters

RECORDED_VERSIONS = ("sqlalchemy", "sqlmodel", "fastapi", "pydantic", "alembic")
"""Libraries whose versions each executed notebook records, with its database driver's."""

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
FAILING_LINE = re.compile(r"^\s*-+>\s*\d+ ")
NOISE = re.compile(r"Traceback|Warning|warn\(|Exception ignored", re.IGNORECASE)
"""What on stderr a learner would take for a failure."""


@dataclass
class Outcome:
    """How one notebook went: ``seconds`` has one entry per completed run."""

    status: str = "ok"
    seconds: list[float] = field(default_factory=list)
    detail: str = ""
    noise: list[str] = field(default_factory=list)
    """stderr outputs that contain a traceback or a warning, prefixed with run and cell."""


def run_record(url: URL, outcome: Outcome) -> dict[str, Any]:
    """What ``guide_run`` records in an executed notebook: database, versions, date, outcome."""
    driver = url.get_driver_name()
    versions = {name: importlib.metadata.version(name) for name in (*RECORDED_VERSIONS, driver)}
    return {
        "backend": FACTS[backend_of(url)].label,
        "url": shown_url(url),
        "python": platform.python_version(),
        "versions": versions,
        "date": datetime.date.today().isoformat(),
        "status": outcome.status,
        "seconds": [round(seconds, 1) for seconds in outcome.seconds],
    }


def failing_line(traceback: str) -> str:
    """The last line IPython's traceback marks as failing ("line 12 code"), or ``""``."""
    # IPython marks the failing line with an arrow padded to the line number: "----> 12 code".
    lines = ANSI_ESCAPE.sub("", traceback).splitlines()
    failing = [re.sub(r"^\s*-+>\s*", "line ", line) for line in lines if FAILING_LINE.match(line)]
    return failing[-1] if failing else ""


def describe(error: CellExecutionError) -> str:
    """The failing line and the exception, without the colour codes of IPython's traceback."""
    line = failing_line(error.traceback)
    where = f"{line}\n    " if line else ""
    return f"{where}{error.ename}: {error.evalue}".rstrip(": ")


def stderr_noise(notebook: Any, run: int) -> list[str]:
    """The stderr outputs of ``notebook``'s cells that contain a traceback or a warning."""
    found = []
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            text = output.get("text", "") if output.get("name") == "stderr" else ""
            if NOISE.search(text):
                found.append(f"run {run}, cell {index}: {ANSI_ESCAPE.sub('', text).strip()}")
    return found


def execute(
    path: Path,
    *,
    runs: int = 1,
    timeout: int = 600,
    env: Mapping[str, str] | None = None,
    progress: bool = True,
) -> tuple[Any, Outcome]:
    """Run every cell of ``path`` ``runs`` times in one kernel; stop at the first error.

    Returns the executed notebook (outputs of the last run) and its ``Outcome``.
    """
    notebook = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]

    def dot(**_: Any) -> None:
        if progress:
            print(".", end="", flush=True)

    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        # ipykernel warns about unencrypted TCP on every local start; keep its errors only.
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
        on_cell_executed=dot,
    )
    outcome = Outcome()
    try:
        with client.setup_kernel(env=dict(env if env is not None else os.environ)):
            for run in range(1, runs + 1):
                started = time.perf_counter()
                for index, cell in enumerate(notebook.cells):
                    client.execute_cell(cell, index)
                outcome.seconds.append(time.perf_counter() - started)
                outcome.noise += stderr_noise(notebook, run)
    except CellExecutionError as error:
        outcome.status, outcome.detail = "FAILED", describe(error)
    except Exception as error:  # a dead kernel or a timeout: report it, go on with the others
        outcome.status, outcome.detail = "FAILED", f"{type(error).__name__}: {error}"
    return notebook, outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/NN_*.ipynb")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "build" / "notebooks")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    parser.add_argument("--runs", type=int, default=1, help="Run All this many times per kernel")
    args = parser.parse_args(argv)

    paths = args.notebooks or chapters()
    try:  # one clear message now, rather than the same failure in every notebook
        url = asyncio.run(check_database())
    except (DatabaseConfigError, DatabaseUnreachableError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    shown = shown_url(url)
    print(f"Executing {len(paths)} notebooks on {shown}; executed copies go to {args.out}")

    rows = []
    for number, path in enumerate(paths, start=1):
        print(f"[{number}/{len(paths)}] {path.name} ", end="", flush=True)
        notebook, outcome = execute(path, runs=args.runs, timeout=args.timeout)
        notebook.metadata["guide_run"] = run_record(url, outcome)
        nbformat.write(notebook, args.out / path.name)  # type: ignore[no-untyped-call]
        print(f" {outcome.status} in {sum(outcome.seconds):.1f} s")
        if outcome.detail:
            print(f"    {outcome.detail}")
        for noise in outcome.noise:
            print(f"    stderr, {noise.splitlines()[0]}")
        rows.append((path.name, outcome))

    width = max((len(name) for name, _ in rows), default=8)
    print(f"\n{'notebook':<{width}}  status  seconds (Run All)  stderr noise")
    for name, outcome in rows:
        times = " + ".join(f"{seconds:.1f}" for seconds in outcome.seconds) or "-"
        print(f"{name:<{width}}  {outcome.status:<6}  {times:<17}  {len(outcome.noise)}")
    failed = sum(outcome.status != "ok" for _, outcome in rows)
    print(f"{len(rows) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
