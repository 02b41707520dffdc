"""``diff A B``: two runs' fields, config and metric summaries side by side, only where they
differ unless asked for all (docs/cli.md)."""

from __future__ import annotations

import argparse
import math
from typing import Any

import orjson

from engine._core.codec import jsonable
from engine._core.model import RunState
from engine._query.tree import AGGREGATES

from .display import emit, fmt, table, terminal_width
from .escape import safe_lines
from .tracker import open_tracker

__all__ = ["diff"]

_MISSING = "(missing)"


def _same(x: Any, y: Any) -> bool:
    if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
        return True
    if isinstance(x, bool) or isinstance(y, bool):  # True == 1 in Python, not in a config
        return type(x) is type(y) and x == y
    return bool(x == y)


def _run_fields(state: RunState) -> dict[str, Any]:
    fork = None if state.fork is None else f"{state.fork.run_id} @ step {fmt(state.fork.step)}"
    return {"name": state.name, "experiment": state.experiment, "status": str(state.status),
            "reason": state.status_reason, "tags": sorted(state.tags), "fork": fork,
            "created": state.created_at, "ended": state.ended_at}


def _delta(x: Any, y: Any) -> Any:
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (x, y))
    return y - x if numbers else None


async def diff(args: argparse.Namespace) -> int:
    async with open_tracker(args) as tracker:
        a = await tracker.get_run(args.a)
        b = await tracker.get_run(args.b)
    show = args.all
    fields_a, fields_b = _run_fields(a), _run_fields(b)
    run_rows = [(k, fields_a[k], fields_b[k]) for k in fields_a
                if show or not _same(fields_a[k], fields_b[k])]
    absent = object()
    config_rows = []
    for path in sorted(set(a.config) | set(b.config)):
        x, y = a.config.get(path, absent), b.config.get(path, absent)
        if show or x is absent or y is absent or not _same(x, y):
            config_rows.append((path, x, y))
    metric_rows = []
    for metric in sorted(set(a.metrics) | set(b.metrics)):
        sa, sb = a.metrics.get(metric), b.metrics.get(metric)
        for agg in AGGREGATES:
            x = absent if sa is None else getattr(sa, agg)
            y = absent if sb is None else getattr(sb, agg)
            if show or x is absent or y is absent or not _same(x, y):
                metric_rows.append((metric, agg, x, y))
    if args.format == "json":
        def value(v: Any) -> Any:
            return None if v is absent else v

        emit(safe_lines(orjson.dumps(jsonable({
            "a": a.run_id, "b": b.run_id,
            "run": {k: [value(x), value(y)] for k, x, y in run_rows},
            "config": {p: [value(x), value(y)] for p, x, y in config_rows},
            "metrics": [{"metric": m, "aggregate": g, "a": value(x), "b": value(y)}
                        for m, g, x, y in metric_rows],
        }), default=str, option=orjson.OPT_INDENT_2).decode()))
        return 0

    def cell(v: Any) -> Any:
        return _MISSING if v is absent else v

    if not (run_rows or config_rows or metric_rows):
        emit(f"{a.run_id} and {b.run_id} have the same fields, config and metric summaries")
        return 0
    sections = []
    width = terminal_width()
    if run_rows:
        sections.append(table(("run", a.run_id, b.run_id),
                              [(k, cell(x), cell(y)) for k, x, y in run_rows], width=width))
    if config_rows:
        sections.append(table(("config", a.run_id, b.run_id),
                              [(p, cell(x), cell(y)) for p, x, y in config_rows],
                              width=width))
    if metric_rows:
        rows = [(m, g, cell(x), cell(y),
                 None if x is absent or y is absent else _delta(x, y))
                for m, g, x, y in metric_rows]
        sections.append(table(("metric", "stat", a.run_id, b.run_id, "b - a"), rows,
                              numeric=(2, 3, 4), width=width))
    emit("\n\n".join(sections))
    return 0
