"""Job-queue workers started for real, each a process on a queue of its own (chapters 16, 17).

``CeleryWorker("package.module", environment)`` starts ``celery -A package.module worker`` in a
process of its own, consuming a queue no other run uses (tests and notebooks run in parallel
against the same broker), and stops it by its pid when the ``with`` block ends, with SIGTERM:
Celery's warm shutdown, which runs the worker's shutdown signals. ``send`` puts a task on that
queue; ``outcome`` waits for its answer, or the error it ended with. What the worker prints
goes to a file, read with ``log()``.

``TaskiqWorker`` does the same for ``taskiq worker``; its ``async with`` block also starts the
broker the caller sends with (on the worker's queue), and ``send``/``outcome`` are awaited.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from celery import Task
from celery.result import AsyncResult
from sqlalchemy.engine import make_url
from taskiq import AsyncBroker, AsyncTaskiqDecoratedTask, AsyncTaskiqTask

from snippets.config import redact
from snippets.lab.served import LoggedProcess, port_answers


def broker_answers(url: str, timeout: float = 2) -> bool:
    """Whether something accepts a TCP connection at the broker URL's host and port."""
    parsed = make_url(url)
    return port_answers(parsed.host or "127.0.0.1", parsed.port or 6379, timeout)


class BrokerUnreachableError(RuntimeError):
    """A broker's URL variable is set (as in CI), and nothing answers there."""


def broker_available(url: str, configured: str | None) -> bool:
    """Whether a broker answers at ``url``: ``False`` lets a chapter or a test say how to start
    one. Where the broker's variable is set (``configured``, its value), one that does not answer
    is an error instead: CI sets it, and must not skip what needs the broker."""
    answers = broker_answers(url)
    if configured and not answers:
        raise BrokerUnreachableError(f"the broker URL is set and nothing answers at {redact(url)}")
    return answers


class CeleryWorker(LoggedProcess):
    """``celery -A app_module worker`` on a queue of its own, with ``environment`` added."""

    def __init__(
        self,
        app_module: str,
        environment: Mapping[str, str] | None = None,
        *,
        pool: str = "solo",
        concurrency: int = 1,
    ) -> None:
        self.queue = f"worker_{uuid.uuid4().hex[:12]}"
        command = [
            *(sys.executable, "-m", "celery", "-A", app_module, "worker"),
            *("--pool", pool, "--concurrency", str(concurrency), "--queues", self.queue),
            # One worker, alone on its queue: no chatter with other workers.
            *("--without-heartbeat", "--without-gossip", "--without-mingle"),
            *("--loglevel", "warning"),
        ]
        super().__init__(command, environment)

    def send(self, task: Task[Any, Any], *args: Any) -> AsyncResult[Any]:
        """Put ``task(*args)`` on this worker's queue."""
        return task.apply_async(args, queue=self.queue)

    @staticmethod
    def outcome(result: AsyncResult[Any], timeout: float = 60) -> Any:
        """The task's answer, or the error it ended with, as ``"Class: message"``; ``timeout``
        includes the worker's start, slow on a busy machine."""
        try:
            return result.get(timeout=timeout)
        except Exception as error:  # the worker's error, rebuilt here by Celery
            return f"{type(error).__name__}: {error}"

    def kill_pool_process(self) -> int:
        """SIGKILL the pool's one process (a ``prefork`` worker of concurrency 1), as the
        kernel's out-of-memory killer or a crash would end it; return its pid."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        (child,) = (int(pid) for pid in children.read_text().split())
        os.kill(child, signal.SIGKILL)
        return child

    def __enter__(self) -> CeleryWorker:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop(grace=30)  # SIGTERM: Celery's warm shutdown, the tasks running finish


class TaskiqWorker(LoggedProcess):
    """``taskiq worker broker_path`` (one worker process) on a queue of its own.

    ``make_broker(queue)`` makes the broker this side sends with; ``max_async_tasks`` is how many
    jobs the worker runs at once (taskiq's ``--max-async-tasks``).
    """

    def __init__(
        self,
        broker_path: str,
        make_broker: Callable[[str], AsyncBroker],
        environment: Mapping[str, str] | None = None,
        *,
        max_async_tasks: int = 100,
    ) -> None:
        self.queue = f"worker_{uuid.uuid4().hex[:12]}"
        self.client = make_broker(self.queue)
        command = [
            *(sys.executable, "-m", "taskiq", "worker", broker_path, "--workers", "1"),
            *("--max-async-tasks", str(max_async_tasks), "--log-level", "WARNING"),
        ]
        super().__init__(command, {**(environment or {}), "JOBS_QUEUE": self.queue})

    async def send(
        self, task: AsyncTaskiqDecoratedTask[Any, Any], *args: Any
    ) -> AsyncTaskiqTask[Any]:
        """Put ``task(*args)`` on this worker's queue."""
        return await task.kicker().with_broker(self.client).kiq(*args)

    @staticmethod
    async def outcome(sent: AsyncTaskiqTask[Any], within: float = 60) -> Any:
        """The job's answer, or the error it ended with, as ``"Class: message"``; ``within``
        (seconds) includes the worker's start, slow on a busy machine."""
        # Not parsed into the task's return type: an error has no return value to parse, and
        # taskiq would log a warning for it. The answer is JSON already (dicts, lists, ...).
        sent.return_type = None
        # Asked every 10 ms: taskiq's default, 0.2 s, would add up to 0.2 s to each job of a
        # hundred sent one after another.
        result = await sent.wait_result(check_interval=0.01, timeout=within)
        if result.is_err:
            error = result.error
            return f"{type(error).__name__}: {error}"
        return result.return_value

    async def __aenter__(self) -> TaskiqWorker:
        try:
            await self.client.startup()
        except BaseException:  # the worker process is already running: stop it too
            await asyncio.to_thread(self.stop, 30)
            raise
        return self

    async def __aexit__(self, *_: object) -> None:
        try:
            await self.client.shutdown()
        finally:
            # SIGTERM: taskiq's graceful shutdown, which runs the WORKER_SHUTDOWN event.
            await asyncio.to_thread(self.stop, 30)
