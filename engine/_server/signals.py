"""Ending live streams as soon as a shutdown begins."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["closing_on_signals"]


def closing_on_signals(set_closing: Callable[[], None]) -> None:
    """Chain ``set_closing`` in front of the handlers uvicorn installed for SIGINT and
    SIGTERM, so live streams end as soon as a shutdown begins (only the main thread may
    handle signals: a server run in a thread, as in tests, is closed by its lifespan)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(sig)

        def handler(number: int, frame: Any, previous: Any = previous) -> None:
            set_closing()
            if callable(previous):
                previous(number, frame)

        signal.signal(sig, handler)
