"""WAL checkpoints off the commit path: a thread of the SQLite store copies the WAL back into
the database file while the engine goes on.

SQLite's own automatic checkpoint runs inside the ``COMMIT`` that pushes the WAL past its
threshold: that commit then also copies every page into the database and syncs it, which
for a large flush doubles its cost. The store's connections turn it off
(``wal_autocheckpoint = 0``) and this thread does the same work on a connection of its own
soon after commits (at most once per ``interval``). SQLite releases the GIL while it copies,
so the checkpoint overlaps with the next fold in Python. A ``PASSIVE`` checkpoint never
blocks writers or readers; what a reader's snapshot still needs is copied next time.
"""

from __future__ import annotations

import sqlite3
import threading

__all__ = ["Checkpointer"]


class Checkpointer:
    """Copies the WAL into the database file soon after commits, on a thread of its own."""

    def __init__(self, path: str, *, synchronous: str, interval: float = 0.5) -> None:
        self.path = path
        self.synchronous = synchronous
        self.interval = interval
        self.checkpoints = 0  # completed checkpoints
        self.busy = 0  # checkpoints that found the database locked (retried next commit)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kittiwake-checkpoint",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def committed(self) -> None:
        """Note a commit: a checkpoint follows within ``interval``."""
        self._wake.set()

    def stop(self) -> None:
        """Ask the thread to end after its current checkpoint (see :meth:`join`)."""
        self._stopping.set()
        self._wake.set()

    def join(self) -> None:
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error:
            return  # the store's own connections report what is wrong with the file
        try:
            db.execute("PRAGMA busy_timeout = 1000")
            db.execute(f"PRAGMA synchronous = {self.synchronous}")
            db.execute("PRAGMA wal_autocheckpoint = 0")
            while True:
                self._wake.wait()
                if self._stopping.is_set():
                    return
                self._wake.clear()
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                except sqlite3.Error:
                    # Locked (a rebuild's swap, another process's checkpoint), or the disk
                    # is full: the WAL stays as it is and the next commit tries again. A
                    # checkpoint only copies committed pages, so nothing can be lost by
                    # skipping one.
                    self.busy += 1
                # Commits during the pause share the next checkpoint.
                if self._stopping.wait(self.interval):
                    return
        except sqlite3.Error:
            return  # as above: the store's connections say what is wrong
        finally:
            db.close()
