"""The run handle: what training code logs into, and the context that ends the run.

``log_metrics`` is the hottest path of the product, called millions of times. A call with
the same keys, in the same order, as the one before it, all of them floats, is checked and
its values appended to one flat buffer of doubles by one C call (``hot_path.take_floats``;
a Python twin where the extension was not built) and one step comparison, with its step and
time; the writer cuts per-metric columns out of it in C. Other calls check every key. No I/O, no
awaiting, and nothing allocated per call that outlives it (the buffer is a flat bytearray
and lists of steps and times).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import anyio

from engine._core import content as ct
from engine._core import events as ev
from engine._core.events import NewEvent
from engine._core.validate import (
    MAX_STEP,
    check_key,
    check_metric_value,
    check_step,
    check_tags,
    escape_nul,
    flatten,
    normalize_config,
)
from engine.errors import BackpressureError, ClosedError, RunAbortedError, ValidationError

from .buffer import Rows, RunBuffer, event_points
from .hot_path import pack_floats, take_floats
from .recorder import Recorder
from .recording import Keys, check_timestamp
from .writer import Writer

__all__ = ["Run", "attach_captures", "end_buffered", "on_finish", "run_kinds", "stop_captures",
           "system_start", "unsettled_calls", "wait_for_room"]

_BIG = 2.0**1023  # an int beyond this (in size) may not fit a float: check it slowly
_REASON_LIMIT = 4096
_ENDINGS = ("succeeded", "failed", "aborted")


class Run(Recorder):
    """A live run, as ``async with tracker.start_run(...) as run`` gives it.

    Logging methods are plain (not ``async``): they check their input at once, raise at once,
    and buffer (see [what logging accepts][what-logging-accepts]); ``await run.flush()``
    waits until it is durable.

    :ivar project: the run's project.
    :ivar run_id: the run's id (generated when ``start_run`` was given none).
    :ivar name: the run's name (generated when none was given).
    :ivar started_position: the position of the event that (re)opened the run — abort
        requests at or before it do not apply — or 0 for a run this handle created, whose
        RunCreated waits in the buffer with the rest.
    """

    __slots__ = ("_abort_reason", "_after_finish", "_buf", "_captures", "_clock", "_closed",
                 "_content", "_floor", "_halt", "_keys",
                 "_keys_step", "_known", "_last", "_lock", "_raise_on_abort", "_top",
                 "_writer", "name", "project", "run_id", "started_position")

    def __init__(self, writer: Writer, project: str, run_id: str, name: str, *,
                 last_steps: Mapping[str, int | float], floor: int | float | None,
                 started_position: int, clock: Callable[[], float],
                 creation: NewEvent | None = None,
                 kinds: Mapping[str, list[Any]] | None = None) -> None:
        self.project = project
        self.run_id = run_id
        self.name = name
        self.started_position = started_position
        self._writer = writer
        self._lock = writer.lock
        self._clock = clock
        self._buf = RunBuffer(project, run_id)
        self._last: dict[str, int | float] = dict(last_steps)
        self._known: set[str] = set(last_steps)
        self._floor: int | float = -1 if floor is None else floor
        self._top: int | float = max((self._floor, *self._last.values()))
        self._content = Keys({k: list(v) for k, v in (kinds or {}).items()}, self._floor)
        self._captures: Any = None  # the run's captures (``captures.Captures``), if any
        self._env_recorded = False
        self._keys: tuple[str, ...] = ()  # the key set of the latest call...
        self._keys_step: int | float = -1  # ...and the step it was logged at
        self._closed = False
        self._abort_reason: str | None = None
        self._raise_on_abort = False
        # Set when logging must stop (the run ended, or it was aborted in sync code): the
        # hot path tests this one attribute instead of each reason.
        self._halt: BaseException | None = None
        self._buf.halt = self.halt
        # What finishing also does for a run that owns its tracker (``engine.init``).
        self._after_finish: Callable[[], Awaitable[None]] | None = None
        if creation is not None:
            # A run created by this handle: its RunCreated waits in the buffer like anything
            # else it logs, so starting it costs no round trip to the database.
            with self._lock:
                self._buf.creating = True
                writer.creating[self._buf] = None
                self._buf.items.append(creation)
                self._buf.logged += 1
                writer.pending += 1
                writer.mark(self._buf)

    def __repr__(self) -> str:
        return f"<Run {self.project}/{self.run_id} name={self.name!r}>"

    @property
    def abort_reason(self) -> str | None:
        """The reason of the abort request this run saw (None: none was)."""
        return self._abort_reason

    @property
    def abort_requested(self) -> bool:
        """True once ``abort_run`` was called for this run (here or in another process)."""
        return self._abort_reason is not None

    # Logging -------------------------------------------------------------------------------

    def log_metrics(self, metrics: Mapping[str, Any], step: int | float | None = None, *,
                    timestamp: float | None = None) -> None:
        """Log metric values at ``step``; nested dicts are flattened with ``/``.

        Without ``step``, the step is one more than the highest this run has logged (0 first).
        Values are ints or floats, NaN and ±inf included; each metric's steps must increase.

        :raises ValidationError: naming the bad key, value or step; nothing is logged.
        :raises BackpressureError: when more points wait than the tracker allows.
        :raises ClosedError: after the run ended.
        """
        if type(metrics) is not dict:
            if not isinstance(metrics, Mapping):
                raise ValidationError(
                    f"log_metrics expects a dict of metric values, got {type(metrics).__name__}")
            metrics = dict(metrics)
        if not metrics:
            return
        lock = self._lock
        lock.acquire()  # not ``with``: this is measurably cheaper on a path this hot
        try:
            if self._halt is not None:
                raise self._halt
            if step is None:
                step = self._top + 1
                if step > MAX_STEP:
                    step = check_step(step)  # raises: the implicit step ran out of range
            elif type(step) is not int or not 0 <= step <= MAX_STEP:
                step = check_step(step)
            # The usual loop logs the same keys, in the same order, at each step: comparing
            # the keys stands in for checking each one, one step comparison for each key's
            # last step (all of them were last logged at _keys_step).
            if step > self._keys_step:
                keys = self._keys
                buf = self._buf
                group = buf.group
                writer = self._writer
                pending = writer.pending + len(keys)
                if (timestamp is None and group is not None and group.keys is keys
                        and pending <= writer.max_pending
                        and take_floats(metrics, keys, group.values)):
                    at = self._clock()
                    took = True
                else:  # the same check in Python, for ints, timestamps and a group's first row
                    took = tuple(metrics) == keys and _numbers(values := [*metrics.values()])
                    if took:
                        if pending > writer.max_pending:
                            raise self._full()
                        # Everything that can refuse the call comes before the first append.
                        at = self._clock() if timestamp is None else check_timestamp(timestamp)
                        if group is None or group.keys is not keys:
                            group = buf.group = Rows(keys)
                            buf.items.append(group)
                        group.values += pack_floats(values)
                if took:
                    assert group is not None
                    group.steps.append(step)
                    group.times.append(at)
                    self._keys_step = step
                    if step > self._top:
                        self._top = step
                    buf.logged += 1
                    writer.pending = pending
                    if not buf.marked or (pending >= writer.batch_points
                                          and not writer.urgent_signaled):
                        writer.mark(buf)
                    return
            flat = self._log_slowly(metrics, step, timestamp)
        finally:
            lock.release()
        if not flat:  # a nested dict was found before anything was buffered
            self.log_metrics(flatten(metrics, "metric name"), step, timestamp=timestamp)

    def _log_slowly(self, metrics: dict[str, Any], step: int | float,
                    timestamp: float | None) -> bool:
        """Check every key, value and step of a call (lock held) and buffer it as the first
        row of a new group; False when ``metrics`` is nested."""
        last = self._last
        for key in self._keys:  # the fast path's keys were all last logged at _keys_step
            last[key] = self._keys_step
        floor = self._floor
        known = self._known
        values = []
        for key, value in metrics.items():
            if type(value) is not float:
                if isinstance(value, Mapping):
                    return False
                value = check_metric_value(key, value)
            if key not in known:
                check_key(key, "metric name")
                self._content.check(key, ct.METRIC, known)
            if step <= last.get(key, floor):
                raise self._step_error(key, step)
            values.append(value)
        if not values:
            return True
        writer = self._writer
        if writer.pending + len(values) > writer.max_pending:
            raise self._full()
        at = self._clock() if timestamp is None else check_timestamp(timestamp)
        self._keys = tuple(metrics)
        known.update(self._keys)
        buf = self._buf
        group = buf.group = Rows(self._keys)
        buf.items.append(group)
        group.steps.append(step)
        group.times.append(at)
        group.values += pack_floats(values)
        self._keys_step = step
        if step > self._top:
            self._top = step
        buf.logged += 1
        writer.pending += len(values)
        writer.mark(buf)
        return True

    def _full(self) -> BackpressureError:
        writer = self._writer
        return BackpressureError(
            f"{writer.pending} points are waiting to be written (the limit is "
            f"{writer.max_pending}); await run.flush() or give the event loop time")

    def _step_error(self, key: str, step: int | float) -> ValidationError:
        last = self._last.get(key)
        if last is None or last < self._floor:
            why = f"the run's steps must be greater than {self._floor} (its fork or rewind step)"
        else:
            why = f"the last step of {key!r} is {last}; steps must increase"
        return ValidationError(f"metric {key!r}: step {step} is not allowed: {why}", key=key)

    def log_configs(self, config: Mapping[str, Any]) -> None:
        """Set config values; nested dicts become ``a/b`` paths.

        Each key counts as a point against the pending bound.

        :raises ValidationError: naming the bad key or value; nothing is logged.
        :raises BackpressureError: when more points wait than the tracker allows.
        :raises ClosedError: after the run ended.
        """
        flat = normalize_config(config)
        if flat:
            self._control(NewEvent(ev.CONFIGS_LOGGED, {"config": flat}))

    def add_tags(self, *tags: str | Iterable[str]) -> None:
        """Add tags (strings, or iterables of strings); each counts as a point against the
        pending bound.

        :raises ValidationError: naming the bad tag; nothing is logged.
        :raises BackpressureError: when more points wait than the tracker allows.
        """
        names = check_tags(_spread(tags))
        if names:
            self._control(NewEvent(ev.TAGS_ADDED, {"tags": names}))

    def remove_tags(self, *tags: str | Iterable[str]) -> None:
        """Remove tags; removing a tag the run does not have is not an error. Each counts as
        a point against the pending bound.

        :raises ValidationError: naming the bad tag; nothing is logged.
        :raises BackpressureError: when more points wait than the tracker allows.
        """
        names = check_tags(_spread(tags))
        if names:
            self._control(NewEvent(ev.TAGS_REMOVED, {"tags": names}))

    def _control(self, event: NewEvent, *, final: bool = False) -> None:
        with self._writer.lock:
            self._room(event_points(event), final=final)
            self._push(event, event_points(event), final=final)

    def _room(self, points: int, *, final: bool = False) -> None:
        """Refuse a call (lock held) when the run ended or the buffer has no room."""
        writer = self._writer
        if self._closed:
            raise ClosedError(f"run {self.run_id!r} has ended")
        if self._halt is not None and not final:
            raise self._halt
        # The final status is never refused: a full buffer must not keep a run open.
        if not final and writer.pending + points > writer.max_pending:
            raise self._full()

    def _push(self, event: NewEvent, points: int, *, final: bool = False) -> None:
        """Buffer ``event`` (lock held, room checked)."""
        writer = self._writer
        buf = self._buf
        buf.items.append(event)
        buf.group = None  # later points go after this event, in a group of their own
        buf.logged += 1
        writer.pending += points
        writer.mark(buf)
        if final:
            self._closed = True
            self._halt = ClosedError(f"run {self.run_id!r} has ended")

    def record_system(self, values: Mapping[str, float], step: int) -> None:
        """Log system metrics at ``step`` (seconds since the run started) without moving
        the step that ``log_metrics`` without a step uses."""
        if not values:
            return
        with self._lock:
            if self._halt is not None:
                return
            top = self._top
            try:
                self._log_slowly(dict(values), step, None)
            except (ValidationError, BackpressureError):
                pass  # a sample that cannot go in (no room, a rewound step) is left out
            finally:
                self._top = top

    async def flush(self) -> None:
        """Return once everything logged before the call is durable and visible to reads.

        :raises EngineError: when the store refused or failed to write it.
        """
        await self._writer.flush(self._buf)

    async def finish(self, status: str = "succeeded", reason: str | None = None) -> None:
        """End the run: record its terminal status after everything logged, wait until all
        of it is durable, and close the handle. A run's block does this when it ends; call
        it for a run from ``engine.init``. Finishing twice does nothing.

        :param status: ``"succeeded"``, ``"failed"`` or ``"aborted"``.
        :param reason: why, shown with the status (``status_reason``).
        :raises ValidationError: for another status.
        :raises ClosedError: if the tracker closed first (the run stays ``running`` until a
            reaper marks it crashed).
        :raises EngineError: if the store refused some of what this run logged.
        """
        if status not in _ENDINGS:
            raise ValidationError(f"status must be one of {', '.join(_ENDINGS)}, not "
                                  f"{status!r}", key="status")
        captures, self._captures = self._captures, None
        if captures is not None:  # output first: the last lines before a crash are kept
            with anyio.CancelScope(shield=True):
                await captures.close()  # (the descriptors come back even if closed below)
        if self._closed:
            return
        if isinstance(self._halt, ClosedError):
            raise self._halt
        if status == "succeeded" and self._abort_reason is not None:
            status, reason = "aborted", self._abort_reason  # the request is honoured
        self._end(status, reason)
        with anyio.CancelScope(shield=True):
            await self._writer.flush(self._buf)
        if self._after_finish is not None:
            after, self._after_finish = self._after_finish, None
            await after()

    def _end(self, status: str, reason: str | None) -> None:
        """Buffer the terminal status (the writer commits it after everything logged)."""
        if reason is not None:
            reason = escape_nul(reason)  # it may be an exception's message: not refusable
            if len(reason) > _REASON_LIMIT:
                reason = reason[: _REASON_LIMIT - 1] + "…"
        self._control(NewEvent(ev.STATUS_CHANGED, {"status": status, "reason": reason}),
                      final=True)

    def halt(self, error: BaseException) -> None:
        """Stop accepting anything: every later logging call raises ``error``."""
        with self._lock:
            self._halt = error

    def request_abort(self, reason: str | None) -> None:
        """Mark the run aborted (called by the tracker when it sees an abort request)."""
        with self._lock:
            self._abort_reason = reason if reason is not None else "abort requested"
            if self._raise_on_abort and self._halt is None:
                self._halt = RunAbortedError(self.run_id, self._abort_reason)

    def raise_on_abort(self) -> None:
        """Make an abort raise ``RunAbortedError`` at the next logging call (sync code)."""
        with self._lock:
            self._raise_on_abort = True
            if self._abort_reason is not None and self._halt is None:
                self._halt = RunAbortedError(self.run_id, self._abort_reason)


def end_buffered(run: Run, status: str, reason: str | None) -> None:
    """Record ``run``'s terminal status without waiting for it (a closing tracker commits
    it with the rest); nothing if the run has ended already."""
    stop_captures(run)
    if not run._closed:
        run._end(status, reason)


def unsettled_calls(run: Run) -> int:
    """The logging calls ``run`` accepted whose data is not yet known committed."""
    return run._buf.logged - run._buf.committed


def run_kinds(run: Run) -> dict[str, list[Any]]:
    """The non-metric keys the run handle knows, with their kinds and last steps."""
    return run._content.kinds


def system_start(run: Run, now: float) -> float:
    """When system metrics of ``run`` count their steps from: so that the first sample's
    step passes every system metric the run logged before, and its fork or rewind step."""
    base = max([run._floor, *(s for k, s in run._last.items() if k.startswith("system/"))])
    return now - (math.floor(base) + 1) if base >= 0 else now


def stop_captures(run: Run) -> None:
    """Stop ``run``'s captures now, without waiting (its tracker is closing): the
    descriptors come back, and the lines captured so far are buffered."""
    captures, run._captures = run._captures, None
    if captures is not None:
        captures.stop_now()


def attach_captures(run: Run, captures: Any) -> None:
    """Have ``run`` stop ``captures`` when it ends (before its final status)."""
    run._captures = captures


def on_finish(run: Run, hook: Callable[[], Awaitable[None]]) -> None:
    """Have ``run.finish()`` await ``hook`` once the run has ended (``engine.init`` closes
    the tracker it opened for the run)."""
    run._after_finish = hook


def wait_for_room(run: Run, timeout: float) -> bool:
    """Block until the writer has taken some pending points, or ``timeout`` seconds; False
    when nothing is pending, so that waiting cannot make room (the call alone is too big)."""
    writer = run._writer
    with writer.space:
        if writer.pending == 0:
            return False
        writer.space.wait(timeout=timeout)
    return True


def _numbers(values: list[Any]) -> bool:
    """Whether every value is a float or an int a float can hold (never a bool)."""
    for value in values:
        kind = type(value)
        if kind is not float and (kind is not int or not -_BIG < value < _BIG):
            return False
    return True


def _spread(tags: Iterable[str | Iterable[str]]) -> list[Any]:
    """Tags given one by one or in collections; anything else is kept for the check to name."""
    out: list[Any] = []
    for tag in tags:
        if isinstance(tag, (list, tuple, set, frozenset)):
            out.extend(tag)
        else:
            out.append(tag)
    return out



