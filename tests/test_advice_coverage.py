"""Notebook 13's coverage table: every line of the five guides it checks, accounted for.

``notebooks/13_advice_coverage.toml`` maps each guide, in line ranges, to entries of notebook 13
(the claims of its ``claims.verdict(...)`` calls), to chapter sections, or to "no claim" with a
reason. These tests read the table and the notebooks' sources only: no cell is executed, and
nothing outside the repository is read (the guides' text is not part of it).
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path
from typing import Any

import nbformat
import pytest

from snippets.lab.chapters import CHAPTERS_DIR

TABLE = CHAPTERS_DIR / "13_advice_coverage.toml"
CHAPTER = CHAPTERS_DIR / "13_advice_checked.ipynb"


def line_span(lines: str) -> tuple[int, int]:
    """``"12-20"`` -> (12, 20); ``"7"`` -> (7, 7)."""
    first, _, last = lines.partition("-")
    return int(first), int(last or first)


def coverage_problems(guide: dict[str, Any]) -> list[str]:
    """What is wrong with one guide's ranges: gaps, overlaps, a wrong end, a range that names
    nothing or both targets and a reason."""
    problems = []
    expected_first = 1
    for span in guide["ranges"]:
        first, last = line_span(span["lines"])
        if first != expected_first or last < first:
            problems.append(f"{guide['id']}: {span['lines']} should start at line {expected_first}")
        expected_first = last + 1
        targets = bool(span.get("entries") or span.get("sections"))
        if targets == bool(span.get("none")):
            problems.append(f"{guide['id']} {span['lines']}: name entries/sections or say why not")
    if expected_first - 1 != guide["lines"]:
        problems.append(f"{guide['id']}: ranges end at {expected_first - 1}, not {guide['lines']}")
    return problems


def verdicts(notebook: Path) -> dict[str, set[str]]:
    """The claims of a notebook's ``claims.verdict(...)`` calls, each with its guides."""
    found: dict[str, set[str]] = {}
    for cell in nbformat.read(notebook, as_version=4).cells:  # type: ignore[no-untyped-call]
        if cell.cell_type != "code":
            continue
        body = "".join(f"    {line}\n" for line in cell.source.splitlines())
        for node in ast.walk(ast.parse(f"async def cell():\n{body}")):  # top-level await
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "verdict":
                guides = next(k.value for k in node.keywords if k.arg == "guide")
                found[ast.literal_eval(node.args[0])] = set(ast.literal_eval(guides).split(", "))
    return found


def headings(notebook: Path) -> set[str]:
    """The ``##`` and ``###`` headings of a notebook's Markdown cells."""
    cells = nbformat.read(notebook, as_version=4).cells  # type: ignore[no-untyped-call]
    text = "\n".join(cell.source for cell in cells if cell.cell_type == "markdown")
    return set(re.findall(r"^#{2,3} (.+?)\s*$", text, flags=re.MULTILINE))


@pytest.fixture(scope="module")
def table() -> dict[str, Any]:
    return tomllib.loads(TABLE.read_text(encoding="utf-8"))


def test_each_guides_ranges_run_from_its_first_line_to_its_last(table: dict[str, Any]) -> None:
    assert [guide["id"] for guide in table["guide"]] == ["000", "001", "002", "003", "004"]
    for guide in table["guide"]:
        assert guide["title"]
        assert guide["kind"]
        assert coverage_problems(guide) == []


def test_the_check_finds_gaps_overlaps_and_a_wrong_end() -> None:
    def guide(*spans: str, lines: int = 10) -> dict[str, Any]:
        return {"id": "x", "lines": lines, "ranges": [{"lines": s, "none": "r"} for s in spans]}

    assert coverage_problems(guide("1-4", "5", "6-10")) == []
    assert coverage_problems(guide("1-4", "6-10")) == ["x: 6-10 should start at line 5"]
    assert coverage_problems(guide("1-4", "4-10")) == ["x: 4-10 should start at line 5"]
    assert coverage_problems(guide("1-4", "5-9")) == ["x: ranges end at 9, not 10"]
    both = {"id": "x", "lines": 1, "ranges": [{"lines": "1", "entries": ["a"], "none": "r"}]}
    assert coverage_problems(both) == ["x 1: name entries/sections or say why not"]


def test_every_entry_named_exists_and_lists_exactly_those_guides(table: dict[str, Any]) -> None:
    named: dict[str, set[str]] = {}
    for guide in table["guide"]:
        for span in guide["ranges"]:
            for claim in span.get("entries", []):
                named.setdefault(claim, set()).add(guide["id"])
    recorded = verdicts(CHAPTER)
    assert len(recorded) >= 60
    assert set(named) - set(recorded) == set(), "entries named in the table but not in 13"
    assert set(recorded) - set(named) == set(), "entries of 13 that no range names"
    assert named == recorded


def test_every_section_named_exists(table: dict[str, Any]) -> None:
    sections = {
        section
        for guide in table["guide"]
        for span in guide["ranges"]
        for section in span.get("sections", [])
    }
    assert len(sections) >= 15
    for section in sorted(sections):
        notebook, _, heading = section.partition("#")
        assert (CHAPTERS_DIR / notebook).is_file(), f"{section}: no such notebook"
        assert heading in headings(CHAPTERS_DIR / notebook), f"{section}: no such heading"
