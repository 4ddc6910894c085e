"""Start a worker of the guide's demo jobs: `make worker` (Celery, chapter 16) or
`make taskiq-worker` (taskiq with the outbox relay, chapter 17).

It checks the broker first (no broker: one line saying how to start Redis, exit 1, instead of a
worker retrying forever), prepares the worker's database namespace (``JOBS_NAMESPACE``, default
``jobs``, on ``DATABASE_URL`` or the embedded SQLite default) with the demo's tables, then
replaces itself with the worker, which runs until Ctrl-C or SIGTERM. Send it jobs from Python,
e.g. ``snippets.demo.celery_jobs.add_team.delay("A team")``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from snippets import DatabaseConfigError, DatabaseUnreachableError, create_tables, open_engine
from snippets.config import redact

WORKERS = {
    "celery": (
        "CELERY_BROKER_URL",
        "redis://127.0.0.1:6379/0",
        ["-m", "celery", "-A", "snippets.demo.celery_jobs", "worker", "--loglevel", "info"],
    ),
    "taskiq": (
        "TASKIQ_BROKER_URL",
        "redis://127.0.0.1:6379/2",
        ["-m", "taskiq", "worker", "snippets.demo.taskiq_jobs:broker", "--workers", "1"],
    ),
}


async def prepare(namespace: str) -> None:
    from snippets.demo.models import metadata
    from snippets.demo.taskiq_jobs import outbox_metadata

    engine = await open_engine(namespace=namespace)
    try:
        await create_tables(engine, metadata)
        await create_tables(engine, outbox_metadata)
    finally:
        await engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("queue", choices=sorted(WORKERS))
    kind = parser.parse_args().queue
    variable, default, arguments = WORKERS[kind]
    from snippets.lab.worker import broker_answers

    url = os.environ.get(variable, default)
    if not broker_answers(url):
        print(
            f"No broker answers at {redact(url)}: start Redis (apt-get install -y redis-server,"
            f" then redis-server --daemonize yes), or set {variable}.",
            file=sys.stderr,
        )
        return 1
    namespace = os.environ.setdefault("JOBS_NAMESPACE", "jobs")
    try:
        asyncio.run(prepare(namespace))  # a script, not a notebook: its own loop, once
    except (DatabaseConfigError, DatabaseUnreachableError) as error:
        print(error, file=sys.stderr)
        return 1
    if kind == "taskiq":
        os.environ.setdefault("JOBS_RELAY_OUTBOX", "1")
    print(f"{kind} worker on namespace {namespace!r}, broker {redact(url)}", flush=True)
    os.execv(sys.executable, [sys.executable, *arguments])


if __name__ == "__main__":
    sys.exit(main())
