"""The guide's demo HTML page with Air: a list of heroes and a form (notebook 08).

Air is imported here only, so a JSON-only application never needs it. The page runs on the same
plumbing as the API (``snippets.api``): the lifespan, and one session per request.
"""

from __future__ import annotations

from typing import Annotated, Any

import air
from fastapi import Form, Response
from fastapi.responses import RedirectResponse
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from snippets.api import SessionDep, database_lifespan
from snippets.demo import crud
from snippets.demo.heroes_api import MAX_PAGE
from snippets.demo.models import Hero, metadata


def create_air_app(engine: AsyncEngine | None = None, *, create: bool = True) -> air.Air:
    """An HTML page with Air, on the same lifespan and session dependency as the API."""
    app = air.Air(lifespan=database_lifespan(engine, metadata=metadata if create else None))

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
