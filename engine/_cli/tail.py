"""``kittiwake tail RUN``: a run's metrics, live, until the run ends.

The view is drawn when points arrive, at most once per ``refresh`` seconds (0.1 on a
terminal, 2 otherwise); a timer draws what arrived since, so the last points of a burst show
within ``refresh`` even when nothing follows them.
"""

from __future__ import annotations

import math
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TextIO

import anyio

from engine._core import events as ev
from engine._core.model import Event, RunState, Status
from engine._runtime.tracker import Tracker
from engine.errors import RunNotFoundError

from .display import fit_line, table, terminal_width

__all__ = ["Tail", "sparkline", "tail"]

_BARS = "▁▂▃▄▅▆▇█"
_TREND = 32  # points in each metric's trend


def sparkline(values: list[float]) -> str:
    """A tiny chart: one bar per value, NaN as a space, ±inf at the ends."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return " " * len(values)
    low, high = min(finite), max(finite)
    span = high - low or 1.0
    out = []
    for v in values:
        if math.isnan(v):
            out.append(" ")
        elif math.isinf(v):
            out.append(_BARS[-1] if v > 0 else _BARS[0])
        else:
            out.append(_BARS[min(len(_BARS) - 1, int((v - low) / span * len(_BARS)))])
    return "".join(out)


@dataclass
class _Metric:
    """One metric's row. ``step`` is the last step its summary holds and ``trend_step`` the
    last its trend holds: points at or below them are already shown (the seed reads came
    after the position the subscription starts from)."""

    step: int | float
    last: float
    low: float
    high: float
    trend_step: int | float = -math.inf
    trend: deque[float] = field(default_factory=lambda: deque(maxlen=_TREND))

    def add(self, step: int | float, value: float) -> None:
        if step > self.step:
            self.step, self.last = step, value
            if value == value:
                self.low = value if self.low != self.low else min(self.low, value)
                self.high = value if self.high != self.high else max(self.high, value)
        if step > self.trend_step:
            self.trend_step = step
            self.trend.append(value)


class _View:
    def __init__(self, out: TextIO, title: str, refresh: float,
                 clock: Callable[[], float]) -> None:
        self.out = out
        self.title = title
        self.tty = out.isatty()
        self.refresh = refresh
        self.clock = clock
        self.metrics: dict[str, _Metric] = {}
        self.status = "running"
        self.dirty = False  # something changed since the last draw
        self._drawn = 0
        self._last = -math.inf

    def render(self, *, now: bool = False) -> None:
        """Draw, unless the last draw was less than ``refresh`` ago (then the timer will)."""
        at = self.clock()
        if not now and at - self._last < self.refresh:
            self.dirty = True
            return
        self._last = at
        self.dirty = False
        rows = [(name, m.step, m.last, m.low, m.high, sparkline(list(m.trend)))
                for name, m in sorted(self.metrics.items())]
        # A line wider than the terminal would wrap, and the redraw would miss it.
        width = terminal_width() if self.out is sys.stdout else None
        text = fit_line(f"{self.title}  [{self.status}]", width) + "\n" + table(
            ("metric", "step", "last", "min", "max", "trend"), rows, numeric=(1, 2, 3, 4),
            width=width)
        lines = text.split("\n")
        if self.tty:
            self.out.write("\x1b[F" * self._drawn + "".join(line + "\x1b[K\n" for line in lines))
            self._drawn = len(lines)
        else:
            self.out.write(text + "\n\n")
        self.out.flush()


class Tail:
    """Follows one run and draws its metrics to ``out`` until the run ends.

    :param refresh: the most often the view is drawn, in seconds (default: 0.1 on a
        terminal, 2 otherwise).
    :param clock: what ``refresh`` is measured with.
    :param tick: awaited between the timer's draws (default: sleep ``refresh``).
    """

    def __init__(self, tracker: Tracker, run_id: str, out: TextIO, *,
                 refresh: float | None = None, clock: Callable[[], float] = time.monotonic,
                 tick: Callable[[], Awaitable[object]] | None = None) -> None:
        self.tracker = tracker
        self.run_id = run_id
        self.out = out
        self.refresh = refresh if refresh is not None else 0.1 if out.isatty() else 2.0
        self.clock = clock
        self.tick = tick or partial(anyio.sleep, self.refresh)
        self.position = 0  # the last log position the view has taken in
        self.view: _View | None = None
        self._progress = anyio.Event()

    async def progressed(self) -> None:
        """Wait until the view has changed: it was seeded from the store, or took in another
        event (``position`` moved)."""
        await self._progress.wait()

    def _changed(self) -> None:
        self._progress.set()
        self._progress = anyio.Event()

    async def run(self) -> str:
        """Show the run's metrics as points arrive; returns the status it ended with.

        Each trend starts as the shape of the run's history so far (downsampled), then
        follows the latest points.

        A run that does not exist yet is waited for.
        """
        state = await self.started()
        view = self.view = _View(self.out, f"{state.project}/{state.run_id} ({state.name})",
                                 self.refresh, self.clock)
        await self._seed(view, state)
        self.position = state.position
        view.render(now=True)
        self._changed()
        if not state.status.terminal:
            subscription = self.tracker.subscribe(runs=[self.run_id],
                                                  from_position=state.position)
            async with subscription, anyio.create_task_group() as timer:
                timer.start_soon(self._redraw, view)
                async for event in subscription:
                    ended = await self._apply(view, event)
                    self.position = event.position
                    self._changed()
                    if ended:
                        break
                    view.render()
                timer.cancel_scope.cancel()
            view.render(now=True)
        reason = (await self.tracker.get_run(self.run_id)).status_reason
        self.out.write(f"run {self.run_id} ended: {view.status}"
                       + (f" ({reason})" if reason else "") + "\n")
        self.out.flush()
        return view.status

    async def started(self) -> RunState:
        """The run's state, once it exists: a run that has not started yet is waited for
        (``tail`` is often started before the job it watches)."""
        try:
            return await self.tracker.get_run(self.run_id)
        except RunNotFoundError:
            pass
        self.out.write(f"waiting for run {self.run_id} to start…\n")
        self.out.flush()
        # Subscribed before looking again, so a run created in between is not missed.
        async with self.tracker.subscribe(runs=[self.run_id], from_position="live") as events:
            while True:
                try:
                    return await self.tracker.get_run(self.run_id)
                except RunNotFoundError:
                    pass
                async for _ in events:  # the run's first event: look again
                    break
                else:  # the tracker closed while waiting
                    raise RunNotFoundError(f"run {self.run_id!r} did not start")

    async def _seed(self, view: _View, state: RunState) -> None:
        """The summaries as of ``state``, and each trend from the series as it is now (put
        in place at once: a draw meanwhile shows the old rows, not half of the new)."""
        metrics = {}
        for name, summary in state.metrics.items():
            metric = _Metric(summary.last_step, summary.last, summary.min, summary.max)
            recent = await self.tracker.read_series(self.run_id, name, max_points=4 * _TREND)
            metric.trend.extend(recent.values[-_TREND:])
            if len(recent.steps):
                metric.trend_step = recent.steps[-1]
            metrics[name] = metric
        view.metrics = metrics
        view.status = str(state.status)

    async def _apply(self, view: _View, event: Event) -> bool:
        """Take in one event; True when the run has ended."""
        if event.type == ev.METRICS_LOGGED:
            for name, column in event.data["metrics"].items():
                metric = view.metrics.get(name)
                for step, value in zip(column["steps"], column["values"], strict=True):
                    if metric is None:
                        metric = view.metrics[name] = _Metric(-math.inf, value, value, value)
                    metric.add(step, value)
        elif event.type == ev.STATUS_CHANGED:
            view.status = event.data["status"]
            return Status(view.status).terminal
        elif event.type == ev.RUN_RESUMED:
            # A rewind hides points: start again from what reads show now.
            await self._seed(view, await self.tracker.get_run(self.run_id))
            view.status = "running"
        return False

    async def _redraw(self, view: _View) -> None:
        while True:
            await self.tick()
            if view.dirty:
                view.render(now=True)


async def tail(tracker: Tracker, run_id: str, out: TextIO, *,
               start_within: float | None = None) -> str:
    """Show the run's metrics as points arrive until it ends (see ``Tail``); returns the
    status it ended with.

    :raises RunNotFoundError: when the run has not started within ``start_within`` seconds
        (None: wait as long as it takes).
    """
    view = Tail(tracker, run_id, out)
    if start_within is None:
        return await view.run()
    with anyio.move_on_after(start_within) as waited:
        await view.started()
    if waited.cancelled_caught:
        raise RunNotFoundError(f"run {run_id!r} did not start within {start_within:g} s")
    return await view.run()
