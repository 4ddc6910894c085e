"""A stopwatch for the cells that measure, instead of ``time.perf_counter()`` pairs by hand."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class Elapsed:
    """The seconds a ``stopwatch`` block took; set when the block ends, even by an error."""

    seconds: float = float("nan")


@contextmanager
def stopwatch() -> Iterator[Elapsed]:
    """Time a block: ``with stopwatch() as took: ...``, then ``took.seconds``."""
    elapsed = Elapsed()
    started = time.perf_counter()
    try:
        yield elapsed
    finally:
        elapsed.seconds = time.perf_counter() - started
