"""The guide's chapters, in order, and their titles: for the tools and tests (no IPython)."""

from __future__ import annotations

import json
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
