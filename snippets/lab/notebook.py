"""Helpers for the notebooks themselves (they need IPython, from the `notebooks` extra).

``show_source`` and ``show_definitions`` display *real* source, read at the moment the cell
runs, so that a notebook never shows a copy of code that could drift from what runs.

``raises`` is how a notebook demonstrates an error: the cell fails loudly if nothing (or
something else) is raised, instead of leaving a stale error from an earlier run in a variable.

``ClaimIndex`` collects the verdicts of a notebook that checks claims (notebook 13): each entry
records its verdict after its live run, and the index table at the top of the notebook is
redrawn from those records, so the table and the entries cannot disagree.
"""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar, get_args

from IPython.display import DisplayHandle, Markdown, display

from snippets.config import PROJECT_ROOT
from snippets.lab.chapters import CHAPTERS_DIR, chapter_title

E = TypeVar("E", bound=BaseException)


class Raised(Generic[E]):
    """The exception a ``raises`` block caught; ``value`` is set when the block ends."""

    def __init__(self) -> None:
        self._value: E | None = None

    @property
    def value(self) -> E:
        if self._value is None:
            raise AssertionError("read .value after the `with raises(...)` block")
        return self._value

    def __repr__(self) -> str:
        return f"{type(self.value).__name__}: {self.value}"


@contextmanager
def raises(
    expected: type[E] | tuple[type[E], ...], *, match: str | None = None, show: bool = True
) -> Iterator[Raised[E]]:
    """Expect the block to raise ``expected``; record it and, with ``show``, print it.

    ::

        with raises(IntegrityError, match="UNIQUE|unique") as duplicate:
            await session.commit()
        duplicate.value.orig  # the driver's exception

    Raises:
        AssertionError: nothing was raised, or the message does not match ``match`` (a regular
            expression searched in ``str(error)``). Any other exception propagates as it is.
    """
    caught: Raised[E] = Raised()
    try:
        yield caught
    except expected as error:
        if match is not None and not re.search(match, str(error)):
            raise AssertionError(
                f"{type(error).__name__} raised, but {match!r} not in: {error}"
            ) from error
        caught._value = error
        if show:
            print(f"{type(error).__name__}: {error}")
        return
    names = (
        expected.__name__
        if isinstance(expected, type)
        else " or ".join(t.__name__ for t in expected)
    )
    raise AssertionError(f"expected {names} to be raised, and nothing was")


def run_failing(code: str) -> str:
    """Run ``code`` in a fresh Python, as a reader would run a published snippet; return the
    last line of its error (``NameError: name 'x' is not defined``).

    Raises:
        AssertionError: the program did not fail.
    """
    finished = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert finished.returncode != 0, "expected the program to fail"
    return finished.stderr.strip().splitlines()[-1]


def run_without(module: str, code: str) -> str:
    """Run ``code`` in a fresh Python where importing ``module`` fails, as if it were not
    installed; return the last line of its error.

    Raises:
        AssertionError: the program did not fail.
    """
    return run_failing(f"import sys; sys.modules[{module!r}] = None\n{code}")


def run_with_missing(modules: tuple[str, ...], script: Path) -> str:
    """Run the Python ``script`` in a fresh interpreter where none of ``modules`` can be
    imported, as if they were not installed; return what it printed.

    Raises:
        AssertionError: the program failed (its last error line says why).
    """
    blocked = "".join(f"sys.modules[{module!r}] = None; " for module in modules)
    program = f"import runpy, sys; {blocked}runpy.run_path({str(script)!r}, run_name='__main__')"
    finished = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )
    assert finished.returncode == 0, (finished.stderr.strip().splitlines() or ["?"])[-1]
    return finished.stdout.strip()


def only_on(has_it: bool, behaviour: str, *, elsewhere: str) -> bool:
    """Whether this backend shows ``behaviour``; where it does not, say so visibly.

    ``elsewhere`` says what this backend does instead and how to see the behaviour (which
    ``DATABASE_URL`` to run with). Use it as the condition of the cell's ``if``, with the fact
    from ``snippets.backends`` that decides it::

        if only_on(facts(engine).locks_rows, "Row locks", elsewhere="SQLite locks ..."):
            ...
    """
    if not has_it:
        note = f"> ⚠ **{behaviour}: not on this backend.** {elsewhere}"
        display(_markdown(note))  # type: ignore[no-untyped-call]  # IPython is untyped
    return has_it


def show_source(*objects: Any) -> Markdown:
    """Display the source of importable objects (functions, classes), each under its name."""
    blocks = []
    for obj in objects:
        module = inspect.getmodule(obj)
        where = module.__name__ if module else "?"
        name = getattr(obj, "__qualname__", where)
        blocks.append(f"`{where}.{name}`\n```python\n{inspect.getsource(obj).rstrip()}\n```")
    return _markdown("\n\n".join(blocks))


def definitions(path: str | Path, *names: str) -> dict[str, str]:
    """The source of top-level functions, classes and assignments (``NAME = ...``) in a project
    file, decorators included.

    For files that are not importable modules, such as ``tests/conftest.py``. ``path`` is
    relative to the project root.

    Raises:
        LookupError: a name is not defined at the top level of the file.
    """
    lines = (PROJECT_ROOT / path).read_text().splitlines()
    found: dict[str, str] = {}
    for node in ast.parse("\n".join(lines)).body:
        definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
        if isinstance(node, definition) and node.name in names:
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            found[node.name] = "\n".join(lines[start - 1 : node.end_lineno])
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and target.id in names:
                    found[target.id] = "\n".join(lines[node.lineno - 1 : node.end_lineno])
    missing = [name for name in names if name not in found]
    if missing:
        raise LookupError(f"{path} defines no top-level {', '.join(missing)}")
    return {name: found[name] for name in names}


def show_definitions(path: str | Path, *names: str) -> Markdown:
    """Display ``definitions(path, *names)``, each under the file and name it comes from."""
    blocks = [
        f"`{path}` · `{name}`\n```python\n{source}\n```"
        for name, source in definitions(path, *names).items()
    ]
    return _markdown("\n\n".join(blocks))


def _markdown(text: str) -> Markdown:
    return Markdown(text)  # type: ignore[no-untyped-call]  # IPython is untyped


Verdict = Literal["correct", "outdated", "misleading", "wrong"]
"""correct: true today; outdated: was true, or was the way, before a release changed it;
misleading: runs, but teaches the wrong lesson or hides a cost; wrong: fails, or was never true."""
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)


@dataclass(frozen=True)
class Checked:
    """One claim, checked live: where it comes from, the verdict, and where to learn more."""

    number: int
    topic: str
    claim: str
    guide: str
    """The guide or guides it comes from: their numbers, e.g. ``000, 003``."""
    verdict: Verdict
    chapter: str
    """A notebook file name in ``notebooks/``, e.g. ``07_pool.ipynb``."""
    instead: str
    """What to write instead (Markdown, one line)."""


class ClaimIndex:
    """The claims a notebook checks, with an index table that fills in as they are checked.

    ::

        claims = ClaimIndex()
        claims.show_index()              # at the top: an empty table, redrawn by each verdict
        claims.topic("Engine options")
        ...                              # the live run and its asserts
        claims.verdict("`future=True` is needed", guide="000", verdict="outdated",
                       chapter="01_engine.ipynb", instead="leave it out.")
    """

    def __init__(self, notebooks: Path | None = None) -> None:
        self.notebooks = notebooks or CHAPTERS_DIR
        self.checked: list[Checked] = []
        self._topic = ""
        self._index: DisplayHandle | None = None

    def topic(self, name: str) -> None:
        """Set the topic of the verdicts that follow."""
        self._topic = name

    def verdict(
        self, claim: str, *, guide: str, verdict: Verdict, chapter: str, instead: str
    ) -> Markdown:
        """Record a claim's verdict, redraw the index, and return the verdict line to show.

        Raises:
            ValueError: an unknown verdict, no topic set yet, or a claim recorded twice.
            FileNotFoundError: ``chapter`` is not a notebook of the guide.
        """
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, not {verdict!r}")
        if not self._topic:
            raise ValueError("call topic() before the first verdict")
        if any(entry.claim == claim for entry in self.checked):
            raise ValueError(f"claim recorded twice: {claim}")
        entry = Checked(len(self.checked) + 1, self._topic, claim, guide, verdict, chapter, instead)
        self.chapter_title(chapter)  # a link to a chapter that does not exist fails here
        self.checked.append(entry)
        if self._index is not None:
            self._index.update(_markdown(self.index_table()))  # type: ignore[no-untyped-call]
        link = f"[{self.chapter_title(chapter)}]({chapter})"
        return _markdown(
            f"**Claim {entry.number} · verdict: {verdict}.** Instead: {instead} Taught in {link}."
        )

    def show_index(self) -> None:
        """Display the index table; each later ``verdict`` redraws it in place."""
        self._index = display(_markdown(self.index_table()), display_id=True)  # type: ignore[no-untyped-call]

    def index_table(self) -> str:
        """The index as a Markdown table: claim, guide, verdict, chapter, by topic."""
        if not self.checked:
            return "*The index fills in as the claims below run (Run All).*"
        rows = [
            "| # | Topic | Claim | Guide | Verdict | Chapter |",
            "|--:|---|---|---|---|---|",
        ]
        for entry in self.checked:
            chapter = f"[{entry.chapter[:2]}]({entry.chapter})"
            rows.append(
                f"| {entry.number} | {entry.topic} | {entry.claim} | {entry.guide} "
                f"| **{entry.verdict}** | {chapter} |"
            )
        totals = Counter(entry.verdict for entry in self.checked)
        summary = ", ".join(f"{totals[verdict]} {verdict}" for verdict in VERDICTS)
        return "\n".join(rows) + f"\n\n{len(self.checked)} claims: {summary}."

    def counts(self) -> dict[Verdict, int]:
        """How many claims got each verdict (every verdict listed, zeros included)."""
        totals = Counter(entry.verdict for entry in self.checked)
        return {verdict: totals[verdict] for verdict in VERDICTS}

    def chapter_title(self, chapter: str) -> str:
        """The title of a chapter: the first heading of its notebook, e.g. ``07 · ...``.

        Raises:
            FileNotFoundError: no such notebook.
        """
        path = self.notebooks / chapter
        if not path.is_file():
            raise FileNotFoundError(f"no chapter {chapter} in {self.notebooks}")
        return chapter_title(path)
