"""Watching and loading a connection pool: the instruments of notebook 07.

* ``observe_pool`` counts what the pool does (connections opened, checkouts, checkins,
  invalidations) and the peak number checked out at once, through pool events.
* ``run_load`` sends a bounded number of requests at a given concurrency and reports
  throughput and latency percentiles; ``sweep`` runs it over pool sizes and concurrencies:
  the measurement behind a pool size; ``head_to_head`` measures a few pool sizes in
  alternating rounds, for a ratio that a passing burst of load elsewhere does not decide.
* ``arrival_order`` shows the order in which a waiting request and a newcomer get a pooled
  connection, with and without ``snippets.api.ConnectionGate`` (notebook 14).
* ``fill_pool`` and ``snippets.lab.server.kill_connections`` (PostgreSQL, MySQL/MariaDB)
  simulate a server or a proxy dropping the pool's connections, the fault that
  ``pool_pre_ping`` handles.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from snippets.api import ConnectionGate, turn_at
from snippets.backends import facts


@dataclass
class PoolCounts:
    """What a pool did while observed."""

    connects: int = 0
    """New DBAPI connections opened."""
    checkouts: int = 0
    checkins: int = 0
    invalidations: int = 0
    """Connections thrown away: a disconnect detected, a failed pre-ping, an invalidate()."""
    checked_out: int = 0
    """Connections checked out right now (checkouts minus checkins while observed)."""
    peak_checked_out: int = 0


@contextmanager
def observe_pool(engine: AsyncEngine) -> Iterator[PoolCounts]:
    """Count the pool events of ``engine`` inside the ``with`` block.

    The listeners are pool events on ``engine.sync_engine`` (an ``AsyncEngine`` delegates events
    to the synchronous engine it wraps), removed when the block ends::

        with observe_pool(engine) as counts:
            ...
        print(counts.checkouts, counts.peak_checked_out)
    """
    counts = PoolCounts()
    target = engine.sync_engine

    def on_connect(*_: Any) -> None:
        counts.connects += 1

    def on_checkout(*_: Any) -> None:
        counts.checkouts += 1
        counts.checked_out += 1
        counts.peak_checked_out = max(counts.peak_checked_out, counts.checked_out)

    def on_checkin(*_: Any) -> None:
        counts.checkins += 1
        counts.checked_out -= 1

    def on_invalidate(*_: Any) -> None:
        counts.invalidations += 1

    listeners: list[tuple[str, Callable[..., None]]] = [
        ("connect", on_connect),
        ("checkout", on_checkout),
        ("checkin", on_checkin),
        ("invalidate", on_invalidate),
    ]
    for name, listener in listeners:
        event.listen(target, name, listener)
    try:
        yield counts
    finally:
        for name, listener in listeners:
            event.remove(target, name, listener)


@dataclass(frozen=True)
class LoadResult:
    """The outcome of ``run_load``: latencies of the successful requests, and the failures."""

    concurrency: int
    requests: int
    seconds: float
    latencies: list[float]
    errors: list[BaseException]

    @property
    def throughput(self) -> float:
        """Successful requests per second."""
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile(self, percent: int) -> float:
        """Latency in seconds below which ``percent`` % of the successful requests finished."""
        if not self.latencies:
            return float("nan")
        if len(self.latencies) == 1:
            return self.latencies[0]
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[percent - 1]


async def run_load(
    engine: AsyncEngine,
    work: Callable[[AsyncConnection], Awaitable[object]],
    *,
    concurrency: int,
    requests: int,
) -> LoadResult:
    """Run ``work`` ``requests`` times, ``concurrency`` at a time, each with its own connection.

    A request's latency counts from the moment it starts waiting for a connection, as a web
    request's would, so time spent queueing for the pool is included. Failures (for example
    the pool's ``TimeoutError``) are collected, not raised.
    """
    if concurrency < 1 or requests < 1:
        raise ValueError("concurrency and requests must be at least 1")
    latencies: list[float] = []
    errors: list[BaseException] = []
    remaining = iter(range(requests))

    async def worker() -> None:
        for _ in remaining:  # shared iterator: the workers take requests until none are left
            started = time.perf_counter()
            try:
                async with engine.connect() as conn:
                    await work(conn)
            except Exception as error:
                errors.append(error)
            else:
                latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return LoadResult(concurrency, requests, time.perf_counter() - started, latencies, errors)


async def open_connections(
    engine: AsyncEngine, connections: int, *, query: str | None = None
) -> list[Any]:
    """Check out ``connections`` connections at once, so that the pool opens that many, and
    return them to it. With ``query``, each runs it first; returns the scalar results.

    Without a query nothing is sent but what opening a connection sends: on SQLite no
    transaction begins, so no connection waits for another's write lock.
    """
    ready = asyncio.Barrier(connections)  # hold every connection until all are open

    async def open_one() -> Any:
        async with engine.connect() as conn:
            result = (await conn.exec_driver_sql(query)).scalar_one() if query else None
            await ready.wait()
            return result

    return list(await asyncio.gather(*(open_one() for _ in range(connections))))


async def fill_pool(engine: AsyncEngine, connections: int) -> list[int]:
    """Open ``connections`` connections at once and return them to the pool.

    Returns their server-side ids (``pg_backend_pid()``, ``CONNECTION_ID()``), which is what
    ``snippets.lab.server.kill_connections`` needs to simulate a server restart or a proxy
    dropping them.

    Raises:
        ValueError: on SQLite, which has no server connections.
    """
    query = facts(engine).connection_id_sql
    if query is None:
        raise ValueError("SQLite has no server connections to fill a pool with")
    ids = await open_connections(engine, connections, query=query)
    return [int(connection_id) for connection_id in ids]


@dataclass(frozen=True)
class SweepPoint:
    """One measurement of a sweep: a pool size under a concurrency."""

    workload: str
    pool_size: int
    concurrency: int
    requests: int
    throughput: float
    """Successful requests per second."""
    p50_ms: float
    p95_ms: float
    errors: int


async def _warm(
    engine: AsyncEngine, size: int, work: Callable[[AsyncConnection], Awaitable[object]]
) -> None:
    """What ``sweep`` and ``head_to_head`` do not measure: opening the pool's ``size``
    connections, and each one's first run of the work (asyncpg prepares a statement per
    connection). One at a time through a FIFO pool reaches every connection once, with no
    wait for another's lock."""
    await open_connections(engine, size)
    await run_load(engine, work, concurrency=1, requests=size)


async def sweep(
    workload: str,
    open_engine_for: Callable[[int], Awaitable[AsyncEngine]],
    work: Callable[[AsyncConnection], Awaitable[object]],
    *,
    pool_sizes: list[int],
    concurrencies: list[int],
    requests: int,
    progress: Callable[[SweepPoint], None] | None = None,
) -> list[SweepPoint]:
    """Measure ``work`` for every pool size and concurrency; bounded by ``requests`` per point.

    ``open_engine_for(size)`` opens an engine whose pool holds ``size`` connections (with
    ``max_overflow=0``, so the size is the limit, and the default FIFO order). Its connections
    are opened, and each runs ``work`` once, before measuring, so that neither connecting nor a
    first statement is counted; it is disposed afterwards. ``progress`` is called with
    each point as it is measured.
    """
    points: list[SweepPoint] = []
    for size in pool_sizes:
        engine = await open_engine_for(size)
        try:
            await _warm(engine, size, work)
            for concurrency in concurrencies:
                result = await run_load(engine, work, concurrency=concurrency, requests=requests)
                point = SweepPoint(
                    workload=workload,
                    pool_size=size,
                    concurrency=concurrency,
                    requests=requests,
                    throughput=result.throughput,
                    p50_ms=result.percentile(50) * 1000,
                    p95_ms=result.percentile(95) * 1000,
                    errors=len(result.errors),
                )
                points.append(point)
                if progress is not None:
                    progress(point)
        finally:
            await engine.dispose()
    return points


async def head_to_head(
    open_engine_for: Callable[[int], Awaitable[AsyncEngine]],
    work: Callable[[AsyncConnection], Awaitable[object]],
    *,
    pool_sizes: list[int],
    concurrency: int,
    requests: int,
    rounds: int = 3,
) -> dict[int, float]:
    """The best throughput of each pool size over ``rounds`` rounds that take turns.

    One point of a ``sweep`` lasts a fraction of a second: another process busy on the
    machine for that moment decides a ratio of two points. Here every size is measured once
    per round, the order reversed each round, and each keeps its best round, so a passing
    burst of load costs one round of one size, not the comparison. The engines are opened
    and warmed as in ``sweep``, and disposed at the end.
    """
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    engines: dict[int, AsyncEngine] = {}
    best = dict.fromkeys(pool_sizes, 0.0)
    try:
        for size in pool_sizes:
            engines[size] = await open_engine_for(size)
            await _warm(engines[size], size, work)
        for round_number in range(rounds):
            order = pool_sizes if round_number % 2 == 0 else pool_sizes[::-1]
            for size in order:
                result = await run_load(
                    engines[size], work, concurrency=concurrency, requests=requests
                )
                if result.errors:
                    raise result.errors[0]
                best[size] = max(best[size], result.throughput)
    finally:
        for engine in engines.values():
            await engine.dispose()
    return best


async def arrival_order(engine: AsyncEngine, gate: ConnectionGate | None = None) -> list[str]:
    """The order in which three requests get the only connection of ``engine``'s pool.

    A holds the connection and B waits for it; C arrives just as A gives it back (started by
    the pool's ``checkin`` event, before the connection is queued again). SQLAlchemy 2.1's
    async queue hands an available connection to whoever asks first without waiting, so C
    gets it before B, woken for it, can take it: ``["A", "C", "B"]``. Through ``gate``, first
    come, first served: ``["A", "B", "C"]``. ``engine`` needs ``pool_size=1, max_overflow=0``.
    """
    order: list[str] = []
    late: list[asyncio.Task[None]] = []
    holding, release = asyncio.Event(), asyncio.Event()

    async def request(name: str, hold: bool = False) -> None:
        async with turn_at(gate), engine.connect() as conn:
            order.append(name)
            await conn.exec_driver_sql("SELECT 1")
            if hold:
                holding.set()
                await release.wait()

    def arrives_now(*_: object) -> None:
        if not late:
            late.append(asyncio.get_running_loop().create_task(request("C")))

    event.listen(engine.sync_engine.pool, "checkin", arrives_now)
    try:
        holder = asyncio.create_task(request("A", hold=True))
        await asyncio.wait_for(holding.wait(), timeout=30)
        waiter = asyncio.create_task(request("B"))
        await asyncio.sleep(0.1)  # B is in line: in the pool's queue, or at the gate
        release.set()
        await asyncio.gather(holder, waiter)
        await asyncio.gather(*late)
    finally:
        event.remove(engine.sync_engine.pool, "checkin", arrives_now)
    return order
