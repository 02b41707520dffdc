"""The remote client: a ``Store`` that talks to a Kittiwake server over HTTP.

Holds the wire protocol both ends share (``protocol``: the contract's values as JSON, and
errors as typed bodies), the remote store (``store``, on httpx) that ``engine.connect
("http://…")`` opens through the storage registry, the spool (``spool``: a local SQLite
file every batch is written to before it is sent, and ``sync`` that uploads what is left),
and a doorbell on a server's event stream (``events``: how a job worker attached to a server
learns of new jobs).

May import ``engine._storage`` (its contract and registry, never a backend), ``engine._query``,
``engine._core`` and ``engine.errors``. The runtime sits above it and never imports it: it is
opened by URL scheme like any backend (the job worker, above the runtime, imports ``events``).
"""
