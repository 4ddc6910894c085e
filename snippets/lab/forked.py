"""An engine whose pool connected before the process forked, used in the forked child.

A pooled connection belongs to the process, and the event loop, that opened it. A server that
forks its workers from a parent that has already connected (``gunicorn --preload`` with an app
that queries the database at import, or any ``multiprocessing`` fork) hands each child a copy of
the parent's connection: its socket shared with the parent, its futures bound to a loop the
child does not run. ``python -m snippets.lab.forked`` shows what a query in such a child does,
then the same with SQLAlchemy's fix, ``engine.sync_engine.dispose(close=False)`` first in the
child (the copies forgotten, not closed: the parent still owns them). It prints one JSON object,
``{"naive": ..., "disposed first": ...}``, each what the child's query did: ``"ok"``, the error's
class (and ``DIFFERENT_LOOP`` when its message says so), or ``"no answer"`` when the child had
none within ``CHILD_SECONDS`` (it is then killed).
(notebook 15; ``uvicorn --workers`` spawns its workers, so it does not meet this.)
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
from multiprocessing.connection import Connection

from sqlalchemy import text

from snippets.engine import make_engine

CHILD_SECONDS = 2.0
DIFFERENT_LOOP = "attached to a different loop"
engine = make_engine(pool_size=1, max_overflow=0)  # made at import, as in an app module


async def one_query() -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT 1"))).scalar_one())


def _child(answer: Connection, dispose_first: bool) -> None:
    if dispose_first:
        engine.sync_engine.dispose(close=False)
    try:
        asyncio.run(asyncio.wait_for(one_query(), CHILD_SECONDS))
        answer.send("ok")
    except BaseException as error:  # what it is, not its message
        why = f" ({DIFFERENT_LOOP})" if DIFFERENT_LOOP in str(error) else ""
        answer.send(type(error).__name__ + why)


def in_forked_child(dispose_first: bool) -> str:
    fork = multiprocessing.get_context("fork")
    receiving, sending = fork.Pipe(duplex=False)
    child = fork.Process(target=_child, args=(sending, dispose_first))
    child.start()
    outcome = receiving.recv() if receiving.poll(CHILD_SECONDS + 0.5) else "no answer"
    if outcome == "no answer":
        child.kill()  # stuck: aiosqlite's thread was not copied into it
    child.join()
    return str(outcome)


def main() -> None:
    asyncio.run(one_query())  # the parent connects: a start-up check, a migration at import
    outcomes = {"naive": in_forked_child(False), "disposed first": in_forked_child(True)}
    print(json.dumps(outcomes))


if __name__ == "__main__":
    main()
