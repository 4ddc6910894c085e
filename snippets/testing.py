"""Test helpers for async database code and the API (notebook 09; used by ``tests/``).

* ``rollback_session``: a session inside one outer transaction that is always rolled back. The
  code under test may ``commit()`` and ``rollback()`` as it likes: with
  ``join_transaction_mode="create_savepoint"`` those act on savepoints, and the test leaves the
  database as it found it. On SQLite the outer transaction holds the database's write lock, so
  everything the test does must go through this session: a second connection (an app's
  lifespan creating tables, say: use ``create_app(engine, create=False)``) waits for the lock.
* ``api_client``: an ``httpx.AsyncClient`` that calls the app in-process (``ASGITransport``),
  with its lifespan run (``asgi-lifespan``), optionally with ``get_session`` overridden so that
  every request uses the test's session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from snippets.api import get_session


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
    app: FastAPI, session: AsyncSession | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """Call ``app`` in-process, lifespan included; with ``session``, every request uses it."""
    if session is not None:

        async def override() -> AsyncIterator[AsyncSession]:
            yield session

        app.dependency_overrides[get_session] = override
    try:
        async with (
            LifespanManager(app) as manager,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=manager.app), base_url="http://testserver"
            ) as client,
        ):
            yield client
    finally:
        app.dependency_overrides.pop(get_session, None)
