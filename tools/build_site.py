"""Build the guide's static website from the notebooks as ``make run`` executed them.

``make site`` calls this. It reads ``build/notebooks/NN_*.ipynb`` (it never executes a cell),
writes a Sphinx source folder to ``build/site-src/`` (the executed notebooks, each with a line
saying which database and library versions it ran with and a link to its source, a home page
made from the README's table of chapters, and the data files the chapters link to), and builds
it with Sphinx, myst-nb and the book theme into ``build/site/``. Open ``build/site/index.html``
in a browser (``file://`` works), or serve the folder with ``python -m http.server -d build/site``.

Exit status 2 when a notebook has no executed copy yet: run ``make run`` first.
"""

from __future__ import annotations

import argparse
import itertools
import re
import shutil
import subprocess
import sys
import time
from typing import Any

import nbformat

from snippets.config import PROJECT_ROOT
from snippets.lab.chapters import CHAPTERS_DIR, chapters

NOTEBOOKS = CHAPTERS_DIR
EXECUTED = PROJECT_ROOT / "build" / "notebooks"
SOURCE = PROJECT_ROOT / "build" / "site-src"
SITE = PROJECT_ROOT / "build" / "site"
README_LINK = re.compile(r"\(\.\./README\.md(#[\w-]+)?\)")


def chapters_table(readme: str) -> str:
    """The README's table of chapters, its links pointing at the pages of the site."""
    section = readme.split("## The notebooks", 1)[1].strip().splitlines()
    table = list(itertools.takewhile(lambda line: line.startswith("|"), section))
    if not table:
        raise ValueError("README.md has no table under '## The notebooks'")
    return "\n".join(table).replace("](notebooks/", "](")


def run_line(record: dict[str, Any] | None, name: str) -> str:
    """The line under a page's title: how it was executed, and where its source is."""
    source = f'<a href="notebooks/{name}">{name}</a>'
    if not record:
        return f"*Executed copy without a record of its run.* Source: {source}."
    versions = ", ".join(f"{package} {version}" for package, version in record["versions"].items())
    seconds = " + ".join(f"{value:g} s" for value in record["seconds"]) or "-"
    status = "" if record["status"] == "ok" else f" **It failed: {record['status']}.**"
    return (
        f"*Executed by `make run` on {record['date']} with {record['backend']} "
        f"(`{record['url']}`), Python {record['python']}, {versions}; Run All took "
        f"{seconds}.*{status} Source: {source}."
    )


def write_sources(names: list[str]) -> None:
    """Fill ``build/site-src/``: the home page, the executed notebooks, their sources."""
    shutil.rmtree(SOURCE, ignore_errors=True)
    (SOURCE / "_extra" / "notebooks").mkdir(parents=True)
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    toctree = "\n".join(name.removesuffix(".ipynb") for name in names)
    (SOURCE / "index.md").write_text(
        "# The executed guide to async SQLModel\n\n"
        "SQLModel on SQLAlchemy's asyncio extension, taught by notebooks whose every claim runs "
        "and is checked. Each page below is a notebook with the outputs it really produced; the "
        "line under its title says which database and library versions it ran with.\n\n"
        f"{chapters_table(readme)}\n\n"
        f":::{{toctree}}\n:hidden:\n:maxdepth: 1\n\n{toctree}\n:::\n",
        encoding="utf-8",
    )
    for name in names:
        notebook = nbformat.read(EXECUTED / name, as_version=4)  # type: ignore[no-untyped-call]
        for cell in notebook.cells:
            if cell.cell_type == "markdown":
                cell.source = README_LINK.sub("(index.md)", cell.source)
        line = run_line(notebook.metadata.get("guide_run"), name)
        notebook.cells.insert(1, nbformat.v4.new_markdown_cell(line))  # type: ignore[no-untyped-call]
        nbformat.write(notebook, SOURCE / name)  # type: ignore[no-untyped-call]
        shutil.copy(NOTEBOOKS / name, SOURCE / "_extra" / "notebooks" / name)
    for data in NOTEBOOKS.glob("*.toml"):  # tables a chapter links to: MyST makes a download
        shutil.copy(data, SOURCE / data.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.parse_args(argv)
    names = [path.name for path in chapters(NOTEBOOKS)]
    missing = [name for name in names if not (EXECUTED / name).is_file()]
    if missing:
        print(
            f"error: no executed copy of {', '.join(missing)} in {EXECUTED}: run `make run` first",
            file=sys.stderr,
        )
        return 2
    started = time.perf_counter()
    write_sources(names)
    shutil.rmtree(SITE, ignore_errors=True)
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-b",
            "html",
            "-q",
            "-c",
            str(PROJECT_ROOT / "site"),
            str(SOURCE),
            str(SITE),
        ],
        check=False,
    )
    if build.returncode:
        return build.returncode
    pages = len(list(SITE.glob("*.html")))
    print(
        f"Built {pages} pages from {len(names)} notebooks in {time.perf_counter() - started:.1f} s:"
        f" open {SITE / 'index.html'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
