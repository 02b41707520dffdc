"""The tracker: one open database, its writer, and the API users call (``engine.connect``).

``async with engine.connect(...) as tracker`` opens the store and starts the background tasks
in a task group the tracker owns, each run by its ``Supervisor``: the writer, and the loops
of ``Liveness`` — heartbeats for live runs, the reaper that marks silent runs crashed, and a
cheap poll of the log's head that notices other processes' writes (abort requests,
subscriptions). Leaving the block commits everything buffered, then stops them.

``connect`` makes one from a URL; its settings are checked by ``settings``; its calls on runs
live in ``runs``, its reads in ``reads``, its job queue in ``jobs``.
"""

from __future__ import annotations

import asyncio
import enum
import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Literal, NoReturn

import anyio
from anyio.abc import TaskGroup

from engine._core.events import Upcasters, default_upcasters
from engine._core.heartbeat import promise
from engine._storage.blobdb import DatabaseBlobStore
from engine._storage.blobs.contract import BlobStore
from engine._storage.blobs.directory import DirectoryBlobStore
from engine._storage.contract import Progress, Store
from engine._storage.registry import open_store
from engine.errors import ClosedError, ValidationError

from .captures import captures_default, prefetch_environment
from .exit import Left, forget, keep
from .filters import event_filter
from .jobs import TrackerJobs
from .liveness import Liveness
from .opening import RunOpener
from .reads import TrackerReads
from .run import end_buffered, stop_captures, unsettled_calls
from .runs import TrackerRuns
from .settings import Durability, check_settings
from .snapshot import Named
from .subscriptions import Hub, Subscription, start_in_background
from .supervisor import Supervisor
from .writer import Writer

__all__ = ["Tracker", "use_blocking_defaults"]

class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


def use_blocking_defaults(tracker: Tracker) -> None:
    """Have ``tracker`` default its runs' captures as blocking code's (``engine.sync``):
    output and system metrics on."""
    tracker._blocking = True


class Tracker(TrackerRuns, TrackerReads, TrackerJobs):
    """An open connection to a Kittiwake database: start runs, read them, follow the log.

    Make one with [connect][engine.connect]. The constructor takes the same settings, and
    ``upcasters``: the schema registry the log is read with. Event types and their versions
    belong to the engine, not to users, so that is always this release's own registry
    (``engine._core.events.default_upcasters()``) — tests pass another to play an older or
    newer release.

    :ivar url: the database it was opened on.
    :ivar project: the project every call uses unless it passes ``project=``.
    """

    def __init__(self, url: str, *, project: str, durability: Durability, flush_interval: float,
                 batch_points: int, max_pending_points: int, heartbeat_interval: float,
                 crash_timeout: float, reap_interval: float | None, poll_interval: float,
                 clock: Callable[[], float], blobs: str | os.PathLike[str] | None = None,
                 upcasters: Upcasters | None = None,
                 remote: Mapping[str, Any] | None = None) -> None:
        self._settings = check_settings(
            project=project, durability=durability, flush_interval=flush_interval,
            batch_points=batch_points, max_pending_points=max_pending_points,
            heartbeat_interval=heartbeat_interval, crash_timeout=crash_timeout,
            reap_interval=reap_interval, poll_interval=poll_interval)
        self.url = url
        self._remote = dict(remote or {})
        self.project = self._settings.project
        if blobs is not None and (not isinstance(blobs, str | os.PathLike)
                                  or not os.fspath(blobs)):
            raise ValidationError(f"blobs must be a directory path or None, not {blobs!r}",
                                  key="blobs")
        self._blobs_dir = None if blobs is None else os.fspath(blobs)
        self._blobs: BlobStore | None = None
        self._clock = clock
        self._upcasters = default_upcasters() if upcasters is None else upcasters
        self._upcasters.check()  # a release with a gap in its upcasters must not start
        self._state = _State.NEW
        self._store: Store | None = None
        self._writer: Writer | None = None
        self._tasks: TaskGroup | None = None
        self._hub = Hub()
        self._supervisor = Supervisor()
        self._liveness: Liveness | None = None
        self._opener: RunOpener | None = None
        self._host: asyncio.Task[Any] | None = None  # the task that opened the tracker
        self._blocking = False  # engine.sync's tracker: captures default as in blocking code
        self._named = Named()  # digests its committed uploads name: stored, safe from gc
        self._left: Left | None = None  # what the interpreter's exit sees of it while open

    def __repr__(self) -> str:
        return f"<Tracker {self.url!r} project={self.project!r} {self._state.value}>"

    def __del__(self) -> None:
        if getattr(self, "_state", None) is _State.OPEN:
            warnings.warn(f"{self!r} was never closed", ResourceWarning, stacklevel=1)

    # Lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> NoReturn:
        raise TypeError("engine.connect() opens an async tracker: use `async with "
                        "engine.connect(...)`, or engine.sync.connect(...) in code that is "
                        "not async")

    def __exit__(self, *exc: object) -> None:  # pragma: no cover - __enter__ always raises
        return None

    async def __aenter__(self) -> Tracker:
        if self._state is not _State.NEW:
            raise ClosedError("a tracker can be opened once; call engine.connect() again")
        settings = self._settings
        store = open_store(self.url, durability=settings.durability, upcasters=self._upcasters,
                           options=self._remote)
        await store.open()
        self._store = store
        blobs: BlobStore = ((store.own_blobs() or DatabaseBlobStore(store))
                            if self._blobs_dir is None
                            else DirectoryBlobStore(
                                self._blobs_dir,
                                durability="full" if settings.durability == "full" else "normal"))
        try:
            await blobs.start()
        except BaseException:
            await store.close()
            raise
        self._blobs = blobs
        writer = Writer(store, clock=self._clock, flush_interval=settings.flush_interval,
                        batch_points=settings.batch_points,
                        max_pending=settings.max_pending_points)
        writer.blobs = blobs
        supervisor = self._supervisor
        liveness = Liveness(store, writer, self._hub, supervisor, clock=self._clock,
                            heartbeat_interval=settings.heartbeat_interval,
                            crash_timeout=settings.crash_timeout,
                            reap_interval=settings.reap_interval,
                            poll_interval=settings.poll_interval)
        writer.on_commit.append(liveness.on_commit)
        writer.on_commit.append(self._hub.publish)
        writer.on_commit.append(self._named.on_commit)
        supervisor.on_failure += [liveness.halt, writer.close, self._hub.fail]
        self._writer = writer
        self._liveness = liveness
        self._opener = RunOpener(store, writer, self._clock,
                                 promise(settings.heartbeat_interval, settings.crash_timeout))
        liveness.seen = self._hub.head = await store.head()
        tasks = anyio.create_task_group()
        await tasks.__aenter__()
        self._tasks = tasks
        self._host = asyncio.current_task()
        supervisor.start(tasks, writer.run, *liveness.loops)
        tasks.start_soon(self._keep)
        if captures_default():
            tasks.start_soon(prefetch_environment)
        self._state = _State.OPEN
        self._left = Left(asyncio.get_running_loop(), f"the tracker on {self.url!r}",
                          lambda: self._state is _State.OPEN, self._unwritten)
        keep(self._left)
        return self

    def _unwritten(self) -> tuple[int, int, list[str]]:
        """What the tracker accepted and has not written: values, logging calls, and the
        ids of the runs still open."""
        assert self._writer is not None and self._liveness is not None
        runs = [run for run, _ in list(self._liveness.live.values())]
        with self._writer.lock:
            return (self._writer.pending, sum(unsettled_calls(run) for run in runs),
                    [run.run_id for run in runs])

    async def _keep(self) -> None:
        """Wait until the tracker's tasks are cancelled. Cancelled without the tracker being
        closed — an event loop shutting down under a tracker nobody closed — it commits what
        the runs buffered, ends the runs still open ``crashed`` (their process is going
        away), and closes the store, so nothing accepted is lost and no database thread
        keeps the process from exiting."""
        try:
            await anyio.sleep_forever()
        finally:
            host = self._host
            # A host task still running will leave the tracker's block itself (an
            # ``engine.init`` run's task ends its run first): only an abandoned tracker is
            # closed here.
            if self._state is _State.OPEN and (host is None or host.done()):
                with anyio.CancelScope(shield=True):
                    await self._abandon()

    async def _abandon(self) -> None:
        self._state = _State.CLOSED
        self._forget()
        assert self._writer is not None and self._store is not None
        assert self._liveness is not None
        for run, _ in list(self._liveness.live.values()):
            end_buffered(run, "crashed", "the process exited with the run open")
        closed = ClosedError("the tracker's event loop shut down")
        self._liveness.halt(closed)
        try:
            await self._writer.drain()
            self._writer.close(closed)
        finally:
            self._hub.close()
            if self._blobs is not None:
                await self._blobs.aclose()
            await self._store.close()

    def _forget(self) -> None:
        if self._left is not None:
            forget(self._left)
            self._left = None

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close: live runs stop accepting data, everything they buffered is committed, then
        the background tasks stop and the database closes. Their blocks' ends then raise
        ``ClosedError`` (the runs stay ``running`` until a reaper marks them crashed).

        :raises ClosedError: (at the end) when the tracker had stopped on a failure of its
            background work — the database out of reach for longer than it retries — chained
            to that failure.
        """
        if self._state is not _State.OPEN:
            self._state = _State.CLOSED
            return
        self._state = _State.CLOSED
        self._forget()
        assert self._writer is not None and self._tasks is not None and self._store is not None
        assert self._liveness is not None
        closed = ClosedError("the tracker was closed")
        for run, _ in list(self._liveness.live.values()):
            stop_captures(run)  # the descriptors come back; the lines so far are committed
            run.halt(closed)  # what they buffered is committed below; nothing more is taken
        try:
            with anyio.CancelScope(shield=True):
                await self._writer.drain()
                self._writer.close(closed)
        finally:
            # The task group must be exited at the level it was entered: no scope around it.
            self._tasks.cancel_scope.cancel()
            try:
                await self._tasks.__aexit__(None, None, None)
            finally:
                self._hub.close()
                with anyio.CancelScope(shield=True):
                    if self._blobs is not None:
                        await self._blobs.aclose()
                    await self._store.close()
        if self._supervisor.failure is not None:
            raise self._supervisor.failure

    def _job_parts(self) -> tuple[RunOpener, Liveness, dict[str, Any]]:
        self._open()
        assert self._opener is not None and self._liveness is not None
        return self._opener, self._liveness, self._opener.promise

    def _blob_store(self) -> BlobStore:
        if self._blobs is None or self._state is not _State.OPEN:
            raise ClosedError("the tracker is not open: use `async with engine.connect(...)`")
        return self._blobs

    def _open(self) -> tuple[Store, Writer]:
        if self._state is not _State.OPEN:
            raise ClosedError("the tracker is not open: use `async with engine.connect(...)`")
        assert self._store is not None and self._writer is not None
        return self._store, self._writer

    async def _reader(self) -> Store:
        store, writer = self._open()
        await writer.settle_creations()
        return store

    @property
    def closed(self) -> bool:
        """True once the tracker has been closed."""
        return self._state is _State.CLOSED

    # Following the log and rebuilding ------------------------------------------------------

    def subscribe(self, runs: Iterable[str] | None = None, types: Iterable[str] | None = None,
                  metrics: Iterable[str] | None = None,
                  from_position: int | Literal["start", "live"] = "start", *,
                  project: str | None = None,
                  buffer_points: int = 1_000_000) -> Subscription:
        """Follow the project's events: history from ``from_position``, then live.

        ``from_position`` is ``"start"`` (the whole log), ``"live"`` (what commits after this
        call — the log's head is read at once, in the background, and whatever this tracker
        commits after the call is delivered even if that read comes later), or the last
        position already seen. The *history* is the log up to its head when the subscription
        starts, and ``sub.caught_up`` turns true once the consumer has received all of it
        that matches (``Subscription.caught_up``). ``runs`` and ``types`` filter; with
        ``metrics``, only metric events that carry those metrics come, trimmed to them.
        History turns into live without a gap or a duplicate, even while writers append, in
        this process or another; a subscriber too slow for its buffer (``buffer_points``)
        reads from the log instead of holding more. Use it with ``async for``; it ends when
        the tracker closes (and raises ``ClosedError`` if the tracker stopped on a failure).

        :raises ValidationError: for a bad argument.
        :raises ClosedError: when the tracker is closed.
        """
        store, writer = self._open()
        if not (from_position in ("start", "live") or
                (type(from_position) is int and 0 <= from_position < 2**63)):
            raise ValidationError(
                f"from_position must be 'start', 'live' or a position >= 0, not "
                f"{from_position!r}", key="from_position")
        if type(buffer_points) is not int or buffer_points < 1:
            raise ValidationError("buffer_points must be a positive int", key="buffer_points")
        where, metric_names = event_filter(self._project(project), runs, types, metrics)
        subscription = Subscription(store, self._hub, where, metric_names, from_position,
                                    buffer_points, committing=writer.committing)
        assert self._tasks is not None
        self._tasks.start_soon(start_in_background, subscription)  # fix its history now
        return subscription

    async def check(self, progress: Callable[[int], None] | None = None) -> list[str]:
        """Verify the database: its own files where it can tell (SQLite's integrity check),
        the log (positions without a gap, each run's versions in order, every event matching
        its checksum and readable), every projection against a rebuild of it into scratch
        tables, and the bytes of every file the log names (there, and matching their
        digest). One line per finding, each naming where the damage is; an empty list means
        the database is healthy. ``progress`` is called with the position the check has read
        up to. Reads the whole log and every file: a maintenance task, not a health probe.

        :raises StorageError: when the database cannot be read at all.
        """
        store, _ = self._open()
        findings = await store.check(progress)
        if findings:
            return findings  # file names come from the log: trust it first
        return await self._check_blobs()

    async def rebuild_projections(self, progress: Progress | None = None) -> None:
        """Rebuild every projection from the log into fresh tables and swap them in; reads
        see the old tables until the swap."""
        store, _ = self._open()
        await store.rebuild(progress)
        assert self._tasks is not None
        self._tasks.start_soon(store.drop_retired)

