"""Terminal output for the command line: aligned tables, numbers, progress, JSON lines."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TextIO

import orjson

from engine._core.codec import jsonable, non_finite_name
from engine._core.model import Event, RunState

from .escape import safe, safe_lines

__all__ = ["Counter", "Progress", "emit", "event_json", "fmt", "run_json", "table",
           "terminal_width"]


def fmt(value: Any) -> str:
    """A cell: floats to 6 significant digits, datetimes to the second, None as ``-``."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return non_finite_name(value) or f"{value:.6g}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, (frozenset, set)):  # tags: no order of their own
        return ",".join(sorted(safe(str(v)) for v in value)) if value else "-"
    if isinstance(value, (list, tuple)):  # a config list: its order is its meaning
        return ",".join(fmt(v) for v in value) if value else "-"
    return safe(str(value))


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], *,
          numeric: Iterable[int] = ()) -> str:
    """An aligned text table; columns in ``numeric`` are right-aligned."""
    header = [safe(h) for h in header]
    cells = [[fmt(v) for v in row] for row in rows]
    right = set(numeric)
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(header)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if i in right else v.ljust(w)
                         for i, (v, w) in enumerate(zip(values, widths, strict=True))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in cells)])



def event_json(event: Event) -> bytes:
    """One event as a JSON line (without the newline), safe for a terminal (see
    ``escape``: orjson escapes controls, not the invisible format characters)."""
    return safe_lines(orjson.dumps(jsonable({
        "position": event.position, "id": event.id, "project": event.project,
        "run_id": event.run_id, "version": event.version, "type": event.type,
        "timestamp": event.timestamp, "data": event.data,
    })).decode()).encode()


def run_json(state: RunState) -> dict[str, Any]:
    """A run as JSON-ready values."""
    values: dict[str, Any] = jsonable({
        "project": state.project, "run_id": state.run_id, "name": state.name,
        "experiment": state.experiment, "status": str(state.status),
        "status_reason": state.status_reason, "tags": sorted(state.tags),
        "config": state.config,
        "metrics": {m: {"last": s.last, "last_step": s.last_step, "min": s.min, "max": s.max,
                        "count": s.count} for m, s in state.metrics.items()},
        "fork": None if state.fork is None else {"run_id": state.fork.run_id,
                                                 "step": state.fork.step},
        "created_at": state.created_at.isoformat(), "updated_at": state.updated_at.isoformat(),
        "ended_at": None if state.ended_at is None else state.ended_at.isoformat(),
        "deleted": state.deleted, "version": state.version, "position": state.position,
        "notes": state.notes, "env": state.env,
        "files": {key: {"name": r.name, "digest": r.digest, "size": r.size,
                        "media_type": r.media_type, "timestamp": r.timestamp.isoformat()}
                  for key, r in state.files.items()},
    })
    return values


class Progress:
    """A one-line progress indicator on a terminal; a line now and then elsewhere."""

    def __init__(self, label: str, stream: TextIO = sys.stderr, every: float = 2.0) -> None:
        self.label = label
        self.stream = stream
        self.tty = stream.isatty()
        self.every = every
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        final = done >= total
        if not final and now - self._last < (0.1 if self.tty else self.every):
            return
        self._last = now
        pct = 100.0 if total <= 0 else min(100.0, 100.0 * done / total)
        text = f"{self.label}: {done:,}/{total:,} ({pct:.0f}%)"
        if self.tty:
            self.stream.write("\r" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


class Counter:
    """How far a task has got when its end is not known: ``label N`` on one line of a
    terminal, redrawn; a line now and then elsewhere."""

    def __init__(self, label: str, stream: TextIO = sys.stderr, every: float = 2.0) -> None:
        self.label = label
        self.stream = stream
        self.tty = stream.isatty()
        self.every = every
        self._last = 0.0

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self._last < (0.1 if self.tty else self.every):
            return
        self._last = now
        self.stream.write(("\r" if self.tty else "") + f"{self.label} {done:,}"
                          + ("" if self.tty else "\n"))
        self.stream.flush()

    def clear(self) -> None:
        """Wipe the counter's line from a terminal (the task is done)."""
        if self.tty and self._last:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def emit(text: str) -> None:
    """Write a line to stdout."""
    sys.stdout.write(text + "\n")


def terminal_width() -> int | None:
    """The width output must fit: ``$COLUMNS`` when set, else the terminal's; None when
    stdout is not a terminal (a file or a pipe takes lines of any length)."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if not sys.stdout.isatty():
        return None
    return shutil.get_terminal_size().columns
