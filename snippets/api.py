"""A FastAPI app, and an Air page, on SQLModel's async session (notebook 08).

Both apps come from factories, so that tests and notebooks can give them an engine of their own:

* ``database_lifespan`` opens the engine (or uses the one given), creates the tables through
  ``run_sync`` (no second, synchronous engine), and disposes what it opened;
* ``get_session`` gives each request a session of its own (``SessionDep``);
* ``create_app`` serves heroes and teams as JSON: 201 on create, 404 when missing, 409 on a
  duplicate name, 422 on invalid input, pagination bounded by ``Query``;
* ``create_air_app`` serves an HTML page with Air that lists heroes and adds one from a form.

Serve it for real with ``uvicorn --factory snippets.api:create_app`` (it reads ``DATABASE_URL``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any

import air
from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Query, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import selectinload
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from snippets import crud
from snippets.engine import open_engine
from snippets.loading import rel
from snippets.models import (
    Hero,
    HeroCreate,
    HeroPublic,
    HeroUpdate,
    Team,
    TeamCreate,
    TeamPublic,
    TeamPublicWithHeroes,
)
from snippets.session import make_sessionmaker
from snippets.tables import create_tables

MAX_PAGE = 100
"""The largest page a list endpoint returns; a larger ``limit`` is a 422."""

Lifespan = Callable[[Any], AbstractAsyncContextManager[None]]


def database_lifespan(engine: AsyncEngine | None = None, *, create: bool = True) -> Lifespan:
    """A ``lifespan`` that sets ``app.state.sessionmaker`` up, and tears down what it opened.

    Args:
        engine: the engine to use; ``None`` opens one from ``DATABASE_URL`` at start-up (so a bad
            URL or an unreachable database stops the app at once, with one clear message) and
            disposes it at shutdown. A given engine belongs to the caller and is not disposed.
        create: create missing tables at start-up (fine for a demo or tests; use migrations in
            production).
    """

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        active = engine if engine is not None else await open_engine()
        try:
            if create:
                await create_tables(active)
            app.state.engine = active
            app.state.sessionmaker = make_sessionmaker(active)
            yield
        finally:
            if engine is None:
                await active.dispose()

    return lifespan


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request, closed when the response has been sent."""
    async with request.app.state.sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
Offset = Annotated[int, Query(ge=0)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]

router = APIRouter()


async def _require_team(session: AsyncSession, team_id: int | None) -> None:
    # Checked up front for a clear 422; the foreign key still guards against a race.
    if team_id is not None and await session.get(Team, team_id) is None:
        raise HTTPException(status_code=422, detail=f"team {team_id} does not exist")


async def _commit_or_conflict(session: AsyncSession, detail: str) -> None:
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise HTTPException(status_code=409, detail=detail) from None


async def _hero_or_404(session: AsyncSession, hero_id: int) -> Hero:
    hero = await session.get(Hero, hero_id)
    if hero is None:
        raise HTTPException(status_code=404, detail=f"hero {hero_id} not found")
    return hero


@router.post("/heroes/", response_model=HeroPublic, status_code=201)
async def create_hero(data: HeroCreate, session: SessionDep) -> Hero:
    await _require_team(session, data.team_id)
    hero = Hero.model_validate(data)
    session.add(hero)
    await _commit_or_conflict(session, f"a hero named {data.name!r} already exists")
    return hero


@router.get("/heroes/", response_model=list[HeroPublic])
async def list_heroes(
    session: SessionDep, offset: Offset = 0, limit: Limit = MAX_PAGE
) -> list[Hero]:
    return await crud.list_heroes(session, offset=offset, limit=limit)


@router.get("/heroes/{hero_id}", response_model=HeroPublic)
async def read_hero(hero_id: int, session: SessionDep) -> Hero:
    return await _hero_or_404(session, hero_id)


@router.patch("/heroes/{hero_id}", response_model=HeroPublic)
async def update_hero(hero_id: int, patch: HeroUpdate, session: SessionDep) -> Hero:
    hero = await _hero_or_404(session, hero_id)
    changes = patch.model_dump(exclude_unset=True)
    for required in ("name", "secret_name"):
        if required in changes and changes[required] is None:
            raise HTTPException(status_code=422, detail=f"{required} cannot be null")
    await _require_team(session, changes.get("team_id"))
    hero.sqlmodel_update(changes)
    session.add(hero)
    await _commit_or_conflict(session, f"a hero named {changes.get('name')!r} already exists")
    return hero


@router.delete("/heroes/{hero_id}", status_code=204)
async def delete_hero(hero_id: int, session: SessionDep) -> Response:
    await session.delete(await _hero_or_404(session, hero_id))
    await session.commit()
    return Response(status_code=204)


@router.post("/teams/", response_model=TeamPublic, status_code=201)
async def create_team(data: TeamCreate, session: SessionDep) -> Team:
    team = Team.model_validate(data)
    session.add(team)
    await _commit_or_conflict(session, f"a team named {data.name!r} already exists")
    return team


@router.get("/teams/", response_model=list[TeamPublic])
async def list_teams(
    session: SessionDep, offset: Offset = 0, limit: Limit = MAX_PAGE
) -> list[Team]:
    statement: SelectOfScalar[Team] = select(Team).order_by(col(Team.id))
    return list((await session.exec(statement.offset(offset).limit(limit))).all())


@router.get("/teams/{team_id}", response_model=TeamPublicWithHeroes)
async def read_team(team_id: int, session: SessionDep) -> Team:
    # The response model reads team.heroes: load them now, or validation fails (notebook 05).
    statement: SelectOfScalar[Team] = (
        select(Team).where(col(Team.id) == team_id).options(selectinload(rel(Team.heroes)))
    )
    team = (await session.exec(statement)).one_or_none()
    if team is None:
        raise HTTPException(status_code=404, detail=f"team {team_id} not found")
    return team


def create_app(engine: AsyncEngine | None = None, *, create: bool = True) -> FastAPI:
    """The JSON API. ``uvicorn --factory snippets.api:create_app`` serves it from DATABASE_URL."""
    app = FastAPI(title="Heroes", lifespan=database_lifespan(engine, create=create))
    app.include_router(router)
    return app


def create_air_app(engine: AsyncEngine | None = None, *, create: bool = True) -> air.Air:
    """An HTML page with Air, on the same lifespan and session dependency as the API."""
    app = air.Air(lifespan=database_lifespan(engine, create=create))

    def page(*content: Any, status_code: int = 200) -> Response:
        response: Response = air.AirResponse(air.layouts.mvpcss(*content), status_code=status_code)
        return response

    # Air ships no type information, so its decorators are untyped for mypy.
    @app.page  # type: ignore[untyped-decorator]
    async def index(session: SessionDep) -> Response:
        heroes = await crud.list_heroes(session, limit=MAX_PAGE)
        return page(
            air.H1("Heroes"),
            air.Ul(*[air.Li(f"{hero.name} ({hero.secret_name})") for hero in heroes]),
            air.Form(
                air.Input(name="name", placeholder="name", required=True),
                air.Input(name="secret_name", placeholder="secret name", required=True),
                air.Button("Add hero", type="submit"),
                method="post",
                action="/heroes",
            ),
        )

    @app.post("/heroes")  # type: ignore[untyped-decorator]
    async def add_hero(
        name: Annotated[str, Form(min_length=1, max_length=100)],
        secret_name: Annotated[str, Form(min_length=1, max_length=100)],
        session: SessionDep,
    ) -> Response:
        session.add(Hero(name=name, secret_name=secret_name))
        try:
            await session.commit()
        except IntegrityError:
            await session.rollback()
            return page(
                air.H1("Not added"),
                air.P(f"A hero named {name!r} already exists. ", air.A("Back", href="/")),
                status_code=409,
            )
        return RedirectResponse("/", status_code=303)  # POST, then redirect, then GET

    return app
