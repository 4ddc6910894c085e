"""The guide's demo models, split the way SQLModel's docs recommend, on a registry of their own.

Every table here derives from ``GuideModel``, whose SQLAlchemy registry (and so ``MetaData``) is
its own: ``snippets.demo.models.metadata``, not the global ``SQLModel.metadata``. An application
that imports ``snippets`` keeps its ``SQLModel.metadata`` to itself, with its own ``hero`` table if
it has one, and ``create_tables(engine, SQLModel.metadata)`` never creates the guide's tables.
The notebooks create these with ``create_tables(engine, metadata)``.

``HeroBase`` holds the fields every variant shares; ``Hero`` is the table; ``HeroCreate``,
``HeroPublic`` and ``HeroUpdate`` are what an API accepts, returns and patches with. Only the
``table=True`` classes have a database table behind them; the others are plain Pydantic models.

Relationships (notebook 05): a team has many heroes (``Team.heroes`` / ``Hero.team``), and heroes
and powers are many-to-many through the link table ``HeroPowerLink``. The table classes mix in
SQLAlchemy's ``AsyncAttrs``, which adds ``await obj.awaitable_attrs.<relationship>``.

This module does not use ``from __future__ import annotations``: SQLModel reads relationship
annotations when the class is created, and string annotations of the whole module break that.
"""

from datetime import datetime

from pydantic import field_validator
from pydantic.json_schema import SkipJsonSchema
from sqlalchemy import CheckConstraint, Column, Integer
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import registry
from sqlmodel import Field, Relationship, SQLModel

from snippets.values import INT32_MAX, INT32_MIN, STORABLE_TEXT, storable_text


class GuideModel(SQLModel, registry=registry()):
    """The base of the demo tables: a registry and a ``MetaData`` of their own."""


metadata = GuideModel.metadata
"""The demo tables' ``MetaData``: what the notebooks create and drop."""


class TeamBase(SQLModel):
    name: str = Field(max_length=100, unique=True, index=True, schema_extra=STORABLE_TEXT)
    headquarters: str = Field(max_length=100, schema_extra=STORABLE_TEXT)

    _storable = field_validator("name", "headquarters")(storable_text)


class Team(AsyncAttrs, GuideModel, TeamBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    # A collection's order is otherwise whatever the database returns: make it deterministic.
    heroes: list["Hero"] = Relationship(
        back_populates="team", sa_relationship_kwargs={"order_by": "Hero.id"}
    )


class TeamCreate(TeamBase):
    """What a client sends to create a team."""


class TeamPublic(TeamBase):
    """A team as returned to a client, without its heroes."""

    id: int


class HeroPowerLink(GuideModel, table=True):
    """The association table of the many-to-many ``Hero.powers`` / ``Power.heroes``."""

    hero_id: int | None = Field(
        default=None, foreign_key="hero.id", primary_key=True, ondelete="CASCADE"
    )
    power_id: int | None = Field(
        default=None, foreign_key="power.id", primary_key=True, ondelete="CASCADE"
    )


class PowerBase(SQLModel):
    name: str = Field(max_length=100, unique=True, index=True)


class Power(AsyncAttrs, GuideModel, PowerBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    heroes: list["Hero"] = Relationship(back_populates="powers", link_model=HeroPowerLink)


class PowerPublic(PowerBase):
    id: int


class HeroBase(SQLModel):
    name: str = Field(max_length=100, unique=True, index=True, schema_extra=STORABLE_TEXT)
    secret_name: str = Field(max_length=100, schema_extra=STORABLE_TEXT)
    age: int | None = Field(default=None, index=True, ge=0, le=INT32_MAX)
    team_id: int | None = Field(
        default=None,
        foreign_key="team.id",
        index=True,
        ondelete="SET NULL",
        ge=INT32_MIN,
        le=INT32_MAX,
    )

    _storable = field_validator("name", "secret_name")(storable_text)


class Hero(AsyncAttrs, GuideModel, HeroBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    team: Team | None = Relationship(back_populates="heroes")
    powers: list[Power] = Relationship(back_populates="heroes", link_model=HeroPowerLink)


class HeroCreate(HeroBase):
    """What a client sends to create a hero: no ``id``, the database assigns it."""


class HeroPublic(HeroBase):
    """What a client gets back: ``id`` is always set."""

    id: int


class HeroUpdate(SQLModel):
    """A partial update: every field optional, and only the fields a client *set* are applied."""

    # May be left out, never set to null: the schema says "string" (SkipJsonSchema hides the
    # None that stands for "not sent"), and a null sent is refused by the validator.
    name: str | SkipJsonSchema[None] = Field(
        default=None, max_length=100, schema_extra=STORABLE_TEXT
    )
    secret_name: str | SkipJsonSchema[None] = Field(
        default=None, max_length=100, schema_extra=STORABLE_TEXT
    )
    age: int | None = Field(default=None, ge=0, le=INT32_MAX)
    team_id: int | None = Field(default=None, ge=INT32_MIN, le=INT32_MAX)

    @field_validator("name", "secret_name", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:  # sent as null: a default is not validated
            raise ValueError("may be left out, but not set to null")
        return value

    _storable = field_validator("name", "secret_name")(storable_text)


class HeroPublicWithRelations(HeroPublic):
    """A hero with its team and powers: ``model_dump()`` of a table model leaves those out."""

    team: TeamPublic | None = None
    powers: list[PowerPublic] = []


class TeamPublicWithHeroes(TeamPublic):
    """A team with its heroes, for responses that need both."""

    heroes: list[HeroPublic] = []


# Accounts and transfers (notebook 06). The version column is shared by the table and the
# mapper: SQLAlchemy's optimistic concurrency (``version_id_col``) needs the Column object itself.
account_version = Column("version", Integer, nullable=False)


class Account(GuideModel, table=True):
    """A balance in cents. The database refuses a negative balance (a CHECK constraint), and
    every ORM update checks and bumps ``version``: a concurrent change raises ``StaleDataError``.
    """

    __table_args__ = (CheckConstraint("balance >= 0", name="balance_not_negative"),)
    __mapper_args__ = {"version_id_col": account_version}

    id: int | None = Field(default=None, primary_key=True)
    owner: str = Field(max_length=100, unique=True)
    balance: int = Field(ge=0)
    version: int | None = Field(default=None, sa_column=account_version)


class Transfer(GuideModel, table=True):
    """One applied transfer. ``reference`` is unique, so the same transfer cannot land twice."""

    id: int | None = Field(default=None, primary_key=True)
    reference: str = Field(max_length=64, unique=True)
    from_account_id: int = Field(foreign_key="account.id", index=True)
    to_account_id: int = Field(foreign_key="account.id", index=True)
    amount: int = Field(gt=0)


class Reading(GuideModel, table=True):
    """A sensor reading: the many-rows table of notebook 10 (bulk loads, streaming, paging).

    ``taken_at`` is a ``datetime``: SQLModel 0.0.50 stores it with a time zone (``UTCDateTime``,
    ``TIMESTAMP WITH TIME ZONE`` on PostgreSQL) and refuses a naive value. It has no index of
    its own: notebook 10 measures keyset pagination before and after adding the one it needs.
    """

    id: int | None = Field(default=None, primary_key=True)
    sensor: str = Field(max_length=40)
    taken_at: datetime
    value: float
    note: str | None = Field(default=None, max_length=200)
