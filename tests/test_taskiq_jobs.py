"""taskiq workers that write with async SQLModel: a real ``taskiq worker`` process on a real broker.

The worker (``snippets.demo.taskiq_jobs``) runs in a process of its own, on a queue of this
test's own, writing to this test worker's namespace. Without a broker the tests are skipped,
saying how to start one; where ``TASKIQ_BROKER_URL`` is set (CI), a broker that does not answer
is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import func, select

from snippets.backends import facts
from snippets.demo import taskiq_jobs
from snippets.demo.models import Team
from snippets.lab.server import namespace_connections
from snippets.lab.timing import eventually
from snippets.lab.worker import TaskiqWorker, broker_answers, broker_available
from snippets.session import make_sessionmaker
from snippets.tables import create_tables

CONFIGURED = os.environ.get("TASKIQ_BROKER_URL")

pytestmark = pytest.mark.skipif(
    not CONFIGURED and not broker_answers(taskiq_jobs.BROKER_URL),
    reason="no Redis answers on 127.0.0.1:6379: start one (apt-get install -y redis-server), or"
    " set TASKIQ_BROKER_URL",
)


def taskiq_worker(
    namespace: str, environment: Mapping[str, str] | None = None, *, max_async_tasks: int = 100
) -> TaskiqWorker:
    broker_available(taskiq_jobs.BROKER_URL, CONFIGURED)  # set and not answering: an error
    return TaskiqWorker(
        "snippets.demo.taskiq_jobs:broker",
        taskiq_jobs.make_broker,
        {"JOBS_NAMESPACE": namespace, **(environment or {})},
        max_async_tasks=max_async_tasks,
    )


async def test_the_worker_opens_its_engine_at_start_up_and_disposes_it_at_shutdown(
    admin_engine: AsyncEngine, namespace: str, count_teams: Callable[[], Awaitable[int]]
) -> None:
    async with taskiq_worker(namespace) as worker:
        answers = [
            await worker.outcome(await worker.send(taskiq_jobs.add_team, f"Team {n}"))
            for n in range(20)
        ]
        during = await namespace_connections(admin_engine, namespace)
    after = await namespace_connections(admin_engine, namespace)

    assert all(isinstance(answer, dict) for answer in answers), worker.log()
    assert {answer["pid"] for answer in answers} == {answers[0]["pid"]}  # one worker process
    assert [answer["connections_opened"] for answer in answers] == [1] * 20  # one after another
    assert await count_teams() == 20
    if facts(admin_engine).has_server:
        assert during == 1
        assert after == 0  # the WORKER_SHUTDOWN event disposed the engine
    assert worker.log() == ""  # nothing logged: no warning, no traceback


POOL_OF_TWO = {"DB_POOL_SIZE": "2", "DB_MAX_OVERFLOW": "0", "DB_POOL_TIMEOUT": "1"}


@pytest.mark.parametrize("max_async_tasks", [30, 2])
async def test_jobs_beyond_the_pool_time_out_unless_the_worker_runs_no_more_than_it_holds(
    engine: AsyncEngine, namespace: str, max_async_tasks: int
) -> None:
    jobs = 30  # each holds a connection 0.2 s: 30 at once wait up to 3 s for a pool of two
    async with taskiq_worker(namespace, POOL_OF_TWO, max_async_tasks=max_async_tasks) as worker:
        sent = [await worker.send(taskiq_jobs.hold_a_connection, 0.2) for _ in range(jobs)]
        answers = [await worker.outcome(job) for job in sent]

    done = [answer for answer in answers if isinstance(answer, dict)]
    failed = [answer for answer in answers if isinstance(answer, str)]
    assert all(answer.startswith("TimeoutError: QueuePool limit") for answer in failed), failed
    assert max(answer["most_checked_out"] for answer in done) <= 2
    if max_async_tasks > 2:
        assert failed  # jobs waited for a connection longer than pool_timeout
        assert worker.log().count("Traceback") == len(failed)  # each logged once, by taskiq
    else:
        assert len(done) == jobs  # the jobs waited in the queue instead: none failed
        assert worker.log() == ""


async def test_a_job_in_the_outbox_is_sent_when_its_transaction_commits_and_never_otherwise(
    engine: AsyncEngine, namespace: str
) -> None:
    await create_tables(engine, taskiq_jobs.outbox_metadata)
    sessions = make_sessionmaker(engine)
    Outbox = taskiq_jobs.Outbox
    async with taskiq_worker(namespace, {"JOBS_RELAY_OUTBOX": "1"}) as worker:
        async with sessions() as session:
            kept = Team(name="Kept", headquarters="Committed")
            session.add(kept)
            await session.flush()
            session.add(
                Outbox(
                    task=taskiq_jobs.rename_team.task_name,
                    arguments={"team_id": kept.id, "name": "Renamed"},
                )
            )
            await session.commit()
        async with sessions() as session:
            lost = Team(name="Lost", headquarters="Rolled back")
            session.add(lost)
            await session.flush()
            session.add(
                Outbox(task=taskiq_jobs.add_team.task_name, arguments={"name": "Never added"})
            )
            await session.rollback()

        async def kept_name() -> str:
            async with sessions() as session:
                team = await session.get(Team, kept.id)
                assert team is not None
                return team.name

        renamed = await eventually(kept_name, lambda name: name == "Renamed", within=60)
        assert renamed == "Renamed"
        async with sessions() as session:
            left = (await session.exec(select(func.count()).select_from(Outbox))).one()
            names = (await session.exec(select(Team.name))).all()

    assert left == 0  # relayed, then deleted
    assert names == ["Renamed"]  # the rolled-back team and its job: neither exists
    assert worker.log() == ""
