"""An ASGI app served for real: a ``uvicorn`` process on a free loopback port (chapters 14, 15).

``ServedApp("package.module:factory", environment, ready_path="/health")`` starts uvicorn with
``--factory`` in a process of its own, waits until ``ready_path`` answers 200, and stops the
process (by its pid) when the ``with`` block ends. What the server prints goes to a file, read
with ``log()``. A real server shows what an in-process client cannot: a response that reaches
the client before the code after a dependency's ``yield`` has run, or before a background task.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping

import httpx

from snippets.config import PROJECT_ROOT


def port_answers(host: str, port: int, timeout: float) -> bool:
    """Whether something accepts a TCP connection at ``host``:``port`` within ``timeout``."""
    try:
        socket.create_connection((host, port), timeout).close()
    except OSError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pinned(core: int, command: list[str]) -> list[str]:
    """``command`` on one core where taskset works, as it is elsewhere."""
    taskset = shutil.which("taskset")
    if taskset and subprocess.run([taskset, "-c", str(core), "true"], check=False).returncode == 0:
        return [taskset, "-c", str(core), *command]
    return command


class LoggedProcess:
    """A process of ours whose output goes to a file (``log()``), ended by its pid with SIGTERM,
    then SIGKILL if it has not exited within ``grace`` seconds."""

    def __init__(self, command: list[str], environment: Mapping[str, str] | None) -> None:
        # Open until the process is stopped (then read into ``_printed``): the process writes to it.
        self._log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        self._printed: str | None = None
        self.process = subprocess.Popen(
            command,
            env={**os.environ, **(environment or {})},
            cwd=PROJECT_ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        """Everything the process has printed so far."""
        if self._printed is not None:
            return self._printed
        self._log.flush()
        self._log.seek(0)
        return self._log.read()

    def cpu_seconds(self) -> float:
        """CPU seconds (user and system) the process and its children have spent so far."""
        import psutil

        process = psutil.Process(self.process.pid)
        total = sum(process.cpu_times()[:2])
        for child in process.children(recursive=True):
            total += sum(child.cpu_times()[:2])
        return float(total)

    def stop(self, grace: float) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._printed = self.log()
        self._log.close()


class ServedApp(LoggedProcess):
    """The app ``factory`` makes, under uvicorn (uvloop, or ``loop``; httptools) on a free
    loopback port.

    ``environment`` is added to this process's (``DATABASE_URL``, a namespace variable, ...);
    ``core`` pins the server to one CPU where ``taskset`` works; ``workers`` > 1 starts that
    many worker processes (``uvicorn --workers``, spawned, not forked), ``process`` being their
    supervisor. The block waits at most 30 s for ``ready_path`` to answer 200, and raises with
    the server's last line if it exits. It ends with SIGTERM, as a process manager stops a
    server: uvicorn finishes the requests in flight, then runs the lifespan's shutdown.
    """

    def __init__(
        self,
        factory: str,
        environment: Mapping[str, str] | None = None,
        *,
        ready_path: str = "/",
        core: int | None = None,
        workers: int = 1,
        loop: str = "uvloop",
    ) -> None:
        if loop not in ("uvloop", "asyncio"):
            raise ValueError(f"loop is uvloop or asyncio, not {loop!r}")
        self.port = free_port()
        self.ready_path = ready_path
        command = [
            *(sys.executable, "-m", "uvicorn", "--factory", factory),
            *("--host", "127.0.0.1", "--port", str(self.port)),
            *("--loop", loop, "--http", "httptools"),
            *("--no-access-log", "--log-level", "warning"),
            *(("--workers", str(workers)) if workers > 1 else ()),
        ]
        super().__init__(pinned(core, command) if core is not None else command, environment)
        self.base = f"http://127.0.0.1:{self.port}"

    def wait_for_log(self, fragment: str, timeout: float = 10) -> str:
        """The first line of the log that contains ``fragment``, waiting up to ``timeout``
        seconds for it: a server logs an error after it has sent the 500 for it."""
        deadline = time.monotonic() + timeout
        while True:
            found = [line.strip() for line in self.log().splitlines() if fragment in line]
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server logged no line with {fragment!r} in {timeout} s")
            time.sleep(0.05)

    def __enter__(self) -> ServedApp:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                last = (self.log().strip().splitlines() or ["?"])[-1]
                raise RuntimeError(f"uvicorn exited with {self.process.returncode}: {last}")
            try:
                if httpx.get(self.base + self.ready_path, timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.__exit__()
        raise TimeoutError(f"{self.base} did not answer within 30 s")

    def __exit__(self, *_: object) -> None:
        self.stop(grace=10)
