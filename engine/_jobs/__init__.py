"""Jobs: the worker that claims queued jobs and runs their commands (``kittiwake worker``).

The queue itself — ``enqueue``, ``claim_job`` and a job's ending — is part of the tracker
(``engine._runtime.jobs``); this holds what runs the jobs: ``worker`` (the loop, its wake-ups
and its stop) and ``process`` (a job's process group, its output, SIGTERM then SIGKILL).

Above ``_runtime`` (it drives an async tracker) and below ``_cli``; may import
``engine._runtime``, ``engine._core`` and ``engine.errors``.
"""
