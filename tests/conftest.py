"""Fixtures shared by the tests: an isolated, empty database per test on the configured backend.

Every test worker (pytest-xdist) gets a namespace of its own, emptied before each test, so the
suite runs in parallel against one PostgreSQL database and twice in a row with no cleanup. A
PostgreSQL server that cannot be reached makes the tests *fail* (``DatabaseUnreachableError``):
they are never skipped because of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
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
from snippets.demo.models import metadata


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


@pytest.fixture
def namespace(worker_id: str) -> str:
    """This worker's namespace: ``test_master`` without xdist, ``test_gw0`` ... with it."""
    return f"test_{worker_id}"


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
