"""The projections: what the log is folded into, inside each append's transaction.

Holds the projector (``projector``: records in, row changes out, through a cache of the rows
they touch), the rows it works on and the contract a backend fulfils to load and save them
(``rows``), the projection tables declared once, from which each backend renders its DDL
(``tables``), and the stored form of those rows (``stored``).

May import ``engine._core`` and ``engine.errors``; never a database driver or a backend.
"""
