"""A Celery worker started for real: a ``celery worker`` process on a queue of its own (chapter 16).

``CeleryWorker("package.module", environment)`` starts ``celery -A package.module worker`` in a
process of its own, consuming a queue no other run uses (tests and notebooks run in parallel
against the same broker), and stops it by its pid when the ``with`` block ends, with SIGTERM:
Celery's warm shutdown, which runs the worker's shutdown signals. ``send`` puts a task on that
queue; ``outcome`` waits for its answer, or the error it ended with. What the worker prints
goes to a file, read with ``log()``.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from celery import Task
from celery.result import AsyncResult
from sqlalchemy.engine import make_url

from snippets.lab.served import LoggedProcess


def broker_answers(url: str, timeout: float = 2) -> bool:
    """Whether something accepts a TCP connection at the broker URL's host and port."""
    parsed = make_url(url)
    try:
        socket.create_connection((parsed.host or "127.0.0.1", parsed.port or 6379), timeout).close()
    except OSError:
        return False
    return True


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
