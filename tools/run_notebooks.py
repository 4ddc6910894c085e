"""Execute every notebook on the configured database and print a per-notebook summary.

``make run`` calls this. Each ``notebooks/NN_*.ipynb`` runs top to bottom in a fresh kernel, with
the notebook's folder as working directory (as in JupyterLab); the executed copy, outputs and
errors included, is written to ``build/notebooks/``. The exit status is 1 when any notebook fails,
2 when the database URL is unusable or the database does not answer (checked once, first).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from snippets import DatabaseConfigError, DatabaseUnreachableError, check_database
from snippets.config import PROJECT_ROOT

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
FAILING_LINE = re.compile(r"^\s*-+>\s*\d+ ")


def describe(error: CellExecutionError) -> str:
    """The failing line and the exception, without the colour codes of IPython's traceback."""
    # IPython marks the failing line with an arrow padded to the line number: "----> 12 code".
    lines = ANSI_ESCAPE.sub("", error.traceback).splitlines()
    failing = [re.sub(r"^\s*-+>\s*", "line ", line) for line in lines if FAILING_LINE.match(line)]
    where = f"{failing[-1]}\n    " if failing else ""
    return f"{where}{error.ename}: {error.evalue}".rstrip(": ")


def execute(path: Path, out_dir: Path, timeout: int) -> tuple[str, float, str]:
    """Run one notebook; return its status, seconds taken and, on failure, the error's last line."""
    notebook = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]

    def progress(**_: Any) -> None:
        print(".", end="", flush=True)

    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        # ipykernel warns about unencrypted TCP on every local start; keep its errors only.
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
        on_cell_executed=progress,
    )
    started = time.perf_counter()
    status, detail = "ok", ""
    try:
        client.execute()
    except CellExecutionError as error:
        status, detail = "FAILED", describe(error)
    except Exception as error:  # a dead kernel or a timeout: report it, go on with the others
        status, detail = "FAILED", f"{type(error).__name__}: {error}"
    seconds = time.perf_counter() - started
    nbformat.write(notebook, out_dir / path.name)  # type: ignore[no-untyped-call]
    return status, seconds, detail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/NN_*.ipynb")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "build" / "notebooks")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args(argv)

    paths = args.notebooks or sorted((PROJECT_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    try:  # one clear message now, rather than the same failure in every notebook
        url = asyncio.run(check_database())
    except (DatabaseConfigError, DatabaseUnreachableError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    shown = url.render_as_string(hide_password=True)
    print(f"Executing {len(paths)} notebooks on {shown}; executed copies go to {args.out}")

    rows = []
    for number, path in enumerate(paths, start=1):
        print(f"[{number}/{len(paths)}] {path.name} ", end="", flush=True)
        status, seconds, detail = execute(path, args.out, args.timeout)
        print(f" {status} in {seconds:.1f} s")
        if detail:
            print(f"    {detail}")
        rows.append((path.name, status, seconds))

    width = max((len(name) for name, _, _ in rows), default=8)
    print(f"\n{'notebook':<{width}}  status  seconds")
    for name, status, seconds in rows:
        print(f"{name:<{width}}  {status:<6}  {seconds:7.1f}")
    failed = sum(status != "ok" for _, status, _ in rows)
    print(f"{len(rows) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
