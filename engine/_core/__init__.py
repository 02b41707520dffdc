"""The pure core: the values, the event vocabulary and the rules everything else builds on.

Holds the values users receive (``model``), events, their schema versions and upcasters
(``events``), the exact payload codec (``codec``), event ids and generated names (``ids``),
what logging accepts (``validate``), the series layout — chunks, block summaries,
downsampling (``series``, ``blocks``) — and the projections written as one pure fold over
the log (``fold``: the reference semantics, ``as_of`` reads and the tests' oracle).

No I/O, no event loop, no database. May import only the standard library, orjson, NumPy and
``engine.errors``.
"""
