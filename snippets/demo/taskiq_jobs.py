"""taskiq tasks that write with async SQLModel (notebook 17): the jobs of chapter 16, async-native.

The engine is opened by the worker's start-up event and disposed by its shutdown event
(``snippets.taskiq_worker``); each job gets a session of its own as a dependency.

* ``add_team`` writes a team and answers its id, the worker process's id, and how many
  connections its engine has opened in that process so far.
* ``rename_team`` renames a team, or answers ``"no such team"`` when the worker cannot see it.
* ``hold_a_connection`` keeps a pooled connection for a while, as a slow job does, and answers
  how many of the pool's connections were checked out at once, at most, in this process.
* With ``JOBS_RELAY_OUTBOX=1`` the worker also relays the ``Outbox`` table to its own queue
  (``snippets.outbox``), from a task started by its start-up event.

Started by ``taskiq worker snippets.demo.taskiq_jobs:broker``; configured by
``TASKIQ_BROKER_URL`` and ``TASKIQ_RESULT_BACKEND`` (Redis on loopback by default), the queue
``JOBS_QUEUE``, the database namespace ``JOBS_NAMESPACE``, and the pool's ``DB_POOL_*``
variables. A caller sends to a worker's queue with a broker of its own: ``make_broker(queue)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Annotated, Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import registry
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession
from taskiq import TaskiqDepends, TaskiqEvents, TaskiqState
from taskiq_redis import ListQueueBroker, RedisAsyncResultBackend

from snippets.demo import team_jobs
from snippets.demo.models import Team
from snippets.engine import make_engine
from snippets.outbox import OutboxMessage, relay_forever
from snippets.taskiq_worker import job_engine, job_session, open_database_with_worker

BROKER_URL = os.environ.get("TASKIQ_BROKER_URL", "redis://127.0.0.1:6379/2")
RESULT_BACKEND = os.environ.get("TASKIQ_RESULT_BACKEND", "redis://127.0.0.1:6379/3")
QUEUE = os.environ.get("JOBS_QUEUE", "guide_taskiq_jobs")
NAMESPACE = os.environ.get("JOBS_NAMESPACE", "jobs")
RELAY_OUTBOX = os.environ.get("JOBS_RELAY_OUTBOX") == "1"


def make_broker(queue: str = QUEUE) -> ListQueueBroker:
    """A broker on ``queue``: the worker's, or a caller's that sends to that worker."""
    results: RedisAsyncResultBackend[Any] = RedisAsyncResultBackend(
        RESULT_BACKEND, result_ex_time=600
    )
    return ListQueueBroker(BROKER_URL, queue_name=queue).with_result_backend(results)


broker = make_broker()

pool_use = {"connections_opened": 0, "most_checked_out": 0}
"""In this worker process: connections its engine opened, and the most checked out at once."""


async def open_counted_engine() -> AsyncEngine:
    engine = make_engine(namespace=NAMESPACE)

    def opened(*_: Any) -> None:
        pool_use["connections_opened"] += 1

    event.listen(engine.sync_engine, "connect", opened)
    return engine


class OutboxModel(SQLModel, registry=registry()):
    """The outbox's own registry and ``MetaData`` (``outbox_metadata``)."""


class Outbox(OutboxModel, OutboxMessage, table=True):
    __tablename__ = "outbox"


outbox_metadata = OutboxModel.metadata


async def send_job(task: str, arguments: dict[str, Any]) -> None:
    """The relay's ``send``: the task by its name, on this worker's own queue."""
    found = broker.find_task(task)
    if found is None:
        raise LookupError(f"no task named {task!r}")
    await found.kiq(**arguments)


async def stop_relay(state: TaskiqState) -> None:
    relay: asyncio.Task[None] | None = getattr(state, "relay", None)
    if relay is not None:
        relay.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay


async def start_relay(state: TaskiqState) -> None:
    if RELAY_OUTBOX:
        state.relay = asyncio.create_task(relay_forever(state.sessions, Outbox, send_job))


# Shutdown handlers run in the order they were added: the relay stops before the engine closes.
broker.add_event_handler(TaskiqEvents.WORKER_SHUTDOWN, stop_relay)
open_database_with_worker(broker, open_counted_engine)
broker.add_event_handler(TaskiqEvents.WORKER_STARTUP, start_relay)

JobSession = Annotated[AsyncSession, TaskiqDepends(job_session)]


@broker.task
async def add_team(name: str, session: JobSession) -> dict[str, int]:
    team = Team(name=name, headquarters="An async job queue")
    session.add(team)
    await session.commit()
    assert team.id is not None
    return {"id": team.id, "pid": os.getpid(), **pool_use}


@broker.task
async def rename_team(team_id: int, name: str, session: JobSession) -> str:
    return await team_jobs.rename_team(session, team_id, name)


@broker.task
async def hold_a_connection(
    seconds: float,
    session: JobSession,
    engine: Annotated[AsyncEngine, TaskiqDepends(job_engine)],
) -> dict[str, int]:
    # Checked out from the pool until the session closes; outside a transaction (AUTOCOMMIT),
    # because on SQLite a transaction also holds the database's write lock, and the jobs would
    # take turns for that lock instead of for the pool's connections.
    await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    pool_use["most_checked_out"] = max(pool_use["most_checked_out"], engine.pool.checkedout())  # type: ignore[attr-defined]
    await asyncio.sleep(seconds)  # the job's work, holding its connection
    return dict(pool_use)
