"""``snippets.backends``: the one place where SQLite, PostgreSQL and MySQL/MariaDB differ."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, Float, Integer, MetaData, Table, make_url, select, text
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from snippets.backends import (
    FACTS,
    backend_of,
    facts,
    is_constraint_violation,
    is_retryable_error,
    lock_wait_options,
    raw_insert_many,
    upsert,
)
from snippets.demo.models import Hero
from snippets.lab.pool import fill_pool
from snippets.lab.server import kill_connections


@pytest.mark.parametrize(
    ("url", "backend"),
    [
        ("sqlite+aiosqlite:///x.db", "sqlite"),
        ("postgresql+asyncpg://u@h/db", "postgresql"),
        ("mysql+aiomysql://u@h/db", "mysql"),
        ("mariadb+aiomysql://u@h/db", "mysql"),
    ],
)
def test_backend_of_a_url(url: str, backend: str) -> None:
    assert backend_of(make_url(url)) == backend


def test_backend_of_something_else_is_refused() -> None:
    with pytest.raises(ValueError, match="not a backend of this guide"):
        backend_of(make_url("oracle://u@h/db"))


ON_CONFLICT = "ON CONFLICT (name) DO UPDATE SET age = excluded.age"


@pytest.mark.parametrize(
    ("url", "dialect", "clause"),
    [
        ("sqlite+aiosqlite://", sqlite.dialect(), ON_CONFLICT),
        ("postgresql+asyncpg://u@h/db", postgresql.dialect(), ON_CONFLICT),
        ("mysql+aiomysql://u@h/db", mysql.dialect(), "ON DUPLICATE KEY UPDATE age = VALUES(age)"),
    ],
)
def test_upsert_speaks_each_dialect(url: str, dialect: object, clause: str) -> None:
    table = Hero.__table__  # type: ignore[attr-defined]
    statement = upsert(
        make_url(url), table, [{"name": "x", "age": 1}], key=["name"], update=["age"]
    )
    assert clause in str(statement.compile(dialect=dialect))  # type: ignore[arg-type]


def test_lock_wait_options() -> None:
    assert lock_wait_options("sqlite", 0.5) == ({"timeout": 0.5}, None)
    assert lock_wait_options("postgresql", 0.1) == ({}, "SET LOCAL lock_timeout = '100ms'")
    assert lock_wait_options("mysql", 2.4) == ({}, "SET SESSION innodb_lock_wait_timeout = 2")


class DriverError(Exception):
    """Stands for a driver exception: PyMySQL's carry the error number first."""


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (OperationalError("UPDATE", {}, DriverError(1213, "Deadlock found")), True),
        (OperationalError("UPDATE", {}, DriverError(1205, "Lock wait timeout")), True),
        (OperationalError("UPDATE", {}, DriverError("database is locked")), True),
        (OperationalError("UPDATE", {}, DriverError(2013, "Lost connection")), False),
        (IntegrityError("INSERT", {}, DriverError(1062, "Duplicate entry")), False),
        (ValueError("not a database error"), False),
    ],
)
def test_retryable_errors(error: BaseException, retryable: bool) -> None:
    assert is_retryable_error(error) is retryable


def test_a_mysql_check_failure_is_a_constraint_violation() -> None:
    check = OperationalError("UPDATE", {}, DriverError(4025, "CONSTRAINT `x` failed"))
    assert is_constraint_violation(check)
    assert is_constraint_violation(IntegrityError("INSERT", {}, DriverError("UNIQUE")))
    assert not is_constraint_violation(OperationalError("SELECT", {}, DriverError(2013, "gone")))


async def test_facts_and_version_of_the_configured_backend(engine: AsyncEngine) -> None:
    assert facts(engine) is FACTS[backend_of(engine)]
    async with engine.connect() as conn:
        assert (await conn.execute(text(facts(engine).version_sql))).scalar_one()
        if facts(engine).connection_id_sql is not None:
            assert int((await conn.execute(text(facts(engine).connection_id_sql))).scalar_one())


async def test_raw_insert_many_commits_every_row(engine: AsyncEngine) -> None:
    rows = [(f"raw-{n}", "secret", n) for n in range(50)]
    async with engine.connect() as conn:
        await raw_insert_many(conn, "hero", ["name", "secret_name", "age"], rows)
    async with engine.connect() as conn:
        names = (await conn.execute(select(Hero.name).order_by(Hero.age))).scalars().all()  # type: ignore[call-overload]
    assert names == [name for name, _, _ in rows]


async def test_killing_needs_a_server(engine: AsyncEngine) -> None:
    if facts(engine).has_server:
        assert await kill_connections(engine, []) == 0
    else:
        with pytest.raises(ValueError, match="SQLite has no server connections"):
            await kill_connections(engine, [1])
        with pytest.raises(ValueError, match="SQLite has no server connections"):
            await fill_pool(engine, 1)


async def test_an_explicit_id_moves_the_counter_only_where_the_facts_say(
    engine: AsyncEngine,
) -> None:
    # A row with an id the client chose, then two the database numbers itself.
    async with engine.begin() as conn:
        await conn.execute(Hero.__table__.insert(), {"id": 2, "name": "chosen", "secret_name": "s"})
    ids: list[int | str] = []
    for name in ("first", "second"):
        try:
            async with engine.begin() as conn:
                result = await conn.execute(
                    Hero.__table__.insert(), {"name": name, "secret_name": "s"}
                )
                ids.append(result.inserted_primary_key[0])
        except IntegrityError:
            ids.append("duplicate")
    if facts(engine).explicit_id_advances_counter:
        assert ids == [3, 4]
    else:  # the sequence hands out 1, then 2, which the chosen row holds
        assert ids == [1, "duplicate"]


async def test_a_negative_limit_is_refused_except_where_the_facts_say(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            Hero.__table__.insert(), [{"name": f"h{n}", "secret_name": "s"} for n in range(3)]
        )
    async with engine.connect() as conn:
        if facts(engine).negative_limit_means_all:
            rows = (await conn.execute(select(Hero.id).offset(-1).limit(-1))).all()  # type: ignore[call-overload]
            assert len(rows) == 3
        else:
            with pytest.raises(DBAPIError):
                await conn.execute(select(Hero.id).limit(-1))  # type: ignore[call-overload]


async def test_a_float_column_keeps_cents_except_where_the_facts_say(engine: AsyncEngine) -> None:
    amounts = Table(
        "float_amount", MetaData(), Column("id", Integer, primary_key=True), Column("amount", Float)
    )
    async with engine.begin() as conn:
        await conn.run_sync(amounts.metadata.create_all)
        await conn.execute(amounts.insert(), {"id": 1, "amount": 123_456.78})
        stored = (await conn.execute(select(amounts.c.amount))).scalar_one()
        await conn.run_sync(amounts.metadata.drop_all)
    assert stored == (123_457.0 if facts(engine).float_is_single_precision else 123_456.78)
