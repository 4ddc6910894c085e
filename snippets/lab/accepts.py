"""How a served app's event loop accepts new connections, batch by batch (chapter 14).

A connection a client opens is complete in the kernel at once; it waits in the listening
socket's queue until the server's event loop accepts it. uvloop's libuv accepts one connection
each time the loop polls (libuv pull request 3696, "unix: don't accept() connections in a
loop"; the tests check it of the uvloop installed); asyncio's own loop accepts every connection
waiting, up to 100 at a time. Between two polls, the loop runs
every callback that is ready: on a busy server, one step of each request in flight. So when
64 clients connect at once to a server already busy (the start of every ``wrk`` run), under
uvloop the last of them waits 64 of those iterations before its request is even read.

``trace_accepts(app)``, called in the server's process before it serves (``served_app`` does,
with ``WEB_BENCH_TRACE_ACCEPTS=1``), counts the connections accepted in each iteration of the
loop and adds two routes to ``app``: ``GET /_accepts`` returns the counts since the last call,
``GET /_accepts/busy?ms=N`` holds the event loop for N ms, as a burst of work would.
``accept_batches`` opens connections while the server is held busy and returns the counts.
Instruments, not code to copy.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from fastapi import FastAPI

ACCEPTS_PATH = "/_accepts"


class AcceptLog:
    """Connections accepted per iteration of the event loop, in the order of the iterations."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self._open = False

    def connection_made(self) -> None:
        # Connections made in one iteration share a batch; a callback scheduled now runs in
        # the next iteration (both loops run only what was ready when the iteration began).
        if not self._open:
            self._open = True
            self.batches.append(0)
            asyncio.get_running_loop().call_soon(self._close)
        self.batches[-1] += 1

    def _close(self) -> None:
        self._open = False

    def take(self) -> list[int]:
        """The batches so far, forgotten once returned."""
        batches, self.batches = self.batches, []
        return batches


_current: list[AcceptLog] = []
"""The log the patched protocols write to: the last ``trace_accepts``'s (patched once)."""


def trace_accepts(app: FastAPI) -> AcceptLog:
    """Count the connections uvicorn's HTTP protocols are given, per loop iteration, and serve
    the counts at ``/_accepts`` (see the module docstring)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    log = AcceptLog()
    if not _current:
        for protocol in (H11Protocol, HttpToolsProtocol):
            made = protocol.connection_made

            def connection_made(self: Any, transport: Any, made: Any = made) -> None:
                _current[-1].connection_made()
                made(self, transport)

            protocol.connection_made = connection_made  # type: ignore[method-assign]
    _current[:] = [log]

    @app.get(ACCEPTS_PATH)
    async def accepts() -> list[int]:
        return log.take()

    @app.get(ACCEPTS_PATH + "/busy")
    async def busy(ms: int) -> None:
        time.sleep(ms / 1000)  # noqa: ASYNC251 (the whole event loop, on purpose)

    return log


async def accept_batches(base: str, *, clients: int, busy_ms: int = 200) -> list[int]:
    """Open ``clients`` connections to the server at ``base`` (tracing its accepts) while its
    event loop is held busy for ``busy_ms``, send a request on each, and return how many
    connections the server accepted in each iteration of its loop once it was free."""
    from snippets.lab.web_bench import burst

    async with httpx.AsyncClient(base_url=base, timeout=10) as control:
        await control.get(ACCEPTS_PATH)  # forget what came before, this connection included
        held = asyncio.create_task(control.get(ACCEPTS_PATH + "/busy", params={"ms": busy_ms}))
        await asyncio.sleep(busy_ms / 4000)  # the server is in the busy request by now
        statuses = await burst(base + "/db", clients=clients)
        (await held).raise_for_status()
        if statuses != [200] * clients:
            raise RuntimeError(f"the burst was not answered: {statuses}")
        batches: list[int] = (await control.get(ACCEPTS_PATH)).json()
    return batches
