"""Storage: the log and its projections on a database, behind one contract.

Holds the contract every backend implements (``contract``) and the registry that opens a
backend by URL scheme (``registry``); what every backend shares, written once: group commit
(``commit``), the sessions shared SQL runs on (``session``), every read (``reads``), the
projection IO (``io``), the rebuild driver (``rebuild``) and the store's two halves
(``split``); and one subpackage per backend, holding only what truly differs — connections,
locking, error translation, bulk writes: ``sqlite`` (aiosqlite, WAL; the embedded default)
and ``postgres`` (asyncpg; the shared store for teams, with LISTEN/NOTIFY). Blob stores for
run files will live here too, behind a contract of their own.

May import ``engine._core``, ``engine._projections``, ``engine._query`` and
``engine.errors``. Nothing above this layer knows which backend it talks to, and the contract
and the shared modules never import a backend.
"""
