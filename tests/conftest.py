"""Fixtures shared by the tests: an isolated, empty database per test on the configured backend.

Every test worker (pytest-xdist) gets a namespace of its own, emptied before each test, so the
suite runs in parallel against one PostgreSQL database and twice in a row with no cleanup. A
PostgreSQL server that cannot be reached makes the tests *fail* (``DatabaseUnreachableError``):
they are never skipped because of it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from snippets import (
    DatabaseConfigError,
    DatabaseUnreachableError,
    check_database,
    create_tables,
    database_url,
    make_sessionmaker,
    open_engine,
)
from snippets.config import shown_url
from snippets.demo.models import Team, metadata


def pytest_configure(config: pytest.Config) -> None:
    """Check the database once, before collection: one clear message instead of every test
    failing on its own. (xdist workers skip it: the controller has checked.)"""
    if hasattr(config, "workerinput"):
        return
    try:
        asyncio.run(check_database())
    except (DatabaseConfigError, DatabaseUnreachableError) as error:
        raise pytest.UsageError(str(error)) from None


def pytest_report_header() -> str:
    return f"database: {shown_url(database_url())}"


NAMESPACE_PREFIX_VARIABLE = "TEST_NAMESPACE_PREFIX"
"""Another prefix than ``test`` for the namespaces: chapter 09 runs tests in a subprocess with its
own, so that they never share a namespace with a ``pytest`` run of yours on the same server."""


@pytest.fixture
def namespace(worker_id: str) -> str:
    """This worker's namespace: ``test_master`` without xdist, ``test_gw0`` ... with it."""
    return f"{os.environ.get(NAMESPACE_PREFIX_VARIABLE, 'test')}_{worker_id}"


@pytest.fixture
async def engine(namespace: str) -> AsyncIterator[AsyncEngine]:
    engine = await open_engine(namespace=namespace, fresh=True)
    await create_tables(engine, metadata)
    yield engine
    await engine.dispose()


@pytest.fixture
async def session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with make_sessionmaker(engine)() as session:
        yield session


@pytest.fixture
async def admin_engine(engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """An engine in no namespace, to count a namespace's connections from outside (its own is
    not counted). The test's ``engine`` is disposed first: its connection is not counted either."""
    await engine.dispose()
    admin = await open_engine()
    yield admin
    await admin.dispose()


@pytest.fixture
def count_teams(engine: AsyncEngine) -> Callable[[], Awaitable[int]]:
    """Counts the demo ``Team`` rows in the test's namespace (what the jobs wrote), each time
    in a new session; works after ``engine`` was disposed (it opens a new pool)."""

    async def count() -> int:
        async with make_sessionmaker(engine)() as session:
            return (await session.exec(select(func.count()).select_from(Team))).one()

    return count
