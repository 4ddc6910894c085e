"""Load the demo league's relationships in async code without lazy loading.

Async code cannot lazy-load: reading a relationship that was not loaded raises
``MissingGreenlet``. These queries of the demo league load what the caller will read, up front
(notebook 05):

* ``selectinload``: one extra ``SELECT ... WHERE id IN (...)`` per relationship; the default
  choice for collections;
* ``joinedload``: a ``LEFT OUTER JOIN`` in the same statement; best for many-to-one, and for
  collections only with ``.unique()`` (the join repeats the parent once per child);
* ``awaitable_attrs``: one awaited lazy load per object, the N+1 pattern, measured by
  ``snippets.lab.loading`` so that it is never chosen by accident.
"""

from __future__ import annotations

from typing import Literal, get_args

from sqlalchemy.orm import joinedload, selectinload
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from snippets.demo.models import Hero, Team
from snippets.relationships import rel

Strategy = Literal["awaitable_attrs", "selectinload", "joinedload"]
STRATEGIES: tuple[Strategy, ...] = get_args(Strategy)


async def teams_with_heroes(session: AsyncSession, strategy: Strategy) -> list[Team]:
    """All teams, ordered by id, each with ``heroes`` loaded by ``strategy``."""
    statement: SelectOfScalar[Team] = select(Team).order_by(col(Team.id))
    if strategy == "selectinload":
        return list((await session.exec(statement.options(selectinload(rel(Team.heroes))))).all())
    if strategy == "joinedload":
        # A joined collection repeats each team once per hero: unique() folds them back.
        result = await session.exec(statement.options(joinedload(rel(Team.heroes))))
        return list(result.unique().all())
    if strategy == "awaitable_attrs":
        teams = list((await session.exec(statement)).all())
        for team in teams:
            await team.awaitable_attrs.heroes  # one SELECT per team: N+1
        return teams
    raise ValueError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}")


async def teams_with_heroes_and_powers(session: AsyncSession) -> list[Team]:
    """All teams with their heroes and each hero's powers: a loader chain, three statements."""
    statement: SelectOfScalar[Team] = (
        select(Team)
        .order_by(col(Team.id))
        .options(selectinload(rel(Team.heroes)).selectinload(rel(Hero.powers)))
    )
    return list((await session.exec(statement)).all())


async def hero_with_relations(session: AsyncSession, hero_id: int) -> Hero | None:
    """One hero with its team (joined, many-to-one) and its powers (selectin, a collection)."""
    statement: SelectOfScalar[Hero] = (
        select(Hero)
        .where(col(Hero.id) == hero_id)
        .options(joinedload(rel(Hero.team)), selectinload(rel(Hero.powers)))
    )
    return (await session.exec(statement)).one_or_none()
