"""Runs-table queries, run on either backend: compiled statements through a ``fetch``.

A selection runs in two steps inside one read snapshot: the first picks the run keys in
order (only integers cross from the database to Python), the second loads the rows and metric
summaries of exactly those runs, so ``limit=10`` over a hundred thousand runs decodes ten.

Picking a top few by a metric or config first tries a walk down that field's index, which
stops as soon as it has enough matching runs (see ``compile_top``); when the walk cannot prove
its answer exact — the filter is too selective for the window, or ties straddle its edge —
the statement that filters and sorts every run answers instead.

Each backend passes a ``fetch`` that runs one compiled statement on its snapshot and returns
the rows as sequences, and the ``Dialect`` it speaks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ._model import MetricSummary, RunState
from ._query_ast import Field, RunGroup, Selection
from ._query_plans import compile_groups, compile_top, decode_groups
from ._query_sql import Compiled, Dialect, compile_load, compile_select
from ._rows import run_row, state_of, summary_of

__all__ = ["Fetch", "group_runs", "select_runs"]

Fetch = Callable[[Compiled], Awaitable[Sequence[Sequence[Any]]]]
"""Runs one statement inside the caller's read snapshot; returns its rows."""


async def select_runs(fetch: Fetch, dialect: Dialect, project: str, selection: Selection, *,
                      include_deleted: bool) -> list[RunState]:
    """The selected runs, in order. Call inside a read snapshot."""
    rks = await _top(fetch, dialect, project, selection, include_deleted)
    if rks is None:
        pick = compile_select(project, selection, include_deleted=include_deleted,
                              dialect=dialect)
        rks = [row[0] for row in await fetch(pick)]
    if not rks:
        return []
    load_runs, load_metrics = compile_load(rks, dialect)
    rows = await fetch(load_runs)
    by_run: dict[int, dict[str, MetricSummary]] = {}
    for rk, metric, *summary in await fetch(load_metrics):
        by_run.setdefault(rk, {})[metric] = summary_of(*summary)
    states = {row[0]: state_of(run_row(row), by_run.get(row[0], {})) for row in rows}
    return [states[rk] for rk in rks]


async def _top(fetch: Fetch, dialect: Dialect, project: str, selection: Selection,
               include_deleted: bool) -> list[int] | None:
    """The run keys by the top-k walk, or None when it cannot prove its answer exact."""
    plan = compile_top(project, selection, include_deleted=include_deleted, dialect=dialect)
    if plan is None:
        return None
    edge = await fetch(plan.edge)
    if len(edge) > 1 and edge[0][0] == edge[-1][0]:
        return None  # a tie wider than the window: sorting it would cost more than the scan
    rows = await fetch(plan.select(edge[0][0] if edge else None))
    if len(rows) < plan.needed:
        return None  # runs without a value may belong in the answer: the full plan knows
    return [row[0] for row in rows][selection.offset:]


async def group_runs(fetch: Fetch, dialect: Dialect, project: str, selection: Selection,
                     by: Sequence[Field], aggregates: Sequence[Field] | None, *,
                     include_deleted: bool) -> list[RunGroup]:
    """The selected runs' groups. Call inside a read snapshot."""
    plan = compile_groups(project, selection, by, aggregates, include_deleted=include_deleted,
                          dialect=dialect)
    counts = await fetch(plan.counts)
    stats = [] if plan.stats is None else await fetch(plan.stats)
    return decode_groups(plan, counts, stats)
