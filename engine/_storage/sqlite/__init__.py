"""The embedded backend: SQLite through aiosqlite, in WAL mode (the store: ``store``).

May import the rest of ``engine._storage`` and the layers below it; nothing outside
``engine._storage`` imports it except through the backend registry.
"""
