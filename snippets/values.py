"""Values every backend can store, checked before they reach the database.

A value the database refuses fails at the driver, deep inside a request: a 500, and a log line
about the database. Checked in the request's model it is a 422 that says what is wrong
(``snippets.api`` answers the database's own refusals, notebook 15):

* ``INT32_MIN``, ``INT32_MAX``: the range of PostgreSQL's and MySQL/MariaDB's ``INTEGER``,
  what SQLModel makes of an ``int`` field (SQLite's holds 64 bits); an id beyond it, in a URL
  or a body, is a 500 there otherwise.
* ``INT64_MAX``: the largest ``BIGINT``, SQLite's ``INTEGER``, and a ``LIMIT`` or ``OFFSET``.
* ``storable_text``: no NUL character (PostgreSQL's text types refuse it) and no unpaired
  surrogate (``"\\ud800"``: JSON can write one and Python's ``json`` module reads it, but it is
  no Unicode character, and no driver can encode it). ``StorableText`` is the annotated type;
  ``STORABLE_TEXT`` tells a model's JSON Schema (and so the OpenAPI schema) the same of NUL.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MAX = 2**63 - 1


def storable_text(value: str) -> str:
    """``value`` when every backend can store it; otherwise ``ValueError`` (Pydantic: a 422)."""
    if "\x00" in value:
        raise ValueError("text cannot contain a NUL character (\\u0000)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text cannot contain an unpaired surrogate (\\ud800 to \\udfff)") from None
    return value


StorableText = Annotated[str, AfterValidator(storable_text)]

STORABLE_TEXT = {"json_schema_extra": {"pattern": r"^[^\x00]*$"}}
"""``Field(schema_extra=STORABLE_TEXT)``: the field's JSON Schema says "no NUL", so that a client
generated from the OpenAPI schema, or a fuzzer, knows what ``storable_text`` refuses. (An
unpaired surrogate is no character: a JSON Schema pattern cannot name it.)"""
