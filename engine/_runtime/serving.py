"""What ``kittiwake serve`` reaches under the tracker it serves over, and users never call.

The server runs one ``Tracker`` on its database and answers clients with that tracker's
store, blob store and log. These functions hand those parts out without making them methods
of ``Tracker``, whose methods are the public API (``kittiwake tokens`` uses the store too,
to manage a server's tokens).
"""

from __future__ import annotations

from engine._core.events import Record
from engine._storage.blobs.contract import BlobStore
from engine._storage.contract import EventFilter, Store

from .subscriptions import Subscription
from .tracker import Tracker
from .writer import contiguous

__all__ = ["backing_store", "blob_store", "follow_log", "publish"]


def backing_store(tracker: Tracker) -> Store:
    """The open store under ``tracker``: what ``kittiwake serve`` serves over HTTP, beside
    that tracker's subscriptions (a friend of ``Tracker``, not a method: users have no use
    for it).

    :raises ClosedError: when the tracker is not open.
    """
    return tracker._open()[0]


def publish(tracker: Tracker, records: list[Record]) -> None:
    """Offer records that were appended to ``tracker``'s store without its writer (the
    server's appends) to its subscribers at once, rather than when its watch of the head
    next reads them: one contiguous batch at a time, as the writer would (a friend of
    ``Tracker``, like ``backing_store``)."""
    for batch in contiguous(records):
        if tracker._liveness is not None:
            # Its watch of the head need not read these back to hand them out again.
            tracker._liveness.on_commit(batch)
        tracker._hub.publish(batch, own=False)


def follow_log(tracker: Tracker, buffer_points: int) -> Subscription:
    """Every project's events from the log's head on: what ``kittiwake serve`` reads once
    and fans out to its live streams (a friend of ``Tracker``, like ``backing_store``).

    :raises ClosedError: when the tracker is closed.
    """
    store, writer = tracker._open()
    return Subscription(store, tracker._hub, EventFilter(), None, "live", buffer_points,
                        committing=writer.committing)


def blob_store(tracker: Tracker) -> BlobStore:
    """The open blob store of ``tracker``: where the server keeps the file bytes clients
    send (a friend of ``Tracker``, like ``backing_store``).

    :raises ClosedError: when the tracker is not open.
    """
    return tracker._blob_store()
