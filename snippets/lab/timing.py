"""A stopwatch for the cells that measure, instead of ``time.perf_counter()`` pairs by hand;
``best_of_rounds`` for two ways measured side by side, instead of alternating loops by hand;
and ``eventually`` for what happens a moment after a response (a commit, a connection given
back), instead of polling loops by hand."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, overload

T = TypeVar("T")


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


async def best_of_rounds(
    ways: Mapping[str, Callable[[], Awaitable[float]]], rounds: int = 3
) -> dict[str, float]:
    """The smallest figure (seconds, say) each way gave over ``rounds`` rounds in which the
    ways take turns: what the machine does meanwhile falls on every way, and a burst of it
    costs one round of one way, not the comparison."""
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    figures: dict[str, list[float]] = {way: [] for way in ways}
    for _ in range(rounds):
        for way, measure in ways.items():
            figures[way].append(await measure())
    return {way: min(figures[way]) for way in ways}


@overload
async def eventually(
    ask: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    within: float = 10,
    every: float = 0.05,
) -> T: ...


@overload
async def eventually(
    ask: Callable[[], T], done: Callable[[T], bool], *, within: float = 10, every: float = 0.05
) -> T: ...


async def eventually(
    ask: Callable[[], Any], done: Callable[[Any], bool], *, within: float = 10, every: float = 0.05
) -> Any:
    """Call ``ask()`` (and await its answer, if it is awaitable) every ``every`` seconds until
    ``done(answer)``, for ``within`` seconds at most; return the last answer, for the caller to
    assert on (it does not raise when time is up).
    """

    async def asked() -> Any:
        answer = ask()
        return await answer if inspect.isawaitable(answer) else answer

    deadline = time.monotonic() + within
    answer = await asked()
    while not done(answer) and time.monotonic() < deadline:
        await asyncio.sleep(every)
        answer = await asked()
    return answer
