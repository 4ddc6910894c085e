"""Faults made on purpose, for the notebooks to show what the code does when they happen."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import Connection, event
from sqlalchemy.ext.asyncio import AsyncEngine


@dataclass
class CommitsSeen:
    """The engines (by name) whose COMMIT was sent, in order, and the one whose COMMIT was lost."""

    sent: list[str] = field(default_factory=list)
    lost: str | None = None


@contextmanager
def watched_commits(
    engines: Mapping[str, AsyncEngine], *, lose: int | None = None
) -> Iterator[CommitsSeen]:
    """Record the COMMITs sent through ``engines`` inside the block, by the engines' names.

    With ``lose=n``, the n-th COMMIT (counted across all the engines) never reaches its server:
    its connection is closed just before (``Connection.invalidate()``), as a server that went
    away or a dropped network would leave it. The server rolls that transaction back, and the
    COMMIT raises. ``lose=2`` with two engines is "between the two COMMITs of one session".
    """
    seen = CommitsSeen()
    hooks = []
    for name, engine in engines.items():

        def before_commit(conn: Connection, name: str = name) -> None:
            if len(seen.sent) + 1 == lose and seen.lost is None:
                seen.lost = name
                conn.invalidate()
            else:
                seen.sent.append(name)

        event.listen(engine.sync_engine, "commit", before_commit)
        hooks.append((engine, before_commit))
    try:
        yield seen
    finally:
        for engine, hook in hooks:
            event.remove(engine.sync_engine, "commit", hook)
