"""Pool settings from the environment, the pool observer, exhaustion, dead connections, load."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import exc, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import NullPool

from snippets import DatabaseConfigError, database_url, make_engine, open_engine
from snippets.backends import FACTS, backend_of
from snippets.lab.pool import (
    SweepPoint,
    fill_pool,
    head_to_head,
    observe_pool,
    run_load,
    sweep,
)
from snippets.lab.server import kill_connections
from snippets.pool import PoolConfigError, PoolSettings, variable_name

SERVER = FACTS[backend_of(database_url())].has_server
only_with_a_server = pytest.mark.skipif(
    not SERVER, reason="needs server connections to kill (PostgreSQL, MySQL/MariaDB)"
)


def test_nothing_set_means_sqlalchemy_defaults() -> None:
    settings = PoolSettings.from_env({})
    assert settings.engine_kwargs(only_set=True) == {}
    assert settings.engine_kwargs() == {
        "pool_size": 5,
        "max_overflow": 10,
        "pool_timeout": 30.0,
        "pool_recycle": -1,
        "pool_pre_ping": False,
        "pool_use_lifo": False,
    }


def test_settings_are_read_and_converted() -> None:
    environ = {
        "DB_POOL_SIZE": "8",
        "DB_MAX_OVERFLOW": "0",
        "DB_POOL_TIMEOUT": "2.5",
        "DB_POOL_RECYCLE": "1800",
        "DB_POOL_PRE_PING": "true",
        "DB_POOL_USE_LIFO": "0",
        "DB_UNRELATED": "ignored",
        "DB_POOL_SIZE_TYPO": "ignored",
    }
    assert PoolSettings.from_env(environ).engine_kwargs(only_set=True) == {
        "pool_size": 8,
        "max_overflow": 0,
        "pool_timeout": 2.5,
        "pool_recycle": 1800,
        "pool_pre_ping": True,
        "pool_use_lifo": False,
    }
    assert PoolSettings.from_env({"DB_POOL_SIZE": "  "}) == PoolSettings()  # blank means unset


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("DB_POOL_SIZE", "ten", "valid integer"),
        ("DB_POOL_SIZE", "0", "greater than or equal to 1"),
        ("DB_MAX_OVERFLOW", "-1", "greater than or equal to 0"),
        ("DB_POOL_TIMEOUT", "0", "greater than 0"),
        ("DB_POOL_RECYCLE", "-2", "greater than or equal to -1"),
        ("DB_POOL_PRE_PING", "maybe", "valid boolean"),
    ],
)
def test_a_bad_value_names_the_variable(variable: str, value: str, reason: str) -> None:
    with pytest.raises(PoolConfigError) as caught:
        PoolSettings.from_env({variable: value})
    message = str(caught.value)
    assert message.startswith(f"{variable}={value!r} is not valid: ")
    assert reason in message
    assert isinstance(caught.value, DatabaseConfigError)  # the preflight checks report it


def test_variable_names() -> None:
    assert [variable_name(name) for name in PoolSettings.model_fields] == [
        "DB_POOL_SIZE",
        "DB_MAX_OVERFLOW",
        "DB_POOL_TIMEOUT",
        "DB_POOL_RECYCLE",
        "DB_POOL_PRE_PING",
        "DB_POOL_USE_LIFO",
    ]


async def test_make_engine_applies_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_POOL_SIZE", "3")
    monkeypatch.setenv("DB_POOL_TIMEOUT", "1.5")
    from_environment = make_engine()
    given_in_code = make_engine(pool_size=7)
    without_a_queue = make_engine(poolclass=NullPool)
    try:
        assert from_environment.pool.size() == 3  # type: ignore[attr-defined]
        assert from_environment.pool.timeout() == 1.5  # type: ignore[attr-defined]
        assert given_in_code.pool.size() == 7  # type: ignore[attr-defined]
        assert isinstance(without_a_queue.pool, NullPool)
    finally:
        for engine in (from_environment, given_in_code, without_a_queue):
            await engine.dispose()
    monkeypatch.setenv("DB_MAX_OVERFLOW", "lots")
    with pytest.raises(PoolConfigError, match="DB_MAX_OVERFLOW='lots'"):
        make_engine()


async def test_observer_counts_checkouts_and_the_peak(engine: AsyncEngine) -> None:
    async def hold(seconds: float) -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            await asyncio.sleep(seconds)

    with observe_pool(engine) as counts:
        await asyncio.gather(*(hold(0.05) for _ in range(3)))
        await hold(0)
    await hold(0)  # after the block: not counted
    assert (counts.checkouts, counts.checkins, counts.checked_out) == (4, 4, 0)
    assert counts.peak_checked_out == 3
    assert counts.connects == 2  # the fixture's ping left one connection in the pool
    assert counts.invalidations == 0


@pytest.fixture
async def tiny_pool(namespace: str) -> AsyncIterator[AsyncEngine]:
    engine = await open_engine(namespace=namespace, pool_size=1, max_overflow=0, pool_timeout=0.2)
    yield engine
    await engine.dispose()


async def test_exhausted_pool_raises_timeout_error_after_pool_timeout(
    tiny_pool: AsyncEngine,
) -> None:
    async with tiny_pool.connect():
        started = time.perf_counter()
        with pytest.raises(exc.TimeoutError, match="QueuePool limit of size 1 overflow 0"):
            async with tiny_pool.connect():
                pass
        waited = time.perf_counter() - started
    assert 0.2 <= waited < 5  # it waited for pool_timeout, then gave up; it did not hang
    async with tiny_pool.connect() as conn:  # the connection is free again
        assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1


async def sleep_briefly(conn: AsyncConnection) -> None:
    await conn.execute(text("SELECT 1"))
    await asyncio.sleep(0.3)


async def test_run_load_collects_pool_timeouts(tiny_pool: AsyncEngine) -> None:
    result = await run_load(tiny_pool, sleep_briefly, concurrency=3, requests=3)
    assert len(result.latencies) == 1
    assert len(result.errors) == 2
    assert all(isinstance(error, exc.TimeoutError) for error in result.errors)


async def select_one(conn: AsyncConnection) -> None:
    assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1


async def test_run_load_runs_every_request_at_the_given_concurrency(engine: AsyncEngine) -> None:
    with observe_pool(engine) as counts:
        result = await run_load(engine, select_one, concurrency=4, requests=40)
    assert (len(result.latencies), result.errors) == (40, [])
    assert counts.checkouts == 40
    assert counts.peak_checked_out <= 4
    assert 0 < result.percentile(50) <= result.percentile(95) <= max(result.latencies)
    assert result.throughput > 0
    with pytest.raises(ValueError, match="at least 1"):
        await run_load(engine, select_one, concurrency=0, requests=1)


async def test_recycle_replaces_connections_older_than_its_age(namespace: str) -> None:
    engine = await open_engine(namespace=namespace, pool_recycle=1)
    try:
        with observe_pool(engine) as counts:
            await select_one_on(engine)  # the ping's connection, still young: reused
            await asyncio.sleep(1.1)
            await select_one_on(engine)  # now older than pool_recycle: replaced
        assert counts.connects == 1
        assert counts.checkouts == 2
    finally:
        await engine.dispose()


async def select_one_on(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await select_one(conn)


async def failures_after_server_restart(namespace: str, *, pre_ping: bool) -> tuple[int, int]:
    """Fill a pool of 3, kill its server processes, then send 5 requests one after another."""
    engine = await open_engine(namespace=namespace, pool_size=3, pool_pre_ping=pre_ping)
    admin = await open_engine()
    try:
        assert await kill_connections(admin, await fill_pool(engine, 3)) == 3
        errors: list[exc.DBAPIError] = []
        with observe_pool(engine) as counts:
            for _ in range(5):
                try:
                    await select_one_on(engine)
                except exc.DBAPIError as error:
                    errors.append(error)
        # A failure must be the disconnect we caused, recognised as such by SQLAlchemy.
        assert all(error.connection_invalidated for error in errors)
        return len(errors), counts.invalidations
    finally:
        await admin.dispose()
        await engine.dispose()


@only_with_a_server
async def test_dead_connections_fail_a_request_without_pre_ping(namespace: str) -> None:
    failures, invalidations = await failures_after_server_restart(namespace, pre_ping=False)
    # One request fails; SQLAlchemy then invalidates the whole pool, so the rest reconnect.
    assert failures == 1
    assert invalidations >= 1


@only_with_a_server
async def test_pre_ping_replaces_dead_connections_before_use(namespace: str) -> None:
    failures, invalidations = await failures_after_server_restart(namespace, pre_ping=True)
    assert failures == 0
    assert invalidations >= 1


async def test_sweep_measures_every_point_within_the_pool_size(namespace: str) -> None:
    size_under_test = 0
    inside_work = 0
    peak_inside_work: dict[int, int] = {}

    async def work(conn: AsyncConnection) -> None:
        nonlocal inside_work
        inside_work += 1
        peak = max(peak_inside_work.get(size_under_test, 0), inside_work)
        peak_inside_work[size_under_test] = peak
        await conn.execute(text("SELECT 1"))
        await asyncio.sleep(0.01)
        inside_work -= 1

    async def open_sized(size: int) -> AsyncEngine:
        nonlocal size_under_test
        size_under_test = size
        return await open_engine(namespace=namespace, pool_size=size, max_overflow=0)

    seen: list[SweepPoint] = []
    points = await sweep(
        "probe", open_sized, work, pool_sizes=[1, 3], concurrencies=[2, 6], requests=12,
        progress=seen.append,
    )  # fmt: skip
    assert [(p.pool_size, p.concurrency) for p in points] == [(1, 2), (1, 6), (3, 2), (3, 6)]
    assert seen == points
    assert all(p.errors == 0 and p.requests == 12 and p.throughput > 0 for p in points)
    assert all(0 < p.p50_ms <= p.p95_ms for p in points)
    # The pool is the limit: never more requests inside work than connections.
    assert peak_inside_work == {1: 1, 3: 3}


async def test_head_to_head_takes_turns_and_keeps_each_sizes_best_round(namespace: str) -> None:
    calls: list[int] = []  # the pool size of the engine each request ran on, in order
    sizes_opened: list[int] = []

    async def open_sized(size: int) -> AsyncEngine:
        sizes_opened.append(size)
        return await open_engine(namespace=namespace, pool_size=size, max_overflow=0)

    async def work(conn: AsyncConnection) -> None:
        calls.append(conn.engine.pool.size())  # type: ignore[attr-defined]
        await conn.execute(text("SELECT 1"))

    best = await head_to_head(
        open_sized, work, pool_sizes=[1, 3], concurrency=4, requests=5, rounds=3
    )
    assert sizes_opened == [1, 3]
    assert set(best) == {1, 3}
    assert all(throughput > 0 for throughput in best.values())
    warm_up = [1] + [3] * 3  # each connection runs the work once before measuring
    rounds = [1] * 5 + [3] * 5 + [3] * 5 + [1] * 5 + [1] * 5 + [3] * 5  # order reversed each round
    assert calls == warm_up + rounds


async def test_head_to_head_raises_what_a_request_raised(namespace: str) -> None:
    async def open_sized(size: int) -> AsyncEngine:
        return await open_engine(namespace=namespace, pool_size=size, max_overflow=0)

    async def failing(conn: AsyncConnection) -> None:
        await conn.execute(text("SELECT no_such_column"))

    with pytest.raises(exc.DBAPIError):
        await head_to_head(open_sized, failing, pool_sizes=[1], concurrency=1, requests=1)
