"""The guide's demo domain: heroes, teams, powers, accounts and readings.

Not meant to be copied: it is what the notebooks and the tests teach *on*. Your application has
its own models; what you copy is in ``snippets`` itself, which never imports this package.

* ``models``: the demo tables, on a registry of their own (``snippets.demo.models.metadata``);
* ``crud``: CRUD for ``Hero`` (notebook 04);
* ``loading``: the league's relationships loaded up front (notebook 05);
* ``seeding``: a league of teams and heroes, and sensor readings, to load;
* ``transfer``: a money transfer that holds under concurrency (notebook 06);
* ``heroes_api`` and ``heroes_page``: the demo JSON API (FastAPI) and HTML page (Air), built on
  ``snippets.api`` (notebook 08).
"""
