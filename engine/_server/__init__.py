"""The server: the engine's API over HTTP (``kittiwake serve``).

Holds the Starlette app and its lifespan (``app``), the routes over the storage contract
(``routes``) and the runs table, the live stream as server-sent events (``stream``, fed by
the server's one reader of the log in ``fanout``), the checks every request body passes
before it reaches the store (``payloads``, ``params``), tokens and who may do what
(``auth``), the OpenAPI schema (``openapi``) and the uvicorn runner with its refusal to
listen beyond loopback without auth (``serve``).

May import ``engine._runtime`` (a tracker on the served database: its store and its
subscriptions), ``engine._client`` (the wire protocol both ends share), ``engine._storage``,
``engine._query``, ``engine._core`` and ``engine.errors``. It keeps no state of its own
between requests beyond caches it can drop: any number of servers may share one database.
"""
