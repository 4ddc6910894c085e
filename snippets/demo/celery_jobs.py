"""Celery tasks that write with async SQLModel, three ways (notebook 16).

* ``add_team_naive``: what most first attempts look like: an engine made at import, and
  ``asyncio.run()`` in each task. The second task fails on asyncpg and aiomysql: the pooled
  connection belongs to the first task's loop, closed since.
* ``add_team_null_pool``: the same with ``NullPool``: no connection outlives its task, so each
  task opens one and closes it.
* ``add_team``: the guide's way, ``snippets.jobs.ProcessLoop``: one loop and one engine per
  worker process, closed by the worker's shutdown signals.

``rename_team`` renames a team the caller has (or believes it has) written: it answers
``"no such team"`` when the worker cannot see the team. ``deposit`` and ``deposit_once`` are
redelivered when their worker process dies (``acks_late``, ``reject_on_worker_lost``): the first
writes again, the second is keyed by a transfer's unique reference.

Each returns the new team's id, the worker process's id, and how many connections its engine
has opened in that process so far. Started by ``celery -A snippets.demo.celery_jobs worker``;
configured by ``CELERY_BROKER_URL`` and ``CELERY_RESULT_BACKEND`` (Redis on loopback by
default), the queue ``JOBS_QUEUE`` and the database namespace ``JOBS_NAMESPACE``.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from celery import Celery
from celery.signals import worker_process_shutdown, worker_shutdown
from sqlalchemy import event, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool
from sqlmodel import col, select

from snippets.demo import team_jobs
from snippets.demo.models import Account, Team
from snippets.demo.transfer import transfer
from snippets.engine import make_engine
from snippets.jobs import ProcessLoop
from snippets.session import make_sessionmaker

BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", "redis://127.0.0.1:6379/1")
QUEUE = os.environ.get("JOBS_QUEUE", "guide_jobs")
NAMESPACE = os.environ.get("JOBS_NAMESPACE", "jobs")

app = Celery("guide_jobs", broker=BROKER_URL, backend=RESULT_BACKEND)
app.conf.update(
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    result_expires=600,  # seconds Redis keeps an answer: long enough for a caller to read it
)

connections_opened: dict[str, int] = {"naive": 0, "null_pool": 0, "process_loop": 0}
"""Connections each engine has opened in this process (its pool's ``connect`` event)."""


def counted(engine: AsyncEngine, name: str) -> AsyncEngine:
    def opened(*_: Any) -> None:
        connections_opened[name] += 1

    event.listen(engine.sync_engine, "connect", opened)
    return engine


async def insert_team(engine: AsyncEngine, name: str) -> int:
    async with make_sessionmaker(engine)() as session:
        team = Team(name=name, headquarters="A job queue")
        session.add(team)
        await session.commit()
        assert team.id is not None
        return team.id


naive_engine = counted(make_engine(namespace=NAMESPACE), "naive")  # at import: the mistake


@app.task
def add_team_naive(name: str) -> dict[str, int]:
    team_id = asyncio.run(insert_team(naive_engine, name))  # a new loop per task
    return {"id": team_id, "pid": os.getpid(), "connections_opened": connections_opened["naive"]}


null_pool_engine = counted(make_engine(namespace=NAMESPACE, poolclass=NullPool), "null_pool")


@app.task
def add_team_null_pool(name: str) -> dict[str, int]:
    team_id = asyncio.run(insert_team(null_pool_engine, name))
    return {
        "id": team_id,
        "pid": os.getpid(),
        "connections_opened": connections_opened["null_pool"],
    }


async def open_counted_engine() -> AsyncEngine:
    # make_engine, not open_engine: open_engine's start-up check would connect before the
    # counter is listening. A worker of your own opens its engine with open_engine.
    return counted(make_engine(namespace=NAMESPACE), "process_loop")


jobs = ProcessLoop(open_counted_engine)


@worker_process_shutdown.connect  # each child of the prefork pool, as it exits
@worker_shutdown.connect  # the worker itself: the solo pool runs tasks in it
def close_jobs(**_: Any) -> None:
    jobs.close()


@app.task
def add_team(name: str) -> dict[str, int]:
    team_id = jobs.run(lambda engine: insert_team(engine, name))
    opened = connections_opened["process_loop"]
    return {"id": team_id, "pid": os.getpid(), "connections_opened": opened}


async def renamed(engine: AsyncEngine, team_id: int, name: str) -> str:
    async with make_sessionmaker(engine)() as session:
        return await team_jobs.rename_team(session, team_id, name)


@app.task
def rename_team(team_id: int, name: str) -> str:
    return jobs.run(lambda engine: renamed(engine, team_id, name))


# At-least-once delivery: a job whose worker dies before it is acknowledged runs again. With
# acks_late the message is acknowledged when the job ends, not when it starts; with
# reject_on_worker_lost a job whose worker process died is put back on the queue.


def rest_of_the_job(release: str, at_most: float = 30) -> None:
    """What a job does after its write (an e-mail, a report): here, wait for ``release`` to
    exist, so that a test can end the worker at this point."""
    deadline = time.monotonic() + at_most
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.05)


async def add_to_balance(engine: AsyncEngine, account_id: int, cents: int) -> None:
    async with make_sessionmaker(engine)() as session:
        increase = col(Account.balance) + cents
        await session.exec(
            update(Account).where(col(Account.id) == account_id).values(balance=increase)
        )
        await session.commit()


@app.task(acks_late=True, reject_on_worker_lost=True)
def deposit(account_id: int, cents: int, release: str) -> str:
    jobs.run(lambda engine: add_to_balance(engine, account_id, cents))
    rest_of_the_job(release)
    return "deposited"


async def transferred_once(engine: AsyncEngine, reference: str, to_id: int, cents: int) -> bool:
    """``transfer`` from the bank's account, keyed by ``reference``: False when a transfer with
    that reference was committed before (its unique constraint refuses the second)."""
    async with make_sessionmaker(engine)() as session:
        bank = (await session.exec(select(Account).where(Account.owner == BANK))).one()
        assert bank.id is not None
        try:
            await transfer(session, reference=reference, from_id=bank.id, to_id=to_id, amount=cents)
            await session.commit()
        except IntegrityError:
            await session.rollback()
            return False
    return True


BANK = "bank"
"""The owner of the account deposits come from."""


@app.task(acks_late=True, reject_on_worker_lost=True)
def deposit_once(reference: str, account_id: int, cents: int, release: str) -> str:
    applied = jobs.run(lambda engine: transferred_once(engine, reference, account_id, cents))
    rest_of_the_job(release)
    return "deposited" if applied else "already deposited"
