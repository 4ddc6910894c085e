"""Chapter 18's row-level-security alternative: every tenant's rows in one table, by a column."""

from __future__ import annotations

from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel


class SharedTablesModel(SQLModel, registry=registry()):
    """A registry of its own: this table is made only where chapter 18 asks for it."""


class TenantTeam(SharedTablesModel, table=True):
    """A team of one tenant, among the teams of all of them."""

    __tablename__ = "tenant_team"

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=30, index=True)
    name: str = Field(max_length=100)
