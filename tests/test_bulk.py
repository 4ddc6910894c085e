"""``snippets.bulk.bulk_insert`` on the configured backend: values that are hard to copy come
back intact, defaults are filled in, a failure leaves nothing half-written, bad input is refused.

The table here is the test's own (its own registry), with the types that trip a bulk path up:
text with tabs, newlines and backslashes (COPY's text format would need escaping), ``None``,
aware and naive datetimes, ``Decimal``, JSON, and Python-side defaults.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from pydantic import NaiveDatetime
from sqlalchemy import JSON, Column, DateTime, Numeric, func, select
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from snippets import create_tables, make_sessionmaker, open_engine
from snippets.backends import (
    FACTS,
    backend_of,
    facts,
    is_connection_failure,
    is_constraint_violation,
)
from snippets.bulk import Method, bulk_insert
from snippets.config import database_url
from snippets.lab.bench import count_rows
from snippets.lab.latency_proxy import LatencyProxy
from snippets.lab.observe import recorded_statements


class Base(SQLModel, registry=registry()):
    pass


class Item(Base, table=True):
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=40, unique=True)
    label: str | None = Field(default=None, max_length=200)
    amount: Decimal | None = Field(default=None, sa_column=Column(Numeric(12, 4)))
    payload: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    aware_at: datetime | None = None
    naive_at: NaiveDatetime | None = None
    status: str = Field(default="new", max_length=10)
    token: uuid.UUID = Field(default_factory=uuid.uuid4)


class Stamped(Base, table=True):
    """A table with an SQL-expression default, which only Core can render."""

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=40)
    created: datetime | None = Field(
        default=None, sa_column=Column(DateTime, server_default=func.now(), default=func.now())
    )


HARD_TEXT = "tab\there\nnew line\\backslash \\N \"quoted\" 'single' ünïcødé ,;|"
SOME_AWARE = datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))


def item_rows(count: int, start: int = 0) -> Iterator[dict[str, Any]]:
    for i in range(start, start + count):
        yield {
            "code": f"item-{i:06d}",
            "label": None if i % 4 == 0 else f"{HARD_TEXT} {i}",
            "amount": None if i % 5 == 0 else Decimal(i) / 8 + Decimal("0.0001"),
            "payload": None if i % 6 == 0 else {"n": i, "text": HARD_TEXT, "list": [1, None]},
            "aware_at": None if i % 7 == 0 else SOME_AWARE + timedelta(minutes=i),
            "naive_at": datetime(2026, 1, 1) + timedelta(seconds=i),
        }


@pytest.fixture
async def engine(namespace: str) -> AsyncIterator[AsyncEngine]:
    engine = await open_engine(namespace=namespace, fresh=True)
    await create_tables(engine, Base.metadata)
    yield engine
    await engine.dispose()


async def loaded(engine: AsyncEngine) -> list[Item]:
    async with make_sessionmaker(engine)() as session:
        return list((await session.exec(select(Item).order_by(Item.code))).scalars())  # type: ignore[call-overload]


@pytest.mark.parametrize("method", ["auto", "executemany"])
async def test_hard_values_come_back_intact(engine: AsyncEngine, method: str) -> None:
    expected = list(item_rows(250))
    inserted = await bulk_insert(engine, Item, item_rows(250), batch_size=100, method=method)  # type: ignore[arg-type]
    assert inserted == 250
    items = await loaded(engine)
    assert [item.code for item in items] == [row["code"] for row in expected]
    for item, row in zip(items, expected, strict=True):
        assert item.label == row["label"]
        assert item.amount == row["amount"]
        assert item.payload == row["payload"]
        # SQLModel returns aware datetimes in UTC; the instant is what must survive.
        sent = row["aware_at"]
        if sent is not None and not facts(engine).keeps_microseconds:
            sent = sent.replace(microsecond=0)  # DATETIME without (6): whole seconds
        assert item.aware_at == sent
        assert item.aware_at is None or item.aware_at.utcoffset() == timedelta(0)
        assert item.naive_at == row["naive_at"]
        assert item.naive_at.tzinfo is None
        assert item.status == "new"  # a scalar default, filled in
        assert isinstance(item.token, uuid.UUID)  # a callable default, called per row
    assert len({item.token for item in items}) == 250


async def test_the_same_rows_as_core_would_write(engine: AsyncEngine) -> None:
    """The helper's values equal what Core's own executemany stores, row for row."""
    await bulk_insert(engine, Item, item_rows(50))
    helper = [(i.label, i.amount, i.payload, i.aware_at, i.naive_at) for i in await loaded(engine)]
    async with engine.begin() as conn:
        await conn.execute(Item.__table__.delete())  # type: ignore[attr-defined]
        await conn.execute(Item.__table__.insert(), list(item_rows(50)))  # type: ignore[attr-defined]
    core = [(i.label, i.amount, i.payload, i.aware_at, i.naive_at) for i in await loaded(engine)]
    assert helper == core


async def test_postgresql_copies_and_the_others_execute_many(engine: AsyncEngine) -> None:
    with recorded_statements(engine) as statements:
        await bulk_insert(engine, Item, item_rows(30), batch_size=10)
    if backend_of(engine) == "postgresql":
        # COPY goes to asyncpg directly: no INSERT reaches SQLAlchemy's cursor events.
        assert not [s for s in statements if s.startswith("INSERT")], statements
    else:
        assert [s.split(" (")[0] for s in statements] == ["INSERT INTO item"] * 3


async def test_failure_in_the_middle_leaves_nothing(engine: AsyncEngine) -> None:
    rows = list(item_rows(1000))
    rows[750]["code"] = rows[10]["code"]  # a duplicate in the eighth batch
    with pytest.raises(DBAPIError) as raised:
        await bulk_insert(engine, Item, rows, batch_size=100)
    assert is_constraint_violation(raised.value), repr(raised.value)
    assert await count_rows(engine, Item) == 0


@pytest.mark.skipif(
    not FACTS[backend_of(database_url())].has_server, reason="SQLite has no connection to lose"
)
@pytest.mark.parametrize("method", ["auto", "executemany"])
async def test_a_connection_lost_midway_is_the_error_raised_and_nothing_lands(
    engine: AsyncEngine, namespace: str, method: Method
) -> None:
    with LatencyProxy(database_url()) as proxy:
        proxied = await open_engine(proxy.url, namespace=namespace)

        def rows_then_the_network_fails() -> Iterator[dict[str, Any]]:
            for number, row in enumerate(item_rows(20_000)):
                if number == 1500:
                    proxy.stop()  # while rows are flowing: COPY on PostgreSQL, else INSERTs
                yield row

        # asyncpg's COPY waited forever here: bounded, so that a regression fails.
        async with asyncio.timeout(30):
            with pytest.raises(DBAPIError) as raised:
                await bulk_insert(proxied, Item, rows_then_the_network_fails(), method=method)
        await proxied.dispose()

    # The lost connection, not a failed ROLLBACK on it ("the underlying connection is closed").
    assert is_connection_failure(raised.value), repr(raised.value)
    assert raised.value.connection_invalidated
    assert str(raised.value.statement).split()[0] in ("COPY", "INSERT"), repr(raised.value)
    assert await count_rows(engine, Item) == 0


async def test_joins_the_callers_transaction(engine: AsyncEngine) -> None:
    """Given a connection or a session, the load is the caller's to commit or roll back."""
    async with engine.connect() as conn:
        assert await bulk_insert(conn, Item, item_rows(20)) == 20
        await conn.rollback()
    assert await count_rows(engine, Item) == 0
    async with make_sessionmaker(engine)() as session:
        await bulk_insert(session, Item, item_rows(20))
        await session.rollback()
    assert await count_rows(engine, Item) == 0
    async with make_sessionmaker(engine)() as session:
        await bulk_insert(session, Item, item_rows(20))
        await session.commit()
    assert await count_rows(engine, Item) == 20


async def test_a_failed_load_in_a_session_rolls_back_with_it(engine: AsyncEngine) -> None:
    async with make_sessionmaker(engine)() as session:
        await bulk_insert(session, Item, item_rows(20))
        with pytest.raises(DBAPIError) as raised:
            await bulk_insert(session, Item, item_rows(20, start=10))
        assert is_constraint_violation(raised.value)
        await session.rollback()
    assert await count_rows(engine, Item) == 0


async def test_naive_datetime_for_an_aware_column_is_refused_before_sending(
    engine: AsyncEngine,
) -> None:
    rows = list(item_rows(5))
    rows[3]["aware_at"] = datetime(2026, 1, 1)
    with pytest.raises(StatementError, match="timezone"):
        await bulk_insert(engine, Item, rows)
    assert await count_rows(engine, Item) == 0


async def test_rows_with_other_keys_are_refused(engine: AsyncEngine) -> None:
    rows = list(item_rows(5))
    del rows[2]["label"]
    with pytest.raises(ValueError, match=r"row 2 has keys .* every row needs"):
        await bulk_insert(engine, Item, rows)
    rows = list(item_rows(5))
    rows[4]["status"] = "extra"
    with pytest.raises(ValueError, match="row 4"):
        await bulk_insert(engine, Item, rows)
    rows = list(item_rows(25))
    del rows[23]["label"]  # in the third batch, the last and shorter one
    with pytest.raises(ValueError, match="row 23 "):
        await bulk_insert(engine, Item, rows, batch_size=10)
    with pytest.raises(ValueError, match="not columns of item: colour"):
        await bulk_insert(engine, Item, [{"code": "x", "colour": "red"}])
    assert await count_rows(engine, Item) == 0


async def test_copy_elsewhere_and_bad_batch_size_are_refused(engine: AsyncEngine) -> None:
    if backend_of(engine) != "postgresql":
        with pytest.raises(ValueError, match="COPY is PostgreSQL's"):
            await bulk_insert(engine, Item, item_rows(1), method="copy")
    with pytest.raises(ValueError, match="batch_size"):
        await bulk_insert(engine, Item, item_rows(1), batch_size=0)


async def test_nothing_to_insert(engine: AsyncEngine) -> None:
    assert await bulk_insert(engine, Item, []) == 0
    assert await bulk_insert(engine, Item.__table__, iter(())) == 0  # type: ignore[attr-defined]


async def test_sql_expression_default_falls_back_to_core(engine: AsyncEngine) -> None:
    before = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=1)
    assert await bulk_insert(engine, Stamped, [{"code": f"s{i}"} for i in range(5)]) == 5
    async with engine.connect() as conn:
        created = (await conn.execute(select(Stamped.created))).scalars().all()  # type: ignore[call-overload]
    assert len(created) == 5
    assert all(value is not None and value > before for value in created)


async def test_a_generator_is_consumed_in_batches(engine: AsyncEngine) -> None:
    taken: list[int] = []

    def counted() -> Iterator[dict[str, Any]]:
        for i, row in enumerate(item_rows(2500)):
            taken.append(i)
            yield row

    assert await bulk_insert(engine, Item, counted(), batch_size=1000) == 2500
    assert len(taken) == 2500
    assert await count_rows(engine, Item) == 2500
