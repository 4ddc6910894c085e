"""The notebooks' instruments: what the guide measures and demonstrates with.

Not meant to be copied into an application. ``snippets`` itself never imports this package.

* ``notebook``: real source shown in a cell, errors demonstrated with ``raises``, the claim
  index of notebook 13 (needs IPython, from the ``notebooks`` extra);
* ``chapters``: the chapters in order and their titles (for the tools; no IPython);
* ``timing``: a stopwatch for cells that measure;
* ``observe``: the statements an engine sends;
* ``server``: a statement that runs as long as asked, the statements running on a server,
  connections killed from outside;
* ``pool``: a pool observed, loaded and swept (notebook 07);
* ``loading``: relationship loading strategies measured (notebook 05);
* ``bench``: the bulk-loading ladder (notebook 10, ``make bench``; plots need matplotlib).
"""
