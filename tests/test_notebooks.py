"""Rules every committed notebook follows. ``make strip`` fixes outputs and metadata.

The notebooks' *execution* is tested by ``tests/test_learner_runs.py`` (Run All twice in one
kernel, as a learner does) and ``make test-lab`` (in JupyterLab); this module checks how they
are committed and written.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from snippets.lab.chapters import chapter_shape, chapter_title, chapters

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))  # every notebook, numbered or not: checked
CHAPTERS = chapters(NOTEBOOK_DIR)
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
    ids = [cell.get("id") for cell in notebook.cells]
    assert len(set(ids)) == len(ids), "two cells share an id"
    for cell in notebook.cells:
        assert set(cell.metadata) <= ALLOWED_CELL_METADATA, "run `make strip`"
        if cell.cell_type == "code":
            assert cell.outputs == [], "run `make strip`"
            assert cell.execution_count is None, "run `make strip`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_reads_like_a_chapter(path: Path) -> None:
    cells = load(path).cells
    first = cells[0]
    assert first.cell_type == "markdown"
    assert first.source.startswith(f"# {path.name[:2]} · "), "title: '# NN · Topic'"
    assert "**You will learn**" in first.source
    assert "**Prerequisites:**" in first.source
    assert any(c.cell_type == "markdown" and c.source.startswith("## Summary") for c in cells)


RECAP_ASSERTS = 5
"""The most asserts a chapter's last code cell may hold: a recap, not the chapter's checks."""


@pytest.mark.parametrize("path", CHAPTERS, ids=[path.stem for path in CHAPTERS])
def test_each_claim_is_checked_where_it_is_made(path: Path) -> None:
    shape = chapter_shape(path)
    assert shape.asserts >= 5, "a chapter checks what it shows, with asserts"
    assert shape.asserts_in_final_cell <= RECAP_ASSERTS, (
        f"{shape.asserts_in_final_cell} asserts in the last code cell: put each in the cell "
        "that shows the behaviour, or the one right after it"
    )
    # Every section that runs code checks something of what it ran.
    cells = load(path).cells
    sections: dict[str, list[str]] = {}
    heading = ""
    for cell in cells:
        if cell.cell_type == "markdown" and cell.source.startswith("## "):
            heading = cell.source.splitlines()[0]
        elif cell.cell_type == "code" and heading and not heading.startswith("## Summary"):
            sections.setdefault(heading, []).append(cell.source)
    unchecked = [
        title
        for title, sources in sections.items()
        if not any(re.search(r"^\s*(assert |with raises\()", s, re.MULTILINE) for s in sources)
    ]
    # A section that only sets up (imports, models, endpoints) is checked where they are used.
    assert len(unchecked) <= len(sections) // 4, f"sections that check nothing: {unchecked}"


CELL_LINES_LIMIT = 40
MEDIAN_CELL_LIMIT = 12


@pytest.mark.parametrize("path", CHAPTERS, ids=[path.stem for path in CHAPTERS])
def test_code_cells_stay_short(path: Path) -> None:
    """Instruments live in ``snippets.lab``; a cell shows one step of the idea."""
    shape = chapter_shape(path)
    assert shape.largest_cell <= CELL_LINES_LIMIT, f"a code cell of {shape.largest_cell} lines"
    assert shape.median_cell <= MEDIAN_CELL_LIMIT, f"median code cell {shape.median_cell} lines"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_header_states_the_contract_and_the_time(path: Path) -> None:
    header = load(path).cells[0].source
    assert "Restart & Run All" in header
    assert re.search(r"\*\*Time:\*\* about \d+ minutes to read; Run All takes about \d+ s", header)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_ends_with_further_reading_and_the_next_chapter_by_its_title(path: Path) -> None:
    summary = next(c.source for c in load(path).cells if c.source.startswith("## Summary"))
    reading = summary.split("**Further reading**", 1)[1]
    assert len(re.findall(r"^- \[[^\]]+\]\(https://[^)]+\)$", reading, re.MULTILINE)) >= 2
    following = NOTEBOOKS.index(path) + 1
    last_line = summary.strip().splitlines()[-1]
    if following < len(NOTEBOOKS):
        after = NOTEBOOKS[following]
        assert last_line == f"Next: [{chapter_title(after)}]({after.name}).", last_line
    else:
        assert last_line.startswith("Next: ")
        assert "(../README.md#the-notebooks)" in last_line


def test_every_link_to_a_chapter_uses_its_exact_title() -> None:
    titles = {path.name: chapter_title(path) for path in NOTEBOOKS}
    for path in NOTEBOOKS:
        markdown = "\n".join(c.source for c in load(path).cells if c.cell_type == "markdown")
        for text, target in re.findall(r"\[(\d\d · [^\]]+)\]\((\d\d_\w+\.ipynb)\)", markdown):
            assert text == titles[target], f"{path.name} links {target} as {text!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_errors_are_shown_with_raises_not_kept_from_an_except(path: Path) -> None:
    # `except E as error: shown = error` leaves a NameError, or a stale error from an earlier
    # run, when the library stops raising; `with raises(E) as shown:` fails the cell instead.
    source = code(path)
    kept = re.findall(r"except [^\n]+ as (\w+):\n\s+[\w\[\]\"' ]+ = \1\b", source)
    assert kept == [], "use snippets.lab.notebook.raises"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_uses_top_level_await_not_asyncio_run(path: Path) -> None:
    source = code(path)
    everything = "\n".join(cell.source for cell in load(path).cells)
    # Prose too: a learner copies `asyncio.run(...)` from a sentence as readily as from a cell.
    assert "asyncio.run(" not in everything
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


def test_every_checked_claim_records_its_verdict_in_the_index() -> None:
    # Notebook 13's index is drawn from claims.verdict(...) calls: an entry without one would be
    # missing from the index, and one with a second heading but no verdict would be unchecked.
    cells = load(NOTEBOOK_DIR / "13_advice_checked.ipynb").cells
    entries: list[list[str]] = []
    for cell in cells:
        if cell.cell_type == "markdown" and cell.source.startswith("## Summary"):
            break
        if cell.cell_type == "markdown" and cell.source.startswith("### "):
            entries.append([])
        elif entries and cell.cell_type == "code":
            entries[-1].append(cell.source)
    assert len(entries) >= 40
    for number, sources in enumerate(entries, 1):
        assert any("claims.verdict(" in source for source in sources), f"entry {number}"
        checks = r"^\s*(assert |with raises\()"
        assert any(re.search(checks, source, re.MULTILINE) for source in sources), number
