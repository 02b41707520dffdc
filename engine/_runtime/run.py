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

import contextlib
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import anyio

from engine._core import content as ct
from engine._core import events as ev
from engine._core.content import ref_of
from engine._core.events import NewEvent
from engine._core.files import FileRef, check_file
from engine._core.text import check_text
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

from .buffer import LinesEvent, Rows, RunBuffer, event_points
from .files import FileEvent, file_plain_of, store_files
from .hot_path import pack_floats, take_floats
from .recording import KINDS, Keys, flat_values, kind_of, text_payload, valued_payload
from .writer import Writer

__all__ = ["Run", "attach_captures", "end_buffered", "on_finish", "run_kinds", "system_start",
           "wait_for_room"]

_BIG = 2.0**1023  # an int beyond this (in size) may not fit a float: check it slowly
_REASON_LIMIT = 4096
_ENDINGS = ("succeeded", "failed", "aborted")


class Run:
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
                 "_content", "_env_recorded", "_floor", "_halt", "_keys",
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
                        at = self._clock() if timestamp is None else _timestamp(timestamp)
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
        at = self._clock() if timestamp is None else _timestamp(timestamp)
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

    # What a run records besides metrics ----------------------------------------------------

    def record_env(self, env: Mapping[str, Any]) -> None:
        """Record the process's environment as the run's ``env`` (captures call this)."""
        if self._env_recorded:
            return
        self._env_recorded = True
        with contextlib.suppress(ClosedError, RunAbortedError):  # ended meanwhile
            self._control(NewEvent(ev.ENV_CAPTURED, {"env": normalize_config(env)}))

    def record_line(self, key: str, number: int, text: str) -> None:
        """Add a captured output line to the text series ``key`` at step ``number`` (called
        on the capture's thread; never refused for room, never blocks)."""
        text = escape_nul(text)
        at = self._clock()
        writer = self._writer
        with self._lock:
            if self._closed:
                return
            buf = self._buf
            lines = buf.lines
            if lines is None:
                lines = buf.lines = LinesEvent()
                buf.items.append(lines)
                buf.group = None
                buf.logged += 1
            lines.add(key, number, text, at)
            self._content.taken(key, ct.TEXT, number)
            writer.pending += 1
            writer.mark(buf)

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

    def set_notes(self, notes: str) -> None:
        """Set the run's notes (its description), replacing them whole.

        :raises ValidationError: for notes that are not a str, or longer than 1 MiB.
        :raises ClosedError: after the run ended.
        """
        self._control(NewEvent(ev.NOTES_SET, {"notes": check_text("notes", notes)}))

    def log_text(self, texts: Mapping[str, Any], step: int | float | None = None, *,
                 timestamp: float | None = None) -> None:
        """Log text values (str of at most 1 MiB of UTF-8) at ``step``: one text series per
        key, read back with ``tracker.read_text``. Without ``step``, each key's next step
        (0 first). Nested dicts are flattened with ``/``.

        :raises ValidationError: naming the bad key, value or step, or a key that holds
            another kind in this run; nothing is logged.
        :raises BackpressureError: when more points wait than the tracker allows.
        :raises ClosedError: after the run ended.
        """
        self._log_kinds({ct.TEXT: flat_values(texts, "text key")}, step, timestamp)

    def log_histograms(self, histograms: Mapping[str, Any], step: int | float | None = None,
                       *, timestamp: float | None = None) -> None:
        """Log ``engine.Histogram`` values at ``step`` (read back with
        ``tracker.read_histograms``); steps as in ``log_text``.

        :raises ValidationError: naming the bad key, histogram or step; nothing is logged.
        """
        self._log_kinds({ct.HISTOGRAM: _plain_items(histograms, "histogram key")}, step,
                        timestamp)

    def log_confusion_matrices(self, matrices: Mapping[str, Any],
                               step: int | float | None = None, *,
                               timestamp: float | None = None) -> None:
        """Log ``engine.ConfusionMatrix`` values at ``step`` (read back with
        ``tracker.read_confusion_matrices``); steps as in ``log_text``.

        :raises ValidationError: naming the bad key, matrix or step; nothing is logged.
        """
        self._log_kinds({ct.CONFUSION_MATRIX: _plain_items(matrices, "confusion matrix key")},
                        step, timestamp)

    def log(self, values: Mapping[str, Any], step: int | float | None = None, *,
            timestamp: float | None = None) -> None:
        """Log a mix of values at ``step``, each routed by its type: int or float → metric,
        str → text, ``engine.File``/``engine.Image`` → file, ``engine.Histogram``,
        ``engine.ConfusionMatrix``. Without ``step``, the run's next step (as in
        ``log_metrics``). A key keeps one kind for the life of the run and its forks.

        :raises ValidationError: naming the bad key, value or step; nothing is logged.
        """
        flat = flat_values(values, "key")
        groups: dict[str, dict[str, Any]] = {}
        for key, value in flat.items():
            groups.setdefault(kind_of(key, value), {})[key] = value
        metrics = groups.pop(ct.METRIC, {})
        if step is None:
            with self._lock:
                step = self._top + 1
        if ct.FILE in groups:
            self._log_files_now(groups.pop(ct.FILE), step, timestamp, metrics, groups)
            return
        self._log_kinds(groups, step, timestamp, metrics=metrics)

    def _log_files_now(self, files: dict[str, Any], step: int | float,
                       timestamp: float | None, metrics: dict[str, Any],
                       groups: dict[str, dict[str, Any]]) -> None:
        checked = {key: check_file(key, value) for key, value in files.items()}
        self._log_kinds(groups, step, timestamp, metrics=metrics,
                        extra=[(ct.FILE, key, step, file) for key, file in checked.items()])

    def log_files(self, files: Mapping[str, Any], step: int | float | None = None, *,
                  timestamp: float | None = None) -> None:
        """Log files at ``step``: a file series per key (read back with
        ``tracker.read_files``). A file is a path, bytes, a binary file object,
        ``engine.File`` or ``engine.Image``; its bytes are stored (once per distinct content)
        before the event that names them, by the tracker's writer, and ``flush()`` waits
        for them. Steps as in ``log_text``.

        :raises FileSourceError: for a source that cannot be read (missing, a directory,
            unreadable), naming the key; nothing is logged.
        :raises ValidationError: naming the bad key, value or step; nothing is logged.
        """
        checked = {key: check_file(key, value)
                   for key, value in _plain_items(files, "file key").items()}
        self._log_kinds({}, step, timestamp,
                        extra=[(ct.FILE, key, step, file) for key, file in checked.items()])

    async def upload(self, files: Mapping[str, Any]) -> dict[str, FileRef]:
        """Store files as the run's file attributes — one current file per key, such as
        ``model/weights``; a new upload under a key replaces it (the old one stays in the
        log) — and return once the bytes and the event are durable, with their
        ``FileRef``s (also in ``RunState.files``).

        :raises FileSourceError: for a source that cannot be read, naming the key; nothing
            is stored under the run.
        :raises ValidationError: naming the bad key, or a key that holds another kind.
        """
        checked = {key: check_file(key, value)
                   for key, value in _plain_items(files, "file key").items()}
        with self._lock:
            if self._halt is not None:
                raise self._halt
            for key in checked:
                self._content.check(key, ct.UPLOAD, self._known)
        blobs = self._writer.blobs
        if blobs is None:
            raise ClosedError("the tracker is closed")
        at = self._clock()
        infos = await store_files(blobs, list(checked.items()))
        refs = {key: {**file_plain_of(file), "digest": info.digest, "size": info.size,
                      "timestamp": at}
                for (key, file), info in zip(checked.items(), infos, strict=True)}
        with self._lock:
            for key in checked:
                self._content.check(key, ct.UPLOAD, self._known)
            self._room(len(refs))
            self._push(NewEvent(ev.FILES_UPLOADED, {"files": refs}), len(refs))
            for key in checked:
                self._content.taken(key, ct.UPLOAD, None)
        await self.flush()
        return {key: ref_of(key, None, at, plain) for key, plain in refs.items()}

    def _log_kinds(self, groups: Mapping[str, Mapping[str, Any]], step: int | float | None,
                   timestamp: float | None, *, metrics: Mapping[str, Any] | None = None,
                   extra: list[tuple[str, str, int | float | None, Any]] | None = None,
                   ) -> None:
        """Check every value of every kind, then buffer one event per kind (and the metrics
        with them); a refusal leaves nothing buffered."""
        checked = {kind: {key: KINDS[kind][2](key, value) for key, value in values.items()}
                   for kind, values in groups.items()}
        at = self._clock() if timestamp is None else _timestamp(timestamp)
        with self._lock:
            if self._halt is not None:
                raise self._halt
            keys = self._content
            for key in metrics or ():
                keys.check(key, ct.METRIC, self._known)
            items: dict[str, list[tuple[str, int | float, Any]]] = {}
            for kind, values in checked.items():
                for key, value in values.items():
                    keys.check(key, kind, self._known)
                    items.setdefault(kind, []).append((key, keys.step(key, kind, step), value))
            for kind, key, at_step, _ in extra or ():
                keys.check(key, kind, self._known)
                items.setdefault(kind, []).append((key, keys.step(key, kind, at_step), None))
        if metrics:
            self.log_metrics(dict(metrics), step, timestamp=timestamp)
        events = []
        for kind, rows in items.items():
            if kind == ct.TEXT:
                events.append(NewEvent(ev.TEXT_LOGGED, text_payload(rows, at)))
            elif kind == ct.FILE:
                assert extra is not None
                chosen = {key: file for _, key, _, file in extra}
                payload = valued_payload("files", [(key, s, file_plain_of(chosen[key]))
                                                   for key, s, _ in rows], at)
                events.append(FileEvent(payload, [(key, 0, chosen[key]) for key, _, _ in rows]))
            else:
                event_type, field_name, _ = KINDS[kind]
                events.append(NewEvent(event_type, valued_payload(
                    field_name, [(key, s, value.to_plain()) for key, s, value in rows], at)))
        with self._lock:
            self._room(sum(event_points(e) for e in events))
            for event in events:
                self._push(event, event_points(event))
            for kind, rows in items.items():
                for key, at_step, _ in rows:
                    self._content.taken(key, kind, at_step)

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
        if self._closed:
            return
        if isinstance(self._halt, ClosedError):
            raise self._halt
        captures, self._captures = self._captures, None
        if captures is not None:  # output first: the last lines before a crash are kept
            with anyio.CancelScope(shield=True):
                await captures.close()
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
    captures, run._captures = run._captures, None
    if captures is not None:
        captures.stop_now()
    if not run._closed:
        run._end(status, reason)


def run_kinds(run: Run) -> dict[str, list[Any]]:
    """The non-metric keys the run handle knows, with their kinds and last steps."""
    return run._content.kinds


def system_start(run: Run, now: float) -> float:
    """When system metrics of ``run`` count their steps from: so that the first sample's
    step passes every system metric the run logged before, and its fork or rewind step."""
    base = max([run._floor, *(s for k, s in run._last.items() if k.startswith("system/"))])
    return now - (math.floor(base) + 1) if base >= 0 else now


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


def _plain_items(values: Mapping[str, Any], what: str) -> dict[str, Any]:
    """Values by key, without flattening (a histogram's plain form is itself a dict)."""
    if not isinstance(values, Mapping):
        raise ValidationError(f"expected a dict of {what.removesuffix(' key')}s, got "
                              f"{type(values).__name__}")
    return {check_key(key, what): value for key, value in values.items()}


def _spread(tags: Iterable[str | Iterable[str]]) -> list[Any]:
    """Tags given one by one or in collections; anything else is kept for the check to name."""
    out: list[Any] = []
    for tag in tags:
        if isinstance(tag, (list, tuple, set, frozenset)):
            out.extend(tag)
        else:
            out.append(tag)
    return out


def _timestamp(value: object) -> float:
    if (type(value) is float or type(value) is int) and math.isfinite(value):
        return float(value)
    raise ValidationError(f"timestamp {value!r} is not a number of seconds since the epoch",
                          key="timestamp")
