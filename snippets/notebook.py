"""Helpers for the notebooks themselves (they need IPython, from the `notebooks` extra).

``show_source`` and ``show_definitions`` display *real* source, read at the moment the cell
runs, so that a notebook never shows a copy of code that could drift from what runs.

``raises`` is how a notebook demonstrates an error: the cell fails loudly if nothing (or
something else) is raised, instead of leaving a stale error from an earlier run in a variable.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar

from IPython.display import Markdown

from snippets.config import PROJECT_ROOT

E = TypeVar("E", bound=BaseException)


class Raised(Generic[E]):
    """The exception a ``raises`` block caught; ``value`` is set when the block ends."""

    def __init__(self) -> None:
        self._value: E | None = None

    @property
    def value(self) -> E:
        if self._value is None:
            raise AssertionError("read .value after the `with raises(...)` block")
        return self._value

    def __repr__(self) -> str:
        return f"{type(self.value).__name__}: {self.value}"


@contextmanager
def raises(
    expected: type[E] | tuple[type[E], ...], *, match: str | None = None, show: bool = True
) -> Iterator[Raised[E]]:
    """Expect the block to raise ``expected``; record it and, with ``show``, print it.

    ::

        with raises(IntegrityError, match="UNIQUE|unique") as duplicate:
            await session.commit()
        duplicate.value.orig  # the driver's exception

    Raises:
        AssertionError: nothing was raised, or the message does not match ``match`` (a regular
            expression searched in ``str(error)``). Any other exception propagates as it is.
    """
    caught: Raised[E] = Raised()
    try:
        yield caught
    except expected as error:
        if match is not None and not re.search(match, str(error)):
            raise AssertionError(
                f"{type(error).__name__} raised, but {match!r} not in: {error}"
            ) from error
        caught._value = error
        if show:
            print(f"{type(error).__name__}: {error}")
        return
    names = (
        expected.__name__
        if isinstance(expected, type)
        else " or ".join(t.__name__ for t in expected)
    )
    raise AssertionError(f"expected {names} to be raised, and nothing was")


def show_source(*objects: Any) -> Markdown:
    """Display the source of importable objects (functions, classes), each under its name."""
    blocks = []
    for obj in objects:
        module = inspect.getmodule(obj)
        where = module.__name__ if module else "?"
        name = getattr(obj, "__qualname__", where)
        blocks.append(f"`{where}.{name}`\n```python\n{inspect.getsource(obj).rstrip()}\n```")
    return _markdown("\n\n".join(blocks))


def definitions(path: str | Path, *names: str) -> dict[str, str]:
    """The source of top-level functions, classes and assignments (``NAME = ...``) in a project
    file, decorators included.

    For files that are not importable modules, such as ``tests/conftest.py``. ``path`` is
    relative to the project root.

    Raises:
        LookupError: a name is not defined at the top level of the file.
    """
    lines = (PROJECT_ROOT / path).read_text().splitlines()
    found: dict[str, str] = {}
    for node in ast.parse("\n".join(lines)).body:
        definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
        if isinstance(node, definition) and node.name in names:
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            found[node.name] = "\n".join(lines[start - 1 : node.end_lineno])
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and target.id in names:
                    found[target.id] = "\n".join(lines[node.lineno - 1 : node.end_lineno])
    missing = [name for name in names if name not in found]
    if missing:
        raise LookupError(f"{path} defines no top-level {', '.join(missing)}")
    return {name: found[name] for name in names}


def show_definitions(path: str | Path, *names: str) -> Markdown:
    """Display ``definitions(path, *names)``, each under the file and name it comes from."""
    blocks = [
        f"`{path}` · `{name}`\n```python\n{source}\n```"
        for name, source in definitions(path, *names).items()
    ]
    return _markdown("\n\n".join(blocks))


def _markdown(text: str) -> Markdown:
    return Markdown(text)  # type: ignore[no-untyped-call]  # IPython is untyped
