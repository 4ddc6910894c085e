"""Typed relationship attributes for loader options (notebook 05).

SQLModel annotates a relationship such as ``Team.heroes`` with its instance type
(``list[Hero]``), so ``selectinload(Team.heroes)`` does not type-check under ``mypy --strict``.
``rel`` checks at run time that the attribute really is a mapped one and says so to the type
checker, as SQLModel's ``col()`` does for columns.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import QueryableAttribute


def rel(attribute: object) -> QueryableAttribute[Any]:
    """A relationship attribute, typed for loader options: ``selectinload(rel(Team.heroes))``.

    SQLModel annotates ``Team.heroes`` with its instance type (``list[Hero]``), which loader
    functions do not accept; on the class it is a ``QueryableAttribute``. ``rel`` checks that
    and says so to the type checker, as SQLModel's ``col()`` does for columns.
    """
    if not isinstance(attribute, QueryableAttribute):
        raise TypeError(f"expected a mapped attribute such as Team.heroes, got {attribute!r}")
    return attribute
