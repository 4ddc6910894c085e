"""Everything a reader copies from the README runs: each Python block, in a fresh namespace.

The blocks use top-level ``await``, as in a notebook; they are compiled with
``PyCF_ALLOW_TOP_LEVEL_AWAIT`` and awaited here, on the configured backend.
"""

from __future__ import annotations

import ast
import re
from typing import Any

import pytest

from snippets.config import PROJECT_ROOT

README = (PROJECT_ROOT / "README.md").read_text()
BLOCKS = re.findall(r"^```python\n(.*?)^```", README, re.MULTILINE | re.DOTALL)


def test_the_readme_has_python_examples() -> None:
    assert BLOCKS


@pytest.mark.parametrize("source", BLOCKS, ids=[f"block{n}" for n in range(1, len(BLOCKS) + 1)])
async def test_python_block_runs_in_a_fresh_namespace_twice(source: str) -> None:
    # A reader runs it again: it must not depend on state. The two runs are one test, one
    # after the other: as two tests, pytest-xdist could run them at once in the same namespace.
    code = compile(source, "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    for _ in range(2):
        namespace: dict[str, Any] = {"__name__": "__readme__"}
        result = eval(code, namespace)  # a coroutine when the block awaits
        if result is not None:
            await result
