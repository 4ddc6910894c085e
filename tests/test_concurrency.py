"""snippets.concurrency and the statement time limit, on the configured backend.

The property every test here ends with: after a cancellation, no connection is left checked
out, and the next session works.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from fastapi import FastAPI
from sqlalchemy import event, func
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_
from sqlmodel import select

from snippets import create_tables, make_sessionmaker, open_engine
from snippets.api import SessionDep
from snippets.backends import facts, is_statement_timeout
from snippets.concurrency import finish, gather_bounded, session_scope
from snippets.demo.heroes_api import create_app
from snippets.demo.models import Hero, metadata
from snippets.lab.server import slow_statement
from snippets.lab.timing import stopwatch
from snippets.testing import api_client


async def hero_names(engine: AsyncEngine) -> list[str]:
    async with make_sessionmaker(engine)() as session:
        return list((await session.exec(select(Hero.name).order_by(Hero.name))).all())


def released(engine: AsyncEngine) -> None:
    """After a cancellation on SQLite the terminated connection keeps the write lock until the
    garbage collector finalizes its statement (``cancel_waits_for_statement``)."""
    if facts(engine).cancel_waits_for_statement:
        gc.collect()


# gather_bounded


async def test_gather_bounded_keeps_order_and_limit() -> None:
    running = peak = 0

    async def square(number: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01 * (number % 3))  # finish out of order
        running -= 1
        return number * number

    assert await gather_bounded(square, range(20), limit=4) == [n * n for n in range(20)]
    assert peak == 4
    assert await gather_bounded(square, [], limit=4) == []


async def test_gather_bounded_takes_items_lazily() -> None:
    taken: list[int] = []

    def numbers() -> Iterator[int]:
        for number in range(100):
            taken.append(number)
            yield number

    started = asyncio.Event()

    async def wait(number: int) -> int:
        started.set()
        await asyncio.sleep(0.01)
        return number

    task = asyncio.create_task(gather_bounded(wait, numbers(), limit=3))
    await started.wait()
    assert len(taken) <= 3  # workers take items as they go, not all at once
    assert await task == list(range(100))


async def test_gather_bounded_refuses_a_limit_below_one() -> None:
    async def noop(_: int) -> None:
        return None

    with pytest.raises(ValueError, match="at least 1"):
        await gather_bounded(noop, [1], limit=0)


async def test_gather_bounded_failure_cancels_and_closes_the_others(engine: AsyncEngine) -> None:
    Session = make_sessionmaker(engine)
    finished: list[int] = []

    async def read(number: int) -> int:
        if number == 3:
            await asyncio.sleep(0.1)  # while the others hold their sessions
            raise LookupError(number)
        async with Session() as session:
            await session.exec(select(func.count()).select_from(Hero))
            await asyncio.sleep(0.5)
            finished.append(number)
            return number

    with pytest.raises(ExceptionGroup) as group:
        await gather_bounded(read, range(8), limit=4)
    assert [type(e) for e in group.value.exceptions] == [LookupError]
    assert finished == []  # the others were cancelled, not left running
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_gather_bounded_holds_no_more_connections_than_the_limit(
    engine: AsyncEngine,
) -> None:
    Session = make_sessionmaker(engine)
    peak = 0

    async def read(number: int) -> int:
        nonlocal peak
        async with Session() as session:
            await session.exec(select(func.count()).select_from(Hero))
            peak = max(peak, engine.pool.checkedout())  # type: ignore[attr-defined]
            await asyncio.sleep(0.01)
            return number

    assert await gather_bounded(read, range(12), limit=3) == list(range(12))
    assert 1 <= peak <= 3


# finish


async def test_finish_completes_the_work_then_raises_the_timeout() -> None:
    done: list[str] = []

    async def work() -> str:
        await asyncio.sleep(0.2)
        done.append("work")
        return "result"

    started = time.perf_counter()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await finish(work())
    assert done == ["work"]
    assert time.perf_counter() - started >= 0.2
    assert await finish(work()) == "result"


async def test_finish_holds_back_repeated_cancellation() -> None:
    done: list[str] = []

    async def work() -> None:
        await asyncio.sleep(0.2)
        done.append("work")

    task = asyncio.create_task(finish(work()))
    for _ in range(3):
        await asyncio.sleep(0.02)
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert done == ["work"]


async def test_finish_raises_the_works_own_error() -> None:
    async def failing() -> None:
        await asyncio.sleep(0)
        raise KeyError("commit failed")

    with pytest.raises(KeyError, match="commit failed"):
        await finish(failing())


async def test_an_unshielded_await_is_cut_in_half() -> None:
    """The control for the test above: without finish, the timeout stops the work."""
    done: list[str] = []

    async def work() -> None:
        await asyncio.sleep(0.2)
        done.append("work")

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await work()
    assert done == []


# session_scope


async def test_session_scope_commits(engine: AsyncEngine) -> None:
    async with session_scope(make_sessionmaker(engine), timeout=10) as session:
        session.add(Hero(name="Committed", secret_name="?"))
    assert await hero_names(engine) == ["Committed"]


async def test_session_scope_rolls_back_on_error(engine: AsyncEngine) -> None:

    async def fail_after_a_flush() -> None:
        async with session_scope(make_sessionmaker(engine)) as session:
            session.add(Hero(name="Rolled back", secret_name="?"))
            await session.flush()
            raise LookupError

    with pytest.raises(LookupError):
        await fail_after_a_flush()
    assert await hero_names(engine) == []
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_session_scope_timeout_cancels_a_slow_statement(engine: AsyncEngine) -> None:
    """A timeout that cancels a running statement: rolled back, no connection left checked
    out, and the next session works, on every backend."""

    async def too_slow() -> None:
        async with session_scope(make_sessionmaker(engine), timeout=0.2) as session:
            session.add(Hero(name="Too slow", secret_name="?"))
            await session.flush()
            await session.exec(slow_statement(engine, 1.0))

    with pytest.raises(TimeoutError):
        await too_slow()
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    released(engine)
    assert await hero_names(engine) == []


def slow_commit(session: object) -> None:
    """``before_commit`` handler: a commit that takes 0.3 s (as one waiting for a replica)."""
    await_(asyncio.sleep(0.3))


async def test_session_scope_lets_a_started_commit_finish(engine: AsyncEngine) -> None:
    """A cancellation from outside while the commit runs: it completes, then the caller's
    timeout is raised."""

    async def commit_late() -> None:
        async with asyncio.timeout(0.1), session_scope(make_sessionmaker(engine)) as session:
            event.listen(session.sync_session, "before_commit", slow_commit)
            session.add(Hero(name="Committed late", secret_name="?"))

    with pytest.raises(TimeoutError):
        await commit_late()
    assert await hero_names(engine) == ["Committed late"]
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_an_unshielded_commit_is_cut_in_half(engine: AsyncEngine) -> None:
    """The control: the same cancellation with a plain ``commit()`` stops it before COMMIT."""

    async def commit_late() -> None:
        async with asyncio.timeout(0.1), make_sessionmaker(engine)() as session:
            event.listen(session.sync_session, "before_commit", slow_commit)
            session.add(Hero(name="Cut", secret_name="?"))
            await session.commit()

    with pytest.raises(TimeoutError):
        await commit_late()
    assert await hero_names(engine) == []
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]


# the statement time limit


@pytest.fixture
async def limited_engine(namespace: str) -> AsyncIterator[AsyncEngine]:
    engine = await open_engine(namespace=namespace, fresh=True, statement_timeout=0.2)
    await create_tables(engine, metadata)
    yield engine
    await engine.dispose()


async def test_statement_timeout_stops_a_slow_statement(limited_engine: AsyncEngine) -> None:
    Session = make_sessionmaker(limited_engine)
    async with Session() as session:
        started = time.perf_counter()
        with pytest.raises(DBAPIError) as stopped:
            await session.exec(slow_statement(limited_engine, 3.0))
        elapsed = time.perf_counter() - started
        assert is_statement_timeout(stopped.value), stopped.value
        # Stopped by the limit, not run to its end (3 s); the lower bound holds under any load.
        assert 0.15 < elapsed < 3.0
        await session.rollback()
        assert (await session.exec(select(func.count()).select_from(Hero))).one() == 0
    assert limited_engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_statement_timeout_lets_quick_statements_run(namespace: str) -> None:
    # "Quick" is measured on this machine now, not assumed: under load SQLite's counting query
    # of 0.05 s can take longer than a fixed limit. The limit is then 10x what it took.
    unlimited = await open_engine(namespace=namespace, fresh=True)
    await create_tables(unlimited, metadata)
    quick = slow_statement(unlimited, 0.05)
    async with unlimited.connect() as conn:
        with stopwatch() as took:
            await conn.execute(quick)
    await unlimited.dispose()
    limited = await open_engine(namespace=namespace, statement_timeout=max(0.2, 10 * took.seconds))
    try:
        async with session_scope(make_sessionmaker(limited)) as session:
            await session.exec(quick)
            session.add(Hero(name="Quick", secret_name="?"))
        assert await hero_names(limited) == ["Quick"]
    finally:
        await limited.dispose()


async def test_statement_timeout_never_stops_a_late_commit(limited_engine: AsyncEngine) -> None:
    """The limit is per statement: a transaction may stay open longer, and its COMMIT, sent
    after the limit has passed since the last statement, still runs."""
    async with make_sessionmaker(limited_engine)() as session:
        session.add(Hero(name="Committed after a pause", secret_name="?"))
        await session.flush()
        await asyncio.sleep(0.4)
        await session.commit()
    assert await hero_names(limited_engine) == ["Committed after a pause"]


def test_is_statement_timeout_ignores_other_errors() -> None:
    assert not is_statement_timeout(TimeoutError())
    assert not is_statement_timeout(DBAPIError("SELECT 1", {}, Exception("interrupted")))


# a cancelled request in the FastAPI app of notebook 08


async def test_cancelled_request_leaves_no_connection_checked_out(engine: AsyncEngine) -> None:
    app: FastAPI = create_app(engine)

    @app.get("/slow")
    async def slow(session: SessionDep) -> dict[str, int]:
        await session.exec(slow_statement(engine, 1.0))
        return {"done": 1}

    async with api_client(app) as client:
        assert (await client.get("/heroes/")).status_code == 200
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await client.get("/slow")
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        released(engine)
        assert (await client.get("/heroes/")).status_code == 200
