"""An engine belongs to the event loop its connections were opened on: what breaks, what works.

Run from a shell (not from a notebook, which already has a loop running)::

    python examples/event_loops.py reuse       # one pooled engine, asyncio.run() twice
    python examples/event_loops.py thread      # the same engine from worker threads' loops
    python examples/event_loops.py dispose     # fix: dispose() at the end of each loop
    python examples/event_loops.py nullpool    # fix: no pool, a new connection every time
    python examples/event_loops.py per-loop    # fix: an engine made and disposed in each loop

Each mode runs the same query three times, each time in a new event loop, and prints one JSON line
per run: ``{"run": 1, "ok": true, "error": null}``. The URL is ``DATABASE_URL`` (SQLite by
default). Scripts, task-queue workers (Celery, RQ), and test suites that start a loop per test
are where the first two happen in real code.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool

from snippets import make_engine


async def query(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT 1"))).scalar_one())


def reuse() -> Callable[[], int]:
    """The engine is made once, at import time, as many scripts do; its pool outlives the loop."""
    engine = make_engine()
    return lambda: asyncio.run(query(engine))


def thread() -> Callable[[], int]:
    """The same engine from worker threads, each running a loop of its own."""
    engine = make_engine()

    def run_in_a_thread() -> int:
        results: list[int | BaseException] = []

        def worker() -> None:
            try:
                results.append(asyncio.run(query(engine)))
            except Exception as error:
                results.append(error)

        worker_thread = threading.Thread(target=worker)
        worker_thread.start()
        worker_thread.join()
        if isinstance(results[0], BaseException):
            raise results[0]
        return results[0]

    return run_in_a_thread


def dispose() -> Callable[[], int]:
    """The same engine, its pool emptied before each loop ends."""
    engine = make_engine()

    async def query_then_dispose() -> int:
        try:
            return await query(engine)
        finally:
            await engine.dispose()

    return lambda: asyncio.run(query_then_dispose())


def nullpool() -> Callable[[], int]:
    """No pool: each checkout opens a connection on the running loop, each checkin closes it."""
    engine = make_engine(poolclass=NullPool)
    return lambda: asyncio.run(query(engine))


def per_loop() -> Callable[[], int]:
    """The recommended shape: the engine is made, used and disposed inside the loop."""

    async def main() -> int:
        engine = make_engine()
        try:
            return await query(engine)
        finally:
            await engine.dispose()

    return lambda: asyncio.run(main())


MODES = {
    "reuse": reuse,
    "thread": thread,
    "dispose": dispose,
    "nullpool": nullpool,
    "per-loop": per_loop,
}


def main(mode: str) -> None:
    run = MODES[mode]()
    for number in (1, 2, 3):
        error: str | None = None
        try:
            run()
        except Exception as failure:
            error = f"{type(failure).__name__}: {str(failure).splitlines()[0]}"
        print(json.dumps({"run": number, "ok": error is None, "error": error}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in MODES:
        sys.exit(f"usage: python {sys.argv[0]} {{{','.join(MODES)}}}")
    main(sys.argv[1])
