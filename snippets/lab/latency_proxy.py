"""A TCP proxy that puts a database a fixed latency away, for ``make bench-web``.

Every chunk of bytes is forwarded after ``delay`` seconds, in order, in each direction: a
round trip through the proxy costs ``2 * delay`` more, as a database in another rack or zone
would. Loopback only. Run it as a program::

    python -m snippets.lab.latency_proxy --listen 6543 --target 127.0.0.1:5432 --delay-ms 1

It prints ``listening on 127.0.0.1:PORT`` once it accepts connections, and runs until stopped.
``LatencyProxy`` runs it so from Python, and makes the database unreachable on purpose
(notebook 15): ``freeze()`` it (connections accepted, never answered, as a hung server or a
dropped network) and ``thaw()`` it; ``stop()`` it (connections reset, new ones refused).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import subprocess
import sys
import time

from sqlalchemy.engine import URL

from snippets.backends import facts
from snippets.config import PROJECT_ROOT
from snippets.lab.served import free_port


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy ``reader`` to ``writer``, each chunk ``delay`` seconds after it arrived."""
    due: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            at, chunk = await due.get()
            if not chunk:
                break
            wait = at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(chunk)
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        while chunk := await reader.read(65536):
            due.put_nowait((time.monotonic() + delay, chunk))
    finally:
        due.put_nowait((0.0, b""))
        with contextlib.suppress(ConnectionError):
            await sender
        writer.close()


async def serve(listen_port: int, target_host: str, target_port: int, delay: float) -> None:
    async def handle(
        client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        server_reader, server_writer = await asyncio.open_connection(target_host, target_port)
        await asyncio.gather(
            _pipe(client_reader, server_writer, delay),
            _pipe(server_reader, client_writer, delay),
            return_exceptions=True,
        )

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    print(f"listening on 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


class LatencyProxy:
    """This proxy in a process of its own, on a free loopback port, to ``url``'s server, each
    round trip ``round_trip_ms`` longer; stopped (by its pid) when the ``with`` block ends."""

    def __init__(self, url: URL, round_trip_ms: float = 0.0) -> None:
        self.port = free_port()
        self.url = url.set(host="127.0.0.1", port=self.port)
        """``url``, through the proxy."""
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "snippets.lab.latency_proxy", "--listen", str(self.port)),
                *("--target", f"{url.host}:{url.port or facts(url).default_port}"),
                *("--delay-ms", str(round_trip_ms / 2)),
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=PROJECT_ROOT,
        )
        self.frozen = False
        assert self.process.stdout is not None
        self.process.stdout.readline()  # "listening on ...": accepting connections

    def freeze(self) -> None:
        """Stop the process where it is: the kernel still accepts connections, nothing answers."""
        self.process.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)
        self.frozen = False

    def stop(self) -> None:
        """End the process: its connections are closed, new ones refused. A frozen proxy is
        killed as it is, so that nothing it holds is forwarded on the way out (thawed first,
        it would pass on a statement waiting in it, and the answer, before it ended)."""
        if self.process.poll() is None:
            if self.frozen:
                self.process.kill()
            else:
                self.process.terminate()
            self.process.wait(timeout=10)

    def __enter__(self) -> LatencyProxy:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=int, required=True, help="loopback port to listen on")
    parser.add_argument("--target", required=True, help="HOST:PORT of the database")
    parser.add_argument("--delay-ms", type=float, required=True, help="added each way")
    args = parser.parse_args()
    host, _, port = args.target.rpartition(":")
    asyncio.run(serve(args.listen, host, int(port), args.delay_ms / 1000))


if __name__ == "__main__":
    main()
