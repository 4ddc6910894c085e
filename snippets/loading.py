"""Load relationships in async code without lazy loading, and measure what each way costs.

Async code cannot lazy-load: reading a relationship that was not loaded raises
``MissingGreenlet``. These helpers load what the caller will read, up front (notebook 05):

* ``selectinload``: one extra ``SELECT ... WHERE id IN (...)`` per relationship; the default
  choice for collections;
* ``joinedload``: a ``LEFT OUTER JOIN`` in the same statement; best for many-to-one, and for
  collections only with ``.unique()`` (the join repeats the parent once per child);
* ``awaitable_attrs``: one awaited lazy load per object, the N+1 pattern, measured here so that
  it is never chosen by accident.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal, get_args

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import QueryableAttribute, joinedload, selectinload
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from snippets.models import Hero, Power, Team
from snippets.observe import recorded_statements
from snippets.session import make_sessionmaker


def rel(attribute: object) -> QueryableAttribute[Any]:
    """A relationship attribute, typed for loader options: ``selectinload(rel(Team.heroes))``.

    SQLModel annotates ``Team.heroes`` with its instance type (``list[Hero]``), which loader
    functions do not accept; on the class it is a ``QueryableAttribute``. ``rel`` checks that
    and says so to the type checker, as SQLModel's ``col()`` does for columns.
    """
    if not isinstance(attribute, QueryableAttribute):
        raise TypeError(f"expected a mapped attribute such as Team.heroes, got {attribute!r}")
    return attribute


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


async def seed_league(
    session: AsyncSession, *, teams: int, heroes_per_team: int, powers: int = 4
) -> None:
    """Add ``teams`` teams of ``heroes_per_team`` heroes; each hero has two of ``powers`` powers.

    Names are deterministic (``Team 007``, ``Hero 007-02``, ``Power 1``); flushes, never commits.
    """
    if powers < 2:
        raise ValueError("seed_league gives each hero two powers: powers must be >= 2")
    all_powers = [Power(name=f"Power {number}") for number in range(powers)]
    session.add_all(all_powers)
    for team_number in range(teams):
        team = Team(name=f"Team {team_number:03d}", headquarters=f"Tower {team_number}")
        session.add(team)
        for hero_number in range(heroes_per_team):
            first = (team_number + hero_number) % powers
            session.add(
                Hero(
                    name=f"Hero {team_number:03d}-{hero_number:02d}",
                    secret_name=f"Secret {team_number:03d}-{hero_number:02d}",
                    age=20 + (team_number + hero_number) % 50,
                    team=team,
                    powers=[all_powers[first], all_powers[(first + 1) % powers]],
                )
            )
    await session.flush()


@dataclass(frozen=True)
class LoadMeasurement:
    """What loading every team with its heroes cost with one strategy."""

    strategy: Strategy
    statements: int
    seconds: float
    teams: int
    heroes: int


async def measure_loading(
    engine: AsyncEngine, strategy: Strategy, *, repeat: int = 3
) -> LoadMeasurement:
    """Load all teams with their heroes ``repeat`` times, each in a new session.

    Returns the statements sent by one load (they are the same every time) and the fastest
    run's wall-clock seconds.
    """
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    session_factory = make_sessionmaker(engine)
    best = float("inf")
    for _ in range(repeat):
        async with session_factory() as session:
            with recorded_statements(engine) as statements:
                started = time.perf_counter()
                teams = await teams_with_heroes(session, strategy)
                best = min(best, time.perf_counter() - started)
            heroes = sum(len(team.heroes) for team in teams)
    return LoadMeasurement(strategy, len(statements), best, len(teams), heroes)
