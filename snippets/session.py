"""The session factory: SQLModel's ``AsyncSession`` with values kept after commit."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Return a factory of SQLModel ``AsyncSession`` objects bound to ``engine``.

    ``class_=AsyncSession`` is SQLModel's subclass (it adds ``exec``); SQLAlchemy's own class
    has no ``exec``. ``expire_on_commit=False`` keeps loaded attributes readable after
    ``commit()``: with the default ``True`` the next attribute read would have to load from the
    database, which async code cannot do implicitly (it raises ``MissingGreenlet``).
    """
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
