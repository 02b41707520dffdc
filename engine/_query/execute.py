"""Runs-table queries, run on either backend: compiled statements through a ``fetch``.

A selection runs in two steps inside one read snapshot: the first picks the run keys in
order (only integers cross from the database to Python), the second loads the rows and metric
summaries of exactly those runs, so ``limit=10`` over a hundred thousand runs decodes ten.

Picking a top few by a metric or config first tries a walk down that field's index, which
stops as soon as it has enough matching runs (see ``compile_top``); when the walk cannot prove
its answer exact — the filter is too selective for the window, or a tie wider than the window
would have to be sorted by a second ordering field — the statement that filters and sorts
every run answers instead.

Each backend passes a ``fetch`` that runs one compiled statement on its snapshot and returns
the rows as sequences, and the ``Dialect`` it speaks. The backend translates its driver's
errors itself (a failing database is a ``StorageError``), so they pass through untouched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from engine._core.model import MetricSummary, RunState
from engine._projections.stored import run_row, state_of, summary_of

from .plans import TOP_BUDGET, TopPlan, compile_groups, compile_top, decode_groups
from .sql import Compiled, Dialect, compile_load, compile_select
from .tree import Field, RunGroup, Selection

__all__ = ["Fetch", "group_runs", "select_runs", "top_keys"]

Fetch = Callable[[Compiled], Awaitable[Sequence[Sequence[Any]]]]
"""Runs one statement inside the caller's read snapshot; returns its rows."""


async def select_runs(fetch: Fetch, dialect: Dialect, project: str, selection: Selection, *,
                      include_deleted: bool) -> list[RunState]:
    """The selected runs, in order. Call inside a read snapshot.

    :raises StorageError: the database failed to run a statement.
    """
    rks = await top_keys(fetch, dialect, project, selection, include_deleted)
    if rks is None:
        pick = compile_select(project, selection, include_deleted=include_deleted,
                              dialect=dialect)
        rks = [row[0] for row in await fetch(pick)]
    if not rks:
        return []
    load_runs, load_metrics = compile_load(rks, dialect, selection.now)
    rows = await fetch(load_runs)
    by_run: dict[int, dict[str, MetricSummary]] = {}
    for rk, metric, *summary in await fetch(load_metrics):
        by_run.setdefault(rk, {})[metric] = summary_of(*summary)
    states = {row[0]: state_of(run_row(row), by_run.get(row[0], {})) for row in rows}
    return [states[rk] for rk in rks]


async def top_keys(fetch: Fetch, dialect: Dialect, project: str, selection: Selection,
                   include_deleted: bool, budget: int = TOP_BUDGET) -> list[int] | None:
    """The run keys by the top-k walk, or None when it cannot prove its answer exact."""
    plan = compile_top(project, selection, include_deleted=include_deleted, dialect=dialect,
                       budget=budget)
    if plan is None:
        return None
    edge = await fetch(plan.edge)
    if len(edge) > 1 and edge[0][0] == edge[-1][0]:  # a tie wider than the window
        return await _past_a_tie(fetch, plan, edge[0][0], selection.offset)
    rows = await fetch(plan.select(edge[0][0] if edge else None))
    if len(rows) < plan.needed:
        return None  # runs without a value may belong in the answer: the full plan knows
    return [row[0] for row in rows][selection.offset:]


async def _past_a_tie(fetch: Fetch, plan: TopPlan, value: Any,
                      offset: int) -> list[int] | None:
    """The runs better than a wide tie at ``value``, then (when the ordering has no second
    field) those of the tie, in run key order; None when they are too few."""
    better = [row[0] for row in await fetch(plan.select(value, strict=True))]
    if len(better) < plan.needed:
        if not plan.ties_in_key_order:
            return None  # the tie must be sorted whole: the full plan does that as well
        tied = await fetch(plan.tie(value, plan.needed - len(better)))
        better += [row[0] for row in tied]
        if len(better) < plan.needed:
            return None  # runs past the tie belong in the answer
    return better[offset:]


async def group_runs(fetch: Fetch, dialect: Dialect, project: str, selection: Selection,
                     by: Sequence[Field], aggregates: Sequence[Field] | None, *,
                     include_deleted: bool) -> list[RunGroup]:
    """The selected runs' groups. Call inside a read snapshot.

    :raises StorageError: the database failed to run a statement.
    """
    plan = compile_groups(project, selection, by, aggregates, include_deleted=include_deleted,
                          dialect=dialect)
    counts = await fetch(plan.counts)
    stats = [] if plan.stats is None else await fetch(plan.stats)
    return decode_groups(plan, counts, stats)
