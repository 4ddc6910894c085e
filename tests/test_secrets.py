"""No secret a database URL carries is ever printed, logged or stored, by any entry point.

Each form a URL can carry a secret in (a password, a password with an unencoded ``@``, one in
the query string, an SSL key's password) is given, as ``DATABASE_URL``, to each program a user
runs: the Python API, ``alembic``, ``make bench``, ``make bench-web``, ``tools/run_notebooks.py``
and ``uvicorn`` serving a demo API. The server is unreachable (port 1 refuses at once), so
each fails, and what it prints must still name the database without the secret. On PostgreSQL,
whose test server trusts any password, a run that succeeds is checked too, with the files it
writes for the website.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from snippets import open_engine
from snippets.backends import backend_of
from snippets.config import PROJECT_ROOT, database_url
from snippets.demo import lifecycle_api
from snippets.lab.served import ServedApp

SECRET = "Zq7-not-for-logs"
UNREACHABLE = "127.0.0.1:1"
URL_FORMS = {
    "password": f"postgresql+asyncpg://guide:{SECRET}@{UNREACHABLE}/app",
    "unencoded @": f"mysql+aiomysql://guide:ab@{SECRET}@{UNREACHABLE}/app",
    "query string": f"postgresql+asyncpg://guide@{UNREACHABLE}/app?password={SECRET}",
    "ssl key password": f"postgresql+asyncpg://guide@{UNREACHABLE}/app?sslpassword={SECRET}",
}
ENTRY_POINTS = {
    "python api": [
        sys.executable,
        "-c",
        "import asyncio, snippets; asyncio.run(snippets.open_engine())",
    ],
    "alembic": [sys.executable, "-m", "alembic", "current"],
    "make bench": [sys.executable, "tools/bench.py"],
    "make bench-web": [sys.executable, "tools/bench_web.py", "--seconds", "1"],
    "run_notebooks": [sys.executable, "tools/run_notebooks.py", "notebooks/01_engine.ipynb"],
    "uvicorn": [
        *(sys.executable, "-m", "uvicorn", "snippets.demo.heroes_api:app"),
        *("--host", "127.0.0.1", "--port", "0"),
    ],
}


def run(command: list[str], url: str, **environment: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": url, **environment}
    return subprocess.run(
        command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("form", URL_FORMS)
@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_a_failing_program_names_the_database_without_its_secret(
    entry_point: str, form: str, tmp_path: Path
) -> None:
    done = run(ENTRY_POINTS[entry_point], URL_FORMS[form])
    told = done.stdout + done.stderr
    assert done.returncode != 0, told
    assert SECRET not in told
    assert "guide@" in told or "guide:***@" in told, told  # it still names the database


@pytest.mark.skipif(
    backend_of(database_url()) != "postgresql",
    reason="needs a server that takes any password: the test PostgreSQL trusts its clients",
)
async def test_a_program_that_succeeds_prints_and_stores_no_secret(
    tmp_path: Path, namespace: str
) -> None:
    url = database_url().set(password=SECRET).render_as_string(hide_password=False)
    await (await open_engine(namespace=namespace, fresh=True)).dispose()
    notebook = tmp_path / "secret_check.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("1 + 1")]), notebook)  # type: ignore[no-untyped-call]
    out = tmp_path / "executed"
    notebooks = run(
        [sys.executable, "tools/run_notebooks.py", str(notebook), "--out", str(out)], url
    )
    environment = {"DATABASE_URL": url, lifecycle_api.NAMESPACE_VARIABLE: namespace}
    with ServedApp(
        "snippets.demo.lifecycle_api:create_app", environment, ready_path="/health"
    ) as server:
        async with httpx.AsyncClient(base_url=server.base) as client:
            ready = await client.get("/ready")
        log = server.log()

    assert notebooks.returncode == 0, notebooks.stdout + notebooks.stderr
    assert ready.status_code == 200  # connected, with the secret as its password
    written = [path for path in out.rglob("*") if path.is_file()]
    assert written  # the executed copy, with the run's record for the website
    assert not [path for path in written if SECRET in path.read_text(errors="replace")]
    assert SECRET not in notebooks.stdout + notebooks.stderr + log
