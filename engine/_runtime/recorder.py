"""The run handle's calls that record more than metrics: notes, text, histograms, confusion
matrices, files and uploads, ``run.log``'s routing by type, and what captures feed in (the
environment, output lines, system metrics).

``Recorder`` is a part of ``Run`` (its base class), kept in a module of its own: it works on
the run's own buffer, lock and key memory, which ``run`` declares. Every call checks all of
its input — values, each key's kind, each key's step — before it buffers anything, so a
refused call leaves nothing behind.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from engine._core import content as ct
from engine._core import events as ev
from engine._core.content import ref_of
from engine._core.events import NewEvent
from engine._core.files import FileRef, check_file
from engine._core.text import check_text
from engine._core.validate import check_key, escape_nul
from engine.errors import ClosedError, RunAbortedError, ValidationError

from .buffer import LinesEvent, RunBuffer, event_points
from .files import FileEvent, file_plain_of, store_files
from .recording import (
    KINDS,
    Keys,
    check_timestamp,
    flat_values,
    kind_of,
    text_payload,
    valued_payload,
)
from .writer import Writer

__all__ = ["Recorder"]


class Recorder:
    """What ``Run`` records besides metrics (see the module docstring)."""

    __slots__ = ("_env_recorded",)

    # Declared by ``Run``, which sets them up.
    run_id: str
    _writer: Writer
    _lock: Any
    _buf: RunBuffer
    _clock: Callable[[], float]
    _content: Keys
    _known: set[str]
    _closed: bool
    _halt: BaseException | None
    _top: int | float
    _env_recorded: bool  # this class's own (in its __slots__)

    if TYPE_CHECKING:  # Run's; declared for the type checker only, never defined here
        def log_metrics(self, metrics: Mapping[str, Any], step: int | float | None = None,
                        *, timestamp: float | None = None) -> None: ...

        def _control(self, event: NewEvent, *, final: bool = False) -> None: ...

        def _room(self, points: int, *, final: bool = False) -> None: ...

        def _push(self, event: NewEvent, points: int, *, final: bool = False) -> None: ...

        async def flush(self) -> None: ...

    def record_env(self, env: dict[str, Any]) -> None:
        """Record the process's environment, flat and checked as ``environment()`` gives
        it, as the run's ``env`` (captures call this)."""
        if self._env_recorded:
            return
        self._env_recorded = True
        with contextlib.suppress(ClosedError, RunAbortedError):  # ended meanwhile
            self._control(NewEvent(ev.ENV_CAPTURED, {"env": env}))

    def record_uploads(self, refs: dict[str, dict[str, Any]]) -> None:
        """Buffer a FilesUploaded event for file references whose bytes are stored (an
        upload's, or the captured source's, which commits with whatever the run logs).

        :raises ValidationError: for a key that holds another kind in this run.
        :raises BackpressureError: when more points wait than the tracker allows.
        :raises ClosedError: after the run ended.
        """
        with self._lock:
            for key in refs:
                self._content.check(key, ct.UPLOAD, self._known)
            self._room(len(refs))
            self._push(NewEvent(ev.FILES_UPLOADED, {"files": refs}), len(refs))
            for key in refs:
                self._content.taken(key, ct.UPLOAD, None)

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
        self.record_uploads(refs)
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
        at = self._clock() if timestamp is None else check_timestamp(timestamp)
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


def _plain_items(values: Mapping[str, Any], what: str) -> dict[str, Any]:
    """Values by key, without flattening (a histogram's plain form is itself a dict)."""
    if not isinstance(values, Mapping):
        raise ValidationError(f"expected a dict of {what.removesuffix(' key')}s, got "
                              f"{type(values).__name__}")
    return {check_key(key, what): value for key, value in values.items()}
