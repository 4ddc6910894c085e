"""Making a database server misbehave on purpose, for the notebooks' demonstrations.

A statement that runs for as long as asked (``slow_statement``), the statements running on the
server right now (``running_statements``), connections ended from outside, as a restart or
a proxy would end them (``kill_connections``), and the connections a namespace has open on the
server, from any process (``namespace_connections``), and a login role with no more rights than
an application's (``application_role``). Each is built from the SQL that
``snippets.backends.BackendFacts`` holds for the backend, so nothing here branches on it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy import TextClause, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from snippets.backends import (
    FACTS,
    SQLITE_ROWS_PER_SECOND,
    Backend,
    Bind,
    backend_of,
    facts,
    mysql_error_code,
)
from snippets.engine import make_engine, namespaced_url


def slow_statement(
    target: Bind | Backend, seconds: float, *, label: str = "slow_statement"
) -> TextClause:
    """A read-only statement that runs for about ``seconds`` on the server; it returns one row.

    PostgreSQL ``pg_sleep``, MySQL/MariaDB ``SLEEP``; SQLite counts a recursive CTE long enough
    (``BackendFacts.slow_statement_sql``). ``label`` (a word) goes into a comment in the SQL,
    for ``running_statements`` to find it among others.

    Raises:
        ValueError: ``label`` is not a plain word.
    """
    if not label.isidentifier():
        raise ValueError(f"label must be a plain word, got {label!r}")
    backend = target if isinstance(target, str) else backend_of(target)
    sql = FACTS[backend].slow_statement_sql.format(
        comment=f"/* {label} */", rows_per_second=SQLITE_ROWS_PER_SECOND
    )
    return text(sql).bindparams(seconds=seconds)


async def running_statements(admin: AsyncEngine, fragment: str) -> int | None:
    """How many other server connections are running a statement that contains ``fragment``;
    ``None`` on SQLite, which has no server to ask."""
    sql = facts(admin).active_statements_sql
    if sql is None:
        return None
    async with admin.connect() as conn:
        result = await conn.execute(text(sql), {"pattern": f"%{fragment}%"})
        return int(result.scalar_one())


UNKNOWN_THREAD_ID = 1094
"""MySQL/MariaDB's error for ``KILL`` of a connection that is no longer there."""


async def kill_connections(admin: AsyncEngine, ids: Sequence[int]) -> int:
    """End these server connections from another engine, as a restart or a proxy would.

    PostgreSQL: ``pg_terminate_backend``; MySQL/MariaDB: ``KILL``. Returns how many were ended.

    Raises:
        ValueError: on SQLite, which has no server connections to end.
    """
    sql = facts(admin).kill_connection_sql
    if sql is None:
        raise ValueError("SQLite has no server connections to end")
    ended = 0
    async with admin.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        for connection_id in ids:
            try:
                result = await conn.exec_driver_sql(sql.format(id=int(connection_id)))
            except DBAPIError as error:
                if mysql_error_code(error) != UNKNOWN_THREAD_ID:
                    raise
                continue  # it ended on its own since it was listed
            # pg_terminate_backend answers whether it ended one; KILL answers nothing.
            ended += 1 if not result.returns_rows or result.scalar() else 0
    return ended


async def namespace_connections(admin: AsyncEngine, namespace: str) -> int | None:
    """How many connections the server has open for ``namespace``, whoever opened them (another
    process's pool, say); ``None`` on SQLite, which has no server to ask."""
    ids = await namespace_connection_ids(admin, namespace)
    return None if ids is None else len(ids)


async def namespace_connection_ids(admin: AsyncEngine, namespace: str) -> list[int] | None:
    """The server's ids of the connections open for ``namespace``, for ``kill_connections``;
    ``None`` on SQLite."""
    sql = facts(admin).namespace_connections_sql
    if sql is None:
        return None
    name = (
        namespaced_url(admin.url, namespace).database
        if facts(admin).namespace_kind == ("database")
        else namespace
    )
    async with admin.connect() as conn:
        return [int(row[0]) for row in await conn.execute(text(sql), {"name": name})]


async def application_role(engine: AsyncEngine, namespace: str, role: str) -> AsyncEngine:
    """An engine that connects as ``role``, a login role that is neither a superuser nor the
    owner of ``namespace``'s tables, allowed to read and write them (PostgreSQL). The role is
    made if missing and kept: a role belongs to the whole server, not to one schema. It has no
    password: the servers of this guide trust loopback connections.

    Raises:
        ValueError: on a backend without roles to log in as this way (SQLite, MySQL/MariaDB).
    """
    if facts(engine).namespace_kind != "schema":
        raise ValueError(f"{facts(engine).label}: application_role is for PostgreSQL")
    for name in (role, namespace):  # they go into the SQL as they are
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
            raise ValueError(f"not a plain lower-case SQL name: {name!r}")
    async with engine.begin() as conn:
        # Several processes may make it at once: the loser's error is not an error here
        await conn.exec_driver_sql(
            f"DO $$ BEGIN CREATE ROLE {role} LOGIN; "
            "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
        )
        await conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA {namespace} TO {role}")
        await conn.exec_driver_sql(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {namespace} TO {role}"
        )
        await conn.exec_driver_sql(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {namespace} TO {role}")
    return make_engine(engine.url.set(username=role), namespace=namespace)
