"""``kittiwake tail RUN``: a run's metrics, live, until the run ends."""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TextIO

from . import _events as ev
from ._display import table
from ._model import Status
from ._tracker import Tracker

__all__ = ["sparkline", "tail"]

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
    step: int | float
    last: float
    low: float
    high: float
    trend: deque[float] = field(default_factory=lambda: deque(maxlen=_TREND))

    def add(self, step: int | float, value: float) -> None:
        self.step, self.last = step, value
        if value == value:
            self.low = value if self.low != self.low else min(self.low, value)
            self.high = value if self.high != self.high else max(self.high, value)
        self.trend.append(value)


class _View:
    def __init__(self, out: TextIO, title: str) -> None:
        self.out = out
        self.title = title
        self.tty = out.isatty()
        self.metrics: dict[str, _Metric] = {}
        self.status = "running"
        self._drawn = 0
        self._last = 0.0

    def render(self, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last < (0.1 if self.tty else 2.0):
            return
        self._last = now
        rows = [(name, m.step, m.last, m.low, m.high, sparkline(list(m.trend)))
                for name, m in sorted(self.metrics.items())]
        text = f"{self.title}  [{self.status}]\n" + table(
            ("metric", "step", "last", "min", "max", "trend"), rows, numeric=(1, 2, 3, 4))
        lines = text.split("\n")
        if self.tty:
            self.out.write("\x1b[F" * self._drawn + "".join(line + "\x1b[K\n" for line in lines))
            self._drawn = len(lines)
        else:
            self.out.write(text + "\n\n")
        self.out.flush()


async def tail(tracker: Tracker, run_id: str, out: TextIO) -> str:
    """Show the run's metrics as points arrive; returns the status it ended with.

    Each trend starts as the shape of the run's whole history so far (downsampled), and
    then follows the latest points as they arrive."""
    state = await tracker.get_run(run_id)
    view = _View(out, f"{state.project}/{state.run_id} ({state.name})")
    view.status = str(state.status)
    for name, summary in state.metrics.items():
        metric = _Metric(summary.last_step, summary.last, summary.min, summary.max)
        recent = await tracker.read_series(run_id, name, max_points=4 * _TREND)
        metric.trend.extend(list(recent.values)[-_TREND:])
        view.metrics[name] = metric
    view.render(final=True)
    if state.status.terminal:
        return view.status
    subscription = tracker.subscribe(runs=[run_id], from_position=state.position)
    async with subscription:
        async for event in subscription:
            if event.type == ev.METRICS_LOGGED:
                for name, column in event.data["metrics"].items():
                    for step, value in zip(column["steps"], column["values"], strict=True):
                        metric = view.metrics.get(name)
                        if metric is None:
                            metric = view.metrics[name] = _Metric(step, value, value, value)
                        metric.add(step, value)
            elif event.type == ev.STATUS_CHANGED:
                view.status = event.data["status"]
                if Status(view.status).terminal:
                    break
            elif event.type == ev.RUN_RESUMED:
                view.status = "running"
            view.render()
    view.render(final=True)
    reason = (await tracker.get_run(run_id)).status_reason
    out.write(f"run {run_id} ended: {view.status}" + (f" ({reason})" if reason else "") + "\n")
    out.flush()
    return view.status

