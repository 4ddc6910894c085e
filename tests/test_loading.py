"""Relationship loading: the statements each strategy sends, and that nothing is left to load."""

from __future__ import annotations

import gc
import warnings

import pytest
from sqlalchemy.exc import InvalidRequestError, MissingGreenlet, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import joinedload
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from snippets.demo.loading import (
    STRATEGIES,
    hero_with_relations,
    teams_with_heroes,
    teams_with_heroes_and_powers,
)
from snippets.demo.models import Hero, HeroPublicWithRelations, Team, TeamPublicWithHeroes
from snippets.demo.seeding import seed_league
from snippets.lab.loading import measure_loading
from snippets.lab.observe import recorded_statements
from snippets.relationships import rel
from snippets.session import make_sessionmaker

TEAMS, HEROES_PER_TEAM = 6, 3


@pytest.fixture
async def league(engine: AsyncEngine) -> AsyncEngine:
    async with make_sessionmaker(engine)() as session, session.begin():
        await seed_league(session, teams=TEAMS, heroes_per_team=HEROES_PER_TEAM)
    return engine


async def test_lazy_load_in_async_code_raises_missing_greenlet(league: AsyncEngine) -> None:
    async with make_sessionmaker(league)() as session:
        hero = (await session.exec(select(Hero).limit(1))).one()
        with pytest.raises((MissingGreenlet, StatementError)) as caught:
            _ = hero.team
    cause = getattr(caught.value, "orig", caught.value)
    assert isinstance(cause, MissingGreenlet)
    # On aiosqlite the refused load leaves SQLAlchemy's `cursor()` coroutine un-awaited; its
    # RuntimeWarning fires when the traceback holding it is collected. Collect it here, where
    # it is expected, rather than in whichever test runs next.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "coroutine .* was never awaited", RuntimeWarning)
        del caught, cause
        gc.collect()


@pytest.mark.parametrize(
    ("strategy", "expected_statements"),
    [("awaitable_attrs", TEAMS + 1), ("selectinload", 2), ("joinedload", 1)],
)
async def test_each_strategy_sends_the_expected_statements(
    league: AsyncEngine, strategy: str, expected_statements: int
) -> None:
    assert strategy in STRATEGIES
    async with make_sessionmaker(league)() as session:
        with recorded_statements(league) as statements:
            teams = await teams_with_heroes(session, strategy)  # type: ignore[arg-type]
        assert len(statements) == expected_statements
        with recorded_statements(league) as afterwards:
            names = [[hero.name for hero in team.heroes] for team in teams]
        assert afterwards == []  # everything was loaded: reading sends nothing
    assert len(teams) == TEAMS
    assert [len(heroes) for heroes in names] == [HEROES_PER_TEAM] * TEAMS
    assert names[0] == [f"Hero 000-{n:02d}" for n in range(HEROES_PER_TEAM)]


async def test_unknown_strategy(league: AsyncEngine) -> None:
    async with make_sessionmaker(league)() as session:
        with pytest.raises(ValueError, match="unknown strategy"):
            await teams_with_heroes(session, "lazy")  # type: ignore[arg-type]


async def test_measure_loading_reports_counts(league: AsyncEngine) -> None:
    measured = {s: await measure_loading(league, s, repeat=2) for s in STRATEGIES}
    assert {s: m.statements for s, m in measured.items()} == {
        "awaitable_attrs": TEAMS + 1,
        "selectinload": 2,
        "joinedload": 1,
    }
    for measurement in measured.values():
        assert measurement.teams == TEAMS
        assert measurement.heroes == TEAMS * HEROES_PER_TEAM
        assert measurement.seconds > 0
    with pytest.raises(ValueError, match="repeat"):
        await measure_loading(league, "joinedload", repeat=0)


async def test_loader_chain_loads_three_levels_in_three_statements(league: AsyncEngine) -> None:
    async with make_sessionmaker(league)() as session:
        with recorded_statements(league) as statements:
            teams = await teams_with_heroes_and_powers(session)
        with recorded_statements(league) as afterwards:
            power_names = {p.name for team in teams for hero in team.heroes for p in hero.powers}
    assert len(statements) == 3
    assert afterwards == []
    assert power_names == {f"Power {n}" for n in range(4)}


async def test_hero_with_relations_serialises(league: AsyncEngine) -> None:
    async with make_sessionmaker(league)() as session:
        with recorded_statements(league) as statements:
            hero = await hero_with_relations(session, 1)
        assert hero is not None
        assert await hero_with_relations(session, 10_000) is None
    assert len(statements) == 2  # hero joined with its team, then its powers
    assert "heroes" not in hero.model_dump()
    assert "team" not in hero.model_dump()
    public = HeroPublicWithRelations.model_validate(hero)
    assert public.team is not None
    assert public.team.name == "Team 000"
    assert sorted(p.name for p in public.powers) == ["Power 0", "Power 1"]


async def test_team_read_model_with_heroes(league: AsyncEngine, session: AsyncSession) -> None:
    team = (await teams_with_heroes(session, "selectinload"))[0]
    dumped = TeamPublicWithHeroes.model_validate(team).model_dump()
    assert dumped["name"] == "Team 000"
    assert [h["name"] for h in dumped["heroes"]] == [f"Hero 000-{n:02d}" for n in range(3)]


async def test_seed_league_needs_two_powers(session: AsyncSession) -> None:
    with pytest.raises(ValueError, match="powers must be >= 2"):
        await seed_league(session, teams=1, heroes_per_team=1, powers=1)


def test_rel_accepts_relationships_only() -> None:
    assert rel(Team.heroes).key == "heroes"
    with pytest.raises(TypeError, match="mapped attribute"):
        rel([])


async def test_deleting_a_team_keeps_its_heroes_without_team(league: AsyncEngine) -> None:
    # ondelete="SET NULL" on hero.team_id (SQLite enforces it thanks to the foreign-key PRAGMA).
    async with make_sessionmaker(league)() as session:
        async with session.begin():
            team = (await session.exec(select(Team).where(Team.name == "Team 000"))).one()
            await session.delete(team)
        orphans = (await session.exec(select(Hero).where(Hero.name.startswith("Hero 000-")))).all()
    assert len(orphans) == HEROES_PER_TEAM
    assert all(hero.team_id is None for hero in orphans)


async def test_joined_collection_without_unique_is_refused(league: AsyncEngine) -> None:
    # Why teams_with_heroes calls unique() for joinedload: SQLAlchemy insists.
    async with make_sessionmaker(league)() as session:
        result = await session.exec(select(Team).options(joinedload(rel(Team.heroes))))
        with pytest.raises(InvalidRequestError, match=r"unique\(\) method must be invoked"):
            result.all()
