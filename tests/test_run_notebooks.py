"""The runner behind `make run`, and how `make run` and `make test` meet a bad database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from snippets.config import PROJECT_ROOT, database_url, shown_url
from tools.run_notebooks import execute, main


def write_notebook(path: Path, *sources: str) -> Path:
    notebook = new_notebook(cells=[new_code_cell(source) for source in sources])  # type: ignore[no-untyped-call]
    nbformat.write(notebook, path)  # type: ignore[no-untyped-call]
    return path


def test_reports_each_notebook_and_fails_on_a_failing_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_notebook(
        tmp_path / "01_good.ipynb", "answer = await __import__('asyncio').sleep(0, 42)", "answer"
    )
    bad = write_notebook(tmp_path / "02_bad.ipynb", "x = 1", "assert x == 2, 'x is not 2'")
    out = tmp_path / "out"

    assert main([str(good), str(bad), "--out", str(out), "--timeout", "60"]) == 1

    report = capsys.readouterr().out
    assert "[1/2] 01_good.ipynb" in report
    assert "[2/2] 02_bad.ipynb" in report
    assert "assert x == 2, 'x is not 2'" in report  # the failing line, without colour codes
    assert "AssertionError: x is not 2" in report
    assert "\x1b[" not in report
    assert "1 passed, 1 failed" in report
    executed = nbformat.read(out / "01_good.ipynb", as_version=4)  # type: ignore[no-untyped-call]
    assert executed.cells[1].outputs[0]["data"]["text/plain"] == "42"
    failed = nbformat.read(out / "02_bad.ipynb", as_version=4)  # type: ignore[no-untyped-call]
    assert failed.cells[1].outputs[0]["output_type"] == "error"


def test_noise_on_stderr_is_found_in_each_run(tmp_path: Path) -> None:
    noisy = write_notebook(
        tmp_path / "01_noisy.ipynb",
        "import warnings\nwarnings.warn('careful', UserWarning)",
        "print('fine')",
    )
    notebook, outcome = execute(noisy, runs=2, progress=False)
    assert outcome.status == "ok"
    assert len(outcome.seconds) == 2
    assert len(outcome.noise) == 2  # IPython shows a repeated warning again in each run
    assert outcome.noise[1].startswith("run 2, cell 0:")
    assert "UserWarning: careful" in outcome.noise[1]
    assert notebook.cells[1].outputs[0]["text"] == "fine\n"


def test_all_passing_exits_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_notebook(tmp_path / "01_good.ipynb", "1 + 1")
    assert main([str(good), "--out", str(tmp_path / "out")]) == 0
    assert "1 passed, 0 failed" in capsys.readouterr().out
    # The executed copy records how it ran, for the website's line under each title.
    record = nbformat.read(tmp_path / "out" / "01_good.ipynb", as_version=4).metadata.guide_run
    assert record["status"] == "ok"
    assert len(record["seconds"]) == 1
    assert set(record["versions"]) >= {"sqlalchemy", "sqlmodel", "fastapi"}
    assert record["backend"] in ("SQLite", "PostgreSQL", "MySQL/MariaDB")
    url = database_url()
    assert record["url"] == shown_url(url)  # never a password
    assert url.password is None or str(url.password) not in record["url"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://app:s3cr3t@db/shop", "Use 'postgresql+asyncpg://app:***@db/shop' instead"),
        ("postgresql+asyncpg://app:s3cr3t@127.0.0.1:9/shop", "Could not connect"),
    ],
)
def test_bad_database_is_one_message_before_any_notebook(
    url: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notebook = write_notebook(tmp_path / "01_never.ipynb", "raise SystemExit('must not run')")
    monkeypatch.setenv("DATABASE_URL", url)
    finished = subprocess.run(
        [sys.executable, "tools/run_notebooks.py", str(notebook), "--out", str(tmp_path)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 2
    assert finished.stdout == ""
    assert finished.stderr.startswith("error: ")
    assert expected in finished.stderr
    assert len(finished.stderr.strip().splitlines()) == 1
    assert "s3cr3t" not in finished.stderr


def test_pytest_stops_with_one_message_on_a_bad_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "sqlite:///app.db")
    finished = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "tests/test_config.py"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = finished.stdout + finished.stderr
    assert finished.returncode == pytest.ExitCode.USAGE_ERROR
    assert "ERROR: DATABASE_URL='sqlite:///app.db' names no driver" in output
    assert "Traceback" not in output
