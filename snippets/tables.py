"""Create, drop and list tables through an ``AsyncEngine``.

``MetaData.create_all`` is synchronous code; ``AsyncConnection.run_sync`` runs it on the async
connection (in a greenlet), so no second, synchronous engine or driver is needed.
"""

from __future__ import annotations

from sqlalchemy import MetaData, inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel


async def create_tables(engine: AsyncEngine, metadata: MetaData = SQLModel.metadata) -> None:
    """Create every table of ``metadata`` that does not exist yet (existing ones are kept)."""
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)


async def drop_tables(engine: AsyncEngine, metadata: MetaData = SQLModel.metadata) -> None:
    """Drop every table of ``metadata`` that exists, dependents first."""
    async with engine.begin() as conn:
        await conn.run_sync(metadata.drop_all)


def _table_names(conn: Connection) -> list[str]:
    return sorted(inspect(conn).get_table_names())


async def table_names(engine: AsyncEngine) -> list[str]:
    """The tables in the engine's database (its current schema on PostgreSQL), sorted."""
    async with engine.connect() as conn:
        return await conn.run_sync(_table_names)
