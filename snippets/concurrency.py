"""Concurrency with async sessions: fan-out bounded by the pool, timeouts, and commits that finish.

* ``gather_bounded`` runs one coroutine per item, at most ``limit`` at a time (size it to the
  pool), results in input order; the first failure cancels the rest, which close their sessions
  before it is raised. ``asyncio.gather`` would leave them running.
* ``finish`` awaits something that must not be cut in half, such as a ``commit()``: when the
  caller is cancelled meanwhile, it still waits for the outcome, then lets the cancellation
  through. ``asyncio.shield`` alone returns at once and leaves the work running unobserved.
* ``session_scope`` is a session in one transaction whose work is bounded by a timeout, and
  whose commit is awaited with ``finish``: when the timeout fires, either nothing was committed
  (the body was cancelled and rolled back) or the commit completed; never "we don't know".

Nothing here knows any model or table. Notebook 11 shows each one at work.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TypeVar

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

A = TypeVar("A")
T = TypeVar("T")


async def gather_bounded(
    func: Callable[[A], Awaitable[T]], items: Iterable[A], *, limit: int
) -> list[T]:
    """``[await func(item) for item in items]``, with at most ``limit`` running at once.

    ``limit`` workers take items one by one (memory does not grow with the number of items);
    results come back in the order of ``items``. Size ``limit`` to the connections the work may
    hold at once, e.g. the pool's ``pool_size + max_overflow``: more tasks than connections only
    queue in the pool, and past ``pool_timeout`` they fail.

    Raises:
        ValueError: ``limit`` is less than 1.
        ExceptionGroup: one or more calls failed; the others were cancelled and awaited first
            (``asyncio.TaskGroup``), so no session is left open behind the error.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    pending = iter(enumerate(items))
    results: dict[int, T] = {}

    async def worker() -> None:
        for index, item in pending:  # shared iterator: each item is taken by one worker
            results[index] = await func(item)

    async with asyncio.TaskGroup() as group:
        for _ in range(limit):
            group.create_task(worker())
    return [results[index] for index in range(len(results))]


async def finish(work: Awaitable[T]) -> T:
    """Await ``work`` to its end even if the caller is cancelled meanwhile; then re-raise.

    The work runs as a task of its own behind ``asyncio.shield``. A cancellation of the caller
    (``asyncio.timeout``, a client that went away, a ``TaskGroup`` sibling's failure) is held
    back until the work has finished, then raised, so that ``asyncio.timeout`` still turns it
    into ``TimeoutError``. If the work itself fails, its error is raised.
    """
    task = asyncio.ensure_future(work)
    cancelled: asyncio.CancelledError | None = None
    while True:
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError as error:
            if task.done():  # the work itself was cancelled, not the caller
                raise
            cancelled = error  # the caller was: wait for the outcome first
            continue
        break
    if cancelled is not None:
        raise cancelled
    return result


@asynccontextmanager
async def session_scope(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    timeout: float | None = None,  # noqa: ASYNC109 (asyncio.timeout inside: the point of it)
) -> AsyncIterator[AsyncSession]:
    """A session in one transaction: the block's work (and the final flush) bounded by
    ``timeout``, then a commit that is never cut in half. On any error, or when the time is up,
    the transaction is rolled back and the error (``TimeoutError`` for the timeout) is raised;
    the connection goes back to the pool, or is discarded if a cancelled statement left it
    unusable.

    ::

        async with session_scope(Session, timeout=2.0) as session:
            session.add(order)

    The commit is awaited with ``finish``: a cancellation from outside while it runs (a request
    whose client went away, an enclosing ``asyncio.timeout``) waits for its outcome and is raised
    after it; the data is then committed even though the caller sees the cancellation.

    The timeout bounds the caller's wait. Pair it with a statement time limit on the database
    (``make_engine(statement_timeout=...)``, shorter), which stops the work there too: on
    MySQL/MariaDB a cancelled statement runs on, and on SQLite the timeout is late (notebook 11).
    """
    async with sessionmaker() as session:
        async with asyncio.timeout(timeout):
            yield session
            await session.flush()  # the part of the commit that may take long: bounded too
        await finish(session.commit())
