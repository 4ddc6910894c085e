"""Keyset pagination: the rows after the last one a client saw, at the same cost at any depth
(notebook 10).

``ORDER BY ... OFFSET n`` makes the database produce and discard ``n`` rows; a keyset page
starts after the previous page's last sort key instead, which an index on the sort key finds
directly. ``after(order, key)`` builds that condition for a sort key of one or more columns
(the last one unique, e.g. the primary key, so that ties cannot repeat or skip rows)::

    order = (Reading.taken_at, Reading.id)
    page = select(Reading).where(after(order, last_key)).order_by(*order).limit(50)

It is written as ``a >= :a AND (a > :a OR b > :b)`` rather than the row comparison
``(a, b) > (:a, :b)``: both select the same rows, but MariaDB does not use an index for the
row comparison (notebook 10 measures it), while every backend uses one for the leading
``a >= :a``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, or_
from sqlalchemy.sql.elements import ColumnElement


def after(order: Sequence[Any], key: Sequence[Any]) -> ColumnElement[bool]:
    """The rows whose ``order`` columns come after ``key`` in ascending order.

    Raises:
        ValueError: ``order`` and ``key`` differ in length, or are empty.
    """
    if not order or len(order) != len(key):
        raise ValueError(f"a key of {len(order)} value(s) is needed, got {len(key)}")
    first, *rest = order
    if not rest:
        return first > key[0]  # type: ignore[no-any-return]
    # (a, b, c) > (x, y, z): a > x, or a = x and (b, c) > (y, z)
    # (a, b) > (x, y) is a > x, or a = x and b > y; "a >= x" up front lets an index seek.
    return and_(first >= key[0], or_(first > key[0], after(rest, key[1:])))
