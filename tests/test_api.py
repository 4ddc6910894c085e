"""The API and the Air page, end to end, each test inside a transaction that is rolled back."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest
import sqlmodel
from asgi_lifespan import LifespanManager
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from snippets import open_engine
from snippets.api import (
    ConnectionGate,
    ReadSessionDep,
    RequestDeadline,
    SessionDep,
    SessionsDep,
    database_lifespan,
    error_code,
    get_read_session,
    get_session,
    open_read_engine,
    run_in_own_session,
)
from snippets.backends import FACTS, backend_of, facts, is_connection_failure
from snippets.config import database_url
from snippets.demo.heroes_api import MAX_BODY, MAX_PAGE, create_app
from snippets.demo.heroes_page import create_air_app
from snippets.demo.models import Hero, Team, metadata
from snippets.lab.latency_proxy import LatencyProxy
from snippets.lab.observe import driver_rollbacks
from snippets.lab.pool import arrival_order
from snippets.session import make_sessionmaker
from snippets.testing import api_client, empty_tables, rollback_session


@pytest.fixture
async def session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with rollback_session(engine) as session:
        yield session


@pytest.fixture
async def client(engine: AsyncEngine, session: AsyncSession) -> AsyncIterator[httpx.AsyncClient]:
    # The engine fixture created the tables. With create=True the lifespan would open a second
    # connection, which on SQLite waits for the write lock this test's transaction holds.
    async with api_client(create_app(engine, create=False), session) as client:
        yield client


async def post_hero(client: httpx.AsyncClient, **fields: object) -> httpx.Response:
    return await client.post("/heroes/", json={"secret_name": "secret", **fields})


async def test_create_then_read(client: httpx.AsyncClient) -> None:
    created = await post_hero(client, name="Deadpond", age=30)
    assert created.status_code == 201
    body = created.json()
    assert body == {
        "name": "Deadpond",
        "secret_name": "secret",
        "age": 30,
        "team_id": None,
        "id": body["id"],
    }
    read = await client.get(f"/heroes/{body['id']}")
    assert read.status_code == 200
    assert read.json() == body


async def test_missing_hero_is_404(client: httpx.AsyncClient) -> None:
    for response in (
        await client.get("/heroes/999"),
        await client.patch("/heroes/999", json={"age": 1}),
        await client.delete("/heroes/999"),
    ):
        assert response.status_code == 404
        assert response.json() == {"detail": "hero 999 not found"}


async def test_duplicate_name_is_409_and_the_session_recovers(client: httpx.AsyncClient) -> None:
    assert (await post_hero(client, name="Unique")).status_code == 201
    duplicate = await post_hero(client, name="Unique")
    assert duplicate.status_code == 409
    assert duplicate.json() == {"detail": "a hero named 'Unique' already exists"}
    assert (await post_hero(client, name="Next")).status_code == 201  # not a PendingRollbackError


@pytest.mark.parametrize(
    "payload",
    [
        {"name": "No secret"},
        {"name": "Negative", "secret_name": "s", "age": -1},
        {"name": "x" * 101, "secret_name": "s"},
        {"name": "Bad age", "secret_name": "s", "age": "old"},
    ],
)
async def test_invalid_input_is_422(client: httpx.AsyncClient, payload: dict[str, object]) -> None:
    response = await client.post("/heroes/", json=payload)
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] in {
        "missing",
        "greater_than_equal",
        "string_too_long",
        "int_parsing",
    }


@pytest.mark.parametrize(
    ("method", "path", "body", "refused"),
    [
        ("POST", "/heroes/", '{"name": "a\\ud800", "secret_name": "s"}', "string_unicode"),
        ("POST", "/heroes/", '{"name": "a\\u0000", "secret_name": "s"}', "value_error"),
        (
            "POST",
            "/heroes/",
            '{"name": "Old", "secret_name": "s", "age": 2147483648}',
            "less_than_equal",
        ),
        (
            "POST",
            "/heroes/",
            '{"name": "Far", "secret_name": "s", "team_id": -10740144547}',
            "greater_than_equal",
        ),
        ("PATCH", "/heroes/1", '{"secret_name": "\\u0000"}', "value_error"),
        ("PATCH", "/heroes/1", '{"team_id": 2147483648}', "less_than_equal"),
        ("PATCH", "/heroes/1", '{"name": null}', "value_error"),
        ("POST", "/teams/", '{"name": "T\\u0000", "headquarters": "h"}', "value_error"),
        ("GET", "/heroes/2147483648", None, "less_than_equal"),
        ("GET", "/teams/-2147483649", None, "greater_than_equal"),
        ("GET", "/heroes/?offset=9223372036854775808", None, "less_than_equal"),
    ],
)
async def test_what_the_database_cannot_store_is_a_422_that_echoes_nothing(
    client: httpx.AsyncClient, method: str, path: str, body: str | None, refused: str
) -> None:
    """Each was a 500 on some backend: beyond INTEGER or BIGINT, a NUL character (PostgreSQL),
    an unpaired surrogate (whose echo in the 422 could not be encoded)."""
    headers = {"content-type": "application/json"}
    response = await client.request(method, path, content=body, headers=headers)
    assert response.status_code == 422
    assert [error["type"] for error in response.json()["detail"]] == [refused]
    assert all(set(error) == {"type", "loc", "msg"} for error in response.json()["detail"])


async def test_a_body_over_the_limit_is_a_413_declared_or_chunked(
    client: httpx.AsyncClient,
) -> None:
    large = b'{"name": "' + b"x" * MAX_BODY + b'", "secret_name": "s"}'

    async def in_chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        for start in range(0, len(large), 8192):
            yield large[start : start + 8192]

    headers = {"content-type": "application/json"}
    declared = await client.post("/heroes/", content=large, headers=headers)
    chunked = await client.post("/heroes/", content=in_chunks(), headers=headers)
    assert (declared.status_code, chunked.status_code) == (413, 413)
    assert (
        declared.json()
        == chunked.json()
        == {"detail": f"The request body is larger than {MAX_BODY} bytes."}
    )
    assert (await post_hero(client, name="Small enough")).status_code == 201


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("OPTIONS", "/heroes/", "GET, POST"),
        ("PUT", "/heroes/1", "GET, PATCH, DELETE"),
        ("DELETE", "/teams/", "GET, POST"),
    ],
)
async def test_a_method_the_path_does_not_serve_is_405_with_every_allowed_method(
    client: httpx.AsyncClient, method: str, path: str, allowed: str
) -> None:
    response = await client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allowed  # Starlette's own named the first route's only


def test_the_openapi_schema_documents_every_status_an_endpoint_answers() -> None:
    paths = create_app().openapi()["paths"]
    documented = {
        (method.upper(), path): sorted(int(status) for status in operation["responses"])
        for path, operations in paths.items()
        for method, operation in operations.items()
    }
    assert documented == {
        ("POST", "/heroes/"): [201, 400, 409, 413, 422, 503],
        ("GET", "/heroes/"): [200, 422, 503],
        ("GET", "/heroes/{hero_id}"): [200, 404, 422, 503],
        ("PATCH", "/heroes/{hero_id}"): [200, 400, 404, 409, 413, 422, 503],
        ("DELETE", "/heroes/{hero_id}"): [204, 404, 422, 503],
        ("POST", "/teams/"): [201, 400, 409, 413, 422, 503],
        ("GET", "/teams/"): [200, 422, 503],
        ("GET", "/teams/{team_id}"): [200, 404, 422, 503],
    }


def test_the_openapi_schema_says_what_the_patch_accepts() -> None:
    """A name may be left out of a PATCH, not set to null: the schema says "string"."""
    schema = create_app().openapi()["components"]["schemas"]["HeroUpdate"]["properties"]
    assert schema["name"]["type"] == schema["secret_name"]["type"] == "string"
    assert "anyOf" not in schema["name"]


async def test_pagination_and_its_bounds(client: httpx.AsyncClient) -> None:
    for number in range(7):
        assert (await post_hero(client, name=f"Hero {number}")).status_code == 201
    first = (await client.get("/heroes/", params={"offset": 0, "limit": 3})).json()
    second = (await client.get("/heroes/", params={"offset": 3, "limit": 3})).json()
    last = (await client.get("/heroes/", params={"offset": 6, "limit": 3})).json()
    assert [h["name"] for h in first + second + last] == [f"Hero {n}" for n in range(7)]
    for params in ({"limit": 0}, {"limit": MAX_PAGE + 1}, {"offset": -1}, {"limit": "ten"}):
        assert (await client.get("/heroes/", params=params)).status_code == 422, params
    assert len((await client.get("/heroes/", params={"limit": MAX_PAGE})).json()) == 7


async def test_patch_changes_only_what_was_sent(client: httpx.AsyncClient) -> None:
    hero = (await post_hero(client, name="Spider-Boy", age=16)).json()
    patched = await client.patch(f"/heroes/{hero['id']}", json={"age": 17})
    assert patched.status_code == 200
    assert patched.json() == {**hero, "age": 17}
    cleared = await client.patch(f"/heroes/{hero['id']}", json={"age": None})
    assert cleared.json()["age"] is None
    refused = await client.patch(f"/heroes/{hero['id']}", json={"name": None})
    assert refused.status_code == 422
    assert (await client.get(f"/heroes/{hero['id']}")).json()["name"] == "Spider-Boy"


async def test_patch_to_a_taken_name_is_409(client: httpx.AsyncClient) -> None:
    await post_hero(client, name="First")
    second = (await post_hero(client, name="Second")).json()
    response = await client.patch(f"/heroes/{second['id']}", json={"name": "First"})
    assert response.status_code == 409
    assert (await client.get(f"/heroes/{second['id']}")).json()["name"] == "Second"


async def test_delete_is_204_then_404(client: httpx.AsyncClient) -> None:
    hero = (await post_hero(client, name="Gone")).json()
    deleted = await client.delete(f"/heroes/{hero['id']}")
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert (await client.get(f"/heroes/{hero['id']}")).status_code == 404


async def test_team_with_heroes_is_eager_loaded(client: httpx.AsyncClient) -> None:
    team = await client.post("/teams/", json={"name": "Preventers", "headquarters": "Tower"})
    assert team.status_code == 201
    team_id = team.json()["id"]
    for name in ("Rusty-Man", "Tarantula"):
        assert (await post_hero(client, name=name, team_id=team_id)).status_code == 201
    response = await client.get(f"/teams/{team_id}")
    assert response.status_code == 200
    assert [h["name"] for h in response.json()["heroes"]] == ["Rusty-Man", "Tarantula"]
    assert (await client.get("/teams/404")).status_code == 404
    assert [t["name"] for t in (await client.get("/teams/")).json()] == ["Preventers"]
    duplicate = await client.post("/teams/", json={"name": "Preventers", "headquarters": "x"})
    assert duplicate.status_code == 409


async def test_unknown_team_is_422(client: httpx.AsyncClient) -> None:
    response = await post_hero(client, name="Lonely", team_id=12345)
    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {"type": "missing_team", "loc": ["body", "team_id"], "msg": "team 12345 does not exist"}
        ]
    }
    hero = (await post_hero(client, name="Joiner")).json()
    patched = await client.patch(f"/heroes/{hero['id']}", json={"team_id": 12345})
    assert patched.status_code == 422


async def test_each_test_leaves_the_database_empty(engine: AsyncEngine) -> None:
    async with rollback_session(engine) as session:
        async with api_client(create_app(engine, create=False), session) as client:
            assert (await post_hero(client, name="Temporary")).status_code == 201
        assert (await session.exec(select(func.count()).select_from(Hero))).one() == 1
    async with AsyncSession(engine) as fresh:
        assert (await fresh.exec(select(func.count()).select_from(Hero))).one() == 0


async def test_app_without_override_commits_for_real(engine: AsyncEngine) -> None:
    # The lifespan with a given engine: tables created, the engine left open for its owner.
    async with api_client(create_app(engine)) as client:
        assert (await post_hero(client, name="Persisted")).status_code == 201
    async with AsyncSession(engine) as session:
        assert (await session.exec(select(Hero.name))).all() == ["Persisted"]


async def test_air_page_lists_and_creates(engine: AsyncEngine, session: AsyncSession) -> None:
    async with api_client(create_air_app(engine, create=False), session) as client:
        empty = await client.get("/")
        assert empty.status_code == 200
        assert empty.headers["content-type"].startswith("text/html")
        assert "<h1>Heroes</h1>" in empty.text
        assert '<form action="/heroes" method="post">' in empty.text
        created = await client.post("/heroes", data={"name": "Air Hero", "secret_name": "Breeze"})
        assert created.status_code == 303
        assert created.headers["location"] == "/"
        listed = await client.get("/")
        assert "<li>Air Hero (Breeze)</li>" in listed.text
        duplicate = await client.post("/heroes", data={"name": "Air Hero", "secret_name": "x"})
        assert duplicate.status_code == 409
        assert "already exists" in duplicate.text
        missing = await client.post("/heroes", data={"name": "Half"})
        assert missing.status_code == 422


def test_tables_are_created_without_a_sync_driver() -> None:
    # The lifespan used run_sync on the async engine; no synchronous PostgreSQL driver is loaded.
    assert "psycopg2" not in sys.modules
    assert "psycopg" not in sys.modules


async def test_the_lifespan_refuses_a_synchronous_engine_with_one_clear_error() -> None:
    # A factory that returns a synchronous Engine (a common port of FastAPI's SQL tutorial):
    # one TypeError naming the fix at start-up, not a second error from awaiting dispose().
    disposed: list[Engine] = []

    async def sync_factory() -> Engine:
        sync_engine = sqlmodel.create_engine("sqlite://")
        event.listen(sync_engine, "engine_disposed", disposed.append)
        return sync_engine

    app = FastAPI(lifespan=database_lifespan(sync_factory))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"needs an AsyncEngine .* got Engine") as caught:
        async with LifespanManager(app):
            pass
    assert caught.value.__context__ is None  # nothing else went wrong on the way
    assert len(disposed) == 1  # the factory's engine was closed, not left behind


@dataclass
class Gated:
    """A running app whose ``/hold/{n}`` keeps its session (and its connection) until
    ``holding`` is set; ``admitted`` is the order in which requests got past the gate, and
    ``held`` receives each request's number once it holds a connection."""

    app: FastAPI
    client: httpx.AsyncClient = field(init=False)
    holding: asyncio.Event = field(default_factory=asyncio.Event)
    admitted: list[int] = field(default_factory=list)
    held: asyncio.Queue[int] = field(default_factory=asyncio.Queue)


@asynccontextmanager
async def gated_app(namespace: str, *, pool_size: int, pool_timeout: float) -> AsyncIterator[Gated]:
    engine = await open_engine(
        namespace=namespace, pool_size=pool_size, max_overflow=0, pool_timeout=pool_timeout
    )
    gated = Gated(FastAPI(lifespan=database_lifespan(engine)))

    @gated.app.get("/hold/{number}")
    async def hold(number: int, session: ReadSessionDep) -> int:
        gated.admitted.append(number)
        # A read: on SQLite a SessionDep's BEGIN IMMEDIATE would make sessions take turns at
        # the database's write lock too, and that order is not the gate's.
        await session.exec(select(func.count()).select_from(Hero))  # checks a connection out
        gated.held.put_nowait(number)
        await gated.holding.wait()
        return number

    @gated.app.get("/hold-opened/{number}")
    async def hold_opened(number: int, sessions: SessionsDep) -> int:
        async with sessions.reading() as session:  # the same, opened by the endpoint
            gated.admitted.append(number)
            await session.exec(select(func.count()).select_from(Hero))
            gated.held.put_nowait(number)
            await gated.holding.wait()
        return number

    try:
        async with api_client(gated.app) as gated.client:
            yield gated
    finally:
        await engine.dispose()


HOLDING_ROUTES = pytest.mark.parametrize("route", ["/hold", "/hold-opened"])
"""The gate's guarantees, for a yield dependency and for a session the endpoint opens."""


@HOLDING_ROUTES
async def test_requests_beyond_the_pool_wait_their_turn_in_order(
    namespace: str, route: str
) -> None:
    async with gated_app(namespace, pool_size=2, pool_timeout=30) as gated:
        client = gated.client
        requests = [asyncio.create_task(client.get(f"{route}/{n}")) for n in (0, 1)]
        async with asyncio.timeout(10):  # both hold a connection of the pool
            await gated.held.get()
            await gated.held.get()
        for number in range(2, 8):  # six more wait in line, arriving in this order
            requests.append(asyncio.create_task(client.get(f"{route}/{number}")))
            await asyncio.sleep(0.01)
        assert gated.app.state.connection_gate.places.locked()
        gated.holding.set()
        answers = await asyncio.gather(*requests)
    assert [answer.status_code for answer in answers] == [200] * 8
    assert sorted(gated.admitted[:2]) == [0, 1]
    assert gated.admitted[2:] == [2, 3, 4, 5, 6, 7]  # the six waiting ones, first come first served


@HOLDING_ROUTES
async def test_a_request_that_waits_past_the_pool_timeout_gets_503_retry_after(
    namespace: str, route: str
) -> None:
    async with gated_app(namespace, pool_size=1, pool_timeout=0.3) as gated:
        first = asyncio.create_task(gated.client.get(f"{route}/1"))
        async with asyncio.timeout(10):  # the first holds the pool's only connection
            await gated.held.get()
        busy = await gated.client.get(f"{route}/2")  # waits 0.3 s in line, then gives up
        gated.holding.set()
        assert (await first).status_code == 200
        after = await gated.client.get(f"{route}/3")
    assert busy.status_code == 503
    assert busy.headers["retry-after"] == "1"
    assert busy.json() == {"detail": "The database is busy; try again shortly."}
    assert after.status_code == 200  # the place was given back
    assert gated.admitted == [1, 3]


async def test_sessions_the_endpoint_opens_are_closed_before_the_response(
    namespace: str,
) -> None:
    """``SessionsDep``: the connection is back in the pool when the block ends, inside the
    endpoint; a ``yield`` dependency's is held until the response has been sent. Reads run in
    ``AUTOCOMMIT`` where the switch is free; a write not committed is rolled back."""
    engine = await open_engine(namespace=namespace, fresh=True)
    app = FastAPI(lifespan=database_lifespan(engine, metadata=metadata))

    @app.get("/opened")
    async def opened(sessions: SessionsDep) -> dict[str, object]:
        async with sessions.reading() as session:
            connection = await session.connection()
            mode = connection.sync_connection.get_execution_options().get("isolation_level")
            inside = engine.pool.checkedout()  # type: ignore[attr-defined]
        return {"mode": mode, "inside": inside, "after": engine.pool.checkedout()}  # type: ignore[attr-defined]

    @app.get("/dependency")
    async def dependency(session: ReadSessionDep) -> dict[str, object]:
        await session.exec(select(func.count()).select_from(Hero))
        return {"after": engine.pool.checkedout()}  # type: ignore[attr-defined]

    @app.post("/teams/{name}")
    async def add_team(name: str, sessions: SessionsDep, commit: bool = True) -> int:
        async with sessions.writing() as session:
            session.add(Team(name=name, headquarters="HQ"))
            if commit:
                await session.commit()
        async with sessions.reading() as session:
            return len((await session.exec(select(Team))).all())

    try:
        async with api_client(app) as client:
            opened_answer = (await client.get("/opened")).json()
            dependency_answer = (await client.get("/dependency")).json()
            committed = (await client.post("/teams/Kept")).json()
            not_committed = (await client.post("/teams/Dropped", params={"commit": False})).json()
    finally:
        await engine.dispose()
    free = facts(engine).free_autocommit_switch
    assert opened_answer == {"mode": "AUTOCOMMIT" if free else None, "inside": 1, "after": 0}
    assert dependency_answer == {"after": 1}  # still held while the endpoint returns
    assert (committed, not_committed) == (1, 1)


async def test_the_default_lifespan_reads_on_an_engine_of_its_own_in_autocommit(
    namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``database_lifespan()`` opens the reads' engine beside the main one, on every backend:
    its own pool and gate, nothing switched per checkout, nothing rolled back at each return;
    a write through it commits at once."""
    namespaced = open_engine  # the app's engines open in the test's namespace

    async def in_namespace(**kwargs: object) -> AsyncEngine:
        return await namespaced(namespace=namespace, **kwargs)  # type: ignore[arg-type]

    await (await open_engine(namespace=namespace, fresh=True)).dispose()
    monkeypatch.setattr("snippets.api.open_engine", in_namespace)
    app = FastAPI(lifespan=database_lifespan(metadata=metadata))

    @app.post("/teams/{name}")
    async def add_without_commit(name: str, sessions: SessionsDep) -> None:
        async with sessions.reading() as session:
            session.add(Team(name=name, headquarters="HQ"))
            await session.flush()  # then closed without a commit

    @app.get("/teams")
    async def count(sessions: SessionsDep) -> int:
        async with sessions.writing() as session:
            return len((await session.exec(select(Team))).all())

    async with api_client(app) as client:
        state = app.state
        await client.post("/teams/Kept")
        kept = (await client.get("/teams")).json()
        read_engine, main_engine = state.read_engine, state.engine
    assert read_engine is not main_engine
    assert read_engine.pool is not main_engine.pool
    assert state.read_connection_gate is not state.connection_gate
    assert kept == 1  # AUTOCOMMIT: the flush committed
    assert read_engine.get_execution_options() == {}  # not a switching copy of the engine
    assert read_engine.dialect.skip_autocommit_rollback
    for engine in (main_engine, read_engine):  # both disposed at shutdown
        assert engine.pool.checkedin() == 0


async def test_a_read_engine_rolls_back_no_connection_it_takes_back(namespace: str) -> None:
    """SQLAlchemy rolls back every connection returned to its pool; an engine made by
    ``open_read_engine`` skips it (aiomysql would send a ROLLBACK, aiosqlite a trip to its
    thread). The main engine, in transactions, still rolls back: the count can fail."""
    main = await open_engine(namespace=namespace)
    reads = await open_read_engine(namespace=namespace)
    rollbacks: dict[str, int] = {}
    try:
        for name, engine in (("main", main), ("reads", reads)):
            async with driver_rollbacks(engine) as rolled_back, engine.connect() as conn:
                await conn.execute(select(1))
            rollbacks[name] = len(rolled_back)
    finally:
        await main.dispose()
        await reads.dispose()
    assert rollbacks == {"main": 1, "reads": 0}


async def test_a_read_engine_of_the_callers_is_used_with_a_gate_of_its_own(
    engine: AsyncEngine, namespace: str
) -> None:
    reads = await open_engine(
        namespace=namespace, pool_size=3, max_overflow=0, isolation_level="AUTOCOMMIT"
    )
    app = FastAPI(lifespan=database_lifespan(engine, read_engine=reads))

    @app.get("/checked-out")
    async def checked_out(session: ReadSessionDep) -> list[int]:
        await session.exec(select(func.count()).select_from(Hero))
        return [reads.pool.checkedout(), engine.pool.checkedout()]  # type: ignore[attr-defined]

    try:
        async with api_client(app) as client:
            assert (await client.get("/checked-out")).json() == [1, 0]
            gate = app.state.read_connection_gate
            assert gate is not app.state.connection_gate
            assert gate.places._value == 3  # the read pool's size
        assert reads.pool.checkedout() == 0  # type: ignore[attr-defined]
        async with reads.connect():  # the caller's: still usable, not disposed
            pass
    finally:
        await reads.dispose()


async def test_api_client_gives_sessions_dep_the_tests_session(
    engine: AsyncEngine, session: AsyncSession
) -> None:
    """With a session, ``api_client`` makes every ``SessionsDep`` block use it, unclosed: the
    endpoint's uncommitted write is seen by the test, and rolled back with it."""
    app = FastAPI(lifespan=database_lifespan(engine))

    @app.post("/teams/{name}")
    async def add_team(name: str, sessions: SessionsDep) -> int:
        async with sessions.writing() as writing:
            writing.add(Team(name=name, headquarters="HQ"))
            await writing.flush()
        async with sessions.reading() as reading:
            return len((await reading.exec(select(Team))).all())

    async with api_client(app, session) as client:
        assert (await client.post("/teams/One")).json() == 1
        assert (await client.post("/teams/Two")).json() == 2
    assert len((await session.exec(select(Team))).all()) == 2  # the test's session, still open


async def test_the_pool_serves_a_newcomer_first_and_the_gate_keeps_the_order(
    namespace: str,
) -> None:
    # SQLAlchemy 2.1's AsyncAdaptedQueue.get() takes an available connection without awaiting:
    # one that arrives as a connection comes back takes it before the request woken for it,
    # which goes back to the end of the line. That is the tail the gate removes.
    engine = await open_engine(namespace=namespace, pool_size=1, max_overflow=0)
    try:
        assert await arrival_order(engine) == ["A", "C", "B"]
        gate = ConnectionGate.for_engine(engine)
        assert gate is not None
        assert await arrival_order(engine, gate) == ["A", "B", "C"]
    finally:
        await engine.dispose()


async def test_a_background_job_runs_in_its_own_session_and_its_failure_is_one_line(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    sessions = make_sessionmaker(engine)
    async with sessions() as session:
        session.add_all(
            [Hero(name="Job One", secret_name="x"), Hero(name="Job Two", secret_name="y")]
        )
        await session.commit()

    async def rename(session: AsyncSession, name: str, new_name: str) -> None:
        hero = (await session.exec(select(Hero).where(Hero.name == name))).one()
        hero.name = new_name

    assert await run_in_own_session(sessions, rename, "Job One", "Job Renamed") is True
    with caplog.at_level("ERROR", logger="snippets.api"):
        assert await run_in_own_session(sessions, rename, "Job Two", "Job Renamed") is False
    async with sessions() as session:
        names = set((await session.exec(select(Hero.name))).all())
    assert names == {"Job Renamed", "Job Two"}  # the failed job was rolled back
    assert [record.getMessage() for record in caplog.records] == [
        "background job test_a_background_job_runs_in_its_own_session_and_its_failure_is_one_line"
        ".<locals>.rename failed: IntegrityError"
    ]
    assert "Job Renamed" not in caplog.text  # no bound value in the log


async def test_emptied_tables_start_their_ids_at_1_again(engine: AsyncEngine) -> None:
    sessions = make_sessionmaker(engine)

    async def add_a_team_and_its_hero(name: str) -> tuple[int | None, int | None]:
        async with sessions() as session:
            team = Team(name=name, headquarters="Nowhere")
            session.add(team)
            await session.flush()
            hero = Hero(name=f"{name} Hero", secret_name="x", team_id=team.id)
            session.add(hero)
            await session.commit()
            return team.id, hero.id

    first = await add_a_team_and_its_hero("First")  # fresh tables
    await add_a_team_and_its_hero("Second")
    await empty_tables(engine, metadata)  # the hero refers to the team: emptied first
    again = await add_a_team_and_its_hero("Again")
    async with sessions() as session:
        teams = (await session.exec(select(func.count()).select_from(Team))).one()
    assert first == again == (1, 1)  # not (3, 3): the counters restarted
    assert teams == 1


@pytest.mark.usefixtures("engine")  # it creates the tables
async def test_a_request_past_its_deadline_is_503_and_gives_its_connection_back(
    namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = await open_engine(namespace=namespace, pool_size=1, max_overflow=0)
    app = FastAPI(lifespan=database_lifespan(engine))
    app.add_middleware(RequestDeadline, seconds=0.3)
    never = asyncio.Event()  # what a server that stopped answering gives: nothing

    @app.get("/stuck")
    async def stuck(session: SessionDep) -> int:
        await session.exec(select(func.count()).select_from(Hero))  # holds the only connection
        await never.wait()
        return 0

    @app.get("/count")
    async def count(session: SessionDep) -> int:
        return (await session.exec(select(func.count()).select_from(Hero))).one()

    @app.get("/own-timeout")
    async def own_timeout() -> int:
        raise TimeoutError  # the endpoint's own: not the deadline's to answer

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def lines() -> AsyncIterator[str]:
            for number in range(3):
                await asyncio.sleep(0.2)  # 0.6 s in all: past the deadline, but begun before it
                yield f"{number}\n"

        return StreamingResponse(lines())

    try:
        async with api_client(app) as client:
            with caplog.at_level("ERROR", logger="snippets.api"):
                late = await client.get("/stuck")
            checked_out = engine.pool.checkedout()  # type: ignore[attr-defined]
            after = await client.get("/count")
            streamed = await client.get("/stream")
            with pytest.raises(TimeoutError):
                await client.get("/own-timeout")
    finally:
        await engine.dispose()

    assert (late.status_code, late.headers["retry-after"]) == (503, "1")
    assert late.json() == {"detail": "The request took too long to answer; try again shortly."}
    assert [record.getMessage() for record in caplog.records] == [
        "GET /stuck: 503, no response within 0.3 s"
    ]
    assert checked_out == 0  # the session closed, its connection back in the pool
    assert (after.status_code, after.json()) == (200, 0)  # the pool's one connection serves on
    assert (streamed.status_code, streamed.text) == (200, "0\n1\n2\n")


@pytest.mark.skipif(
    not FACTS[backend_of(database_url())].has_server, reason="SQLite has no connection to lose"
)
@pytest.mark.parametrize(
    ("dependency", "sessionmaker"),
    [(get_session, "sessionmaker"), (get_read_session, "read_sessionmaker")],
)
async def test_a_connection_lost_before_the_session_closes_is_one_log_line(
    engine: AsyncEngine,
    namespace: str,
    dependency: Callable[[Request], AsyncIterator[AsyncSession]],
    sessionmaker: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with LatencyProxy(database_url()) as proxy:
        proxied = await open_engine(proxy.url, namespace=namespace)
        app = FastAPI()
        setattr(app.state, sessionmaker, make_sessionmaker(proxied))
        scope = {"type": "http", "app": app, "method": "GET", "path": "/heroes", "headers": []}
        session_for_the_request = dependency(Request(scope))
        session = await anext(session_for_the_request)
        assert (await session.exec(select(func.count()).select_from(Hero))).one() == 0
        proxy.stop()  # after the endpoint's last statement, before FastAPI closes the session
        with caplog.at_level("ERROR", logger="snippets.api"), pytest.raises(StopAsyncIteration):
            await anext(session_for_the_request)  # what FastAPI does once the response is sent
    messages = [record.getMessage() for record in caplog.records]
    checked_out = proxied.pool.checkedout()  # type: ignore[attr-defined]
    await proxied.dispose()

    assert len(messages) == 1
    assert messages[0].startswith("GET /heroes: the session's connection was lost before it closed")
    assert checked_out == 0  # the lost connection went back to the pool, invalidated


class _DriverError(Exception):
    """A driver's exception as SQLAlchemy wraps it: a SQLSTATE, or PyMySQL's number first."""

    def __init__(self, *args: object, sqlstate: str | None = None) -> None:
        super().__init__(*args)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("error", "connection_failure", "code"),
    [
        (ConnectionRefusedError(111, "refused"), True, "ConnectionRefusedError"),
        (TimeoutError(), True, "TimeoutError"),
        (
            DBAPIError(
                "SELECT 1", {}, _DriverError(sqlstate="08006"), connection_invalidated=False
            ),
            True,
            "DBAPIError (_DriverError, 08006)",
        ),
        (
            DBAPIError("SELECT 1", {}, _DriverError("gone"), connection_invalidated=True),
            True,
            "DBAPIError (_DriverError)",
        ),
        (
            DBAPIError("SELECT 1", {}, _DriverError(2013, "Lost connection"), False),
            True,
            "DBAPIError (_DriverError, 2013)",
        ),
        (
            IntegrityError("INSERT", {"name": "x"}, _DriverError(sqlstate="23505")),
            False,
            "IntegrityError (_DriverError, 23505)",
        ),
        (ValueError("not a database error"), False, "ValueError"),
    ],
)
def test_connection_failures_are_told_apart_and_named_without_their_message(
    error: BaseException, connection_failure: bool, code: str
) -> None:
    assert is_connection_failure(error) is connection_failure
    assert error_code(error) == code
