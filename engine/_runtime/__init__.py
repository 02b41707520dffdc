"""The runtime: an open tracker, its run handles, and the background work that serves them.

Holds the tracker, ``engine.connect`` and the tracker's settings and reads (``tracker``,
``connect``, ``settings``, ``reads``), its calls on runs and the opening and resuming of
runs behind them (``runs``, ``opening``), the run handle and its context (``run``), what
runs buffer (``buffer``) and the writer task that commits it (``writer``), the compiled
logging hot path and its Python twin (``hot_path``, ``_speedups.c``), heartbeats, the
reaper and abort delivery (``liveness``), the supervision of the background loops
(``supervisor``), live subscriptions and what their filters select (``subscriptions``,
``filters``), what the server takes from the tracker it serves over (``serving``), the job
queue's half of the tracker (``jobs``, ``requeue``), and what becomes of trackers left open
on an event loop at interpreter exit (``exit``).

May import every layer below it: ``engine._core``, ``engine._projections``,
``engine._query``, ``engine._storage`` (the contract and the registry, never a backend
directly) and ``engine.errors``.
"""
