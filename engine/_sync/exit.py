"""What becomes of blocking trackers and runs left open when the interpreter exits.

A training script or a notebook often ends without closing what it opened: no ``with``,
no ``finish()``, or an uncaught exception on the way out. Then, like W&B, Kittiwake ends
each run still open — ``succeeded``, or ``failed`` with the exception the interpreter is
exiting with (``aborted`` for a KeyboardInterrupt) — commits everything accepted, and closes
its trackers, so the process exits promptly with nothing lost.

A top-level ``sys.exit(code)`` is not seen: ``SystemExit`` reaches neither
``sys.excepthook`` nor any other hook, and ``sys.exit`` is not replaced to see it, so a run
still open then ends ``succeeded`` (inside a run's block the block sees it, and the run ends
as the code says).

Open trackers are held here strongly: one the script dropped without closing must still be
closed, or its event loop's thread would keep the interpreter from finishing. An
``atexit`` hook does the work (before the interpreter stops its threads); a
``sys.excepthook`` wrapper remembers the uncaught exception it reports.
"""

from __future__ import annotations

import atexit
import contextlib
import sys
import threading
from types import TracebackType
from typing import Protocol

__all__ = ["Closable", "forget_run", "forget_tracker", "keep_run", "keep_tracker"]


class Closable(Protocol):
    """What exit closes: an open tracker."""

    def close(self) -> None:
        """Commit what was accepted and close."""


class _Ending(Protocol):
    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool: ...


_lock = threading.Lock()
_trackers: dict[int, Closable] = {}
_runs: dict[int, _Ending] = {}
_uncaught: list[BaseException] = []
_installed = False


def keep_tracker(tracker: Closable) -> None:
    """Close ``tracker`` at exit unless it is closed before."""
    with _lock:
        _install()
        _trackers[id(tracker)] = tracker


def forget_tracker(tracker: Closable) -> None:
    """``tracker`` was closed."""
    with _lock:
        _trackers.pop(id(tracker), None)


def keep_run(context: _Ending) -> None:
    """End the run of ``context`` at exit unless its block (or ``finish()``) ends it."""
    with _lock:
        _install()
        _runs[id(context)] = context


def forget_run(context: _Ending) -> None:
    """The run of ``context`` ended."""
    with _lock:
        _runs.pop(id(context), None)


def _install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    previous = sys.excepthook

    def remember(kind: type[BaseException], error: BaseException,
                 tb: TracebackType | None) -> None:
        _uncaught.append(error)
        previous(kind, error, tb)

    sys.excepthook = remember
    atexit.register(_at_exit)


def _at_exit() -> None:
    """End the runs still open, then close the trackers still open (each failure is
    reported and passed over: exit must go on)."""
    error = _uncaught[-1] if _uncaught else None
    with _lock:
        runs, trackers = list(_runs.values()), list(_trackers.values())
        _runs.clear()
        _trackers.clear()
    for context in runs:
        with contextlib.suppress(Exception):
            context.__exit__(None if error is None else type(error), error,
                             None if error is None else error.__traceback__)
    for tracker in trackers:
        try:
            tracker.close()
        except Exception as failure:  # the process is exiting: say so, do not hang
            print(f"kittiwake: closing {tracker!r} at exit failed: {failure}",
                  file=sys.stderr)
