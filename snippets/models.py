"""The models the notebooks share, split the way SQLModel's docs recommend.

``HeroBase`` holds the fields every variant shares; ``Hero`` is the table; ``HeroCreate``,
``HeroPublic`` and ``HeroUpdate`` are what an API accepts, returns and patches with. Only
``Hero`` has ``table=True``: the others are plain Pydantic models with no database behind them.
"""

from __future__ import annotations

from sqlmodel import Field, SQLModel


class HeroBase(SQLModel):
    name: str = Field(max_length=100, unique=True, index=True)
    secret_name: str = Field(max_length=100)
    age: int | None = Field(default=None, index=True, ge=0)


class Hero(HeroBase, table=True):
    id: int | None = Field(default=None, primary_key=True)


class HeroCreate(HeroBase):
    """What a client sends to create a hero: no ``id``, the database assigns it."""


class HeroPublic(HeroBase):
    """What a client gets back: ``id`` is always set."""

    id: int


class HeroUpdate(SQLModel):
    """A partial update: every field optional, and only the fields a client *set* are applied."""

    name: str | None = Field(default=None, max_length=100)
    secret_name: str | None = Field(default=None, max_length=100)
    age: int | None = Field(default=None, ge=0)
