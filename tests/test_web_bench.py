"""The four apps of ``make bench-web``, each answering TechEmpower's database tests by its rules,
on the configured backend (in-process: uvicorn and wrk are the benchmark's, not the tests')."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from snippets import database_url, open_engine
from snippets.lab import web_bench
from snippets.lab.observe import recorded_statements
from snippets.lab.web_bench import FORTUNES, WORLDS, World, query_count


@pytest.fixture
async def bench_engine(namespace: str) -> AsyncIterator[AsyncEngine]:
    engine = await open_engine(namespace=namespace, fresh=True, pool_size=10, max_overflow=0)
    await web_bench.prepare(engine)
    await web_bench.prepare(engine)  # idempotent: a second call adds nothing
    yield engine
    await engine.dispose()


def app_factories(engine: AsyncEngine, namespace: str) -> dict[str, Callable[[], FastAPI]]:
    configured = database_url()  # the raw and sync apps apply the namespace themselves
    return {
        "raw": lambda: web_bench.create_raw_app(configured, namespace),
        "guide": lambda: web_bench.create_guide_app(engine),
        "tuned": lambda: web_bench.create_tuned_app(engine, namespace),
        "sync": lambda: web_bench.create_sync_app(web_bench.sync_engine(configured, namespace)),
    }


@pytest.fixture(params=web_bench.VARIANTS)
async def client(
    request: pytest.FixtureRequest, bench_engine: AsyncEngine, namespace: str
) -> AsyncIterator[httpx.AsyncClient]:
    app = app_factories(bench_engine, namespace)[request.param]()
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        yield client


def is_world(item: object) -> bool:
    return (
        isinstance(item, dict)
        and set(item) == {"id", "randomNumber"}
        and 1 <= item["id"] <= WORLDS
        and 1 <= item["randomNumber"] <= WORLDS
    )


def test_query_count_follows_the_rules() -> None:
    assert [query_count(raw) for raw in ("20", "0", "-5", "501", "foo", "", "2.5")] == [
        20,
        1,
        1,
        500,
        1,
        1,
        1,
    ]


async def test_db_returns_one_world(client: httpx.AsyncClient) -> None:
    response = await client.get("/db")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert is_world(response.json()), response.json()


@pytest.mark.parametrize(("raw", "count"), [("20", 20), ("foo", 1), ("0", 1), ("501", 500)])
async def test_queries_returns_the_clamped_count(
    client: httpx.AsyncClient, raw: str, count: int
) -> None:
    response = await client.get("/queries", params={"queries": raw})
    assert response.status_code == 200
    worlds = response.json()
    assert len(worlds) == count
    assert all(is_world(world) for world in worlds)


async def test_fortunes_are_sorted_escaped_and_include_the_added_one(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/fortunes")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    rows = re.findall(r"<tr><td>(\d+)</td><td>(.*?)</td></tr>", response.text)
    assert len(rows) == len(FORTUNES) + 1
    messages = [message for _, message in rows]
    assert "<script>" not in response.text
    assert "&lt;script&gt;" in response.text
    assert ("0", web_bench.ADDED_FORTUNE) in rows
    assert "フレームワークのベンチマーク" in messages
    unescaped = [
        m.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"') for m in messages
    ]
    assert unescaped == sorted(unescaped)


async def test_updates_write_what_they_return(
    client: httpx.AsyncClient, bench_engine: AsyncEngine
) -> None:
    response = await client.get("/updates", params={"queries": "7"})
    assert response.status_code == 200
    worlds = response.json()
    assert len(worlds) == 7
    assert all(is_world(world) for world in worlds)
    returned = {world["id"]: world["randomNumber"] for world in worlds}  # the last one wins
    async with bench_engine.connect() as conn:
        query = select(World.id, World.randomnumber).where(World.id.in_(returned))  # type: ignore[call-overload,attr-defined]
        stored = dict((await conn.execute(query)).all())
    assert stored == returned


async def test_the_guide_app_sends_one_select_per_world(bench_engine: AsyncEngine) -> None:
    """The statements a request sends, counted: what round trips the guide's way costs. (The
    recorder sees no BEGIN on any backend; ReadSessionDep's AUTOCOMMIT sends none at all.)"""
    app = web_bench.create_guide_app(bench_engine)
    transport = httpx.ASGITransport(app=app)
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as c,
    ):
        with recorded_statements(bench_engine) as single:
            assert (await c.get("/db")).status_code == 200
        with recorded_statements(bench_engine) as many:
            read = (await c.get("/queries", params={"queries": 5})).json()
        with recorded_statements(bench_engine) as updated:
            changed = (await c.get("/updates", params={"queries": 5})).json()
    # One SELECT per world asked for: a statement is sent each time it is executed (a world
    # drawn twice is the same object from the identity map, read again).
    assert [s.split()[0] for s in single] == ["SELECT"]
    assert [s.split()[0] for s in many] == ["SELECT"] * len(read) == ["SELECT"] * 5
    # The reads, then one UPDATE for all (an executemany), not read/write alternating.
    reads = ["SELECT"] * len(changed)
    assert [s.split()[0] for s in updated] == [*reads, "UPDATE"]


def test_profile_time_is_grouped_by_package() -> None:
    assert web_bench.package_of("/x/.venv/lib/python3.11/site-packages/sqlalchemy/orm/a.py") == (
        "sqlalchemy"
    )
    assert web_bench.package_of("/x/lib/python3.11/asyncio/base_events.py") == "asyncio"
    assert web_bench.package_of("/x/snippets/api.py") == "snippets"
    assert web_bench.package_of("~", "<method 'poll' of 'select.epoll' objects>") == (
        "waiting for I/O"
    )
    assert web_bench.package_of("~", "<built-in method builtins.len>") == "built-in (C)"


async def test_profile_shares_add_up(bench_engine: AsyncEngine) -> None:
    app = web_bench.create_guide_app(bench_engine)
    transport = httpx.ASGITransport(app=app)
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as c,
    ):
        shares = await web_bench.profile_shares(c, "/db", requests=20)
    assert 99 < sum(shares.values()) < 101
    assert shares["sqlalchemy"] > 0
    assert list(shares.values()) == sorted(shares.values(), reverse=True)


async def test_cpu_per_request_answers_every_request_or_says_which_failed(
    bench_engine: AsyncEngine,
) -> None:
    before = web_bench.create_yield_dependency_app(bench_engine)
    async with LifespanManager(before) as manager:
        with recorded_statements(bench_engine) as statements:
            seconds = await web_bench.cpu_per_request(manager.app, "/db", requests=40)
        with pytest.raises(RuntimeError, match=r"/nowhere: not every answer was 200: \[404\]"):
            await web_bench.cpu_per_request(manager.app, "/nowhere", requests=3)
    assert 0 < seconds < 1
    assert len(statements) == 40  # one SELECT a request: each was served


async def test_burst_writes_every_request_before_reading_any() -> None:
    """The server answers only once all requests are in: a client that waited for each answer
    before sending the next request would never finish. The last connection is closed without an
    answer, which ``burst`` reports as 0."""
    clients = 6
    arrived: list[asyncio.StreamWriter] = []
    everyone_in = asyncio.Event()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        arrived.append(writer)
        if len(arrived) == clients:
            everyone_in.set()
        await everyone_in.wait()
        if writer is not arrived[-1]:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        statuses = await web_bench.burst(f"http://127.0.0.1:{port}/db", clients=clients)
    assert sorted(statuses) == [0] + [200] * (clients - 1)


def test_a_target_that_could_not_be_measured_is_missed() -> None:
    """A sync app that served nothing gives no ratio: the target says MISSED, not met."""
    from tools.bench_web import Point, add_ratios, check_targets

    def point(variant: str, rps: float, latency: float = 0.0) -> Point:
        return Point(variant, "db", 64, latency, 3.0, rps, [rps], 10.0, 20.0, 0)

    points = [point("raw", 1000), point("guide", 500), point("tuned", 500)]
    points += [point("guide", 300, 2.0), point("tuned", 900, 2.0), point("sync", 0, 2.0)]
    add_ratios(points)
    met = {name: met for name, _, _, met in check_targets(points, 2.0)}
    assert met["guide db c=64 / raw"]  # 0.5 >= 0.4
    assert not met["tuned db c=64 / raw"]  # 0.5 < 0.6
    assert met["guide db c=64 p99 / raw p99"]
    assert not met["guide db c=64, 2 ms away / sync"]
    assert not met["tuned db c=64, 2 ms away / sync"]


@pytest.mark.parametrize(("setting", "frozen"), [("tuned", True), ("default", False)])
def test_the_served_app_tunes_its_garbage_collector_unless_told(setting: str, frozen: bool) -> None:
    """In a process of its own: the tuning is process-wide, and this one runs other tests."""
    probe = (
        "import gc; from snippets.lab.web_bench import served_app; app = served_app(); "
        "print(type(app).__name__, gc.get_freeze_count() > 0, gc.get_threshold()[0])"
    )
    variables = {web_bench.VARIANT_VARIABLE: "guide", web_bench.GC_VARIABLE: setting}
    printed = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, **variables},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    assert printed == ["FastAPI", str(frozen), "10000" if frozen else "700"]


def test_no_ratio_to_a_sync_app_that_stopped_answering() -> None:
    """A deadlocked sync app answers fewer requests than it has connections: no ratio."""
    from tools.bench_web import Point, add_ratios

    def point(variant: str, runs: list[float]) -> Point:
        return Point(variant, "fortunes", 64, 0.0, 10.0, max(runs), runs, 10.0, 20.0, 0)

    points = [point("raw", [4000, 3900, 4100]), point("guide", [1800, 1700, 1750])]
    for stuck in ([2.0, 0.0, 0.0], [5.0]):  # 10 s runs: 20 requests, then none; 50 in all
        add_ratios([*points, point("sync", stuck)])
        assert points[1].ratio_to_raw == 0.439
        assert points[1].ratio_to_sync is None
    add_ratios([*points, point("sync", [900, 850, 880])])
    assert points[1].ratio_to_sync == 2.0


def test_the_figures_the_targets_read_run_longer() -> None:
    from argparse import Namespace

    from tools.bench_web import run_seconds

    args = Namespace(seconds=3.0, target_seconds=10.0)
    assert run_seconds("db", 64, args) == run_seconds("fortunes", 64, args) == 10.0
    assert run_seconds("db", 16, args) == run_seconds("queries", 64, args) == 3.0
    assert run_seconds("db", 64, Namespace(seconds=20.0, target_seconds=10.0)) == 20.0


@pytest.mark.parametrize(
    ("loop", "batches"),
    [("uvloop", [1] * 8), ("asyncio", [8])],
)
async def test_a_busy_loop_accepts_waiting_connections_one_or_all_at_a_time(
    bench_engine: AsyncEngine, namespace: str, loop: str, batches: list[int]
) -> None:
    """libuv (uvloop) accepts one connection per poll; asyncio's loop every one waiting."""
    from snippets.lab.accepts import accept_batches

    url = database_url().render_as_string(hide_password=False)
    tracing = {web_bench.TRACE_ACCEPTS_VARIABLE: "1"}
    with web_bench.Served("guide", url, namespace, loop=loop, **tracing) as served:
        assert await accept_batches(served.base, clients=8, busy_ms=400) == batches


def test_the_target_figures_are_measured_in_turns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Raw, guide and tuned served at once and loaded round after round, not one after the
    other: what the machine does meanwhile falls on each in every round."""
    from argparse import Namespace

    import tools.bench_web as bench

    loads: list[tuple[str, float]] = []

    class Serving:  # Served's interface, without a server
        def __init__(self, variant: str, url: str, namespace: str, **settings: str) -> None:
            self.base = f"http://{variant}"

        def __enter__(self) -> Serving:
            return self

        def __exit__(self, *exc_info: object) -> None:
            return None

    def wrk(url: str, concurrency: int, seconds: float) -> tuple[float, float, float, int]:
        loads.append((url.removeprefix("http://"), seconds))
        return (1000.0 if url.startswith("http://raw") else 500.0) + len(loads), 1.0, 2.0, 0

    monkeypatch.setattr(bench, "Served", Serving)
    monkeypatch.setattr(bench, "run_wrk", wrk)
    args = Namespace(
        variants=["raw", "guide", "tuned", "sync"],
        tests=["db", "queries"],
        seconds=3.0,
        target_seconds=10.0,
        repeats=2,
        gc="tuned",
    )
    points = bench.measure_side_by_side("url", "namespace", args)
    warming = [("raw/db", 1), ("guide/db", 1), ("tuned/db", 1)]
    assert loads == warming + [("raw/db", 10.0), ("guide/db", 10.0), ("tuned/db", 10.0)] * 2
    runs = [(p.variant, p.test, p.concurrency, p.rps_runs) for p in points]
    assert runs == [
        ("raw", "db", 64, [1004.0, 1007.0]),
        ("guide", "db", 64, [505.0, 508.0]),
        ("tuned", "db", 64, [506.0, 509.0]),
    ]
    assert bench.is_target_figure("fortunes", 64, 0.0)
    assert not bench.is_target_figure("db", 64, 2.0)
    assert not bench.is_target_figure("db", 16, 0.0)
