"""What run handles buffer for the writer, and the MetricsLogged events it becomes.

A run handle appends each call's values to the open :class:`Rows` group of its
:class:`RunBuffer` (or a control event, such as tags or a status, after it); the writer
(``writer``) takes the buffer's items and turns consecutive groups into ``MetricsLogged``
events of at most ``EVENT_POINTS`` points each. ``event_points`` is what a control event
counts against the pending bound.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import Any

import anyio

from engine._core import events as ev
from engine._core.events import NewEvent, Record
from engine._storage.contract import AppendRequest
from engine.errors import EngineError

__all__ = ["EVENT_POINTS", "LinesEvent", "RunBuffer", "Rows", "Waiter", "event_points",
           "metrics_event", "metrics_events"]


class Rows:
    """Consecutive calls that logged the same keys in the same order: their values row after
    row as native doubles in one flat bytearray (``keys`` order), with a step and a timestamp
    per row. A flat buffer allocates no object per call, C can append to it (``hot_path``), and
    a metric's column is a strided slice of it."""

    __slots__ = ("keys", "steps", "times", "values")

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = keys
        self.steps: list[Any] = []
        self.times: list[float] = []
        self.values = bytearray()

    def points(self) -> int:
        """How many values the group holds."""
        return len(self.values) // 8

    def floats(self) -> array[float]:
        """The values as an ``array('d')`` (one copy)."""
        flat = array("d")
        flat.frombytes(self.values)
        return flat


def _column(steps: list[Any]) -> array[Any]:
    try:
        return array("q", steps)
    except TypeError:  # a float step somewhere
        return array("d", steps)


EVENT_POINTS = 50_000  # the most points one MetricsLogged event holds


class LinesEvent(NewEvent):
    """The TextLogged event a run's captured output lines gather in until the writer takes
    it: one point per line (it grows after it is buffered)."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(ev.TEXT_LOGGED, {"text": {}})

    def add(self, key: str, number: int, text: str, at: float) -> None:
        column = self.data["text"].get(key)
        if column is None:
            column = self.data["text"][key] = {"steps": [], "values": [], "timestamps": []}
        column["steps"].append(number)
        column["values"].append(text)
        column["timestamps"].append(at)


def event_points(event: NewEvent) -> int:
    """What a buffered control event counts against the pending bound: one point per config
    key or tag it carries, at least one — so no kind of call grows the buffer unbounded."""
    data = event.data
    if type(event) is LinesEvent:
        return sum(len(c["values"]) for c in data["text"].values())
    if event.type == ev.CONFIGS_LOGGED:
        return max(1, len(data["config"]))
    if event.type in (ev.TAGS_ADDED, ev.TAGS_REMOVED):
        return max(1, len(data["tags"]))
    if event.type == ev.TEXT_LOGGED:  # a point per value, and one per KiB of text
        return sum(len(c["values"]) + sum(len(v) for v in c["values"]) // 1024
                   for c in data["text"].values())
    if event.type == ev.NOTES_SET:
        return 1 + len(data["notes"]) // 1024
    return 1


def metrics_events(groups: list[Rows]) -> list[NewEvent]:
    """MetricsLogged events for consecutive groups of rows, none above ``EVENT_POINTS``
    points: the store commits a large flush as a pipeline of such pieces."""
    events: list[NewEvent] = []
    pending: list[Rows] = []
    points = 0
    for group in groups:
        width = len(group.keys)
        rows = len(group.steps)
        if width * rows > EVENT_POINTS:
            if pending:
                events.append(metrics_event(pending))
                pending, points = [], 0
            step = max(1, EVENT_POINTS // width)
            for start in range(0, rows, step):
                piece = Rows(group.keys)
                piece.steps = group.steps[start : start + step]
                piece.times = group.times[start : start + step]
                piece.values = group.values[start * width * 8 : (start + step) * width * 8]
                events.append(metrics_event([piece]))
            continue
        pending.append(group)
        points += width * rows
        if points >= EVENT_POINTS:
            events.append(metrics_event(pending))
            pending, points = [], 0
    if pending:
        events.append(metrics_event(pending))
    return events


def metrics_event(groups: list[Rows]) -> NewEvent:
    """One MetricsLogged event for consecutive groups of rows, its columns as arrays.

    A metric's column is a strided slice of its group's flat values. When one group holds
    every point, all metrics share one steps array and one timestamps array, which the codec
    stores once.
    """
    if len(groups) == 1:
        group = groups[0]
        steps = _column(group.steps)
        times = array("d", group.times)
        width = len(group.keys)
        flat = group.floats()
        return NewEvent(ev.METRICS_LOGGED, {"metrics": {
            key: {"steps": steps, "values": flat[i::width], "timestamps": times}
            for i, key in enumerate(group.keys)}})
    columns: dict[str, tuple[list[Any], array[float], list[float]]] = {}
    for group in groups:
        width = len(group.keys)
        flat = group.floats()
        for i, key in enumerate(group.keys):
            column = columns.get(key)
            if column is None:
                column = columns[key] = ([], array("d"), [])
            column[0].extend(group.steps)
            column[1].extend(flat[i::width])
            column[2].extend(group.times)
    return NewEvent(ev.METRICS_LOGGED, {"metrics": {
        key: {"steps": _column(s), "values": v, "timestamps": array("d", t)}
        for key, (s, v, t) in columns.items()}})


class RunBuffer:
    """What one run handle has logged and the writer has not yet committed."""

    __slots__ = ("committed", "creating", "dead", "group", "halt", "inflight", "inflight_logged",
                 "inflight_points", "items", "lines", "logged", "marked", "project", "refusal",
                 "run_id", "waiters")

    def __init__(self, project: str, run_id: str) -> None:
        self.project = project
        self.run_id = run_id
        self.items: list[Rows | NewEvent] = []
        self.group: Rows | None = None  # the open group the hot path appends rows to
        self.lines: LinesEvent | None = None  # the open event captured output goes into
        self.marked = False  # the writer knows this buffer has something since it last took it
        self.logged = 0  # accepted calls so far
        self.committed = 0  # accepted calls whose fate is settled (committed or refused)
        self.inflight: list[AppendRequest] = []  # sent, not yet known committed
        self.refusal: EngineError | None = None  # refused while nobody was waiting
        self.inflight_logged = 0
        self.inflight_points = 0
        self.waiters: list[Waiter] = []
        # The run's RunCreated is buffered here and not yet committed: until it is, everything
        # the run logs goes with it in one request, so that if the creation is refused (the id
        # turned out to be taken) nothing of this run lands in another run's stream.
        self.creating = False
        self.dead: EngineError | None = None  # the creation was refused: nothing more is sent
        self.halt: Callable[[BaseException], None] | None = None  # stops the run's logging


class Waiter:
    """One flush or control request waiting for the commit that settles it."""

    __slots__ = ("done", "result", "target")

    def __init__(self, target: int) -> None:
        self.target = target
        self.done = anyio.Event()
        self.result: list[Record] | BaseException | None = None

    def settle(self, result: list[Record] | BaseException) -> None:
        self.result = result
        self.done.set()

    async def wait(self) -> list[Record]:
        await self.done.wait()
        if isinstance(self.result, BaseException):
            raise self.result
        assert self.result is not None
        return self.result
