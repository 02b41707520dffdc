"""A subscription for blocking code: iterate it in a thread; each item is one call into the
loop, on behalf of that thread."""

from __future__ import annotations

import threading
from functools import partial
from types import TracebackType

from engine._core.model import Event
from engine._runtime.subscriptions import Subscription, next_for, wait_caught_up_for

from .portal import Portal

__all__ = ["SyncSubscription"]


class SyncSubscription:
    """The blocking twin of ``Subscription``: history from a position, then live, without a
    gap or a duplicate. Iterate it; it ends when it is closed or the tracker closes."""

    def __init__(self, portal: Portal, subscription: Subscription) -> None:
        self._portal = portal
        self._subscription = subscription

    def __repr__(self) -> str:
        return f"<SyncSubscription at {self.position}{' caught up' if self.caught_up else ''}>"

    def __iter__(self) -> SyncSubscription:
        return self

    def __next__(self) -> Event:
        """The next event; blocks until there is one.

        :raises StopIteration: when the subscription or the tracker was closed.
        :raises ClosedError: when the tracker stopped on a failure.
        """
        if not self._portal.running:
            raise StopIteration  # the tracker closed, and the subscription ended with it
        try:
            return self._portal.call(partial(next_for, self._subscription, _consumer()))
        except StopAsyncIteration:
            raise StopIteration from None

    @property
    def position(self) -> int:
        """The last position the subscription has covered (see ``Subscription``)."""
        return self._subscription.position

    @property
    def caught_up(self) -> bool:
        """True once this iterator has returned every matching event of the history (the log
        up to its head when the subscription started); see ``Subscription.caught_up``."""
        return self._subscription.caught_up

    def wait_caught_up(self) -> int:
        """Block until the history is delivered; returns the position covered. A thread that
        iterates the subscription itself can only call this while the history holds nothing
        more for it (see ``Subscription.wait_caught_up``).

        :raises RuntimeError: when this thread would have to receive history first.
        :raises ClosedError: when the tracker stopped on a failure.
        """
        return self._portal.call(partial(wait_caught_up_for, self._subscription, _consumer()))

    def close(self) -> None:
        """Stop the subscription; iteration ends. Nothing to do once the tracker closed."""
        if self._portal.running:
            self._portal.call(self._subscription.aclose)

    def __enter__(self) -> SyncSubscription:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _consumer() -> tuple[str, int]:
    """Who iterates a blocking subscription: the calling thread (each of its calls runs in a
    new task of the loop, so the task says nothing)."""
    return ("thread", threading.get_ident())
