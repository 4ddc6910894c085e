"""`make worker` and `make taskiq-worker` (``tools/start_worker.py``): a worker that serves jobs,
and, without a broker, one line saying how to start one instead of a worker retrying forever."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from snippets.config import PROJECT_ROOT
from snippets.demo import celery_jobs, taskiq_jobs
from snippets.demo.models import Team
from snippets.lab.served import LoggedProcess
from snippets.lab.worker import CeleryWorker, TaskiqWorker, broker_answers, broker_available
from snippets.session import make_sessionmaker

START = [sys.executable, "tools/start_worker.py"]


@pytest.mark.skipif(
    not os.environ.get("CELERY_BROKER_URL") and not broker_answers(celery_jobs.BROKER_URL),
    reason="no Redis answers on 127.0.0.1:6379: start one, or set CELERY_BROKER_URL",
)
@pytest.mark.parametrize("kind", ["celery", "taskiq"])
async def test_the_worker_target_prepares_its_namespace_and_serves_a_job(
    engine: AsyncEngine, namespace: str, kind: str
) -> None:
    broker_available(celery_jobs.BROKER_URL, os.environ.get("CELERY_BROKER_URL"))
    await engine.dispose()
    queue = f"worker_{uuid.uuid4().hex[:12]}"
    worker = LoggedProcess([*START, kind], {"JOBS_NAMESPACE": namespace, "JOBS_QUEUE": queue})
    try:
        if kind == "celery":
            result = celery_jobs.add_team.apply_async(("From make worker",), queue=queue)
            answer = CeleryWorker.outcome(result)
        else:
            client = taskiq_jobs.make_broker(queue)
            await client.startup()
            try:
                kicker = taskiq_jobs.add_team.kicker().with_broker(client)
                answer = await TaskiqWorker.outcome(await kicker.kiq("From make worker"))
            finally:
                await client.shutdown()
    finally:
        worker.stop(grace=30)

    assert isinstance(answer, dict), worker.log()
    async with make_sessionmaker(engine)() as session:
        team = await session.get(Team, answer["id"])
    assert team is not None  # written in the test's namespace
    assert team.name == "From make worker"
    assert f"{kind} worker on namespace '{namespace}'" in worker.log()
    assert "Traceback" not in worker.log()


@pytest.mark.parametrize(
    ("kind", "variable"), [("celery", "CELERY_BROKER_URL"), ("taskiq", "TASKIQ_BROKER_URL")]
)
def test_without_a_broker_it_says_how_to_start_one_and_exits(kind: str, variable: str) -> None:
    nothing_there = "redis://user:secret@127.0.0.1:1/0"  # port 1: nothing listens
    started = subprocess.run(
        [*START, kind],
        env={**os.environ, variable: nothing_there},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert started.returncode == 1
    assert started.stdout == ""
    (line,) = started.stderr.splitlines()
    assert line.startswith("No broker answers at redis://user:***@127.0.0.1:1/0: start Redis")
    assert variable in line
    assert "secret" not in started.stderr
