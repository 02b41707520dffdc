"""The web dashboard: plain static files (HTML, CSS, ES modules and the vendored uPlot).

Nothing here is built at install time: the server serves ``STATIC`` as it is, at ``/``, and
the pages talk to the server's HTTP API under ``/api/v1/`` and its live stream. Imports
nothing from the engine.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["STATIC"]

STATIC = Path(__file__).parent / "static"
"""The directory of the dashboard's files (``index.html`` at its root)."""
