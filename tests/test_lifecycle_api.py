"""snippets.demo.lifecycle_api under a real uvicorn: when the commit lands, what is serialised."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlmodel import select

from snippets import open_engine
from snippets.backends import FACTS, backend_of
from snippets.config import database_url
from snippets.demo import lifecycle_api
from snippets.demo.models import Hero, Team
from snippets.engine import CONNECT_TIMEOUT
from snippets.lab import forked
from snippets.lab.latency_proxy import LatencyProxy
from snippets.lab.served import ServedApp
from snippets.lab.server import kill_connections, namespace_connection_ids, namespace_connections
from snippets.lab.timing import eventually
from snippets.session import make_sessionmaker

TEAM = {"headquarters": "Lisbon"}
SECRETS = ("Quietly Kept Name", "Silent Team 7")
"""Values sent in failing statements: never in a response body or a log line."""
SQL_WORDS = ("SELECT", "INSERT", "ROLLBACK", "sleep", "SLEEP")
only_with_a_server = pytest.mark.skipif(
    not FACTS[backend_of(database_url())].has_server,
    reason="SQLite has no server to become unreachable",
)


@pytest.fixture
async def fresh_namespace(namespace: str) -> str:
    engine = await open_engine(namespace=namespace, fresh=True)
    await engine.dispose()
    return namespace


def served(namespace: str, workers: int = 1, **environment: str) -> ServedApp:
    return ServedApp(
        "snippets.demo.lifecycle_api:create_app",
        {
            lifecycle_api.NAMESPACE_VARIABLE: namespace,
            # As in notebook 15: two connections, 2 s to wait for one, 1 s per statement, a
            # response begun within 4 s.
            **{"DB_POOL_SIZE": "2", "DB_MAX_OVERFLOW": "0", "DB_POOL_TIMEOUT": "2"},
            lifecycle_api.STATEMENT_TIMEOUT_VARIABLE: "1",
            lifecycle_api.REQUEST_DEADLINE_VARIABLE: "4",
            **environment,
        },
        ready_path="/health",
        workers=workers,
    )


@pytest.fixture
def server(fresh_namespace: str) -> Iterator[ServedApp]:
    with served(fresh_namespace) as server:
        yield server
    assert server.process.poll() is not None


def assert_nothing_told(*texts: str) -> None:
    """No bound value and no SQL in what a client or the log gets."""
    for told in texts:
        assert not [word for word in (*SECRETS, *SQL_WORDS) if word in told], told


def created_then_read(server: ServedApp, path: str, name: str) -> tuple[int, int, int]:
    created = httpx.post(server.base + path, json={**TEAM, "name": name})
    read_back = httpx.get(f"{server.base}/teams/{created.json()['id']}")
    return created.status_code, read_back.status_code, created.json()["id"]


def events_of(server: ServedApp, path: str) -> list[str]:
    answer = httpx.get(server.base + "/events", params={"path": path})
    answer.raise_for_status()
    events: list[str] = answer.json()
    return events


async def test_a_commit_after_the_yield_lands_after_the_response_in_the_request_scope(
    server: ServedApp,
) -> None:
    status, _, team_id = created_then_read(server, "/teams/commit-after-response", "Late")
    found = await eventually(
        lambda: httpx.get(f"{server.base}/teams/{team_id}"),
        lambda answer: answer.status_code != 404,
    )
    assert status == 201
    assert found.status_code == 200, "the commit never landed"
    assert found.json()["name"] == "Late"
    # The order, whatever the timing (a read back at once is a 404 unless the machine is slow)
    assert events_of(server, "/teams/commit-after-response") == [
        "response sent /teams/commit-after-response",
        "committed /teams/commit-after-response",
    ]


def test_function_scope_and_the_guides_session_commit_before_the_response(
    server: ServedApp,
) -> None:
    started = time.monotonic()
    assert created_then_read(server, "/teams/commit-before-response", "Prompt")[:2] == (201, 200)
    assert time.monotonic() - started >= lifecycle_api.WORK_AFTER_YIELD
    assert events_of(server, "/teams/commit-before-response") == [
        "committed /teams/commit-before-response",
        "response sent /teams/commit-before-response",
    ]
    assert created_then_read(server, "/teams", "Guide")[:2] == (201, 200)


async def test_an_expired_object_is_answered_empty_and_a_lazy_relationship_fails(
    server: ServedApp, fresh_namespace: str
) -> None:
    async with httpx.AsyncClient(base_url=server.base) as client:
        expired = await client.post("/teams/expired", json={**TEAM, "name": "Gone"})
        refreshed = await client.post("/teams/refreshed", json={**TEAM, "name": "Kept"})
    assert (expired.status_code, expired.json()) == (201, {})
    assert refreshed.status_code == 201
    assert refreshed.json()["name"] == "Kept"

    team_id = refreshed.json()["id"]
    engine = await open_engine(namespace=fresh_namespace)
    try:
        async with make_sessionmaker(engine)() as session:
            session.add(Hero(name="Ada", secret_name="A. L.", team_id=team_id))
            await session.commit()
    finally:
        await engine.dispose()
    # A new client per request: after a 500 uvicorn closes the keep-alive connection.
    async with httpx.AsyncClient(base_url=server.base) as client:
        lazy = await client.get(f"/teams/{team_id}/lazy")
    assert lazy.status_code == 500
    assert "Error extracting attribute" in server.wait_for_log("MissingGreenlet")
    async with httpx.AsyncClient(base_url=server.base) as client:
        heroes = await client.get(f"/teams/{team_id}/heroes")
        missing = await client.get(f"/teams/{team_id + 1000}/heroes")
    assert heroes.status_code == 200
    assert [hero["name"] for hero in heroes.json()["heroes"]] == ["Ada"]
    assert missing.status_code == 404
    async with httpx.AsyncClient(base_url=server.base) as client:
        for how in ("refreshed", "awaited", "columns"):
            fixed = await client.get(f"/teams/{team_id}/heroes/{how}")
            assert (fixed.status_code, fixed.json()) == (200, heroes.json()), how


def test_a_background_job_given_the_requests_objects_loses_its_write_in_function_scope(
    server: ServedApp,
) -> None:
    ids = [created_then_read(server, "/teams", name)[2] for name in ("Detached", "Attached")]
    for team_id, path in zip(ids, ("function-scope", "request-scope"), strict=True):
        answer = httpx.post(
            f"{server.base}/teams/{team_id}/rename-later/{path}", json={"name": f"{path} II"}
        )
        assert answer.status_code == 202
        server.wait_for_log(f"rename of team {team_id} done")
    names = [httpx.get(f"{server.base}/teams/{team_id}").json()["name"] for team_id in ids]
    assert names == ["Detached", "request-scope II"]


def rename_later(server: ServedApp, team_id: int, name: str) -> int:
    return httpx.post(
        f"{server.base}/teams/{team_id}/rename-later", json={"name": name}
    ).status_code


def team_name(server: ServedApp, team_id: int) -> str:
    return str(httpx.get(f"{server.base}/teams/{team_id}").json()["name"])


async def test_the_guides_background_job_writes_and_logs_its_failure_without_values(
    server: ServedApp,
) -> None:
    first, second = (created_then_read(server, "/teams", name)[2] for name in ("One", "Two"))
    assert rename_later(server, first, "Uno") == 202
    name = await eventually(lambda: team_name(server, first), lambda now: now == "Uno")
    assert name == "Uno", "the background job never wrote"
    assert rename_later(server, second, "Uno") == 202
    logged = server.wait_for_log("background job rename_team failed")
    assert logged.endswith("IntegrityError")
    assert "Uno" not in server.log()
    assert team_name(server, second) == "Two"


def checked_out(server: ServedApp) -> int:
    return int(httpx.get(f"{server.base}/pool").json()["checked_out"])


async def settles_to(server: ServedApp, count: int) -> int:
    return await eventually(lambda: checked_out(server), lambda now: now == count)


async def test_a_stream_holds_a_connection_until_it_ends_or_its_client_hangs_up(
    server: ServedApp,
) -> None:
    for number in range(30):
        created_then_read(server, "/teams", f"Streamed {number}")
    # Read to its end (0.15 s: too short to ask the pool in between on a busy machine).
    async with (
        httpx.AsyncClient(base_url=server.base) as client,
        client.stream("GET", "/teams.jsonl", params={"pace": 0.005}) as response,
    ):
        read = [line async for line in response.aiter_lines()]
    assert len(read) == 30
    assert await settles_to(server, 0) == 0
    # Hung up on after one line: the connection is held while the stream lasts, then given back.
    async with (
        httpx.AsyncClient(base_url=server.base) as client,
        client.stream("GET", "/teams.jsonl", params={"pace": 0.5}) as response,
    ):
        lines = response.aiter_lines()
        await anext(lines)
        assert checked_out(server) == 1
    assert await settles_to(server, 0) == 0  # 15 s of stream left when the client hung up
    async with (
        httpx.AsyncClient(base_url=server.base) as client,
        client.stream("GET", "/teams.events", params={"pace": 0.5}) as response,
    ):
        events = response.aiter_lines()
        assert (await anext(events)).startswith('data: {"name":"Streamed 0"')
        assert checked_out(server) == 1
    assert response.headers["content-type"].startswith("text/event-stream")
    assert await settles_to(server, 0) == 0


async def test_two_slow_streams_exhaust_a_pool_of_two_and_bounded_pages_do_not(
    server: ServedApp,
) -> None:
    team_id = created_then_read(server, "/teams", "Waiting")[2]
    for number in range(9):  # ten rows, 0.5 s apart: each stream outlasts the 2 s wait
        created_then_read(server, "/teams", f"Slow {number}")
    for path, expected_status, expected_in_use in (
        ("/teams.jsonl", 503, 2),
        ("/teams-page.jsonl", 200, 0),
    ):
        async with (
            httpx.AsyncClient(base_url=server.base) as slow,
            httpx.AsyncClient(base_url=server.base) as other,
            slow.stream("GET", path, params={"pace": 0.5}) as first,
        ):
            first_lines = first.aiter_lines()  # kept: a dropped iterator closes the response
            # The first stream reads before the second starts: on SQLite whichever begins
            # first holds the write lock (BEGIN IMMEDIATE) and the other waits for its end.
            await anext(first_lines)
            async with slow.stream("GET", path, params={"pace": 0.5}):
                in_use = checked_out(server)
                third = await other.get(f"/teams/{team_id}", timeout=10)
        assert third.status_code == expected_status, path
        if expected_status == 503:
            assert third.headers["retry-after"] == "1"
        assert in_use <= expected_in_use, path
        assert await settles_to(server, 0) == 0


def test_conflicts_are_409_a_statement_past_its_limit_503_and_nothing_is_told(
    server: ServedApp,
) -> None:
    team = {**TEAM, "name": SECRETS[1]}
    assert httpx.post(server.base + "/teams", json=team).status_code == 201
    duplicate = httpx.post(server.base + "/teams", json=team)
    hero = {"name": "Nobody", "secret_name": SECRETS[0], "team_id": 987_654}
    without_team = httpx.post(server.base + "/heroes", json=hero)
    started = time.monotonic()
    slow = httpx.get(server.base + "/slow", params={"seconds": 5}, timeout=10)
    waited = time.monotonic() - started

    assert (duplicate.status_code, without_team.status_code) == (409, 409)
    assert (slow.status_code, slow.headers["retry-after"]) == (503, "1")
    assert 1 <= waited < 4  # stopped by the 1 s limit, well before the statement's 5 s
    for path, status in (("/teams", 409), ("/heroes", 409), ("/slow", 503)):
        assert server.wait_for_log(f"{path}: {status}, ").startswith(("POST", "GET"))
    assert_nothing_told(duplicate.text, without_team.text, slow.text, server.log())
    assert httpx.get(server.base + "/ready").json() == {"database": "ok"}


@only_with_a_server
def test_an_unreachable_database_is_503_at_once_and_not_ready(fresh_namespace: str) -> None:
    with (
        LatencyProxy(database_url()) as proxy,
        served(
            fresh_namespace, DATABASE_URL=proxy.url.render_as_string(hide_password=False)
        ) as server,
    ):
        team = httpx.post(server.base + "/teams", json={**TEAM, "name": "Reachable"}).json()
        proxy.freeze()  # connections accepted, nothing answered
        started = time.monotonic()
        stuck = httpx.get(f"{server.base}/teams/{team['id']}", timeout=20)
        stuck_after = time.monotonic() - started
        started = time.monotonic()
        frozen = httpx.get(server.base + "/ready", timeout=10)
        frozen_after = time.monotonic() - started
        proxy.stop()  # connections closed, new ones refused
        started = time.monotonic()
        reads = [httpx.get(f"{server.base}/teams/{team['id']}") for _ in range(3)]
        stopped_after = time.monotonic() - started
        stopped = httpx.get(server.base + "/ready")
        log = server.log()

    # A read sent to the silent server waits for it until the request deadline (4 s), then its
    # connection is dropped (asyncpg waits up to 2 s to close it) and the client gets a 503.
    assert (stuck.status_code, stuck.headers["retry-after"]) == (503, "1")
    assert 3.5 < stuck_after < 4 + 2 + 2
    assert f"GET /teams/{team['id']}: 503, no response within 4 s" in log
    assert frozen.status_code == 503
    assert frozen.headers["retry-after"] == "1"
    assert 1.5 < frozen_after < 5  # the readiness timeout (2 s): the silent server never answers
    assert [(read.status_code, read.headers["retry-after"]) for read in reads] == [(503, "1")] * 3
    assert stopped_after < 3  # refused at once: no wait for a timeout
    assert stopped.status_code == 503
    # The three, and the read stopped at the deadline.
    assert log.count(f"GET /teams/{team['id']}: 503, ") == 4
    assert "Traceback" not in log, log
    assert_nothing_told(*(read.text for read in reads), log)


async def test_each_worker_opens_its_own_engine_and_sigterm_lets_requests_in_flight_finish(
    fresh_namespace: str,
) -> None:
    # The namespace is empty: both workers' lifespans create its tables, taking turns.
    admin = await open_engine()  # not the namespace's: its own connection is not counted
    try:
        no_limit = {
            lifecycle_api.STATEMENT_TIMEOUT_VARIABLE: "",
            lifecycle_api.REQUEST_DEADLINE_VARIABLE: "",  # SQLite's 1 s is CPU: slower when busy
            "DB_POOL_SIZE": "5",
        }
        with served(fresh_namespace, workers=2, **no_limit) as server:
            # Each worker's lifespan opened an engine and connected once (open_engine's check).
            opened = await eventually(
                lambda: namespace_connections(admin, fresh_namespace),
                lambda count: count is None or count >= 2,
            )
            pids: set[int] = set()
            await eventually(
                lambda: pids.add(httpx.get(server.base + "/process").json()["pid"]),
                lambda _: len(pids) == 2,
            )
            # Generous bounds: on SQLite the slow statement is CPU, slower on a busy machine
            async with httpx.AsyncClient(base_url=server.base, timeout=90) as client:
                in_flight = [
                    asyncio.ensure_future(client.get("/slow", params={"seconds": 1}))
                    for _ in range(4)
                ]
                await asyncio.sleep(0.5)  # sent, and being served (for 1 s at least)
                server.process.send_signal(signal.SIGTERM)
                answers = await asyncio.gather(*in_flight)
            exit_code = server.process.wait(timeout=90)
        left = await namespace_connections(admin, fresh_namespace)
    finally:
        await admin.dispose()

    assert len(pids) == 2
    assert [answer.status_code for answer in answers] == [200] * 4  # none lost
    assert exit_code == 0
    if FACTS[backend_of(database_url())].has_server:
        assert opened == 2
        assert left == 0  # both engines disposed at shutdown
    else:
        assert opened is left is None  # SQLite: no server to ask


def test_a_connection_opened_before_a_fork_fails_in_the_child_unless_disposed() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "snippets.lab.forked"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    outcomes = json.loads(shown.stdout)
    assert outcomes["naive"] in {f"RuntimeError ({forked.DIFFERENT_LOOP})", "no answer"}
    assert outcomes["disposed first"] == "ok"


FAULT_LOAD = 1000
"""Requests in the fault test: half writes (a new team each), half reads of a written one."""


@only_with_a_server
async def test_connections_ended_under_load_lose_no_acknowledged_write_and_fail_as_503(
    fresh_namespace: str,
) -> None:
    admin = await open_engine()  # not the namespace's: only the app's connections are ended
    ended: list[int] = []
    try:
        with served(fresh_namespace, DB_POOL_SIZE="4") as server:
            async with httpx.AsyncClient(base_url=server.base, timeout=30) as client:
                first = await client.post("/teams", json={**TEAM, "name": "Fault 0"})

                async def request(number: int) -> tuple[httpx.Response, float]:
                    started = time.monotonic()
                    if number % 2:
                        answer = await client.get(f"/teams/{first.json()['id']}")
                    else:
                        answer = await client.post("/teams", json={**TEAM, "name": f"F{number}"})
                    return answer, time.monotonic() - started

                async def end_the_apps_connections() -> None:
                    for _ in range(5):  # five times during the load, 0.2 s apart
                        await asyncio.sleep(0.2)
                        ids = await namespace_connection_ids(admin, fresh_namespace) or []
                        ended.append(await kill_connections(admin, ids))

                places = asyncio.Semaphore(16)  # a bounded load: 16 requests at a time

                async def in_turn(number: int) -> tuple[httpx.Response, float]:
                    async with places:
                        return await request(number)

                killer = asyncio.ensure_future(end_the_apps_connections())
                answers = await asyncio.gather(*(in_turn(n) for n in range(FAULT_LOAD)))
                await killer
            log = server.log()
        engine = await open_engine(namespace=fresh_namespace)
        async with make_sessionmaker(engine)() as session:
            stored = set((await session.exec(select(Team.name))).all())
        await engine.dispose()
    finally:
        await admin.dispose()

    acknowledged = {
        f"F{number}" for number, (answer, _) in enumerate(answers) if answer.status_code == 201
    }
    failures = [answer for answer, _ in answers if answer.status_code >= 400]
    slowest = max(seconds for _, seconds in answers)
    print(
        f"{FAULT_LOAD} requests, {sum(ended)} connections ended: "
        f"{len(acknowledged)} writes acknowledged, {len(failures)} failed "
        f"({sorted({answer.status_code for answer in failures})}), slowest {slowest:.2f} s"
    )
    assert sum(ended) > 0  # the load met ended connections
    assert acknowledged <= stored  # no acknowledged write lost
    assert all(
        (answer.status_code, answer.headers.get("retry-after")) == (503, "1") for answer in failures
    )
    assert slowest < 1 + CONNECT_TIMEOUT + 2  # statement limit + connect timeout + the pool wait
    assert "Traceback" not in log, log
