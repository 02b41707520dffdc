"""The shared backend: PostgreSQL through asyncpg (the store: ``store``).

May import the rest of ``engine._storage`` and the layers below it; nothing outside
``engine._storage`` imports it except through the backend registry. asyncpg is an optional
dependency (the ``postgres`` extra), so nothing imports this package until a
``postgresql://`` URL is opened.
"""
