"""FastAPI plumbing for SQLModel's async session, for any application's models (notebook 08).

Nothing here knows a model: an application brings its own, and its own ``MetaData``.

* ``database_lifespan`` chooses the engine at start-up (the caller's engine, an engine factory,
  or by default ``open_engine()`` from ``DATABASE_URL`` read at that moment), optionally creates
  tables through ``run_sync`` (no second, synchronous engine), and disposes what it opened. The
  engine is opened *inside* the lifespan, on the event loop that serves the requests: an engine
  whose pooled connections were opened on another loop (an engine made at import time and
  reused by a second ``TestClient``, say) fails on asyncpg (notebook 09).
* ``get_session`` gives each request a session of its own; ``SessionDep`` is its annotation.
  A connection lost before the session closes is logged as one line, not a traceback
  (``closed_at_the_end``).
* ``get_read_session`` (``ReadSessionDep``) gives an endpoint that only reads a session whose
  statements run in ``AUTOCOMMIT``: no ``BEGIN`` before them and no ``ROLLBACK`` after, two
  round trips fewer per request (notebook 08 measures it side by side: about half the time per
  read on PostgreSQL), and on SQLite no ``BEGIN IMMEDIATE``, so reads no longer
  wait for the write lock. Each statement then sees the data as of its own start, as every
  statement of a ``READ COMMITTED`` transaction (PostgreSQL's default) does anyway; a read that
  needs one snapshot across several statements (MySQL/MariaDB's ``REPEATABLE READ``, SQLite)
  keeps ``SessionDep``. A write through it would commit statement by statement: write with
  ``SessionDep``. Its sessions use ``app.state.read_engine``: by default an engine of its own
  (``open_read_engine``), made in ``AUTOCOMMIT`` with a pool of its own, so that no connection
  is switched to ``AUTOCOMMIT`` at each checkout and back at each return, as a copy of the
  main engine (``engine.execution_options(isolation_level="AUTOCOMMIT")``) switches them, at a
  cost in CPU on every read that notebook 14 measures; and none is rolled back when it returns
  to the pool, which aiomysql and aiosqlite do even in ``AUTOCOMMIT`` (a round trip, a trip to
  the driver's thread). The database then sees two pools' connections. With a caller's engine
  and no ``read_engine``, reads use the copy; on MySQL/MariaDB the main engine itself
  (``BackendFacts.free_autocommit_switch``: aiomysql's switch costs round trips of its own).
* ``SessionsDep`` (``Sessions``, from ``get_sessions``) is the same two sessions, opened by the
  endpoint in an ``async with sessions.reading()`` or ``sessions.writing()`` block rather than
  by a ``yield`` dependency: the session closes, and its connection goes back to the pool,
  before the response is built, and the dependency costs a function call instead of FastAPI's
  exit stacks and cancel scope (notebook 14 measures the CPU per request both ways).
  The way for endpoints on a hot path; ``SessionDep`` stays the shortest to write.
* All of them take a turn at a *connection gate* first, one per pool: a first-come,
  first-served ``asyncio.Semaphore`` with as many places as the pool can lend (``pool_size +
  max_overflow``). Without it, requests that outnumber the pool wait inside the pool's queue,
  where a request woken for a returned connection can lose it to one that just arrived and go
  back to the end of the line: at 64 concurrent requests and a pool of 10 some waited a second
  while most took 10 ms (notebook 14 shows the order and measures the tail; asyncpg's own pool
  has the same problem).
  In line, every request waits its turn, and p99 falls to a few times the median. A request
  that waits longer than the pool's ``pool_timeout`` gets a 503 with ``Retry-After``, not a
  500. One session dependency per request: two would take two places.
* ``commit_or_conflict`` commits, and turns a unique or foreign-key violation into a 409.
* ``add_database_error_handlers`` answers the database errors that escape an endpoint:
  a constraint violation 409, a statement stopped by its time limit and a database that cannot
  be reached 503 with ``Retry-After`` (within the connect timeout, not a hang), any other 500;
  each logged as one line without the SQL, its bound values or the URL (notebook 15).
* ``add_validation_error_handler`` answers a request FastAPI refused with its usual 422, less
  the input it echoes (a large body sent back whole; an unpaired surrogate, which cannot be
  encoded, made the 422 itself fail as a 500).
* ``add_method_not_allowed_handler`` answers a method a path does not serve with 405 and an
  ``Allow`` header listing every method it serves (Starlette's lists one route's).
* ``RequestDeadline`` is an ASGI middleware that answers a request whose response has not begun
  within its deadline with 503 and ``Retry-After``: the client-side bound on a statement sent
  to a server that has stopped answering, which no server-side time limit can stop
  (notebook 15).
* ``BodySizeLimit`` is an ASGI middleware that answers a request body larger than its limit
  with 413, before the body is read whole (a declared ``Content-Length`` at once; a chunked
  body as soon as it goes past the limit).
* ``readiness`` is a readiness endpoint: 200 when the database answers ``SELECT 1`` within
  ``READY_TIMEOUT`` seconds, else 503 at that deadline, even when the server never answers.
* ``run_in_own_session`` is for ``BackgroundTasks``: a job given ids, not the request's
  session or objects, runs in a session of its own and commits; a failure is logged in one
  line (the job and the error's class: no SQL, no bound values), since the response is gone
  (notebook 15).

* ``tenant_session(tenants)`` is a dependency for one schema per tenant
  (``snippets.tenants``): the session of the tenant the request's ``X-Tenant`` header names;
  400 without the header, 404 for a name that is not a tenant, never the default schema.
* ``routed_session(replicas)`` is a dependency for a primary and its read replica
  (``snippets.replicas``): a routing session, after ``Replicas.check()`` (reads go to the
  primary while the replica does not answer).

A module-level app is then simply ``app = FastAPI(lifespan=database_lifespan())``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import (
    AbstractAsyncContextManager,
    AsyncExitStack,
    asynccontextmanager,
    nullcontext,
)
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import MetaData
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from snippets.backends import (
    facts,
    is_connection_failure,
    is_statement_timeout,
    mysql_error_code,
)
from snippets.engine import open_engine, ping
from snippets.replicas import Replicas
from snippets.session import make_sessionmaker
from snippets.tables import create_tables
from snippets.tenants import Tenants, UnknownTenantError

logger = logging.getLogger(__name__)

Lifespan = Callable[[Any], AbstractAsyncContextManager[None]]
EngineFactory = Callable[[], Awaitable[AsyncEngine]]
RETRY_AFTER = {"Retry-After": "1"}
"""The header of every 503 here: a temporary condition, worth another try in a second."""


@dataclass
class ConnectionGate:
    """Requests in line for the pool's connections, served in the order they arrived."""

    places: asyncio.Semaphore
    timeout: float
    """Seconds a request may wait for its turn: the pool's own ``pool_timeout``."""

    @classmethod
    def for_engine(cls, engine: AsyncEngine) -> ConnectionGate | None:
        """A gate with as many places as ``engine``'s pool can lend, or ``None`` for a pool
        without a bound (``NullPool``, SQLite's in-memory ``StaticPool``, no overflow limit)."""
        pool = engine.pool
        # QueuePool exposes its size and timeout; its overflow limit only as an attribute.
        max_overflow = getattr(pool, "_max_overflow", -1)
        if not isinstance(pool, QueuePool) or max_overflow < 0:
            return None
        return cls(asyncio.Semaphore(pool.size() + max_overflow), pool.timeout())

    def turn(self) -> AbstractAsyncContextManager[None]:
        """Hold a place for the block; after ``timeout`` seconds in line, a 503."""
        return _Turn(self)


class _Turn:
    """``ConnectionGate.turn()``: a class, not a generator, since every request enters one."""

    __slots__ = ("gate",)

    def __init__(self, gate: ConnectionGate) -> None:
        self.gate = gate

    async def __aenter__(self) -> None:
        places = self.gate.places
        if not places.locked():  # a free place: taken at once, no timer needed
            await places.acquire()
            return
        try:
            async with asyncio.timeout(self.gate.timeout):
                await places.acquire()
        except TimeoutError:
            raise HTTPException(
                status_code=503,
                detail="The database is busy; try again shortly.",
                headers=RETRY_AFTER,
            ) from None

    async def __aexit__(self, *exc_info: object) -> None:
        self.gate.places.release()


def database_lifespan(
    engine: AsyncEngine | EngineFactory | None = None,
    *,
    metadata: MetaData | None = None,
    read_engine: AsyncEngine | EngineFactory | None = None,
) -> Lifespan:
    """A ``lifespan`` that sets ``app.state.engine``, ``app.state.read_engine``, their
    sessionmakers (``sessionmaker``, ``read_sessionmaker``) and ``app.state.sessions`` up.

    Args:
        engine: an ``AsyncEngine`` that belongs to the caller (used, never disposed); or a
            factory called at each start-up, whose engine is disposed at shutdown; or ``None``,
            the same with ``open_engine()``: ``DATABASE_URL`` read at start-up, a bad URL or an
            unreachable database stopping the app at once with one clear message.
        metadata: create this metadata's missing tables at start-up (fine for a demo or tests;
            use migrations in production). ``None`` creates nothing.
        read_engine: the engine of ``ReadSessionDep`` and ``sessions.reading()``, made with
            ``READ_ENGINE_OPTIONS``: the caller's, or a factory's (disposed at shutdown).
            ``None``: with ``engine=None`` too, ``open_read_engine()`` beside the engine where
            that engine has a pool; otherwise ``engine.execution_options(isolation_level=
            "AUTOCOMMIT")``, or ``engine`` itself on MySQL/MariaDB (see the module docstring).

    Raises:
        TypeError: at start-up, before anything else, when the engine (given, or made by the
            factory) is not an ``AsyncEngine``: a synchronous ``Engine`` cannot back an
            ``AsyncSession``. A synchronous engine from a factory is disposed of first.
    """

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with AsyncExitStack() as opened:
            active = await _engine_for(engine or open_engine, opened)
            if metadata is not None:
                await create_tables(active, metadata)
            if read_engine is not None:
                reader = await _engine_for(read_engine, opened)
            elif engine is None and isinstance(active.pool, QueuePool):
                # open_engine() once more: the same URL and pool settings, read again.
                reader = await _engine_for(open_read_engine, opened)
            elif not facts(active).free_autocommit_switch:
                # Switching a connection to AUTOCOMMIT costs round trips of its own there
                # (MySQL/MariaDB): reads keep the implicit transaction, the cheaper.
                reader = active
            else:
                # The same pool; each checkout switches to AUTOCOMMIT and back at its return.
                reader = active.execution_options(isolation_level="AUTOCOMMIT")
            app.state.engine, app.state.read_engine = active, reader
            app.state.sessionmaker = make_sessionmaker(active)
            app.state.read_sessionmaker = make_sessionmaker(reader)
            app.state.connection_gate = ConnectionGate.for_engine(active)
            app.state.read_connection_gate = (
                ConnectionGate.for_engine(reader)
                if reader.pool is not active.pool
                else app.state.connection_gate
            )
            app.state.sessions = Sessions(
                app.state.sessionmaker,
                app.state.read_sessionmaker,
                app.state.connection_gate,
                app.state.read_connection_gate,
            )
            yield

    return lifespan


READ_ENGINE_OPTIONS: dict[str, Any] = {
    "isolation_level": "AUTOCOMMIT",
    "skip_autocommit_rollback": True,
}
"""How an engine of its own for reads is made: each connection in ``AUTOCOMMIT`` from the
moment it opens, and none rolled back when it returns to the pool. SQLAlchemy rolls back
every returned connection; in ``AUTOCOMMIT`` there is nothing to roll back, yet aiomysql sends
a ``ROLLBACK`` (a round trip) and aiosqlite hands one to its thread. ``skip_autocommit_rollback``
skips it on a connection the driver reports in ``AUTOCOMMIT``."""


async def open_read_engine(url: str | URL | None = None, **engine_kwargs: Any) -> AsyncEngine:
    """``open_engine`` (same URL, namespace and pool settings) with ``READ_ENGINE_OPTIONS``:
    the engine ``database_lifespan()`` opens for reads, or one to give it as ``read_engine``."""
    return await open_engine(url=url, **READ_ENGINE_OPTIONS, **engine_kwargs)


async def _engine_for(chosen: AsyncEngine | EngineFactory, opened: AsyncExitStack) -> AsyncEngine:
    """The caller's engine as it is, or the factory's, disposed when ``opened`` closes."""
    if isinstance(chosen, AsyncEngine):
        return chosen
    made = await chosen()
    if not isinstance(made, AsyncEngine):
        if callable(getattr(made, "dispose", None)):
            made.dispose()  # a synchronous Engine's pool, closed before failing
        raise TypeError(
            f"database_lifespan needs an AsyncEngine (create_async_engine or "
            f"snippets.open_engine), got {type(made).__name__}: a synchronous Engine "
            "cannot back an AsyncSession. Use an async driver in the URL "
            "(sqlite+aiosqlite, postgresql+asyncpg, mysql+aiomysql)."
        )
    opened.push_async_callback(made.dispose)
    return made


@asynccontextmanager
async def closed_at_the_end(request: Request, sessionmaker: str) -> AsyncIterator[AsyncSession]:
    """A session from the app's ``sessionmaker`` (an ``app.state`` name), closed at the end.

    Closing ends the session's transaction with a ``ROLLBACK``. When the connection was lost
    after the endpoint's last statement (the server restarted, the network dropped), that
    ``ROLLBACK`` fails, usually once the response has been sent, where Starlette can only log
    a traceback (``response already started``): nothing was left to roll back, SQLAlchemy has
    already invalidated the connection, so it is logged as one line instead. An error the
    endpoint raised still reaches the exception handlers; any other failure to close is raised.
    """
    session: AsyncSession = getattr(request.app.state, sessionmaker)()
    try:
        yield session
    finally:
        try:
            await session.close()
        except DBAPIError as error:
            if not is_connection_failure(error):
                raise
            logger.error(
                "%s %s: the session's connection was lost before it closed, %s",
                *(request.method, request.url.path, error_code(error)),
            )


def turn_at(gate: ConnectionGate | None) -> AbstractAsyncContextManager[None]:
    """``gate.turn()``, or nothing to wait for when there is no gate (an unbounded pool)."""
    return gate.turn() if gate is not None else nullcontext()


def _turn_at_the_gate(request: Request, gate: str) -> AbstractAsyncContextManager[None]:
    return turn_at(getattr(request.app.state, gate, None))


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request, after the request's turn at the connection gate; closed when
    the response has been sent."""
    async with (
        _turn_at_the_gate(request, "connection_gate"),
        closed_at_the_end(request, "sessionmaker") as session,
    ):
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request for endpoints that only read: its statements run in
    ``AUTOCOMMIT``, with no ``BEGIN`` and ``ROLLBACK`` around them (see the module docstring)."""
    async with (
        _turn_at_the_gate(request, "read_connection_gate"),
        closed_at_the_end(request, "read_sessionmaker") as session,
    ):
        yield session


ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session)]


class Sessions:
    """The app's sessions, opened by the endpoint itself: ``SessionsDep``.

    ``async with sessions.reading() as session:`` (reads, on the reads' engine, as
    ``ReadSessionDep``) or ``async with sessions.writing() as session:`` (a transaction, as
    ``SessionDep``; commit it inside the block). Each block takes a turn at the connection gate
    first and closes the session when it ends, inside the endpoint: the connection goes back
    to the pool before the response is built and sent, and an error closing it reaches the
    exception handlers like any other. What the dependency itself costs is a plain function
    call: a ``yield`` dependency is entered and left through FastAPI's exit stacks and an anyio
    cancel scope (notebook 14 measures the CPU per request both ways).
    """

    __slots__ = ("_closes", "_read", "_read_gate", "_write", "_write_gate")

    def __init__(
        self,
        write: Callable[[], AsyncSession],
        read: Callable[[], AsyncSession] | None = None,
        gate: ConnectionGate | None = None,
        read_gate: ConnectionGate | None = None,
    ) -> None:
        """``read_gate``: the read sessions' pool's gate, where they have a pool of their own
        (default: ``gate``)."""
        self._write, self._read = write, read or write
        self._write_gate, self._read_gate = gate, read_gate or gate
        self._closes = True

    @classmethod
    def sharing(cls, session: AsyncSession) -> Sessions:
        """Sessions that are all ``session``, never closed by the blocks (tests: ``api_client``)."""
        shared = cls(lambda: session)
        shared._closes = False
        return shared

    def reading(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A session for statements that only read, on the reads' engine (``AUTOCOMMIT``
        unless ``database_lifespan`` was given a MySQL/MariaDB engine alone)."""
        return _OpenSession(self, self._read, self._read_gate)

    def writing(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A session in a transaction, rolled back at the end of the block unless committed."""
        return _OpenSession(self, self._write, self._write_gate)


class _OpenSession:
    """``Sessions.reading()``/``writing()``: a class, not a generator, as ``_Turn``."""

    __slots__ = ("_factory", "_session", "_sessions", "_turn")

    def __init__(
        self,
        sessions: Sessions,
        factory: Callable[[], AsyncSession],
        gate: ConnectionGate | None,
    ) -> None:
        self._sessions, self._factory = sessions, factory
        self._turn = turn_at(gate)

    async def __aenter__(self) -> AsyncSession:
        await self._turn.__aenter__()
        try:
            self._session = self._factory()
        except BaseException as error:
            await self._turn.__aexit__(type(error), error, error.__traceback__)
            raise
        return self._session

    async def __aexit__(self, *exc_info: Any) -> None:
        try:
            if self._sessions._closes:
                await self._session.close()
        finally:
            await self._turn.__aexit__(*exc_info)


async def get_sessions(request: Request) -> Sessions:
    """The app's ``Sessions`` (``database_lifespan`` makes them): a plain dependency, no
    ``yield``; the endpoint opens its session in an ``async with`` block."""
    sessions: Sessions = request.app.state.sessions
    return sessions


SessionsDep = Annotated[Sessions, Depends(get_sessions)]


def freeze_startup_objects(young_threshold: int = 10_000) -> None:
    """Tune the garbage collector for serving; call once, when start-up is done.

    ``gc.freeze()`` moves every object alive at that moment (modules, the app, its routes and
    models: hundreds of thousands) out of the collector's sight, so that the collections made
    while serving no longer walk them again and again. The youngest generation is then
    collected every ``young_threshold`` allocations instead of Python's 700: an ORM request
    allocates thousands of short-lived objects, and reference counting frees them without the
    collector; only cycles wait for it, for a little longer. ``make bench-web`` serves the
    guide's app both ways side by side (notebook 14). In a forking server (gunicorn's
    ``preload_app``), freezing before the fork also keeps the workers' shared memory pages
    from being copied by the collector's writes.
    """
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, oldest)


TENANT_HEADER = "X-Tenant"


def tenant_session(
    tenants: Tenants, header: str = TENANT_HEADER
) -> Callable[[Request], AsyncIterator[AsyncSession]]:
    """A dependency: the session of the tenant the request's ``header`` names (400 without the
    header, 404 for a name that is not a tenant). Use it as ``Depends(tenant_session(tenants))``."""

    async def get_tenant_session(request: Request) -> AsyncIterator[AsyncSession]:
        name = request.headers.get(header)
        if not name:
            raise HTTPException(status_code=400, detail=f"the {header} header must name a tenant")
        try:
            session = tenants.session(name)
        except UnknownTenantError:
            raise HTTPException(status_code=404, detail="no such tenant") from None
        async with session:
            yield session

    return get_tenant_session


def routed_session(replicas: Replicas) -> Callable[[], AsyncIterator[AsyncSession]]:
    """A dependency: a session that reads from the replica and writes to the primary, after
    ``replicas.check()``. Use it as ``Depends(routed_session(replicas))``."""
    sessions = replicas.sessionmaker()

    async def get_routed_session() -> AsyncIterator[AsyncSession]:
        await replicas.check()
        async with sessions() as session:
            yield session

    return get_routed_session


async def commit_or_conflict(session: AsyncSession, detail: str) -> None:
    """Commit; on a constraint violation (a duplicate, say) roll back and answer 409."""
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise HTTPException(status_code=409, detail=detail) from None


async def run_in_own_session(
    sessionmaker: Callable[[], AsyncSession],
    job: Callable[..., Awaitable[object]],
    *args: Any,
) -> bool:
    """Run ``job(session, *args)`` in a session of its own, then commit: for ``BackgroundTasks``.

    A background task runs after the response has been sent. Give it ids, not the request's
    session or objects: with ``Depends(..., scope="function")`` that session is closed by then
    and its objects are detached (a change to one is silently not written); in the default
    scope the task keeps the request's session, and its place at the connection gate, until
    it ends. ``sessionmaker`` is the app's (``request.app.state.sessionmaker``)::

        tasks.add_task(run_in_own_session, request.app.state.sessionmaker, rename, team_id)

    Returns whether the job committed. A failure is rolled back and logged as one line, the
    job's name and the error's class, never its message (SQLAlchemy's carries the SQL and its
    bound values); it is not raised, since no client is left to answer.
    """
    try:
        async with sessionmaker() as session:
            await job(session, *args)
            await session.commit()
    except Exception as error:
        name = getattr(job, "__qualname__", repr(job))
        logger.error("background job %s failed: %s", name, type(error).__name__)
        return False
    return True


READY_TIMEOUT = 2.0
"""Seconds ``readiness`` waits for the database's answer."""


def add_database_error_handlers(app: FastAPI) -> None:
    """Answer the database errors an endpoint lets escape, instead of a bare 500 (after which
    uvicorn also closes the client's keep-alive connection) and a logged traceback that holds
    the SQL and its bound values.

    * a unique or foreign-key violation: 409;
    * a statement stopped by its time limit (``make_engine(statement_timeout=...)``): 503;
    * the database unreachable or the connection lost: 503, as soon as the driver gives up: a
      refused or reset connection at once, a new connection to a silent server after the
      connect timeout (a statement already sent to a server that went silent waits for it:
      ``RequestDeadline`` bounds that request, ``readiness`` tells the load balancer);
    * any other database error: 500.

    A 503 carries ``Retry-After``. Each is logged as one line: the request's method and path,
    the error's class and code, never its message. ``OSError`` is handled too, since asyncpg
    raises a failed connect unwrapped: an app whose endpoints do other network I/O catches
    that I/O's errors itself.
    """
    app.add_exception_handler(DBAPIError, answer_database_error)
    app.add_exception_handler(OSError, answer_database_error)


async def answer_database_error(request: Request, error: Exception) -> JSONResponse:
    """The answer, and the log line, ``add_database_error_handlers`` gives ``error``."""
    if isinstance(error, IntegrityError):
        status, detail = 409, "The request conflicts with data already stored."
    elif is_statement_timeout(error):
        status, detail = 503, "The database took too long to answer; try again shortly."
    elif is_connection_failure(error):
        status, detail = 503, "The database is unavailable; try again shortly."
    else:
        status, detail = 500, "The database failed to answer this request."
    logger.error("%s %s: %d, %s", request.method, request.url.path, status, error_code(error))
    headers = RETRY_AFTER if status == 503 else None
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def error_code(error: BaseException) -> str:
    """The error's class and the driver's code, never its message (which can hold values):
    ``IntegrityError (UniqueViolationError, 23505)``, ``ConnectionRefusedError``."""
    if not isinstance(error, DBAPIError) or error.orig is None:
        return type(error).__name__
    code = getattr(error.orig, "sqlstate", None) or mysql_error_code(error)
    shown = type(error.orig).__name__ + (f", {code}" if code is not None else "")
    return f"{type(error).__name__} ({shown})"


def add_validation_error_handler(app: FastAPI) -> None:
    """Answer a request that fails validation with FastAPI's 422 body (``type``, ``loc``,
    ``msg`` of each error, as its OpenAPI schema declares), without the ``input`` and
    ``ctx`` it would echo: a 10 MB body would come back whole, and an unpaired surrogate in the
    input cannot be encoded as UTF-8, so the 422 itself failed as a 500."""
    app.add_exception_handler(RequestValidationError, answer_validation_error)


async def answer_validation_error(request: Request, error: Exception) -> JSONResponse:
    """The 422 ``add_validation_error_handler`` gives."""
    assert isinstance(error, RequestValidationError)
    errors = [
        {key: value for key, value in each.items() if key in ("type", "loc", "msg")}
        for each in error.errors()
    ]
    return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def add_method_not_allowed_handler(app: FastAPI) -> None:
    """Answer a method a path does not serve with 405 and an ``Allow`` header that lists every
    method it does serve, as RFC 9110 asks. Starlette's own 405 names only the methods of the
    first route whose path matched: with ``GET`` and ``POST`` on ``/heroes`` as two endpoints,
    ``OPTIONS /heroes`` answered ``Allow: POST``."""
    app.add_exception_handler(405, answer_method_not_allowed)


async def answer_method_not_allowed(request: Request, error: Exception) -> JSONResponse:
    """The 405 ``add_method_not_allowed_handler`` gives."""
    allowed = [
        method
        for method in HTTP_METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in request.app.router.routes
        )
    ]
    headers = {"Allow": ", ".join(allowed)}
    return JSONResponse({"detail": "Method Not Allowed"}, status_code=405, headers=headers)


class BodySizeLimit:
    """ASGI middleware: a request body larger than ``max_bytes`` is a 413, not read into memory.

    ``app.add_middleware(BodySizeLimit, max_bytes=64_000)``. A ``Content-Length`` above the
    limit is refused before any of the body is read; a body sent without one (chunked) is
    counted as it arrives, and refused when it goes past the limit: the ``HTTPException``
    raised while FastAPI reads the body becomes the answer.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = 1_000_000) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response = JSONResponse({"detail": self._detail}, status_code=413)
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(status_code=413, detail=self._detail)
            return message

        await self.app(scope, counted, send)

    @property
    def _detail(self) -> str:
        return f"The request body is larger than {self.max_bytes} bytes."


class RequestDeadline:
    """ASGI middleware: a request that has not begun its response within ``seconds`` is stopped
    and answered 503 with ``Retry-After``, logged as one line.

    ``app.add_middleware(RequestDeadline, seconds=4)``. It is the client-side half of a
    statement time limit. ``make_engine(statement_timeout=...)`` has the *database* stop a slow
    statement, and its connection stays usable; a server that has stopped answering (hung, or
    behind a network that drops packets) stops nothing, and a statement sent to it waits for
    its answer without end. At the deadline the request's task is cancelled: SQLAlchemy
    invalidates the connection the cancelled statement was waiting on (it is closed, not
    returned to the pool), the session dependency closes, and the client gets its 503. Closing
    that connection can take the driver a moment: asyncpg waits up to 2 s for a silent
    server before dropping it. Choose ``seconds`` above the slowest legitimate request: the
    pool's ``pool_timeout`` plus the statement limit of each statement it runs.

    Only the time until the response begins is limited: a streamed response, once begun,
    runs on (bound it where it is produced), and so does code that runs after the response
    has been sent (a ``yield`` dependency's exit in FastAPI's default scope, ``BackgroundTasks``).
    """

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = asyncio.timeout(self.seconds)

        async def sent(message: Message) -> None:
            if message["type"] == "http.response.start":
                deadline.reschedule(None)  # begun: the rest runs at the client's pace
            await send(message)

        try:
            async with deadline:
                await self.app(scope, receive, sent)
        except TimeoutError:
            if not deadline.expired():
                raise  # the app's own TimeoutError, not the deadline's
            logger.error(
                "%s %s: 503, no response within %g s", scope["method"], scope["path"], self.seconds
            )
            detail = "The request took too long to answer; try again shortly."
            response = JSONResponse({"detail": detail}, status_code=503, headers=RETRY_AFTER)
            await response(scope, receive, send)


_abandoned_pings: set[asyncio.Task[None]] = set()


async def database_answers(engine: AsyncEngine, within: float) -> bool:
    """Whether ``engine``'s database answers ``SELECT 1`` within ``within`` seconds.

    Decided at the deadline: a ping still waiting then is cancelled and left to end on its own
    (asyncpg's cancellation itself waits for the silent server) rather than awaited.
    """
    pinging = asyncio.ensure_future(ping(engine))
    done, _ = await asyncio.wait({pinging}, timeout=within)
    if not done:
        pinging.cancel()
        _abandoned_pings.add(pinging)  # a reference, until it has ended
        pinging.add_done_callback(_forget_ping)
        return False
    return not pinging.cancelled() and pinging.exception() is None


def _forget_ping(pinging: asyncio.Task[None]) -> None:
    _abandoned_pings.discard(pinging)
    if not pinging.cancelled():
        pinging.exception()  # retrieved: no "exception was never retrieved" warning


async def readiness(request: Request) -> JSONResponse:
    """A readiness endpoint (``app.get("/ready")(readiness)``): 200 when the app's database
    answers within ``READY_TIMEOUT`` seconds, else 503 with ``Retry-After``, at that deadline.
    It does not wait at the connection gate: a load balancer asks while requests are served."""
    if await database_answers(request.app.state.engine, READY_TIMEOUT):
        return JSONResponse({"database": "ok"})
    logger.warning("readiness: the database did not answer within %g s", READY_TIMEOUT)
    return JSONResponse(
        {"detail": f"The database did not answer within {READY_TIMEOUT:g} s."},
        status_code=503,
        headers=RETRY_AFTER,
    )
