"""FastAPI plumbing for SQLModel's async session, for any application's models (notebook 08).

Nothing here knows a model: an application brings its own, and its own ``MetaData``.

* ``database_lifespan`` chooses the engine at start-up (the caller's engine, an engine factory,
  or by default ``open_engine()`` from ``DATABASE_URL`` read at that moment), optionally creates
  tables through ``run_sync`` (no second, synchronous engine), and disposes what it opened. The
  engine is opened *inside* the lifespan, on the event loop that serves the requests: an engine
  whose pooled connections were opened on another loop (an engine made at import time and
  reused by a second ``TestClient``, say) fails on asyncpg (notebook 09).
* ``get_session`` gives each request a session of its own; ``SessionDep`` is its annotation.
* ``get_read_session`` (``ReadSessionDep``) gives an endpoint that only reads a session whose
  statements run in ``AUTOCOMMIT``: no ``BEGIN`` before them and no ``ROLLBACK`` after, two
  round trips fewer per request (notebook 08 measures it side by side: about half the time per
  read on PostgreSQL), and on SQLite no ``BEGIN IMMEDIATE``, so reads no longer
  wait for the write lock. Each statement then sees the data as of its own start, as every
  statement of a ``READ COMMITTED`` transaction (PostgreSQL's default) does anyway; a read that
  needs one snapshot across several statements (MySQL/MariaDB's ``REPEATABLE READ``, SQLite)
  keeps ``SessionDep``. A write through it would commit statement by statement: write with
  ``SessionDep``. On MySQL/MariaDB it is a plain session (``BackendFacts.free_autocommit_switch``:
  aiomysql's switch to ``AUTOCOMMIT`` costs more round trips than it saves).
* ``commit_or_conflict`` commits, and turns a unique or foreign-key violation into a 409.

A module-level app is then simply ``app = FastAPI(lifespan=database_lifespan())``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from sqlalchemy import MetaData
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from snippets.backends import facts
from snippets.engine import open_engine
from snippets.session import make_sessionmaker
from snippets.tables import create_tables

Lifespan = Callable[[Any], AbstractAsyncContextManager[None]]
EngineFactory = Callable[[], Awaitable[AsyncEngine]]


def database_lifespan(
    engine: AsyncEngine | EngineFactory | None = None, *, metadata: MetaData | None = None
) -> Lifespan:
    """A ``lifespan`` that sets ``app.state.engine`` and ``app.state.sessionmaker`` up.

    Args:
        engine: an ``AsyncEngine`` that belongs to the caller (used, never disposed); or a
            factory called at each start-up, whose engine is disposed at shutdown; or ``None``,
            the same with ``open_engine()``: ``DATABASE_URL`` read at start-up, a bad URL or an
            unreachable database stopping the app at once with one clear message.
        metadata: create this metadata's missing tables at start-up (fine for a demo or tests;
            use migrations in production). ``None`` creates nothing.
    """

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        owned = not isinstance(engine, AsyncEngine)
        if isinstance(engine, AsyncEngine):
            active = engine
        else:
            active = await (engine or open_engine)()
        try:
            if metadata is not None:
                await create_tables(active, metadata)
            app.state.engine = active
            app.state.sessionmaker = make_sessionmaker(active)
            # Where switching a connection to AUTOCOMMIT costs round trips of its own
            # (MySQL/MariaDB), reads keep the implicit transaction: it is the cheaper there.
            autocommit = facts(active).free_autocommit_switch
            reader = (
                active.execution_options(isolation_level="AUTOCOMMIT") if autocommit else active
            )
            app.state.read_sessionmaker = make_sessionmaker(reader)
            yield
        finally:
            if owned:
                await active.dispose()

    return lifespan


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request, closed when the response has been sent."""
    async with request.app.state.sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request for endpoints that only read: its statements run in
    ``AUTOCOMMIT``, with no ``BEGIN`` and ``ROLLBACK`` around them (see the module docstring)."""
    async with request.app.state.read_sessionmaker() as session:
        yield session


ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session)]


async def commit_or_conflict(session: AsyncSession, detail: str) -> None:
    """Commit; on a constraint violation (a duplicate, say) roll back and answer 409."""
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise HTTPException(status_code=409, detail=detail) from None
