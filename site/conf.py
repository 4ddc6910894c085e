"""Sphinx configuration of the guide's website (``make site``; tools/build_site.py).

The pages are the notebooks as ``make run`` executed them: myst-nb renders their stored outputs
and never runs a cell (``nb_execution_mode = "off"``). The source folder is generated under
``build/site-src/`` by tools/build_site.py; this file is its configuration (``sphinx-build -c``).
"""

from __future__ import annotations

from pathlib import Path

project = "The executed guide to async SQLModel"
author = "The guide's authors"
extensions = ["myst_nb", "sphinx_copybutton"]

# Render what `make run` stored; never execute again.
nb_execution_mode = "off"
nb_merge_streams = True
# Markdown outputs (the index of notebook 13, show_source) are rendered with tables.
nb_render_markdown_format = "myst"
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3
exclude_patterns = ["_extra"]
# Titles and prose keep their straight quotes, as in the notebooks (and the tests that look for
# them).
smartquotes = False
suppress_warnings = [
    # Notebook prose links to files of the repository (README sections, snippets/*.py): they
    # are not pages of the site. tools/build_site.py rewrites the links it knows.
    "myst.xref_missing",
]

html_theme = "sphinx_book_theme"
html_title = "Async SQLModel, executed"
html_static_path: list[str] = []
# The committed notebooks, linked from each page as its source (paths here are relative to this
# folder, so the generated one is named in full).
html_extra_path = [str(Path(__file__).resolve().parent.parent / "build" / "site-src" / "_extra")]
html_theme_options = {
    "show_toc_level": 2,
    "show_navbar_depth": 1,
    "use_download_button": False,
    "use_fullscreen_button": False,
    "home_page_in_toc": True,
}
html_show_sourcelink = False
html_last_updated_fmt = ""
# Copy buttons skip the prompts and outputs: what is copied runs as it is.
copybutton_exclude = ".linenos, .gp, .go"
