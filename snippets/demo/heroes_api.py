"""The guide's demo API: heroes and teams as JSON on SQLModel's async session (notebook 08).

Built on the model-agnostic plumbing of ``snippets.api`` (lifespan, ``SessionDep``, 409 on a
conflict) with the demo models of ``snippets.demo.models``: 201 on create, 404 when missing, 409
on a duplicate name, 422 on invalid input, pagination bounded by ``Query``.

``app`` is created at import, as most applications do; its engine is chosen at start-up
(``DATABASE_URL``, read then), so importing this module connects to nothing. Serve it with
``uvicorn snippets.demo.heroes_api:app``; ``create_app(engine)`` builds one on a given engine.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, HTTPException, Path, Query, Response
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import selectinload
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from snippets.api import (
    BodySizeLimit,
    EngineFactory,
    ReadSessionDep,
    SessionDep,
    add_database_error_handlers,
    add_method_not_allowed_handler,
    add_validation_error_handler,
    commit_or_conflict,
    database_lifespan,
)
from snippets.demo import crud
from snippets.demo.models import (
    Hero,
    HeroCreate,
    HeroPublic,
    HeroUpdate,
    Team,
    TeamCreate,
    TeamPublic,
    TeamPublicWithHeroes,
    metadata,
)
from snippets.relationships import rel
from snippets.values import INT32_MAX, INT32_MIN, INT64_MAX

MAX_BODY = 64_000
"""The largest request body accepted, in bytes; a larger one is a 413."""
MAX_PAGE = 100
"""The largest page a list endpoint returns; a larger ``limit`` is a 422."""

Offset = Annotated[int, Query(ge=0, le=INT64_MAX)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
RowId = Annotated[int, Path(ge=INT32_MIN, le=INT32_MAX)]
"""An id in a URL: within the id column's type, or a 422 (beyond it, PostgreSQL refuses it)."""


class ErrorDetail(BaseModel):
    """The body of every error but a 422: ``{"detail": "..."}``."""

    detail: str


def _documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses an endpoint can answer besides FastAPI's 422."""
    return {status: {"model": ErrorDetail, "description": ERRORS[status]} for status in statuses}


ERRORS = {
    400: "The body is not JSON: it could not be parsed.",
    404: "No such row.",
    409: "A unique name already taken, or a row changed by another request.",
    413: f"The request body is larger than {MAX_BODY} bytes.",
    503: "The database is busy, slow or unreachable: try again after Retry-After seconds.",
}
# Every endpoint can meet a busy or unreachable database.
router = APIRouter(responses=_documented(503))


async def _require_team(session: AsyncSession, team_id: int | None) -> None:
    # Checked up front for a clear 422; the foreign key still guards against a race.
    if team_id is not None and await session.get(Team, team_id) is None:
        # In the shape of FastAPI's own 422s, which the OpenAPI schema declares.
        missing = {"type": "missing_team", "loc": ["body", "team_id"]}
        raise HTTPException(
            status_code=422, detail=[{**missing, "msg": f"team {team_id} does not exist"}]
        )


async def _hero_or_404(session: AsyncSession, hero_id: int) -> Hero:
    hero = await session.get(Hero, hero_id)
    if hero is None:
        raise HTTPException(status_code=404, detail=f"hero {hero_id} not found")
    return hero


@router.post(
    "/heroes/", response_model=HeroPublic, status_code=201, responses=_documented(400, 409, 413)
)
async def create_hero(data: HeroCreate, session: SessionDep) -> Hero:
    await _require_team(session, data.team_id)
    hero = Hero.model_validate(data)
    session.add(hero)
    await commit_or_conflict(session, f"a hero named {data.name!r} already exists")
    return hero


@router.get("/heroes/", response_model=list[HeroPublic])
async def list_heroes(
    session: ReadSessionDep, offset: Offset = 0, limit: Limit = MAX_PAGE
) -> list[Hero]:
    return await crud.list_heroes(session, offset=offset, limit=limit)


@router.get("/heroes/{hero_id}", response_model=HeroPublic, responses=_documented(404))
async def read_hero(hero_id: RowId, session: ReadSessionDep) -> Hero:
    return await _hero_or_404(session, hero_id)


@router.patch(
    "/heroes/{hero_id}", response_model=HeroPublic, responses=_documented(400, 404, 409, 413)
)
async def update_hero(hero_id: RowId, patch: HeroUpdate, session: SessionDep) -> Hero:
    hero = await _hero_or_404(session, hero_id)
    changes = patch.model_dump(exclude_unset=True)  # a null name was refused by HeroUpdate
    await _require_team(session, changes.get("team_id"))
    hero.sqlmodel_update(changes)
    session.add(hero)
    await commit_or_conflict(session, f"a hero named {changes.get('name')!r} already exists")
    return hero


@router.delete("/heroes/{hero_id}", status_code=204, responses=_documented(404))
async def delete_hero(hero_id: RowId, session: SessionDep) -> Response:
    await session.delete(await _hero_or_404(session, hero_id))
    await session.commit()
    return Response(status_code=204)


A_HERO_OF_THE_NEW_TEAM = {
    "HeroOfTheNewTeam": {
        "operationId": "create_hero_heroes__post",
        "requestBody": {"team_id": "$response.body#/id"},
        "description": "A hero of the team just created: its `team_id` is the team's `id`.",
    }
}
"""An OpenAPI link: a client (Swagger UI, Schemathesis's stateful tests) learns from the schema
that a new team's ``id`` is what ``POST /heroes/`` takes as ``team_id``."""


@router.post(
    "/teams/",
    response_model=TeamPublic,
    status_code=201,
    responses={201: {"links": A_HERO_OF_THE_NEW_TEAM}, **_documented(400, 409, 413)},
)
async def create_team(data: TeamCreate, session: SessionDep) -> Team:
    team = Team.model_validate(data)
    session.add(team)
    await commit_or_conflict(session, f"a team named {data.name!r} already exists")
    return team


@router.get("/teams/", response_model=list[TeamPublic])
async def list_teams(
    session: ReadSessionDep, offset: Offset = 0, limit: Limit = MAX_PAGE
) -> list[Team]:
    statement: SelectOfScalar[Team] = select(Team).order_by(col(Team.id))
    return list((await session.exec(statement.offset(offset).limit(limit))).all())


@router.get("/teams/{team_id}", response_model=TeamPublicWithHeroes, responses=_documented(404))
async def read_team(team_id: RowId, session: ReadSessionDep) -> Team:
    # The response model reads team.heroes: load them now, or validation fails (notebook 05).
    statement: SelectOfScalar[Team] = (
        select(Team).where(col(Team.id) == team_id).options(selectinload(rel(Team.heroes)))
    )
    team = (await session.exec(statement)).one_or_none()
    if team is None:
        raise HTTPException(status_code=404, detail=f"team {team_id} not found")
    return team


def create_app(
    engine: AsyncEngine | EngineFactory | None = None, *, create: bool = True
) -> FastAPI:
    """The JSON API on ``engine`` (an engine, a factory called at start-up, or by default one
    opened from ``DATABASE_URL`` at start-up: ``snippets.api.database_lifespan``).

    ``create`` makes the demo tables at start-up; tests that keep all their work in one
    rolled-back session pass ``False`` (see ``snippets.testing``).
    """
    lifespan = database_lifespan(engine, metadata=metadata if create else None)
    app = FastAPI(title="Heroes", lifespan=lifespan)
    add_database_error_handlers(app)  # a database error escaping an endpoint: 409/503, one line
    add_validation_error_handler(app)  # a 422 that does not echo the input back
    add_method_not_allowed_handler(app)  # a 405 whose Allow lists every method of the path
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY)  # a hero is a few hundred bytes
    app.include_router(router)
    return app


app = create_app()
"""The module-level app: its engine is opened at start-up, not at import."""
