"""The website builder's own parts (the site itself is tested in a browser: browser_tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from snippets.config import PROJECT_ROOT
from snippets.lab.chapters import chapters
from tools import build_site


def test_home_page_table_is_the_readmes_with_links_to_pages() -> None:
    table = build_site.chapters_table((PROJECT_ROOT / "README.md").read_text())
    rows = table.splitlines()
    assert len(rows) == 2 + len(chapters())  # header, rule, one row per chapter
    for chapter in chapters():
        assert f"]({chapter.name})" in table
    assert "](notebooks/" not in table


def test_line_under_the_title_says_how_the_page_ran() -> None:
    record = {
        "backend": "PostgreSQL",
        "url": "postgresql+asyncpg://app:***@db/shop",
        "python": "3.11.7",
        "versions": {"sqlalchemy": "2.1.9", "asyncpg": "0.32.0"},
        "date": "2026-11-24",
        "status": "ok",
        "seconds": [4.2],
    }
    line = build_site.run_line(record, "01_engine.ipynb")
    assert line.startswith("*Executed by `make run` on 2026-11-24 with PostgreSQL")
    assert "sqlalchemy 2.1.9, asyncpg 0.32.0" in line
    assert "4.2 s" in line
    assert line.endswith('Source: <a href="notebooks/01_engine.ipynb">01_engine.ipynb</a>.')
    failed = build_site.run_line({**record, "status": "FAILED"}, "01_engine.ipynb")
    assert "**It failed: FAILED.**" in failed
    assert "without a record" in build_site.run_line(None, "01_engine.ipynb")


def test_missing_executed_notebooks_is_one_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(build_site, "EXECUTED", tmp_path)
    assert build_site.main([]) == 2
    assert "run `make run` first" in capsys.readouterr().err
