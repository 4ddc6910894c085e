"""Tables created through an async engine, in a Python where no synchronous driver imports.

Notebook 13 runs it with psycopg2, psycopg and PyMySQL made unimportable, to check the advice
that creating tables needs a synchronous engine and driver. It prints the tables it created.
Run from a shell: ``python examples/tables_without_a_sync_driver.py``.
"""

from __future__ import annotations

import asyncio

import sqlmodel
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine


class Story(sqlmodel.SQLModel, table=True):
    id: int | None = sqlmodel.Field(default=None, primary_key=True)
    title: str


def table_names(connection: Connection) -> list[str]:
    return sqlmodel.inspect(connection).get_table_names()


async def main() -> None:
    engine = create_async_engine("sqlite+aiosqlite://")
    async with engine.begin() as conn:
        await conn.run_sync(sqlmodel.SQLModel.metadata.create_all)
        print(await conn.run_sync(table_names))
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
