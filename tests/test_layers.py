"""The package's three layers, and backend differences kept in one module.

``snippets`` is what a team copies next to its own models; ``snippets.demo`` is the guide's demo
domain and ``snippets.lab`` the notebooks' instruments. Copyable code must not need either of
them, nor the notebook-only libraries (IPython, matplotlib) or the demo page's Air.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import snippets

PACKAGE = Path(snippets.__file__).parent
REUSABLE = sorted(PACKAGE.glob("*.py"))
FORBIDDEN = ("snippets.demo", "snippets.lab", "IPython", "matplotlib", "air")


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth of its code (functions included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            if node.module == "snippets":  # from snippets import demo
                found.update(f"snippets.{alias.name}" for alias in node.names)
    return found


def is_forbidden(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in FORBIDDEN)


def test_the_layers_are_folders():
    assert (PACKAGE / "demo" / "__init__.py").is_file()
    assert (PACKAGE / "lab" / "__init__.py").is_file()
    assert {path.stem for path in REUSABLE} >= {"engine", "backends", "api", "bulk", "testing"}


@pytest.mark.parametrize("path", REUSABLE, ids=lambda path: path.name)
def test_reusable_module_imports_no_demo_lab_or_notebook_library(path: Path):
    bad = sorted(module for module in imported_modules(path) if is_forbidden(module))
    assert not bad, f"snippets/{path.name} imports {bad}: copyable code must stand alone"


def test_importing_every_reusable_module_loads_no_demo_lab_or_notebook_library():
    """The same, transitively: through the libraries the modules import, in a fresh process."""
    modules = [f"snippets.{path.stem}" for path in REUSABLE if path.stem != "__init__"]
    program = (
        "import sys\n"
        + "".join(f"import {module}\n" for module in modules)
        + f"print(sorted(m for m in sys.modules if m == m.split('.')[0] and m in {FORBIDDEN!r}"
        " or m.startswith(('snippets.demo', 'snippets.lab'))))"
    )
    finished = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    assert finished.stdout.strip() == "[]", finished.stdout


# `backend == "x"`, `backend_of(...) != "x"`, a dialect's name compared or read.
BACKEND_BRANCH = re.compile(
    r"\bbackend\w*\s*[!=]=|backend_of\([^)]*\)\s*[!=]=|\bbackend\w* (not )?in \("
    r"|dialect\.name\b|get_backend_name\(\)\s*[!=]="
)


def branch_lines(path: Path) -> list[str]:
    return [
        f"{path.name}:{number}: {line.strip()}"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if BACKEND_BRANCH.search(line) and not line.lstrip().startswith("#")
    ]


def test_backend_differences_live_in_the_backends_module():
    """Everywhere else asks ``snippets.backends`` (a fact or a function) instead of branching."""
    paths = [*PACKAGE.rglob("*.py"), PACKAGE.parent / "migrations" / "env.py"]
    found = [line for path in paths if path.name != "backends.py" for line in branch_lines(path)]
    assert not found, "\n".join(found)


def test_the_branch_pattern_finds_branches(tmp_path: Path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        'if backend == "sqlite":\n'
        'if backend in ("mysql", "sqlite"):\n'
        "    pass\n"
        'if backend_of(engine) != "postgresql":\n'
        "    pass\n"
        "name = engine.dialect.name\n"
        "ok = facts(engine).locks_rows\n",
        encoding="utf-8",
    )
    assert [line.split(":")[1] for line in branch_lines(sample)] == ["1", "2", "4", "6"]
