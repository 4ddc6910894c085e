"""The website of ``make site``, in a real browser (``make test-site``, after ``make run``).

The site in ``build/site/`` is served over HTTP on a free loopback port (a missing page is then a
real 404) and opened in headless Chromium: the home page and every chapter page must have their
title, at least one rendered output, and every image loaded with a size; every internal link of
every page must answer; the search must find a word; and a page must open from ``file://`` too.
A screenshot of each page goes to ``build/site-shots/``.
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urldefrag, urljoin

import pytest
from playwright.sync_api import Browser, Page

from browser_tests.chromium import free_port
from snippets.config import PROJECT_ROOT
from snippets.lab.chapters import chapter_title, chapters

SITE = PROJECT_ROOT / "build" / "site"
SHOTS = PROJECT_ROOT / "build" / "site-shots"
NOTEBOOKS = chapters()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    if not (SITE / "index.html").is_file():
        pytest.fail(f"no site in {SITE}: run `make run && make site` first")
    port = free_port()
    handler = functools.partial(QuietHandler, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield f"http://127.0.0.1:{port}/"
    server.shutdown()
    server.server_close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    yield page
    page.close()


def internal_links(page: Page, base: str) -> set[str]:
    hrefs = page.eval_on_selector_all("a[href]", "links => links.map(link => link.href)")
    return {urldefrag(href)[0] for href in hrefs if href.startswith(base)}


def check_page(page: Page, url: str, title: str, shot: str) -> set[str]:
    response = page.goto(url)
    assert response is not None, url
    assert response.status == 200, url
    assert page.locator("h1").first.inner_text().strip().startswith(title), url
    images = page.eval_on_selector_all(
        "img", "images => images.map(image => [image.src, image.complete, image.naturalWidth])"
    )
    broken = [src for src, complete, width in images if not complete or width == 0]
    assert broken == [], f"{url}: images not loaded: {broken}"
    page.screenshot(path=str(SHOTS / f"{shot}.png"), full_page=False)
    return internal_links(page, url.rsplit("/", 1)[0] + "/")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_chapter_page(site: str, page: Page, notebook: Path) -> None:
    links = check_page(
        page, urljoin(site, f"{notebook.stem}.html"), chapter_title(notebook), notebook.stem
    )
    assert page.locator(".cell_output").count() >= 1, "no rendered output"
    assert page.locator("button.copybtn").count() >= 1, "no copy button on the code"
    assert "Executed by `make run`" not in page.content()  # rendered, not shown as source
    assert page.get_by_text("Executed by").count() >= 1, "no record of the run"
    source = page.locator(f'a[href="notebooks/{notebook.name}"]')
    assert source.count() == 1, "no link to the notebook's source"
    for link in links:
        answer = page.request.get(link)
        assert answer.status == 200, f"{link} (linked from {notebook.stem}) answers {answer.status}"


def test_home_page_lists_every_chapter_and_links_work(site: str, page: Page) -> None:
    links = check_page(page, site, "The executed guide to async SQLModel", "index")
    for notebook in NOTEBOOKS:
        assert urljoin(site, f"{notebook.stem}.html") in links, notebook.stem
    for link in links:
        assert page.request.get(link).status == 200, link


def test_search_finds_a_word(site: str, page: Page) -> None:
    page.goto(urljoin(site, "search.html?q=greenlet"))
    results = page.locator("#search-results li")
    results.first.wait_for(timeout=15_000)
    assert results.count() >= 1


def test_opens_from_a_file_url(page: Page) -> None:
    page.goto((SITE / "13_advice_checked.html").as_uri())
    assert page.locator("h1").first.inner_text().startswith("13 · ")
    assert page.locator("table").count() >= 2  # the index and the await table, rendered
