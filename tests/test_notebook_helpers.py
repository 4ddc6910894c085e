"""The notebooks' source display shows the real, current source."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from snippets.lab.chapters import chapter_title, chapters
from snippets.lab.notebook import (
    ClaimIndex,
    definitions,
    raises,
    run_failing,
    run_without,
    show_definitions,
    show_source,
)
from snippets.lab.timing import best_of_rounds, eventually
from snippets.session import make_sessionmaker


def test_show_source_is_the_current_source() -> None:
    shown = show_source(make_sessionmaker).data
    assert shown.startswith("`snippets.session.make_sessionmaker`\n```python\n")
    assert inspect.getsource(make_sessionmaker).rstrip() in shown


def test_definitions_include_decorators_and_stop_at_the_end() -> None:
    found = definitions("tests/conftest.py", "engine", "namespace")
    assert list(found) == ["engine", "namespace"]
    assert found["engine"].startswith("@pytest.fixture\nasync def engine(")
    assert found["engine"].endswith("await engine.dispose()")
    assert "def session" not in found["engine"]


def test_definitions_include_top_level_assignments_whole() -> None:
    found = definitions("examples/mission_migrations/m3_backfill_slug.py", "mission", "BATCH")
    assert found["BATCH"] == "BATCH = 250"
    assert found["mission"].startswith("mission = sa.table(")
    assert found["mission"].endswith(")")
    assert "def upgrade" not in found["mission"]


def test_show_definitions_names_the_file() -> None:
    shown = show_definitions("tests/conftest.py", "namespace").data
    assert shown.startswith("`tests/conftest.py` · `namespace`\n```python\n@pytest.fixture")


def test_unknown_name_is_a_clear_error() -> None:
    with pytest.raises(LookupError, match="defines no top-level nowhere"):
        definitions("tests/conftest.py", "nowhere")


def test_raises_records_and_prints_the_expected_error(capsys: pytest.CaptureFixture[str]) -> None:
    with raises(KeyError, match="missing") as caught:
        {}["missing"]
    assert isinstance(caught.value, KeyError)
    assert capsys.readouterr().out == "KeyError: 'missing'\n"


def test_raises_fails_loudly_when_nothing_is_raised() -> None:
    with pytest.raises(AssertionError, match="expected ValueError or KeyError to be raised"):  # noqa: SIM117
        with raises((ValueError, KeyError)):
            pass


def test_raises_fails_when_the_message_does_not_match() -> None:
    with pytest.raises(AssertionError, match="'gone' not in"), raises(ValueError, match="gone"):
        raise ValueError("still here")


def test_raises_lets_other_errors_through() -> None:
    with pytest.raises(TypeError), raises(ValueError):
        raise TypeError("not the expected one")


def test_raised_value_before_the_block_ends_is_an_error() -> None:
    with pytest.raises(AssertionError, match="after the"), raises(ValueError) as caught:
        caught.value  # noqa: B018


def test_run_without_reports_the_missing_module() -> None:
    assert run_without("json", "import json") == (
        "ModuleNotFoundError: import of json halted; None in sys.modules"
    )
    with pytest.raises(AssertionError, match="expected the program to fail"):
        run_without("json", "print('fine without it')")


def test_run_failing_reports_the_last_error_line() -> None:
    assert run_failing("import json\nundefined_name") == (
        "NameError: name 'undefined_name' is not defined"
    )
    with pytest.raises(AssertionError, match="expected the program to fail"):
        run_failing("print('fine')")


def test_claim_index_records_verdicts_and_builds_the_table(tmp_path: Path) -> None:
    (tmp_path / "01_first.ipynb").write_text('{"cells": [{"source": ["# 01 · The first one\\n"]}]}')
    claims = ClaimIndex(notebooks=tmp_path)
    assert "fills in" in claims.index_table()
    with pytest.raises(ValueError, match="topic"):
        claims.verdict("x", guide="000", verdict="wrong", chapter="01_first.ipynb", instead="y")
    claims.topic("Engines")
    shown = claims.verdict(
        "`future=True` is needed",
        guide="000, 003",
        verdict="outdated",
        chapter="01_first.ipynb",
        instead="leave it out.",
    ).data
    assert shown == (
        "**Claim 1 · verdict: outdated.** Instead: leave it out. "
        "Taught in [01 · The first one](01_first.ipynb)."
    )
    table = claims.index_table()
    assert "| 1 | Engines | `future=True` is needed | 000, 003 | **outdated** |" in table
    assert table.endswith("1 claims: 0 correct, 1 outdated, 0 misleading, 0 wrong.")
    assert claims.counts() == {"correct": 0, "outdated": 1, "misleading": 0, "wrong": 0}


def test_claim_index_refuses_what_would_make_the_index_wrong(tmp_path: Path) -> None:
    (tmp_path / "01_first.ipynb").write_text('{"cells": [{"source": ["# 01 · The first one\\n"]}]}')
    claims = ClaimIndex(notebooks=tmp_path)
    claims.topic("Engines")
    claims.verdict("a claim", guide="000", verdict="correct", chapter="01_first.ipynb", instead=".")
    with pytest.raises(ValueError, match="twice"):
        claims.verdict(
            "a claim", guide="001", verdict="wrong", chapter="01_first.ipynb", instead="."
        )
    with pytest.raises(ValueError, match="verdict must be one of"):
        claims.verdict("b", guide="000", verdict="dubious", chapter="01_first.ipynb", instead=".")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match=r"no chapter 02_missing\.ipynb"):
        claims.verdict("c", guide="000", verdict="wrong", chapter="02_missing.ipynb", instead=".")
    assert len(claims.checked) == 1


def test_chapters_are_the_numbered_notebooks_with_their_titles() -> None:
    found = chapters()
    assert [path.name[:2] for path in found] == sorted(path.name[:2] for path in found)
    assert all(chapter_title(path).startswith(f"{path.name[:2]} · ") for path in found)


async def test_eventually_asks_until_done_and_returns_the_last_answer() -> None:
    answers = iter(range(10))
    assert await eventually(lambda: next(answers), lambda n: n == 3, every=0) == 3
    assert next(answers) == 4  # asked no more once done
    assert await eventually(lambda: 0, lambda n: n == 1, within=0.05, every=0.01) == 0


async def test_best_of_rounds_takes_turns_and_keeps_each_ways_smallest_figure() -> None:
    calls: list[str] = []
    figures = {"a": iter([3.0, 1.0, 2.0]), "b": iter([5.0, 6.0, 4.0])}

    def way(name: str) -> Callable[[], Awaitable[float]]:
        async def measure() -> float:
            calls.append(name)
            return next(figures[name])

        return measure

    assert await best_of_rounds({"a": way("a"), "b": way("b")}) == {"a": 1.0, "b": 4.0}
    assert calls == ["a", "b"] * 3
    with pytest.raises(ValueError, match="at least 1"):
        await best_of_rounds({"a": way("a")}, rounds=0)
