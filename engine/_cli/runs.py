"""Runs-table commands: ``runs list``, ``show``, ``abort``, ``delete`` and ``tag``, and the
registration of ``runs group`` (``grouping``) and ``diff`` (``diff``) (docs/cli.md).

``runs list`` shows the runs a query picks as an aligned table, CSV or JSON lines. A bad
query is reported as one line plus the query with a caret under the problem.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import orjson

from engine._query.export import RunsTable, parse_columns
from engine._query.parser import parse_order, parse_where
from engine._query.tree import (
    And,
    Compare,
    Contains,
    Exists,
    Field,
    In,
    Node,
    Not,
    Or,
)
from engine._runtime.tracker import Tracker

from . import diff as diffing
from . import grouping
from .content import show_sections
from .display import (
    emit,
    fit_line,
    fmt,
    run_json,
    table,
    terminal_width,
)
from .errors import UsageError
from .escape import safe_lines
from .tracker import open_tracker

__all__ = ["add_commands"]

_STATUS = Field("run", "status")
_WORKER = Field("run", "worker")
_TABLE_COLUMNS = (Field("run", "run_id"), Field("run", "name"), Field("run", "experiment"),
                  _STATUS, Field("run", "created_at"))

Parser = TypeVar("Parser", bound=argparse.ArgumentParser)


def add_commands(commands: argparse._SubParsersAction[Parser],
                 runs: argparse._SubParsersAction[Parser]) -> None:
    """Register ``runs list`` and ``runs group`` on the ``runs`` sub-parsers and ``diff`` on
    the top-level ones."""
    listing = runs.add_parser(
        "list", help="runs matching a query, sorted: a table, CSV or JSON lines",
        description="List runs. Example: kittiwake runs list --where \"metrics.train/acc > 0.9 "
                    "or config.optimizer = 'adam'\" --order-by -metrics.train/acc --limit 10")
    listing.add_argument("--where", "-w", help="filter, e.g. \"metrics.loss.min < 0.1 and "
                         "tags contains 'baseline'\" (see docs/queries.md)")
    listing.add_argument("--order-by", "-o", dest="order_by",
                         help="comma-separated fields, '-' or a trailing 'desc' for "
                              "descending (--order-by -metrics.acc), missing values last")
    listing.add_argument("--limit", "-n", type=int, help="at most this many runs")
    listing.add_argument("--offset", type=int, default=0, help="skip this many runs first")
    listing.add_argument("--columns", "-c", help="comma-separated columns, e.g. "
                         "run_id,config.lr,metrics.loss.min (default: a few for a table, "
                         "every field for csv and json)")
    listing.add_argument("--format", choices=("table", "csv", "json"), default="table",
                         help="json means JSON lines, one flat object per run")
    listing.add_argument("--include-deleted", action="store_true", help="show deleted runs")
    listing.add_argument("--heads-only", action="store_true",
                         help="only the head run of each experiment")
    add_as_of(listing)
    listing.set_defaults(handler=_list)

    group = runs.add_parser("group", help="group runs by fields, with counts and metric stats")
    group.add_argument("by", help="comma-separated fields, e.g. experiment,config.optimizer")
    group.add_argument("--where", "-w", help="filter the runs first")
    group.add_argument("--metrics", "-m", dest="aggregates",
                       help="metric aggregates, e.g. metrics.loss.min,metrics.acc "
                            "(default: every metric's last value)")
    group.add_argument("--format", choices=("table", "csv", "json"), default="table")
    group.add_argument("--include-deleted", action="store_true", help="count deleted runs")
    add_as_of(group)
    group.set_defaults(handler=grouping.group)

    for name, helped in (("abort", "ask a running run to stop (it ends aborted)"),
                         ("kill", "the same as abort")):
        abort = runs.add_parser(name, help=helped)
        abort.add_argument("run_id")
        abort.add_argument("--reason", help="why (shown with the run's status)")
        abort.set_defaults(handler=_abort)

    delete = runs.add_parser("delete", help="mark a run deleted (its events stay in the log)")
    delete.add_argument("run_id")
    delete.set_defaults(handler=_delete)

    tag = runs.add_parser("tag", help="add (+name) and remove (-name) a run's tags",
                          description="Example: kittiwake runs tag RUN +best -baseline")
    tag.add_argument("run_id")
    tag.add_argument("changes", nargs="+", metavar="+TAG|-TAG")
    tag.set_defaults(handler=_tag)

    diff = commands.add_parser("diff", help="two runs' config and metric differences, side "
                               "by side")
    diff.add_argument("a", metavar="A", help="a run id")
    diff.add_argument("b", metavar="B", help="another run id")
    diff.add_argument("--all", action="store_true", help="show equal values too")
    diff.add_argument("--format", choices=("table", "json"), default="table")
    diff.set_defaults(handler=diffing.diff)


def as_of_value(text: str) -> int | datetime:
    """``--as-of``: a log position, or an ISO-8601 date or time (naive means UTC)."""
    if text.isdigit():
        return int(text)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a log position nor an ISO-8601 time such as "
            "2026-12-01T12:00:00Z") from None


def add_as_of(parser: argparse.ArgumentParser) -> None:
    """Give a read command ``--as-of POSITION|ISO-TIME``."""
    parser.add_argument("--as-of", dest="as_of", type=as_of_value, metavar="POSITION|TIME",
                        help="as the log stood then: a position, or an ISO-8601 time "
                             "(the last event at or before it)")


# runs list -------------------------------------------------------------------------------------

def _fields_of(node: Node | None) -> Iterable[Field]:
    if node is None:
        return
    if isinstance(node, (And, Or)):
        for item in node.items:
            yield from _fields_of(item)
    elif isinstance(node, Not):
        yield from _fields_of(node.item)
    elif isinstance(node, (Compare, In, Contains, Exists)):
        yield node.field


def _table_fields(where: str | None, order_by: str | None) -> list[Field]:
    """A few identifying columns, then whatever the ordering and the query look at."""
    wanted = [*_TABLE_COLUMNS, *(k.field for k in parse_order(order_by)),
              *_fields_of(parse_where(where) if where else None)]
    return list(dict.fromkeys(wanted))


def _numeric(rows: Sequence[Sequence[Any]], width: int) -> list[int]:
    """Columns whose values are all numbers (right-aligned in a table)."""
    return [i for i in range(width)
            if any(v is not None for v in (r[i] for r in rows))
            and all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
                    for v in (r[i] for r in rows))]


async def _list(args: argparse.Namespace) -> int:
    columns = list(parse_columns(args.columns)) if args.columns else None
    chosen = columns is not None
    if args.format == "table" and columns is None:
        columns = _table_fields(args.where, args.order_by)
    async with open_tracker(args) as tracker:
        runs = await tracker.list_runs(
            args.where, order_by=args.order_by, limit=args.limit, offset=args.offset,
            include_deleted=args.include_deleted, heads_only=args.heads_only,
            as_of=args.as_of)
        projects = await _live_projects(tracker) if not runs else None
    if projects is not None and tracker.project not in projects[0]:
        _name_other_projects(tracker.project, *projects)
    if columns is not None and not chosen and any(r.worker for r in runs):
        # Jobs among them: who ran each, beside the status.
        columns = [c for c in columns if c != _WORKER]
        columns.insert(columns.index(_STATUS) + 1, _WORKER)
    found = RunsTable.from_runs(runs, None if columns is None else [str(c) for c in columns])
    if args.format == "csv":
        sys.stdout.write(safe_lines(found.to_csv()))
    elif args.format == "json":
        sys.stdout.write(safe_lines(found.to_jsonl()))
    else:
        # The run id is what the next command needs: cut anything else first.
        emit(table(found.columns, found.rows,
                   numeric=_numeric(found.rows, len(found.columns)),
                   keep=[i for i, c in enumerate(found.columns) if c == "run_id"],
                   width=terminal_width()))
        emit(f"({len(found)} run{'' if len(found) == 1 else 's'})")
    return 0


async def _live_projects(tracker: Tracker) -> tuple[dict[str, int], int]:
    """The projects that have runs not deleted, with how many each (``list_projects``
    counts every run ever created, deleted ones included), and how many deleted runs the
    tracker's own project has."""
    live: dict[str, int] = {}
    deleted = 0
    for name, ever in (await tracker.list_projects()).items():
        groups = await tracker.group_runs("status", aggregates=(), project=name)
        count = sum(group.count for group in groups)
        if count:
            live[name] = count
        if name == tracker.project:
            deleted = ever - count
    return live, deleted


def _name_other_projects(project: str, projects: dict[str, int], deleted: int) -> None:
    """Say, on stderr, that ``project`` has no runs and which projects do: a wrong
    ``--project`` (or a forgotten ``KITTIWAKE_PROJECT``) is the usual cause. Runs that
    were deleted are not counted; the project's own are mentioned."""
    gone = (f" but {deleted} deleted one{'' if deleted == 1 else 's'} (--include-deleted "
            "lists them)") if deleted else ""
    if not projects:
        sys.stderr.write(safe_lines(f"project {project!r} has no runs{gone}, and neither has "
                                    "any other project in this database\n"))
        return
    listed = ", ".join(f"{name} ({count} run{'' if count == 1 else 's'})"
                       for name, count in projects.items())
    sys.stderr.write(safe_lines(f"project {project!r} has no runs{gone}; projects with runs: "
                                f"{listed}\n(choose one with --project NAME or "
                                "KITTIWAKE_PROJECT)\n"))


async def show(args: argparse.Namespace) -> int:
    async with open_tracker(args) as tracker:
        state = await tracker.get_run(args.run_id, as_of=args.as_of)
        sections = [] if args.format == "json" else await show_sections(tracker, state)
    if args.format == "json":
        emit(safe_lines(orjson.dumps(run_json(state), option=orjson.OPT_INDENT_2).decode()))
        return 0
    fork = f"{state.fork.run_id} @ step {fmt(state.fork.step)}" if state.fork else None
    fields = [
        ("run", f"{state.project}/{state.run_id}"), ("name", state.name),
        ("experiment", state.experiment), ("status", state.status),
        ("reason", state.status_reason), ("fork", fork), ("tags", state.tags),
        ("created", state.created_at), ("ended", state.ended_at),
        ("deleted", state.deleted or None), ("version", state.version),
        ("position", state.position),
    ]
    width = terminal_width()
    emit("\n".join(fit_line(f"{k:<11} {fmt(v)}", width) for k, v in fields))
    if state.config:
        emit("\nconfig")
        emit(table(("path", "value"), sorted(state.config.items()), width=width))
    if state.metrics:
        emit("\nmetrics")
        emit(table(("metric", "last", "min", "max", "count", "last step"),
                   [(m, s.last, s.min, s.max, s.count, s.last_step)
                    for m, s in state.metrics.items()], numeric=(1, 2, 3, 4, 5),
                   width=width))
    for section in sections:
        emit(section)
    return 0


# abort, delete, tag ----------------------------------------------------------------------------

async def _abort(args: argparse.Namespace) -> int:
    async with open_tracker(args) as tracker:
        state = await tracker.get_run(args.run_id)
        if state.status.terminal:
            emit(f"run {args.run_id} already ended: {state.status}")
            return 0
        await tracker.abort_run(args.run_id, reason=args.reason)
    emit(f"abort requested for run {args.run_id}")
    return 0


async def _delete(args: argparse.Namespace) -> int:
    async with open_tracker(args) as tracker:
        if (await tracker.get_run(args.run_id)).deleted:
            emit(f"run {args.run_id} was already deleted")
            return 0
        await tracker.delete_run(args.run_id)  # deleting twice is harmless, and adds nothing
    emit(f"run {args.run_id} deleted")
    return 0


async def _tag(args: argparse.Namespace) -> int:
    added = [c[1:] for c in args.changes if c.startswith("+")]
    removed = [c[1:] for c in args.changes if c.startswith("-")]
    wrong = [c for c in args.changes if c[:1] not in ("+", "-") or len(c) < 2]
    if wrong:
        raise UsageError(f"write each change as +TAG or -TAG, not {wrong[0]!r}")
    async with open_tracker(args) as tracker:
        async with tracker.edit_run(args.run_id) as run:
            run.remove_tags(removed)
            run.add_tags(added)
        tags = (await tracker.get_run(args.run_id)).tags
    emit(f"run {args.run_id} tags: {fmt(tags)}")
    return 0
