"""One process migrating one namespace to head, as a deploy step or an app worker would.

Run from a shell; notebook 12 starts two at once to show what the migration lock prevents::

    python examples/migrate.py NAMESPACE [--versions DIR] [--no-lock] [--together DIR]

``--versions`` migrates with another folder of revision scripts than the guide's
``migrations/versions``; ``--no-lock`` leaves out ``migrations/env.py``'s lock (a demonstration
of what it prevents, never for real use); ``--together DIR`` waits until ``--parties`` processes
(default 2) have arrived in DIR, so that they start migrating at the same moment however long
each took to start (a busy machine can start one a second later). It prints one JSON line:
``{"ok": true, "ran": ["s1"], "error": null, "seconds": 1.2}``, where ``ran`` lists the
revisions *this* process applied. The URL is ``DATABASE_URL`` (SQLite by default).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import time
from pathlib import Path

from alembic import command
from alembic.config import Config

from snippets.config import PROJECT_ROOT
from snippets.migrations import use_scripts_in


class AppliedRevisions(logging.Handler):
    """Collects the revisions Alembic logs as "Running upgrade <from> -> <to>, ..."."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.revisions: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        found = re.match(r"Running upgrade .*-> (\w+)", record.getMessage())
        if found:
            self.revisions.append(found.group(1))


def wait_for_the_others(folder: Path, parties: int, timeout: float = 60.0) -> None:
    """A barrier between processes: arrive (a file named after this pid), wait for the rest."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / str(os.getpid())).touch()
    deadline = time.monotonic() + timeout
    while len(list(folder.iterdir())) < parties:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{parties} processes did not arrive in {folder} in {timeout:g} s")
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("namespace")
    parser.add_argument("--versions", help="a folder of revision scripts")
    parser.add_argument("--no-lock", action="store_true", help="leave out the migration lock")
    parser.add_argument("--together", type=Path, help="a folder: start with the other processes")
    parser.add_argument("--parties", type=int, default=2, help="processes that meet there")
    args = parser.parse_args()

    config = Config(toml_file=PROJECT_ROOT / "pyproject.toml")
    config.attributes["namespace"] = args.namespace
    if args.versions:
        use_scripts_in(config, args.versions)
    config.attributes["migration_lock"] = not args.no_lock
    applied = AppliedRevisions()
    migration_logger = logging.getLogger("alembic.runtime.migration")
    migration_logger.addHandler(applied)
    migration_logger.setLevel(logging.INFO)

    if args.together:
        wait_for_the_others(args.together, args.parties)
    started = time.perf_counter()
    error = None
    try:
        command.upgrade(config, "head")
    except Exception as exc:  # reported, not raised: the caller compares two processes
        error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
    print(
        json.dumps(
            {
                "ok": error is None,
                "ran": applied.revisions,
                "error": error,
                "seconds": round(time.perf_counter() - started, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
