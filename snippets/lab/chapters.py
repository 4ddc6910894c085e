"""The guide's chapters, in order, their titles and the shape of their code: for the tools and
tests (no IPython)."""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

from snippets.config import PROJECT_ROOT

CHAPTERS_DIR = PROJECT_ROOT / "notebooks"


def chapters(folder: Path = CHAPTERS_DIR) -> list[Path]:
    """The guide's chapters in order: the ``NN_*.ipynb`` notebooks of ``folder``."""
    return sorted(folder.glob("[0-9][0-9]_*.ipynb"))


def chapter_title(path: Path) -> str:
    """A chapter's title: the first line of its first cell, without the ``# ``."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    return "".join(notebook["cells"][0]["source"]).splitlines()[0].removeprefix("# ")


@dataclass(frozen=True)
class ChapterShape:
    """How a chapter's code is laid out: what the structure test holds to its targets."""

    code_cells: int
    code_lines: int
    median_cell: float
    largest_cell: int
    asserts: int
    asserts_in_final_cell: int
    """Asserts of the last code cell: at most a short recap; the rest sit by their claims."""


def chapter_shape(path: Path) -> ChapterShape:
    """Count the code lines, cell sizes and asserts of one chapter."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    sources = ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "code"]
    sizes = [len(source.splitlines()) for source in sources]
    asserts = [len(ASSERT.findall(source)) for source in sources]
    return ChapterShape(
        code_cells=len(sources),
        code_lines=sum(sizes),
        median_cell=statistics.median(sizes),
        largest_cell=max(sizes),
        asserts=sum(asserts),
        asserts_in_final_cell=asserts[-1],
    )


ASSERT = re.compile(r"^\s*assert\b", re.MULTILINE)
