"""The engine factory: connection failures within seconds, namespaces, SQLite foreign keys."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import time
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import (
    Column,
    ForeignKey,
    Integer,
    MetaData,
    Table,
    create_engine,
    event,
    insert,
    text,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, MissingGreenlet, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from snippets import (
    DatabaseUnreachableError,
    create_tables,
    drop_tables,
    make_engine,
    open_engine,
    table_names,
)
from snippets.backends import facts
from snippets.demo.models import Hero, Team
from snippets.demo.models import metadata as demo_metadata
from snippets.engine import namespaced_url, refuse_io_outside_greenlet

SECRET = "s3cr3t-pw"


def free_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_refused_connection_is_one_clear_error_within_seconds() -> None:
    url = f"postgresql+asyncpg://postgres:{SECRET}@127.0.0.1:{free_port()}/test"
    started = time.perf_counter()
    with pytest.raises(DatabaseUnreachableError) as caught:
        await open_engine(url, connect_timeout=3)
    assert time.perf_counter() - started < 3
    message = str(caught.value)
    assert "Could not connect to postgresql+asyncpg://postgres:***@127.0.0.1" in message
    assert "ConnectionRefusedError" in message
    assert SECRET not in message
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """A loopback TCP server that accepts connections and never answers: a hung database."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_server_that_never_answers_times_out(silent_server: int) -> None:
    url = f"postgresql+asyncpg://postgres:{SECRET}@127.0.0.1:{silent_server}/test"
    started = time.perf_counter()
    with pytest.raises(DatabaseUnreachableError, match=r"within 1 s") as caught:
        await open_engine(url, connect_timeout=1)
    assert time.perf_counter() - started < 3
    assert SECRET not in str(caught.value)


async def test_unknown_host_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    # The reserved .invalid domain never resolves (RFC 6761).
    started = time.perf_counter()
    with pytest.raises(DatabaseUnreachableError, match=r"no-such-host\.invalid"):
        await open_engine("postgresql+asyncpg://u@no-such-host.invalid/db", connect_timeout=2)
    assert time.perf_counter() - started < 4


def test_namespace_must_be_a_plain_name() -> None:
    with pytest.raises(ValueError, match="lower-case letters"):
        make_engine(namespace='x"; DROP SCHEMA public; --')


async def test_fresh_needs_a_namespace() -> None:
    with pytest.raises(ValueError, match="needs a namespace"):
        await open_engine(fresh=True)


def test_sqlite_namespace_is_a_file_of_its_own(tmp_path: Path) -> None:
    base = make_engine(f"sqlite+aiosqlite:///{tmp_path}/app.db").url
    assert namespaced_url(base, "crud").database == f"{tmp_path}/app.crud.db"
    memory = make_engine("sqlite+aiosqlite://").url
    assert namespaced_url(memory, "crud") == memory


def test_engine_repr_hides_password() -> None:
    engine = make_engine(f"postgresql+asyncpg://u:{SECRET}@127.0.0.1/db")
    assert SECRET not in repr(engine)
    assert SECRET not in str(engine.url)


def _parent_child(metadata: MetaData) -> tuple[Table, Table]:
    parent = Table("parent", metadata, Column("id", Integer, primary_key=True))
    child = Table(
        "child",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("parent_id", Integer, ForeignKey("parent.id"), nullable=False),
    )
    return parent, child


async def test_foreign_keys_are_enforced(engine: AsyncEngine) -> None:
    # SQLite would accept the orphan row without the PRAGMA that make_engine issues.
    metadata = MetaData()
    _, child = _parent_child(metadata)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(insert(child).values(id=1, parent_id=999))


async def test_namespaces_do_not_see_each_other(namespace: str) -> None:
    first = await open_engine(namespace=f"{namespace}_a", fresh=True)
    second = await open_engine(namespace=f"{namespace}_b", fresh=True)
    try:
        async with first.begin() as conn:
            await conn.execute(text("CREATE TABLE only_in_a (id INTEGER PRIMARY KEY)"))
        assert await table_names(first) == ["only_in_a"]
        assert await table_names(second) == []
    finally:
        await first.dispose()
        await second.dispose()


async def test_fresh_empties_the_namespace(namespace: str) -> None:
    engine = await open_engine(namespace=namespace, fresh=True)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE leftover (id INTEGER PRIMARY KEY)"))
    await engine.dispose()
    reopened = await open_engine(namespace=namespace)
    assert await table_names(reopened) == ["leftover"]
    await reopened.dispose()
    emptied = await open_engine(namespace=namespace, fresh=True)
    assert await table_names(emptied) == []
    await emptied.dispose()


async def _count(engine: AsyncEngine, table: str) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())


@pytest.mark.parametrize("isolation_level", [None, "SERIALIZABLE"])
async def test_savepoint_first_is_rolled_back_with_its_transaction(
    engine: AsyncEngine, isolation_level: str | None
) -> None:
    # sqlite3's own transaction handling would let the RELEASE of a SAVEPOINT sent first commit;
    # make_engine's begin handler must hold after an isolation level was set, too.
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE kept (x INTEGER)"))
    chosen = engine
    if isolation_level is not None:
        chosen = engine.execution_options(isolation_level=isolation_level)
    for _ in range(2):  # the second round reuses the pooled connection, after its reset
        async with chosen.connect() as conn:
            outer = await conn.begin()
            async with conn.begin_nested():
                await conn.execute(text("INSERT INTO kept VALUES (1)"))
            await outer.rollback()
        assert await _count(engine, "kept") == 0


async def test_autocommit_commits_each_statement(engine: AsyncEngine, namespace: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE log (x INTEGER)"))
    observer = await open_engine(namespace=namespace)
    try:
        async with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
            await conn.execute(text("INSERT INTO log VALUES (1)"))
            assert await _count(observer, "log") == 1  # visible at once, from another connection
        assert await _count(observer, "log") == 1  # and still there after the connection closed
    finally:
        await observer.dispose()


@pytest.mark.parametrize("trigger", ["lazy relationship", "expired attribute"])
async def test_lazy_load_is_one_clean_error(
    engine: AsyncEngine, trigger: str, caplog: pytest.LogCaptureFixture
) -> None:
    # On SQLite a failed lazy load used to leave a pool traceback ("Exception during reset or
    # similar") and an un-awaited driver coroutine (a RuntimeWarning at garbage collection).
    # A notebook shows both on stderr, where a learner cannot tell them from a real failure.
    session_factory = async_sessionmaker(engine, class_=AsyncSession)  # expire_on_commit=True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with session_factory() as session:
            hero = Hero(name="Lazy", secret_name="?", team=Team(name="T", headquarters="H"))
            session.add(hero)
            await session.commit()
            if trigger == "lazy relationship":
                hero = (await session.exec(select(Hero))).one()
                session.expunge_all()
                session.add(hero)
            with pytest.raises((MissingGreenlet, StatementError)) as raised:
                _ = hero.team if trigger == "lazy relationship" else hero.name
        del hero, raised
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], caught
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.records


def test_the_guard_is_installed_where_the_driver_leaves_leftovers(engine: AsyncEngine) -> None:
    """An engine event costs every statement something: the guard is there only where the
    driver's dialect would not refuse the lazy load cleanly (the test above, on each backend)."""
    guarded = event.contains(engine.sync_engine, "before_execute", refuse_io_outside_greenlet)
    assert guarded is not facts(engine).refuses_io_outside_greenlet


async def test_create_tables_says_an_async_engine_is_needed(tmp_path: Path) -> None:
    sync_engine = create_engine(f"sqlite:///{tmp_path}/sync.db")
    for function in (create_tables, drop_tables):
        with pytest.raises(TypeError, match=r"needs an AsyncEngine .* got Engine"):
            await function(sync_engine, MetaData())  # type: ignore[arg-type]
    sync_engine.dispose()


async def test_create_tables_from_several_engines_at_once_take_turns(namespace: str) -> None:
    """As the lifespans of several uvicorn workers do at start-up: without the lock, two see
    no table and both create it (PostgreSQL: a unique violation in its catalog)."""
    for _ in range(5):
        engines = [await open_engine(namespace=namespace, fresh=True)]
        engines += [await open_engine(namespace=namespace) for _ in range(3)]
        try:
            await asyncio.gather(*(create_tables(each, demo_metadata) for each in engines))
            assert "hero" in await table_names(engines[0])
        finally:
            for each in engines:
                await each.dispose()


@pytest.mark.parametrize("hide_parameters", [None, False])
async def test_bound_values_stay_out_of_logs_and_errors_unless_asked(
    namespace: str, hide_parameters: bool | None, caplog: pytest.LogCaptureFixture
) -> None:
    asked = {} if hide_parameters is None else {"hide_parameters": hide_parameters}
    engine = await open_engine(namespace=namespace, echo=True, **asked)
    statement = text("SELECT no_such_column FROM no_such_table WHERE name = :name")
    with caplog.at_level("INFO", logger="sqlalchemy.engine.Engine"):
        async with engine.connect() as connection:
            with pytest.raises(DBAPIError) as failed:
                await connection.execute(statement, {"name": "Quietly Kept Name"})
    await engine.dispose()

    told = str(failed.value) + caplog.text
    assert "no_such_table" in told  # the SQL is still there to debug with
    assert ("Quietly Kept Name" in told) is (hide_parameters is False)
