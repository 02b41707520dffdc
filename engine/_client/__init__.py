"""The remote client: a ``Store`` that talks to a Kittiwake server over HTTP.

Holds the wire protocol both ends share (``protocol``: the contract's values as JSON, and
errors as typed bodies), the remote store (``store``, on httpx) that ``engine.connect
("http://…")`` opens through the storage registry, and the spool (``spool``: a local SQLite
file every batch is written to before it is sent, and ``sync`` that uploads what is left).

May import ``engine._storage`` (its contract and registry, never a backend), ``engine._query``,
``engine._core`` and ``engine.errors``. The runtime sits above it and never imports it: it is
opened by URL scheme like any backend.
"""
