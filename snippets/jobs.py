"""Async SQLModel in a job queue's worker process, for a queue that runs plain functions (Celery).

A Celery task is a plain function. The usual way to run async code in it, ``asyncio.run()`` per
task against an engine made at import, opens a new event loop for each task: the engine's
pooled connections belong to the first task's loop, which is closed when that task ends, and
the second task fails on asyncpg and aiomysql ("attached to a different loop", "Event loop is
closed"). aiosqlite's connections happen to work on any loop (``BackendFacts``:
``loop_bound_connections``): never rely on it.

* ``ProcessLoop`` keeps one event loop and one engine per worker process, for the life of the
  process: every task runs on that loop (``run``), its connections stay pooled between tasks,
  and ``close`` disposes the engine on the loop that opened it. Created on first use in each
  process, so a pool that forks its workers (Celery's default, prefork) gives each child its
  own; ``close`` belongs in the queue's shutdown hook (Celery's ``worker_process_shutdown``
  and, for the ``solo`` pool, ``worker_shutdown``).
* The other fix, an engine with ``NullPool`` and ``asyncio.run`` per task, works too: each task
  opens a connection of its own and closes it, which costs a connection (a TCP and
  authentication round trip) per task, and as many server connections as tasks running.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

Result = TypeVar("Result")
EngineFactory = Callable[[], Awaitable[AsyncEngine]]


class ProcessLoop:
    """One event loop and one engine per process, opened on first use, kept until ``close``.

    ``jobs = ProcessLoop(lambda: open_engine())``, then in a task:
    ``return jobs.run(lambda engine: add_team(engine, name))``.
    """

    def __init__(self, open_engine: EngineFactory) -> None:
        self._open_engine = open_engine
        self._pid: int | None = None
        self._runner: asyncio.Runner | None = None
        self._engine: AsyncEngine | None = None

    def run(self, job: Callable[[AsyncEngine], Awaitable[Result]]) -> Result:
        """Run ``job(engine)`` to its end on this process's loop, and return its result."""
        runner, engine = self._started()
        return runner.run(_awaited(job(engine)))

    def close(self) -> None:
        """Dispose this process's engine on its own loop, then close the loop. A process that
        never ran a job, or that inherited the object from a forked parent, has nothing to close:
        the parent's connections are the parent's."""
        if self._runner is None or self._pid != os.getpid():
            return
        try:
            if self._engine is not None:
                self._runner.run(self._engine.dispose())
        finally:
            self._runner.close()
            self._runner = self._engine = self._pid = None

    def _started(self) -> tuple[asyncio.Runner, AsyncEngine]:
        if self._pid != os.getpid():  # first use in this process, or a forked child
            if self._engine is not None:
                # A parent's engine, copied by a fork: forget its connections without closing
                # them, since they are the parent's (notebook 15).
                self._engine.sync_engine.dispose(close=False)
            runner = asyncio.Runner()
            self._engine = runner.run(_awaited(self._open_engine()))
            self._runner, self._pid = runner, os.getpid()
        assert self._runner is not None
        assert self._engine is not None
        return self._runner, self._engine


async def _awaited(awaitable: Awaitable[Result]) -> Result:
    return await awaitable
