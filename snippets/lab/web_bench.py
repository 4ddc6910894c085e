"""Four web apps serving TechEmpower's database tests, to measure async SQLModel side by side.

TechEmpower's Framework Benchmarks define four database tests on two tables, ``world`` (10,000
rows of ``id`` and ``randomnumber``) and ``fortune`` (12 messages):

* ``/db``: one random world, as ``{"id": ..., "randomNumber": ...}``;
* ``/queries?queries=N``: N random worlds, each its own query (N clamped to 1..500, anything
  that is not a whole number counting as 1);
* ``/fortunes``: every fortune plus one added at request time, sorted by message, in an HTML
  table with every message escaped;
* ``/updates?queries=N``: N random worlds read one by one, each given a new random number,
  all written back, returned as in ``/queries``.

The same tests, four ways (``make bench-web`` serves each with uvicorn and loads it with wrk):

* ``raw``: the driver alone (asyncpg, aiomysql, aiosqlite), a pool of its own: the baseline;
* ``guide``: what chapters 02 and 08 teach: ``database_lifespan``, sessions opened by the
  endpoint from ``SessionsDep`` (``reading()`` for reads, ``writing()`` for writes, behind its
  connection gate), ORM statements built once and executed with ``session.exec(statement,
  params=...)``, ORM changes (without autoflush in the read-modify loop) and a commit,
  response models;
* ``tuned``: Core statements of columns built once, reads on an engine of their own whose
  connections stay in ``AUTOCOMMIT`` (no ``BEGIN``/``ROLLBACK``, no switch at each checkout),
  writes on the guide's engine, one ``executemany`` for the updates, each pool behind a gate;
* ``sync``: FastAPI's SQL tutorial: ``def`` endpoints in the thread pool, a synchronous engine
  (psycopg 3, PyMySQL, sqlite3) and a ``Session`` per request.

Every app has a pool of ``POOL_SIZE`` connections and works in the namespace of
``WEB_BENCH_NAMESPACE`` (default ``web_bench``) of ``DATABASE_URL``; ``prepare`` creates and
fills the tables there. Instruments, not code to copy: what to copy is in ``snippets.api``.
"""

from __future__ import annotations

import asyncio
import cProfile
import html
import os
import pstats
import random
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Protocol

import anyio.to_thread
import httpx
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, BeforeValidator
from sqlalchemy import bindparam, create_engine, func, update
from sqlalchemy import select as core_select
from sqlalchemy.engine import URL, Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import registry
from sqlmodel import Field, Session, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from snippets import open_engine
from snippets.api import (
    READ_ENGINE_OPTIONS,
    ConnectionGate,
    Lifespan,
    ReadSessionDep,
    SessionsDep,
    database_lifespan,
    freeze_startup_objects,
    turn_at,
)
from snippets.backends import Backend, backend_of, facts
from snippets.bulk import bulk_insert
from snippets.config import database_url
from snippets.engine import namespaced_url
from snippets.lab.accepts import trace_accepts
from snippets.lab.served import ServedApp
from snippets.tables import create_tables

POOL_SIZE = 10
WORLDS = 10_000
NAMESPACE_VARIABLE = "WEB_BENCH_NAMESPACE"
THREADS_VARIABLE = "WEB_BENCH_THREADS"
"""The thread pool of the sync app (FastAPI's default: 40, anyio's limiter)."""
TRACE_ACCEPTS_VARIABLE = "WEB_BENCH_TRACE_ACCEPTS"
"""``1``: the served app counts the connections its loop accepts per iteration
(``snippets.lab.accepts``)."""
POOL_TIMEOUT_VARIABLE = "WEB_BENCH_POOL_TIMEOUT"
"""Seconds the sync app's requests wait for a pooled connection (SQLAlchemy's default: 30)."""
FORTUNES = [
    "fortune: No such file or directory",
    "A computer scientist is someone who fixes things that aren't broken.",
    "After enough decimal places, nobody gives a damn.",
    "A bad random number generator: 1, 1, 1, 1, 1, 4.33e+67, 1, 1, 1",
    "A computer program does what you tell it to do, not what you want it to do.",
    "Emacs is a nice operating system, but I prefer UNIX. — Tom Christaensen",
    "Any program that runs right is obsolete.",
    "A list is only as strong as its weakest link. — Donald Knuth",
    "Feature: A bug with seniority.",
    "Computers make very fast, very accurate mistakes.",
    '<script>alert("This should not be displayed in a browser alert box.");</script>',
    "フレームワークのベンチマーク",
]
"""TechEmpower's twelve fortunes, ids 1 to 12 in this order."""
ADDED_FORTUNE = "Additional fortune added at request time."


class BenchModel(SQLModel, registry=registry()):
    """The benchmark's tables, on a registry of their own."""


class World(BenchModel, table=True):
    id: int = Field(primary_key=True)
    randomnumber: int


class Fortune(BenchModel, table=True):
    id: int = Field(primary_key=True)
    message: str = Field(max_length=2048)


metadata = BenchModel.metadata


class WorldPublic(BaseModel):
    id: int
    randomNumber: int  # TechEmpower's name


def query_count(raw: object) -> int:
    """TechEmpower's rule for ``queries``: a whole number clamped to 1..500, else 1."""
    try:
        count = int(str(raw))
    except ValueError:
        return 1
    return min(max(count, 1), 500)


Queries = Annotated[int, BeforeValidator(query_count), Query()]


def random_id() -> int:
    return random.randint(1, WORLDS)  # a benchmark's pick, not cryptography


def fortunes_page(rows: Sequence[tuple[int, str]]) -> str:
    """The fortunes and the added one, sorted by message, escaped, as TechEmpower's table."""
    every = sorted([*rows, (0, ADDED_FORTUNE)], key=lambda row: row[1])
    cells = "".join(
        f"<tr><td>{fortune_id}</td><td>{html.escape(message)}</td></tr>"
        for fortune_id, message in every
    )
    return (
        "<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
        f"<tr><th>id</th><th>message</th></tr>{cells}</table></body></html>"
    )


def bench_namespace() -> str:
    return os.environ.get(NAMESPACE_VARIABLE, "web_bench")


async def open_bench_engine(namespace: str | None = None, **engine_kwargs: Any) -> AsyncEngine:
    """The async engine every async variant uses: a pool of ``POOL_SIZE``, no overflow."""
    return await open_engine(
        namespace=namespace or bench_namespace(),
        pool_size=POOL_SIZE,
        max_overflow=0,
        **engine_kwargs,
    )


async def open_bench_read_engine(namespace: str | None = None) -> AsyncEngine:
    """The engine of the async variants' reads: the same pool settings, made as
    ``snippets.api.open_read_engine`` makes it (``READ_ENGINE_OPTIONS``)."""
    return await open_bench_engine(namespace, **READ_ENGINE_OPTIONS)


async def prepare(engine: AsyncEngine) -> None:
    """Create and fill the tables where they are empty (idempotent)."""
    await create_tables(engine, metadata)
    async with engine.begin() as conn:
        worlds = (await conn.execute(core_select(func.count()).select_from(World))).scalar_one()
        if worlds == 0:
            worlds_rows = [{"id": n, "randomnumber": random_id()} for n in range(1, WORLDS + 1)]
            await bulk_insert(conn, World, worlds_rows)
        fortunes = (await conn.execute(core_select(func.count()).select_from(Fortune))).scalar_one()
        if fortunes == 0:
            fortune_rows = [{"id": n, "message": m} for n, m in enumerate(FORTUNES, 1)]
            await bulk_insert(conn, Fortune, fortune_rows)


async def prepare_namespace(namespace: str | None = None) -> None:
    """Empty the benchmark's namespace, then create and fill its tables (``make bench-web``)."""
    engine = await open_engine(namespace=namespace or bench_namespace(), fresh=True)
    try:
        await prepare(engine)
    finally:
        await engine.dispose()


# guide: what the chapters teach


# Built once: SQLAlchemy computes a statement's cache key (to find its compiled SQL) once per
# statement object. session.get() builds its SELECT anew at each call and pays for it each time.
WORLD_BY_ID = select(World).where(World.id == bindparam("id"))
EVERY_FORTUNE = select(Fortune)


def world_public(world: World) -> dict[str, int]:
    """What the response model validates and serialises (once: not a model built here too)."""
    return {"id": world.id, "randomNumber": world.randomnumber}


def guide_lifespan(engine: AsyncEngine | None, read_engine: AsyncEngine | None = None) -> Lifespan:
    """``database_lifespan`` with the caller's engines, else the bench engines, as
    ``database_lifespan()`` opens its own: reads on an engine of their own."""
    if engine is not None:
        return database_lifespan(engine, read_engine=read_engine)
    return database_lifespan(open_bench_engine, read_engine=open_bench_read_engine)


def create_guide_app(
    engine: AsyncEngine | None = None, read_engine: AsyncEngine | None = None
) -> FastAPI:
    """The guide's way (chapters 02 and 08): ORM reads and writes in sessions the endpoint
    opens from ``SessionsDep`` (no ``yield`` dependency); reads in ``sessions.reading()``, on
    an engine of their own in ``AUTOCOMMIT`` unless given ``engine`` alone (no ``BEGIN``/
    ``ROLLBACK``, nothing switched at each checkout); statements built once; a read-modify
    loop without autoflush (one batched ``UPDATE`` at the commit)."""
    app = FastAPI(lifespan=guide_lifespan(engine, read_engine))

    async def one_world(session: AsyncSession) -> World:
        return (await session.exec(WORLD_BY_ID, params={"id": random_id()})).one()

    @app.get("/db", response_model=WorldPublic)
    async def single(sessions: SessionsDep) -> dict[str, int]:
        async with sessions.reading() as session:
            return world_public(await one_world(session))

    @app.get("/queries", response_model=list[WorldPublic])
    async def queries(sessions: SessionsDep, queries: Queries = 1) -> list[dict[str, int]]:
        async with sessions.reading() as session:
            return [world_public(await one_world(session)) for _ in range(queries)]

    @app.get("/fortunes", response_class=HTMLResponse)
    async def fortunes(sessions: SessionsDep) -> str:
        async with sessions.reading() as session:
            rows = (await session.exec(EVERY_FORTUNE)).all()
        return fortunes_page([(row.id, row.message) for row in rows])

    @app.get("/updates", response_model=list[WorldPublic])
    async def updates(sessions: SessionsDep, queries: Queries = 1) -> list[dict[str, int]]:
        changed = []
        async with sessions.writing() as session:
            # Without it, each read would first flush the previous world's change: a read and
            # a write per world, alternating. With it, the commit sends one batched UPDATE.
            with session.no_autoflush:
                for _ in range(queries):
                    world = await one_world(session)
                    world.randomnumber = random_id()
                    changed.append(world_public(world))
            await session.commit()
        return changed

    return app


def create_yield_dependency_app(engine: AsyncEngine | None = None) -> FastAPI:
    """The guide's ``/db`` as it was before chapter 14 measured it: the same ORM read, in a
    session from ``ReadSessionDep``, a ``yield`` dependency (``/db`` only)."""
    app = FastAPI(lifespan=guide_lifespan(engine))

    @app.get("/db", response_model=WorldPublic)
    async def single(session: ReadSessionDep) -> dict[str, int]:
        return world_public((await session.exec(WORLD_BY_ID, params={"id": random_id()})).one())

    return app


# tuned: the same engine, Core statements, no transaction for reads

world = World.__table__.c  # type: ignore[attr-defined]
fortune = Fortune.__table__.c  # type: ignore[attr-defined]
ONE_WORLD = core_select(world.id, world.randomnumber).where(world.id == bindparam("id"))
ALL_FORTUNES = core_select(fortune.id, fortune.message)
SET_NUMBER = (
    update(World).where(world.id == bindparam("world_id")).values(randomnumber=bindparam("number"))
)


def create_tuned_app(engine: AsyncEngine | None = None, namespace: str | None = None) -> FastAPI:
    """Core statements; reads on an engine of their own, made as ``open_read_engine`` makes
    it (an ``execution_options`` copy of the guide's engine would switch each connection at
    every checkout and back at every return: about 100 µs a request), writes on
    the guide's engine (``engine``, else one opened here); a connection gate for each pool."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        chosen = namespace or bench_namespace()
        writer = engine or await open_bench_engine(chosen)
        reader = await open_bench_read_engine(chosen)
        app.state.engine, app.state.reader = writer, reader
        app.state.write_gate = ConnectionGate.for_engine(writer)
        app.state.read_gate = ConnectionGate.for_engine(reader)
        yield
        await reader.dispose()
        if engine is None:
            await writer.dispose()

    app = FastAPI(lifespan=lifespan)

    async def one_world(conn: Any) -> dict[str, int]:
        world_id, number = (await conn.execute(ONE_WORLD, {"id": random_id()})).one()
        return {"id": world_id, "randomNumber": number}

    @asynccontextmanager
    async def reading(request: Request) -> AsyncIterator[Any]:
        async with turn_at(request.app.state.read_gate), request.app.state.reader.connect() as conn:
            yield conn

    @app.get("/db")
    async def single(request: Request) -> dict[str, int]:
        async with reading(request) as conn:
            return await one_world(conn)

    @app.get("/queries")
    async def queries(request: Request, queries: Queries = 1) -> list[dict[str, int]]:
        async with reading(request) as conn:
            return [await one_world(conn) for _ in range(queries)]

    @app.get("/fortunes", response_class=HTMLResponse)
    async def fortunes(request: Request) -> str:
        async with reading(request) as conn:
            rows = (await conn.execute(ALL_FORTUNES)).all()
        return fortunes_page([(row[0], row[1]) for row in rows])

    @app.get("/updates")
    async def updates(request: Request, queries: Queries = 1) -> list[dict[str, int]]:
        state = request.app.state
        async with turn_at(state.write_gate), state.engine.begin() as conn:
            worlds = [await one_world(conn) for _ in range(queries)]
            for world in worlds:
                world["randomNumber"] = random_id()
            latest = {w["id"]: w["randomNumber"] for w in worlds}
            # Sorted by id: concurrent requests lock rows in one order and cannot deadlock.
            changes = [{"world_id": i, "number": n} for i, n in sorted(latest.items())]
            await conn.execute(SET_NUMBER, changes)
        return worlds

    return app


# raw: the driver alone


class RawDatabase(Protocol):
    async def fetch_world(self, world_id: int) -> tuple[int, int]: ...
    async def fetch_worlds(self, ids: Sequence[int]) -> list[tuple[int, int]]: ...
    async def fetch_fortunes(self) -> list[tuple[int, str]]: ...
    async def update_worlds(self, changes: Sequence[tuple[int, int]]) -> None: ...
    async def close(self) -> None: ...


class AsyncpgDatabase:
    """asyncpg's own pool and prepared statements."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    @classmethod
    async def open(cls, url: URL, namespace: str) -> AsyncpgDatabase:
        import asyncpg

        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        pool = await asyncpg.create_pool(
            dsn,
            min_size=POOL_SIZE,
            max_size=POOL_SIZE,
            server_settings={"search_path": namespace},
        )
        return cls(pool)

    async def fetch_world(self, world_id: int) -> tuple[int, int]:
        row = await self.pool.fetchrow("SELECT id, randomnumber FROM world WHERE id = $1", world_id)
        return row[0], row[1]

    async def fetch_worlds(self, ids: Sequence[int]) -> list[tuple[int, int]]:
        async with self.pool.acquire() as conn:
            statement = await conn.prepare("SELECT id, randomnumber FROM world WHERE id = $1")
            return [tuple(await statement.fetchrow(world_id)) for world_id in ids]

    async def fetch_fortunes(self) -> list[tuple[int, str]]:
        return [tuple(row) for row in await self.pool.fetch("SELECT id, message FROM fortune")]

    async def update_worlds(self, changes: Sequence[tuple[int, int]]) -> None:
        await self.pool.executemany(
            "UPDATE world SET randomnumber = $2 WHERE id = $1", sorted(changes)
        )

    async def close(self) -> None:
        await self.pool.close()


class AiomysqlDatabase:
    """aiomysql's own pool, in autocommit."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    @classmethod
    async def open(cls, url: URL, namespace: str) -> AiomysqlDatabase:
        import aiomysql

        url = namespaced_url(url, namespace)  # a namespace is a database of its own
        pool = await aiomysql.create_pool(
            host=url.host or "127.0.0.1",
            port=url.port or 3306,
            user=url.username or "root",
            password=url.password or "",
            db=url.database,
            minsize=POOL_SIZE,
            maxsize=POOL_SIZE,
            autocommit=True,
        )
        return cls(pool)

    async def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        async with self.pool.acquire() as conn, conn.cursor() as cursor:
            await cursor.execute(sql, args)
            return list(await cursor.fetchall())

    async def fetch_world(self, world_id: int) -> tuple[int, int]:
        (row,) = await self._rows("SELECT id, randomnumber FROM world WHERE id = %s", [world_id])
        return row[0], row[1]

    async def fetch_worlds(self, ids: Sequence[int]) -> list[tuple[int, int]]:
        async with self.pool.acquire() as conn, conn.cursor() as cursor:
            found = []
            for world_id in ids:
                await cursor.execute("SELECT id, randomnumber FROM world WHERE id = %s", [world_id])
                found.append(tuple(await cursor.fetchone()))
            return found

    async def fetch_fortunes(self) -> list[tuple[int, str]]:
        return [tuple(row) for row in await self._rows("SELECT id, message FROM fortune")]

    async def update_worlds(self, changes: Sequence[tuple[int, int]]) -> None:
        async with self.pool.acquire() as conn, conn.cursor() as cursor:
            await conn.begin()
            await cursor.executemany(
                "UPDATE world SET randomnumber = %s WHERE id = %s",
                [(number, world_id) for world_id, number in sorted(changes)],
            )
            await conn.commit()

    async def close(self) -> None:
        self.pool.close()
        await self.pool.wait_closed()


class AiosqliteDatabase:
    """aiosqlite connections in a queue: SQLite's driver has no pool of its own."""

    def __init__(self, connections: list[Any]) -> None:
        import asyncio

        self.connections = connections
        self.free: asyncio.Queue[Any] = asyncio.Queue()
        for connection in connections:
            self.free.put_nowait(connection)

    @classmethod
    async def open(cls, url: URL, namespace: str) -> AiosqliteDatabase:
        import aiosqlite

        path = namespaced_url(url, namespace).database or ""
        return cls([await aiosqlite.connect(path, timeout=30) for _ in range(POOL_SIZE)])

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        connection = await self.free.get()
        try:
            yield connection
        finally:
            self.free.put_nowait(connection)

    async def fetch_world(self, world_id: int) -> tuple[int, int]:
        async with self._connection() as conn:
            cursor = await conn.execute(
                "SELECT id, randomnumber FROM world WHERE id = ?", [world_id]
            )
            row = await cursor.fetchone()
            return row[0], row[1]

    async def fetch_worlds(self, ids: Sequence[int]) -> list[tuple[int, int]]:
        async with self._connection() as conn:
            found = []
            for world_id in ids:
                cursor = await conn.execute(
                    "SELECT id, randomnumber FROM world WHERE id = ?", [world_id]
                )
                found.append(tuple(await cursor.fetchone()))
            return found

    async def fetch_fortunes(self) -> list[tuple[int, str]]:
        async with self._connection() as conn:
            cursor = await conn.execute("SELECT id, message FROM fortune")
            return [tuple(row) for row in await cursor.fetchall()]

    async def update_worlds(self, changes: Sequence[tuple[int, int]]) -> None:
        async with self._connection() as conn:
            await conn.executemany(
                "UPDATE world SET randomnumber = ? WHERE id = ?",
                [(number, world_id) for world_id, number in sorted(changes)],
            )
            await conn.commit()

    async def close(self) -> None:
        for connection in self.connections:
            await connection.close()


RAW_DATABASES: dict[Backend, Any] = {
    "postgresql": AsyncpgDatabase,
    "mysql": AiomysqlDatabase,
    "sqlite": AiosqliteDatabase,
}
"""Each backend's driver behind the raw variant (the async driver ``FACTS`` names)."""


def create_raw_app(url: URL | None = None, namespace: str | None = None) -> FastAPI:
    """The driver alone, with its own pool: the baseline every ratio is taken against.

    ``url`` is the configured one (default ``DATABASE_URL``), not a namespace's: the namespace
    (default ``WEB_BENCH_NAMESPACE``) is applied as ``open_engine`` applies it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resolved = database_url(url)
        chosen = namespace or bench_namespace()
        app.state.db = await RAW_DATABASES[backend_of(resolved)].open(resolved, chosen)
        yield
        await app.state.db.close()

    app = FastAPI(lifespan=lifespan)

    def world_json(row: tuple[int, int]) -> dict[str, int]:
        return {"id": row[0], "randomNumber": row[1]}

    @app.get("/db")
    async def single(request: Request) -> dict[str, int]:
        return world_json(await request.app.state.db.fetch_world(random_id()))

    @app.get("/queries")
    async def queries(request: Request, queries: Queries = 1) -> list[dict[str, int]]:
        ids = [random_id() for _ in range(queries)]
        return [world_json(row) for row in await request.app.state.db.fetch_worlds(ids)]

    @app.get("/fortunes", response_class=HTMLResponse)
    async def fortunes(request: Request) -> str:
        return fortunes_page(await request.app.state.db.fetch_fortunes())

    @app.get("/updates")
    async def updates(request: Request, queries: Queries = 1) -> list[dict[str, int]]:
        db: RawDatabase = request.app.state.db
        worlds = await db.fetch_worlds([random_id() for _ in range(queries)])
        changed = [(world_id, random_id()) for world_id, _ in worlds]
        await db.update_worlds(list(dict(changed).items()))
        return [world_json(row) for row in changed]

    return app


# sync: FastAPI's SQL tutorial, on a synchronous engine


def sync_engine(url: URL | None = None, namespace: str | None = None) -> Engine:
    """A synchronous engine on the same database and namespace, pool of ``POOL_SIZE``; ``url``
    as in ``create_raw_app``."""
    resolved = database_url(url)
    chosen = namespace or bench_namespace()
    backend_facts = facts(resolved)
    target = namespaced_url(resolved, chosen).set(
        drivername=f"{resolved.get_backend_name()}+{backend_facts.sync_driver}"
    )
    connect_args: dict[str, Any] = {}
    if backend_facts.namespace_kind == "schema":  # psycopg: a schema first on search_path
        connect_args["options"] = f"-csearch_path={chosen}"
    pool_timeout = float(os.environ.get(POOL_TIMEOUT_VARIABLE, "30"))
    return create_engine(
        target,
        pool_size=POOL_SIZE,
        max_overflow=0,
        pool_timeout=pool_timeout,
        connect_args=connect_args,
    )


def get_sync_session(request: Request) -> Iterator[Session]:
    """FastAPI's SQL tutorial's dependency: a ``Session`` per request, in the thread pool."""
    with Session(request.app.state.sync_engine) as session:
        yield session


SyncSessionDep = Annotated[Session, Depends(get_sync_session)]


def create_sync_app(engine: Engine | None = None) -> FastAPI:
    """FastAPI's SQL tutorial style: ``def`` endpoints, a ``Session`` per request.

    ``WEB_BENCH_THREADS`` sets the size of the thread pool those run in (chapter 14 makes it
    small, to show the deadlock of threads and pooled connections in seconds)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        threads = os.environ.get(THREADS_VARIABLE)
        if threads:
            anyio.to_thread.current_default_thread_limiter().total_tokens = int(threads)
        yield
        app.state.sync_engine.dispose()

    app = FastAPI(lifespan=lifespan)
    app.state.sync_engine = engine or sync_engine()

    @app.get("/db", response_model=WorldPublic)
    def single(session: SyncSessionDep) -> WorldPublic:
        world = session.get(World, random_id())
        assert world is not None
        return WorldPublic(id=world.id, randomNumber=world.randomnumber)

    @app.get("/queries", response_model=list[WorldPublic])
    def queries(session: SyncSessionDep, queries: Queries = 1) -> list[WorldPublic]:
        worlds = [session.get(World, random_id()) for _ in range(queries)]
        return [WorldPublic(id=w.id, randomNumber=w.randomnumber) for w in worlds if w]

    @app.get("/fortunes", response_class=HTMLResponse)
    def fortunes(session: SyncSessionDep) -> str:
        rows = session.exec(select(Fortune)).all()
        return fortunes_page([(row.id, row.message) for row in rows])

    @app.get("/updates", response_model=list[WorldPublic])
    def updates(session: SyncSessionDep, queries: Queries = 1) -> list[WorldPublic]:
        changed = []
        for _ in range(queries):
            world = session.get(World, random_id())
            assert world is not None
            world.randomnumber = random_id()
            changed.append(WorldPublic(id=world.id, randomNumber=world.randomnumber))
        session.commit()
        return changed

    return app


VARIANTS = ("raw", "guide", "tuned", "sync")
"""The apps ``make bench-web`` compares; each factory is ``create_<variant>_app``."""


# serving and loading them for real


VARIANT_VARIABLE = "WEB_BENCH_VARIANT"
GC_VARIABLE = "WEB_BENCH_GC"
"""``tuned`` (the default): the served app calls ``snippets.api.freeze_startup_objects`` once
it is made, as a deployment should; ``default``: Python's collector as it starts."""


def served_app() -> FastAPI:
    """The factory uvicorn calls (``Served``): the app of ``WEB_BENCH_VARIANT``, then the
    garbage collector tuned for serving unless ``WEB_BENCH_GC=default``. The same for every
    variant: a deployment setting, not one app's advantage."""
    app: FastAPI = globals()[f"create_{os.environ[VARIANT_VARIABLE]}_app"]()
    if os.environ.get(TRACE_ACCEPTS_VARIABLE) == "1":
        trace_accepts(app)
    if os.environ.get(GC_VARIABLE, "tuned") != "default":
        freeze_startup_objects()
    return app


class Served(ServedApp):
    """One variant's app under uvicorn on a free loopback port, on core 0 (``ServedApp``),
    with ``DATABASE_URL`` and the namespace set; ``settings`` are more variables of its own
    (e.g. ``WEB_BENCH_THREADS="2"``, ``WEB_BENCH_GC="default"``); ``loop`` is uvicorn's."""

    def __init__(
        self, variant: str, url: str, namespace: str, *, loop: str = "uvloop", **settings: str
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"no variant {variant!r}: one of {', '.join(VARIANTS)}")
        super().__init__(
            "snippets.lab.web_bench:served_app",
            {
                "DATABASE_URL": url,
                NAMESPACE_VARIABLE: namespace,
                VARIANT_VARIABLE: variant,
                **settings,
            },
            ready_path="/db",
            core=0,
            loop=loop,
        )

    def __enter__(self) -> Served:
        super().__enter__()
        return self


@dataclass(frozen=True)
class LoadFigures:
    """What ``load`` measured: completed requests, their rate and latencies, and failures."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    failures: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


async def load(url: str, *, concurrency: int, seconds: float, limit: int = 20_000) -> LoadFigures:
    """GET ``url`` from ``concurrency`` clients at once for ``seconds`` (at most ``limit``
    requests in all): a small load generator for a notebook, where wrk may not be installed."""
    latencies: list[float] = []
    failures = 0
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal failures
        while time.monotonic() < deadline and len(latencies) + failures < limit:
            started = time.perf_counter()
            try:
                response = await client.get(url)
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - started)
            else:
                failures += 1

    started = time.monotonic()
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    ordered = sorted(latencies) or [float("nan")]
    return LoadFigures(
        len(latencies),
        elapsed,
        ordered[len(ordered) // 2] * 1000,
        ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        failures,
    )


async def burst(url: str, *, clients: int) -> list[int]:
    """Send one GET of ``url`` from each of ``clients`` connections at the same moment (every
    connection is open before any request is written) and return the status codes in order,
    0 for a connection the server closed without answering: the load that piles up in a
    server at once, where ``load`` spreads it over time. A server that has not answered them
    all within 30 s raises ``TimeoutError``."""
    parsed = httpx.URL(url)
    request = (
        f"GET {parsed.raw_path.decode()} HTTP/1.1\r\nHost: {parsed.host}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    async with asyncio.timeout(30):
        streams = await asyncio.gather(
            *(asyncio.open_connection(parsed.host, parsed.port) for _ in range(clients))
        )
        for _, writer in streams:  # no await in between: the requests leave together
            writer.write(request)
        answers = await asyncio.gather(*(reader.read() for reader, _ in streams))
    for _, writer in streams:
        writer.close()
    return [int(answer.split(b" ", 2)[1]) if answer else 0 for answer in answers]


async def cpu_per_request(
    app: FastAPI, path: str, *, requests: int, concurrency: int = 16
) -> float:
    """Seconds of this process's CPU per request of ``path``, sent straight to the ASGI app
    (no HTTP, no client) by ``concurrency`` callers at once, until ``requests`` are answered;
    the app's lifespan must be running. CPU, not wall time: the database's own work and the
    waits are not counted, so two apps compare on what each costs its server."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"bench")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    left = requests
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def caller() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await app(dict(scope), receive, send)

    started = time.process_time()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    spent = time.process_time() - started
    if statuses != [200] * requests:
        raise RuntimeError(f"{path}: not every answer was 200: {sorted(set(statuses))}")
    return spent / requests


def package_of(filename: str, function: str = "") -> str:
    """The package a profiled function belongs to: what follows ``site-packages/``, this
    project's ``snippets``, ``asyncio`` or the rest of the standard library; among functions
    written in C, the event loop's wait for I/O (``epoll``/``select``) apart from the rest."""
    if filename == "~":  # a built-in (C) function
        waits = ("poll" in function or "select" in function) and "method" in function
        return "waiting for I/O" if waits else "built-in (C)"
    path = Path(filename)
    if "site-packages" in path.parts:
        return path.parts[path.parts.index("site-packages") + 1].removesuffix(".py")
    if "snippets" in path.parts:
        return "snippets"
    if "asyncio" in path.parts:
        return "asyncio"
    return "python"


async def profile_shares(client: httpx.AsyncClient, path: str, requests: int) -> dict[str, float]:
    """Send ``requests`` GETs of ``path`` under cProfile; the share of the time spent in each
    package's own code (its functions' ``tottime``), largest first, in percent."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(requests):
        (await client.get(path)).raise_for_status()
    profiler.disable()
    totals: dict[str, float] = {}
    for (filename, _, function), row in pstats.Stats(profiler).stats.items():  # type: ignore[attr-defined]
        package = package_of(filename, function)
        totals[package] = totals.get(package, 0.0) + row[2]
    whole = sum(totals.values())
    return {
        package: round(100 * seconds / whole, 1)
        for package, seconds in sorted(totals.items(), key=lambda item: -item[1])
    }
