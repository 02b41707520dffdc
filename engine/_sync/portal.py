"""The event loop the blocking facade runs the engine on, in a thread of its own.

Every blocking call is one call into that loop (an anyio blocking portal): the calling thread
waits for the answer, and an exception raised there is raised in the caller. The loop is
started once and stopped once; a call after the stop raises ``ClosedError``, never the
portal's own ``RuntimeError``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from engine.errors import ClosedError

__all__ = ["Portal"]

T = TypeVar("T")


class Portal:
    """An event loop on a thread of its own that blocking code calls into."""

    def __init__(self) -> None:
        self._thread: AbstractContextManager[BlockingPortal] | None = None
        self._portal: BlockingPortal | None = None

    @property
    def running(self) -> bool:
        """True from :meth:`start` until :meth:`stop`."""
        return self._portal is not None

    def start(self) -> None:
        """Start the loop's thread."""
        thread = start_blocking_portal("asyncio")
        self._portal = thread.__enter__()
        self._thread = thread

    def stop(self) -> None:
        """Stop the loop once its tasks are done, and join its thread. Stopping twice is
        harmless."""
        thread = self._thread
        self._thread = self._portal = None
        if thread is not None:
            thread.__exit__(None, None, None)

    def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run the coroutine function ``fn`` on the loop and return its result.

        :raises ClosedError: when the loop is not running.
        """
        return self._running().call(fn)

    def call_sync(self, fn: Callable[[], T]) -> T:
        """Run the plain function ``fn`` on the loop's thread (for what must be made there)
        and return its result.

        :raises ClosedError: when the loop is not running.
        """
        return self._running().call(fn)

    def wrap(self, manager: AbstractAsyncContextManager[T]) -> AbstractContextManager[T]:
        """``manager`` as a blocking context manager whose entry and exit run in one task of
        the loop, as a task group inside it requires.

        :raises ClosedError: when the loop is not running.
        """
        return self._running().wrap_async_context_manager(manager)

    def iterate(self, source: AsyncGenerator[T, None]) -> Iterator[T]:
        """Iterate ``source`` on the loop, one call per item; it is closed when the iteration
        ends or is abandoned, unless the loop has stopped by then."""
        try:
            while True:
                try:
                    yield self.call(source.__anext__)
                except StopAsyncIteration:
                    return
        finally:
            if self.running:
                self.call(source.aclose)

    def _running(self) -> BlockingPortal:
        portal = self._portal
        if portal is None:
            raise ClosedError("the tracker is not open: use `with engine.sync.connect(...)`")
        return portal
