"""The job worker: claims queued jobs and runs their commands (``kittiwake worker``).

Above ``_runtime`` (it drives an async tracker) and below ``_cli``; may import
``engine._runtime``, ``engine._core`` and ``engine.errors``.
"""
