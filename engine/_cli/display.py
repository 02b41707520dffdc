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

__all__ = ["MIN_WIDTH", "Counter", "Progress", "aligned", "column_widths", "cut", "emit",
           "event_json", "fit_line", "fitted", "fmt", "records", "run_json", "table",
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


MIN_WIDTH = 40
"""The narrowest width output is fitted to: a narrower terminal gets lines this long."""
ELLIPSIS = "\u2026"
SHORTEST = 6
"""A text column is cut no narrower than this (numbers are never cut, only their header)."""


def cut(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters: its middle replaced by an ellipsis when it
    is longer, so that both ends show (``metrics.train/loss.min`` and ``…/acc.min`` differ
    at their ends; a run id's suffix tells runs apart)."""
    if len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:max(width, 0)]
    head = width // 2
    tail = width - 1 - head
    return text[:head] + ELLIPSIS + (text[len(text) - tail:] if tail else "")


def fitted(width: int | None) -> int | None:
    """The width to fit: ``width`` (None: any), but at least ``MIN_WIDTH``."""
    return None if width is None else max(width, MIN_WIDTH)


def column_widths(header: Sequence[str], cells: Sequence[Sequence[str]], *,
                  numeric: Iterable[int] = (), keep: Iterable[int] = (),
                  width: int | None = None, shortest: int = SHORTEST) -> list[int] | None:
    """How wide each column of a table is drawn: as wide as its widest cell, or, when that
    would make lines longer than ``width``, narrower — the widest columns first, each no
    narrower than ``shortest``, numbers and the columns in ``keep`` never below their
    widest value. None when even that does not fit."""
    natural = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(header)]
    if width is None:
        return natural
    budget = width - 2 * (len(header) - 1)
    if sum(natural) <= budget:
        return natural
    right, kept = set(numeric), set(keep)
    floors = []
    for i, w in enumerate(natural):
        values = max((len(r[i]) for r in cells), default=0)
        floors.append(max(values, min(w, shortest)) if i in right or i in kept
                      else min(w, shortest))
    if sum(floors) > budget:
        return None

    def total(level: int) -> int:
        return sum(max(f, min(w, level)) for w, f in zip(natural, floors, strict=True))

    low, high = 0, max(natural)  # the highest level all columns may be cut to that fits
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if total(mid) <= budget else (low, mid - 1)
    widths = [max(f, min(w, low)) for w, f in zip(natural, floors, strict=True)]
    spare = budget - sum(widths)
    for i, w in enumerate(natural):  # what is left over, to the first columns cut
        if spare and widths[i] < w:
            widths[i] += 1
            spare -= 1
    return widths


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], *,
          numeric: Iterable[int] = (), keep: Iterable[int] = (),
          width: int | None = None) -> str:
    """An aligned text table; columns in ``numeric`` are right-aligned.

    With a ``width`` (at least ``MIN_WIDTH`` is used), no line is longer: long cells are cut
    in the middle with an ellipsis (never numbers, nor the columns in ``keep``), and a table
    that cannot fit so is shown as one block of ``column  value`` lines per row instead.
    """
    header = [safe(h) for h in header]
    cells = [[fmt(v) for v in row] for row in rows]
    width = fitted(width)
    right = set(numeric)
    widths = column_widths(header, cells, numeric=right, keep=keep, width=width)
    if widths is None:
        assert width is not None  # only a width can be missed
        return records(header, cells, width)
    return aligned(header, cells, widths, numeric=right)


def aligned(header: Sequence[str], cells: Sequence[Sequence[str]], widths: Sequence[int], *,
            numeric: Iterable[int] = ()) -> str:
    """Formatted cells under their header, in columns of these widths (cells cut to fit)."""
    right = set(numeric)

    def line(values: Sequence[str]) -> str:
        return "  ".join(cut(v, w).rjust(w) if i in right else cut(v, w).ljust(w)
                         for i, (v, w) in enumerate(zip(values, widths, strict=True))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in cells)])


def records(header: Sequence[str], cells: Sequence[Sequence[str]], width: int) -> str:
    """A table too wide for ``width`` as one block per row, a ``column  value`` line per
    column, long names and values cut in the middle; a blank line between blocks."""
    label = min(max(map(len, header), default=0), width // 3)
    value = max(width - label - 2, 1)
    blocks = ["\n".join(f"{cut(h, label).ljust(label)}  {cut(v, value)}".rstrip()
                        for h, v in zip(header, row, strict=True)) for row in cells]
    return "\n\n".join(blocks)


def fit_line(text: str, width: int | None) -> str:
    """One line of output, cut in the middle to ``width`` (at least ``MIN_WIDTH``)."""
    width = fitted(width)
    return text if width is None else cut(text, width)


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
