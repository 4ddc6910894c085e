"""Celery workers that write with async SQLModel: a real worker process on a real broker.

The worker (``snippets.demo.celery_jobs``) runs in a process of its own, on a queue of this
test's own (tests run in parallel against the same Redis), writing to this test worker's
namespace. Without a broker the tests are skipped, saying how to start one; where
``CELERY_BROKER_URL`` is set (CI), a broker that does not answer is a failure.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from snippets import make_engine
from snippets.backends import facts
from snippets.demo import celery_jobs
from snippets.demo.models import Account
from snippets.jobs import ProcessLoop
from snippets.lab.server import namespace_connections
from snippets.lab.timing import eventually
from snippets.lab.worker import CeleryWorker, broker_answers, broker_available
from snippets.session import make_sessionmaker

CONFIGURED = os.environ.get("CELERY_BROKER_URL")


def test_a_process_loop_runs_every_job_on_one_loop_and_one_connection() -> None:
    opened: list[int] = []

    async def open_counted_engine() -> AsyncEngine:
        engine = make_engine()
        event.listen(engine.sync_engine, "connect", lambda *_: opened.append(1))
        return engine

    async def job(engine: AsyncEngine) -> asyncio.AbstractEventLoop:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return asyncio.get_running_loop()

    jobs = ProcessLoop(open_counted_engine)
    loops = [jobs.run(job) for _ in range(3)]  # what three tasks of one worker process do
    jobs.close()
    again = jobs.run(job)  # after close, the next job opens a new loop and engine
    jobs.close()

    assert len(set(loops)) == 1  # one loop for every job
    assert loops[0].is_closed()
    assert again is not loops[0]
    assert len(opened) == 2  # one connection until close, then one more


needs_a_broker = pytest.mark.skipif(
    not CONFIGURED and not broker_answers(celery_jobs.BROKER_URL),
    reason="no Redis answers on 127.0.0.1:6379: start one (apt-get install -y redis-server), or"
    " set CELERY_BROKER_URL",
)


def celery_worker(namespace: str, *, pool: str = "solo", concurrency: int = 1) -> CeleryWorker:
    broker_available(celery_jobs.BROKER_URL, CONFIGURED)  # set and not answering: an error
    return CeleryWorker(
        "snippets.demo.celery_jobs",
        {"JOBS_NAMESPACE": namespace},
        pool=pool,
        concurrency=concurrency,
    )


outcome = CeleryWorker.outcome


@needs_a_broker
async def test_asyncio_run_per_task_fails_the_second_task_where_connections_belong_to_a_loop(
    engine: AsyncEngine, namespace: str
) -> None:
    with celery_worker(namespace) as worker:
        outcomes = [
            outcome(worker.send(celery_jobs.add_team_naive, f"Naive {n}")) for n in range(3)
        ]

    assert isinstance(outcomes[0], dict)  # the first task's loop opened the connection
    if facts(engine).loop_bound_connections:  # asyncpg, aiomysql
        assert isinstance(outcomes[1], str)
        assert "attached to a different loop" in outcomes[1], outcomes
    else:  # aiosqlite's connections happen to work on any loop
        assert all(isinstance(answer, dict) for answer in outcomes), outcomes


@needs_a_broker
async def test_a_loop_per_process_keeps_one_connection_and_null_pool_opens_one_per_task(
    engine: AsyncEngine, namespace: str, count_teams: Callable[[], Awaitable[int]]
) -> None:
    tasks = 20
    with celery_worker(namespace) as worker:
        pooled = [outcome(worker.send(celery_jobs.add_team, f"Pooled {n}")) for n in range(tasks)]
        unpooled = [
            outcome(worker.send(celery_jobs.add_team_null_pool, f"Unpooled {n}"))
            for n in range(tasks)
        ]
        log = worker.log()

    assert all(isinstance(answer, dict) for answer in pooled + unpooled), log
    assert [answer["connections_opened"] for answer in pooled] == [1] * tasks  # type: ignore[index]
    assert [answer["connections_opened"] for answer in unpooled] == list(range(1, tasks + 1))  # type: ignore[index]
    assert await count_teams() == 2 * tasks
    assert "Traceback" not in log, log


@needs_a_broker
async def test_each_forked_worker_process_has_its_own_loop_and_closes_its_engine_at_shutdown(
    admin_engine: AsyncEngine, namespace: str, count_teams: Callable[[], Awaitable[int]]
) -> None:
    with celery_worker(namespace, pool="prefork", concurrency=2) as worker:
        answers = [outcome(worker.send(celery_jobs.add_team, f"Forked {n}")) for n in range(12)]
        during = await namespace_connections(admin_engine, namespace)
        log = worker.log()
    after = await namespace_connections(admin_engine, namespace)

    assert all(isinstance(answer, dict) for answer in answers), log
    opened: dict[int, int] = {}
    for answer in answers:
        assert isinstance(answer, dict)
        opened[answer["pid"]] = max(opened.get(answer["pid"], 0), answer["connections_opened"])
    assert 1 <= len(opened) <= 2
    assert set(opened.values()) == {1}
    assert await count_teams() == 12
    if facts(admin_engine).has_server:
        assert during is not None
        assert 1 <= during <= 2
        assert after == 0  # worker_process_shutdown disposed each child's engine
    assert "Traceback" not in log, log


async def balance(engine: AsyncEngine, account_id: int) -> int:
    async with make_sessionmaker(engine)() as session:
        account = await session.get(Account, account_id)
        assert account is not None
        return account.balance


@needs_a_broker
@pytest.mark.parametrize(
    ("task", "expected_answer", "times_applied"),
    [("deposit", "deposited", 2), ("deposit_once", "already deposited", 1)],
)
async def test_a_job_redelivered_after_its_worker_died_writes_twice_unless_keyed(
    engine: AsyncEngine,
    namespace: str,
    tmp_path: Path,
    task: str,
    expected_answer: str,
    times_applied: int,
) -> None:
    async with make_sessionmaker(engine)() as session:
        bank = Account(owner=celery_jobs.BANK, balance=10_000)
        customer = Account(owner="Customer", balance=0)
        session.add_all([bank, customer])
        await session.commit()
    assert customer.id is not None
    release = tmp_path / "release"
    key = ("deposit-1",) if task == "deposit_once" else ()  # the idempotency key, if any
    arguments = (*key, customer.id, 100, str(release))
    with celery_worker(namespace, pool="prefork", concurrency=1) as worker:
        result = worker.send(getattr(celery_jobs, task), *arguments)
        # The deposit is committed; the job is doing the rest of its work, not yet acknowledged.
        # within=60: a worker starting on a busy machine takes its time
        await eventually(
            lambda: balance(engine, customer.id), lambda cents: cents == 100, within=60
        )
        worker.kill_pool_process()
        release.touch()  # the job's next run goes straight through
        answer = outcome(result)
        log = worker.log()

    assert answer == expected_answer, log
    assert await balance(engine, customer.id) == 100 * times_applied
    assert "exited with 'signal 9 (SIGKILL)'" in log, log  # the worker saw its child die
