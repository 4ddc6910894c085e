"""Helpers for the notebooks themselves (they need IPython, from the `notebooks` extra)."""

from __future__ import annotations

import inspect
from typing import Any

from IPython.display import Markdown


def show_source(*objects: Any) -> Markdown:
    """Display the real source of snippets, so a notebook never shows a copy that can drift."""
    blocks = []
    for obj in objects:
        module = inspect.getmodule(obj)
        where = module.__name__ if module else "?"
        name = getattr(obj, "__qualname__", where)
        blocks.append(f"`{where}.{name}`\n```python\n{inspect.getsource(obj).rstrip()}\n```")
    return Markdown("\n\n".join(blocks))  # type: ignore[no-untyped-call]  # IPython is untyped
