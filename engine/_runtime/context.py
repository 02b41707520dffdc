"""A run's blocks: ``async with tracker.start_run(...)`` (``RunContext``), ``async with
tracker.edit_run(...)`` (``EditContext``), and the blocking facade's way into the same
(``begin_blocking``, ``end_blocking``): what starts a run, and the status its end records —
succeeded, failed with the exception, or aborted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Protocol

import anyio

from engine.errors import ClosedError, RunAbortedError

from .run import Run, end_buffered

__all__ = ["EditContext", "RunContext", "Watcher", "begin_blocking", "end_blocking",
           "end_blocking_later"]


class Watcher(Protocol):
    """Who keeps a live run alive and delivers its abort requests (the tracker's liveness)."""

    async def watch(self, run: Run, scope: anyio.CancelScope) -> None:
        """Keep ``run`` alive; cancel ``scope`` when it is aborted."""

    def unwatch(self, run: Run) -> None:
        """Stop watching ``run``."""


Start = Callable[[], Awaitable[tuple["Run", Watcher]]]


class RunContext:
    """``async with tracker.start_run(...) as run``: starts the run on entry; on exit records
    succeeded, failed (exception type and message) or aborted, after flushing."""

    def __init__(self, start: Start) -> None:
        self._start = start
        self._run: Run | None = None
        self._watcher: Watcher | None = None
        self._scope: anyio.CancelScope | None = None

    async def __aenter__(self) -> Run:
        run, watcher = await self._open()
        scope = self._scope = anyio.CancelScope()
        # Entered only once the watch has begun: an abort delivered while it reads (by this
        # call, or by the tracker's look at the log, from another task) cancels the scope
        # before it is entered, so it reaches the body's first await — not this call, which
        # would leave the scope entered with no ``__aexit__`` to leave it.
        await _watch(run, watcher, scope)
        scope.__enter__()
        return run

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> bool:
        run, watcher, scope = self._run, self._watcher, self._scope
        assert run is not None and watcher is not None and scope is not None
        watcher.unwatch(run)
        swallowed = bool(scope.__exit__(exc_type, exc, tb))
        reason: str | None
        if scope.cancel_called:  # an abort was requested, whether or not the body saw it
            status, reason = "aborted", run.abort_reason or "cancelled"
        elif isinstance(exc, anyio.get_cancelled_exc_class()):
            status, reason = "aborted", "cancelled"
        else:
            status, reason = _ending(exc)
        await run.finish(status, reason)
        return swallowed

    async def _open(self) -> tuple[Run, Watcher]:
        if self._run is not None:
            raise RuntimeError("a run context can be entered once")
        self._run, self._watcher = await self._start()
        return self._run, self._watcher


class EditContext:
    """``async with tracker.edit_run(run_id) as run``: a handle on an existing run — running
    or ended — that logs configs, tags and metrics without touching its status, heartbeat or
    captures. Leaving the block flushes what it logged; the run's status stays as it was."""

    def __init__(self, start: Callable[[], Awaitable[Run]]) -> None:
        self._start = start
        self._run: Run | None = None

    async def __aenter__(self) -> Run:
        if self._run is not None:
            raise RuntimeError("an edit context can be entered once")
        self._run = await self._start()
        return self._run

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        run = self._run
        assert run is not None
        run.halt(ClosedError(f"the edit of run {run.run_id!r} has ended"))
        with anyio.CancelScope(shield=True):
            await run.flush()


async def _watch(run: Run, watcher: Watcher, scope: anyio.CancelScope) -> None:
    """Start watching ``run``; if that fails, its block never starts: the run ends as the
    error says, and the error goes on to the caller."""
    try:
        await watcher.watch(run, scope)
    except BaseException as exc:
        watcher.unwatch(run)
        with anyio.CancelScope(shield=True):
            await run.finish(*_ending(exc))
        raise


def _ending(exc: BaseException | None) -> tuple[str, str | None]:
    """The status and reason a run's block ends with, for the exception that ended it."""
    if exc is None:
        return "succeeded", None
    if isinstance(exc, RunAbortedError):
        return "aborted", exc.reason
    if isinstance(exc, Exception):
        return "failed", f"{type(exc).__name__}: {exc}"
    if isinstance(exc, SystemExit):  # as the process's exit code says
        if exc.code is None or exc.code == 0:
            return "succeeded", None
        if isinstance(exc.code, int):
            return "failed", f"SystemExit: exit code {int(exc.code)}"
        return "failed", f"SystemExit: exit code 1: {exc.code}"  # a message, printed
    return "aborted", type(exc).__name__  # KeyboardInterrupt


async def begin_blocking(context: RunContext) -> Run:
    """Start the run of ``context`` for blocking code (``engine.sync``): no cancel scope —
    the body runs on another thread — so an abort makes its next logging call raise
    ``RunAbortedError`` instead."""
    run, watcher = await context._open()
    run.raise_on_abort()
    await _watch(run, watcher, anyio.CancelScope())
    return run


async def end_blocking(context: RunContext, exc: BaseException | None) -> bool:
    """End the run of a blocking ``context`` as its block ended: with ``exc``, or none.
    True when ``exc`` is this run's own abort, which the block swallows."""
    run, status, reason = _unwatched(context, exc)
    await run.finish(status, reason)
    return isinstance(exc, RunAbortedError) and exc.run_id == run.run_id


def end_blocking_later(context: RunContext, exc: BaseException | None) -> None:
    """End the run of a blocking ``context`` as ``end_blocking`` would, without waiting: the
    tracker, closing next, commits the status with the rest (its writer may be stopping)."""
    run, status, reason = _unwatched(context, exc)
    end_buffered(run, status, reason)


def _unwatched(context: RunContext, exc: BaseException | None) -> tuple[Run, str, str | None]:
    run, watcher = context._run, context._watcher
    assert run is not None and watcher is not None
    watcher.unwatch(run)
    status, reason = _ending(exc)
    if status == "succeeded" and run.abort_requested:  # a sys.exit(0) on the abort, too
        return run, "aborted", run.abort_reason
    return run, status, reason
