"""Test helpers for async database code and the API (notebook 09; used by ``tests/``).

* ``rollback_session``: a session inside one outer transaction that is always rolled back. The
  code under test may ``commit()`` and ``rollback()`` as it likes: with
  ``join_transaction_mode="create_savepoint"`` those act on savepoints, and the test leaves the
  database as it found it. On SQLite the outer transaction holds the database's write lock, so
  everything the test does must go through this session: a second connection (an app's
  lifespan creating tables, say: create them before, not in the lifespan) waits for the lock.
* ``api_client``: an ``httpx.AsyncClient`` that calls any FastAPI app in-process
  (``ASGITransport``), with its lifespan run (``asgi-lifespan``), optionally with the app's
  session dependency (``snippets.api.get_session`` unless told otherwise) overridden so that
  every request uses the test's session. It runs the app on the test's own event loop; for
  Starlette's ``TestClient``, which runs it on a loop of its own, see notebook 09.
* ``empty_tables``: every row of the tables deleted and their ids restarted at 1, for tests
  that commit for real and must each start from the same state (a property-based or stateful
  test, whose examples have to be repeatable).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from snippets.api import Sessions, get_read_session, get_session, get_sessions
from snippets.backends import facts


@asynccontextmanager
async def rollback_session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A session whose work, commits included, is rolled back when the block ends."""
    async with engine.connect() as connection:
        outer = await connection.begin()
        session = AsyncSession(
            bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        try:
            yield session
        finally:
            await session.close()
            await outer.rollback()


@asynccontextmanager
async def api_client(
    app: FastAPI,
    session: AsyncSession | None = None,
    *,
    dependency: Callable[..., Any] | Sequence[Callable[..., Any]] = (
        get_session,
        get_read_session,
        get_sessions,
    ),
) -> AsyncIterator[httpx.AsyncClient]:
    """Call ``app`` in-process, lifespan included.

    Args:
        session: when given, every request gets it instead of what ``dependency`` gives.
        dependency: the app's session dependencies to override (the functions its routes name
            in ``Depends``); ``snippets.api.get_session``, ``get_read_session`` and
            ``get_sessions`` by default, so that reads see the test's uncommitted writes.
            ``get_sessions`` is given ``Sessions.sharing(session)``; any other dependency the
            session itself.
    """
    overridden = [dependency] if callable(dependency) else list(dependency)
    if session is not None:
        shared = Sessions.sharing(session)

        async def override() -> AsyncIterator[AsyncSession]:
            yield session

        async def sharing() -> Sessions:
            return shared

        for replaced in overridden:
            app.dependency_overrides[replaced] = sharing if replaced is get_sessions else override
    try:
        async with (
            LifespanManager(app) as manager,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=manager.app), base_url="http://testserver"
            ) as client,
        ):
            yield client
    finally:
        for replaced in overridden:
            app.dependency_overrides.pop(replaced, None)


async def empty_tables(engine: AsyncEngine, metadata: MetaData) -> None:
    """Delete every row of ``metadata``'s tables, the referencing ones first, and restart their
    generated ids at 1 (``BackendFacts.empty_table_sql``). Committed: another connection, an
    app's, sees the empty tables at once."""
    statements = facts(engine).empty_table_sql
    async with engine.begin() as connection:
        quote = connection.dialect.identifier_preparer.format_table
        for table in reversed(metadata.sorted_tables):
            for statement in statements:
                await connection.execute(text(statement.format(table=quote(table))))
