"""Connection pool settings from the environment, validated (notebook 07).

``PoolSettings`` reads ``DB_POOL_SIZE``, ``DB_MAX_OVERFLOW``, ``DB_POOL_TIMEOUT``,
``DB_POOL_RECYCLE``, ``DB_POOL_PRE_PING`` and ``DB_POOL_USE_LIFO`` and validates them.
``snippets.engine.make_engine`` applies the ones that are set (arguments given in code win).
A bad value is one ``PoolConfigError`` that names the variable. The instruments that watch and
load a pool are in ``snippets.lab.pool``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from snippets.config import DatabaseConfigError

ENVIRONMENT_PREFIX = "DB_"


class PoolConfigError(DatabaseConfigError):
    """A pool setting from the environment is not valid; the message names the variable."""


class PoolSettings(BaseModel):
    """The pool options of an async engine, with SQLAlchemy's defaults.

    Field names are the ``create_async_engine`` keywords; each is read from the environment
    variable ``DB_`` + its upper-case name (``pool_size`` from ``DB_POOL_SIZE``, and so on).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    pool_size: int = Field(5, ge=1, description="connections kept open in the pool")
    max_overflow: int = Field(10, ge=0, description="extra connections allowed under load")
    pool_timeout: float = Field(30.0, gt=0, description="seconds to wait for a free connection")
    pool_recycle: int = Field(-1, ge=-1, description="replace connections older than this (s)")
    pool_pre_ping: bool = Field(False, description="test each connection at checkout")
    pool_use_lifo: bool = Field(False, description="reuse the most recently returned first")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PoolSettings:
        """Read the settings that are set in ``environ`` (default: ``os.environ``).

        Raises:
            PoolConfigError: a variable holds a value of the wrong type or out of range.
        """
        environ = os.environ if environ is None else environ
        given = {
            name: environ[variable_name(name)]
            for name in cls.model_fields
            if environ.get(variable_name(name), "").strip()
        }
        try:
            return cls.model_validate(given)
        except ValidationError as error:
            problem = error.errors()[0]
            name = str(problem["loc"][0])
            raise PoolConfigError(
                f"{variable_name(name)}={given.get(name)!r} is not valid: {problem['msg']}"
                f" ({cls.model_fields[name].description}; default {cls.model_fields[name].default})"
            ) from None

    def engine_kwargs(self, *, only_set: bool = False) -> dict[str, Any]:
        """The keyword arguments for ``create_async_engine``; ``only_set``: those given."""
        return self.model_dump(exclude_unset=only_set)


def variable_name(field_name: str) -> str:
    """The environment variable of a ``PoolSettings`` field: ``pool_size`` -> ``DB_POOL_SIZE``."""
    return ENVIRONMENT_PREFIX + field_name.upper()
