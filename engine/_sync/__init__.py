"""The blocking facade's implementation; ``engine.sync`` is its public face.

Holds the event loop the engine runs on, in a thread of its own (``portal``), and the blocking
twins of the tracker (``tracker``), the run handle and its context (``run``) and subscriptions
(``subscription``), each a thin layer that calls into that loop and waits.

May import ``engine._runtime``, the layers below it and ``engine.errors``; only ``engine.sync``
and the command line above it import it.
"""
