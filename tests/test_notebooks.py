"""Rules every committed notebook follows. ``make strip`` fixes outputs and metadata.

The notebooks' *execution* is tested by nbmake (``pytest --nbmake``); this module checks how
they are committed and written.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
ALLOWED_NOTEBOOK_METADATA = {"kernelspec", "language_info"}
ALLOWED_CELL_METADATA = {"tags"}


def load(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]


def code(path: Path) -> str:
    return "\n".join(cell.source for cell in load(path).cells if cell.cell_type == "code")


def test_notebooks_exist_and_are_numbered() -> None:
    assert NOTEBOOKS, f"no notebooks in {NOTEBOOK_DIR}"
    for path in NOTEBOOKS:
        assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name), path.name
    numbers = [path.name[:2] for path in NOTEBOOKS]
    assert len(numbers) == len(set(numbers)), "two notebooks share a number"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_committed_without_outputs_and_with_clean_metadata(path: Path) -> None:
    notebook = load(path)
    assert set(notebook.metadata) <= ALLOWED_NOTEBOOK_METADATA, "run `make strip`"
    assert notebook.metadata.kernelspec.name == "python3"
    for cell in notebook.cells:
        assert set(cell.metadata) <= ALLOWED_CELL_METADATA, "run `make strip`"
        if cell.cell_type == "code":
            assert cell.outputs == [], "run `make strip`"
            assert cell.execution_count is None, "run `make strip`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_reads_like_a_chapter(path: Path) -> None:
    cells = load(path).cells
    first, last = cells[0], cells[-1]
    assert first.cell_type == "markdown"
    assert first.source.startswith(f"# {path.name[:2]} · "), "title: '# NN · Topic'"
    assert "**You will learn**" in first.source
    assert "**Prerequisites:**" in first.source
    assert any(c.cell_type == "markdown" and c.source.startswith("## Summary") for c in cells)
    assert last.cell_type == "code", "the last cell checks what the notebook taught"
    assert re.search(r"^assert ", last.source, re.MULTILINE)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_uses_top_level_await_not_asyncio_run(path: Path) -> None:
    source = code(path)
    assert "asyncio.run(" not in source
    assert "run_until_complete" not in source
    assert re.search(r"^await |= await ", source, re.MULTILINE), "expected top-level await"


def test_each_notebook_has_its_own_namespace() -> None:
    # Notebooks run in parallel against one database: two sharing a namespace would collide.
    owners: dict[str, str] = {}
    for path in NOTEBOOKS:
        for namespace in set(re.findall(r'namespace="([a-z0-9_]+)"', code(path))):
            assert namespace not in owners, f"{path.name} and {owners[namespace]} share it"
            assert not namespace.startswith("test_"), "test_* namespaces belong to tests/"
            owners[namespace] = path.name
