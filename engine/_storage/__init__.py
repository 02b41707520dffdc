"""Storage: the log and its projections on a database, behind one contract.

Holds the contract every backend implements (``contract``), group commit as every backend
shares it (``commit``), the read half's base (``split``), and one subpackage per backend:
``sqlite`` (aiosqlite, WAL; the embedded default) and ``postgres`` (asyncpg; the shared store
for teams). Blob stores for run files will live here too, behind a contract of their own.

May import ``engine._core``, ``engine._projections``, ``engine._query`` and
``engine.errors``. Nothing above this layer knows which backend it talks to, and the contract
never imports a backend.
"""
