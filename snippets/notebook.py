"""Helpers for the notebooks themselves (they need IPython, from the `notebooks` extra).

Both display *real* source, read at the moment the cell runs, so that a notebook never shows a
copy of code that could drift from what runs.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

from IPython.display import Markdown

from snippets.config import PROJECT_ROOT


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
    """The source of top-level functions and classes in a project file, decorators included.

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
