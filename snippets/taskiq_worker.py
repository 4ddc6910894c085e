"""Async SQLModel in a taskiq worker: an engine per worker process, a session per job.

taskiq is an async-native job queue: a task is a coroutine, and each worker process runs all
of its tasks on one event loop, for its whole life. So the failure of chapter 16 (a new loop
per task, against connections pooled on the first) cannot happen. What remains is the
lifecycle, the same as a web app's lifespan (chapter 08):

* ``open_database_with_worker(broker, open_engine)`` opens the engine in the broker's
  ``WORKER_STARTUP`` event, in each worker process, after the process has started (never at
  import, which a forking parent would share), and disposes it in ``WORKER_SHUTDOWN``, on the
  same loop. Both are kept in taskiq's worker state.
* ``job_session`` is a taskiq dependency: each job gets a session of its own, closed when the
  job ends, however it ends: ``session: Annotated[AsyncSession, TaskiqDepends(job_session)]``.
* A worker runs up to ``--max-async-tasks`` jobs at once (100 by default). A job holds a
  pooled connection while its session is in a transaction, so a limit above the pool's size
  (``pool_size`` + ``max_overflow``) leaves jobs waiting for a connection, until the pool's
  ``pool_timeout`` fails them: keep the limit at or below the pool's size (chapter 17).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession
from taskiq import AsyncBroker, Context, TaskiqDepends, TaskiqEvents, TaskiqState

from snippets.session import make_sessionmaker

EngineFactory = Callable[[], Awaitable[AsyncEngine]]


def open_database_with_worker(broker: AsyncBroker, open_engine: EngineFactory) -> None:
    """Open ``await open_engine()`` when a worker process of ``broker`` starts, and dispose it
    when it stops; the engine and its sessionmaker are kept in the worker's state."""

    async def open_database(state: TaskiqState) -> None:
        state.engine = await open_engine()
        state.sessions = make_sessionmaker(state.engine)

    async def close_database(state: TaskiqState) -> None:
        engine: AsyncEngine | None = getattr(state, "engine", None)
        if engine is not None:
            await engine.dispose()

    broker.add_event_handler(TaskiqEvents.WORKER_STARTUP, open_database)
    broker.add_event_handler(TaskiqEvents.WORKER_SHUTDOWN, close_database)


async def job_session(context: Annotated[Context, TaskiqDepends()]) -> AsyncIterator[AsyncSession]:
    """A session for one job, from the worker's sessionmaker; closed when the job ends.

    When the job fails, taskiq throws its error in here: the session closes (its transaction
    rolled back) and the error is not raised again, because taskiq has already made it the
    job's result and logged it; raised again, it would be logged a second time, as a warning.
    """
    async with context.state.sessions() as session:
        with contextlib.suppress(Exception):
            yield session


def job_engine(context: Annotated[Context, TaskiqDepends()]) -> AsyncEngine:
    """The worker process's engine (its pool, its dialect)."""
    engine: AsyncEngine = context.state.engine
    return engine
