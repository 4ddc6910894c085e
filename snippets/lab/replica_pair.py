"""Where the guide's replica pairs answer (``make replica``, ``tools/replicas.sh``).

Each pair is a primary and a streaming replica of it, servers of their own on loopback ports:
PostgreSQL's primary on 5434 and hot standby on 5433, MariaDB's primary on 3308 and replica on
3307. ``REPLICA_PRIMARY_URL`` and ``REPLICA_URL`` name another pair; where either is set (CI
sets both), a pair that does not answer is an error instead of a reason to skip.
"""

from __future__ import annotations

import os

from sqlalchemy.engine import URL, make_url

from snippets.backends import Backend, backend_of
from snippets.config import database_url, redact
from snippets.engine import make_engine, open_engine
from snippets.lab.served import port_answers
from snippets.replicas import Replicas

PRIMARY_VARIABLE = "REPLICA_PRIMARY_URL"
REPLICA_VARIABLE = "REPLICA_URL"
START_COMMAND = "make replica"
DEFAULT_PAIRS: dict[Backend, tuple[str, str]] = {
    "postgresql": (
        "postgresql+asyncpg://postgres@127.0.0.1:5434/test",
        "postgresql+asyncpg://postgres@127.0.0.1:5433/test",
    ),
    "mysql": (
        "mysql+aiomysql://guide@127.0.0.1:3308/test",
        "mysql+aiomysql://guide@127.0.0.1:3307/test",
    ),
}


class ReplicaUnreachableError(RuntimeError):
    """``REPLICA_URL`` or ``REPLICA_PRIMARY_URL`` is set, and its server does not answer."""


def replica_pair(backend: Backend | None = None) -> tuple[URL, URL] | None:
    """The primary's and the replica's URLs for ``backend`` (default: ``DATABASE_URL``'s), from
    the variables or the defaults; ``None`` on SQLite, which has no replicas."""
    chosen = backend or backend_of(database_url())
    if chosen not in DEFAULT_PAIRS:
        return None
    primary, replica = DEFAULT_PAIRS[chosen]
    return (
        make_url(os.environ.get(PRIMARY_VARIABLE) or primary),
        make_url(os.environ.get(REPLICA_VARIABLE) or replica),
    )


def answers(url: URL, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections at ``url``'s host and port."""
    return port_answers(url.host or "127.0.0.1", url.port or 0, timeout)


def pair_available(pair: tuple[URL, URL]) -> bool:
    """Whether both servers of ``pair`` answer: ``False`` lets a chapter or a test say how to
    start them (``START_COMMAND``). Where a variable names them, one that does not answer is a
    ``ReplicaUnreachableError``: CI sets them, and must not skip what needs the pair."""
    silent = [url for url in pair if not answers(url)]
    configured = os.environ.get(PRIMARY_VARIABLE) or os.environ.get(REPLICA_VARIABLE)
    if silent and configured:
        shown = ", ".join(redact(url.render_as_string(hide_password=False)) for url in silent)
        raise ReplicaUnreachableError(f"{REPLICA_VARIABLE} is set and nothing answers at {shown}")
    return not silent


async def open_pair(pair: tuple[URL, URL], namespace: str, **options: float) -> Replicas:
    """``Replicas`` on ``pair`` for ``namespace``: emptied on the primary, and waited for on the
    replica (a namespace, a schema or a database, replicates as any change does); ``options``
    are ``Replicas``' own (``check_every``, ``check_within``)."""
    primary_url, replica_url = pair
    primary = await open_engine(primary_url, namespace=namespace, fresh=True)
    replica = make_engine(replica_url, namespace=namespace, connect_timeout=2)
    replicas = Replicas(primary, replica, **options)
    if not await replicas.wait_for(await replicas.position(), within=30):
        raise ReplicaUnreachableError("the replica did not apply the primary's log in 30 s")
    return replicas
