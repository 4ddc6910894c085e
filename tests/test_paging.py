"""``snippets.paging.after`` on the configured backend: keyset pages walk the same rows as
OFFSET pages, ties included, whatever the page size."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from snippets import create_tables, open_engine
from snippets.paging import after


class Base(SQLModel, registry=registry()):
    pass


class Entry(Base, table=True):
    id: int | None = Field(default=None, primary_key=True)
    day: int  # many rows share a day: the tie-breaker matters
    rank: int


@pytest.fixture
async def engine(namespace: str) -> AsyncIterator[AsyncEngine]:
    engine = await open_engine(namespace=namespace, fresh=True)
    await create_tables(engine, Base.metadata)
    async with engine.begin() as conn:
        rows = [{"day": (i * 7) % 5, "rank": (i * 3) % 4} for i in range(53)]
        await conn.execute(Entry.__table__.insert(), rows)  # type: ignore[attr-defined]
    yield engine
    await engine.dispose()


@pytest.mark.parametrize("page_size", [1, 4, 10, 60])
@pytest.mark.parametrize("columns", [("id",), ("day", "id"), ("day", "rank", "id")])
async def test_keyset_pages_equal_the_whole_ordering(
    engine: AsyncEngine, page_size: int, columns: tuple[str, ...]
) -> None:
    order = [getattr(Entry, name) for name in columns]
    async with engine.connect() as conn:
        everything = list((await conn.execute(select(Entry.id).order_by(*order))).scalars())
        walked: list[int] = []
        key: tuple[object, ...] | None = None
        while True:
            query = select(Entry.id, *order).order_by(*order).limit(page_size)
            if key is not None:
                query = query.where(after(order, key))
            page = (await conn.execute(query)).all()
            if not page:
                break
            walked += [row[0] for row in page]
            key = tuple(page[-1][1:])
    assert walked == everything
    assert len(walked) == 53


def test_a_key_must_match_the_order() -> None:
    with pytest.raises(ValueError, match="a key of 2 value"):
        after([Entry.day, Entry.id], [1])
    with pytest.raises(ValueError, match="a key of 0 value"):
        after([], [])


def test_the_condition_leads_with_a_range_an_index_can_seek() -> None:
    condition = str(after([Entry.day, Entry.id], [3, 9]).compile())
    assert condition.startswith("entry.day >= :day_1 AND (entry.day > :day_2 OR entry.id > :id_1)")
