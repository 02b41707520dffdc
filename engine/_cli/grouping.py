"""``runs group``: the runs a query picks, grouped by fields, with counts and metric stats,
as a table that fits the terminal (docs/cli.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from engine._query.export import RunsTable
from engine._query.parser import parse_aggregates, parse_group_by
from engine._query.tree import Field, RunGroup

from .display import aligned, column_widths, cut, emit, fitted, fmt, table, terminal_width
from .escape import safe, safe_lines
from .tracker import open_tracker

__all__ = ["group"]


def _group_rows(groups: Sequence[RunGroup]) -> tuple[list[str], list[list[Any]]]:
    keys = list(groups[0].key) if groups else []
    stats = list(dict.fromkeys(name for g in groups for name in g.metrics))
    header = [*keys, "runs"]
    for name in stats:
        header += [f"n({name})", f"mean({name})", f"min({name})", f"max({name})"]
    rows = []
    for group in groups:
        row: list[Any] = [*group.key.values(), group.count]
        for name in stats:
            s = group.metrics.get(name)
            row += [None, None, None, None] if s is None else [s.count, s.mean, s.min, s.max]
        rows.append(row)
    return header, rows


async def group(args: argparse.Namespace) -> int:
    by = parse_group_by(args.by)
    parse_aggregates(args.aggregates)  # a bad name fails before the database is opened
    async with open_tracker(args) as tracker:
        groups = await tracker.group_runs([str(f) for f in by], where=args.where,
                                          aggregates=args.aggregates,
                                          include_deleted=args.include_deleted,
                                          as_of=args.as_of)
    header, rows = _group_rows(groups)
    if not groups:
        header = [*(str(f) for f in by), "runs"]
    found = RunsTable(tuple(header), tuple(tuple(r) for r in rows))
    if args.format == "csv":
        sys.stdout.write(safe_lines(found.to_csv()))
    elif args.format == "json":
        sys.stdout.write(safe_lines(found.to_jsonl()))
    else:
        emit(_fitting_group_table(by, header, rows))
    return 0


def _fitting_group_table(by: Sequence[Field], header: Sequence[str],
                         rows: Sequence[Sequence[Any]]) -> str:
    """The groups as one wide table when it fits the terminal; else one row per group and
    metric, when that fits; else, per group, a line of its key values and run count over a
    table of its metrics, cut to fit; else one block of lines per group and metric. No line
    is longer than the terminal is wide (``MIN_WIDTH`` at the least); ``--format json``
    and ``csv`` carry every value whole."""
    width = fitted(terminal_width())
    numbers = range(len(by), len(header))
    wide = table(header, rows, numeric=numbers)
    if width is None or max(map(len, wide.splitlines()), default=0) <= width:
        return wide
    keys = len(by) + 1  # the group's key values and its run count
    stats = [name[len("n("):-1] for name in header[keys::4]]  # "n(metrics.x)"
    if not stats:
        return table(header, rows, numeric=numbers, width=width)
    long_header = [*header[:keys], "metric", "count", "mean", "min", "max"]
    long_rows = [[*row[:keys], metric, *row[keys + 4 * i : keys + 4 * i + 4]]
                 for row in rows for i, metric in enumerate(stats)]
    long_numeric = [*range(len(by), keys), *range(keys + 1, keys + 5)]
    long = table(long_header, long_rows, numeric=long_numeric)
    if max(map(len, long.splitlines()), default=0) <= width:
        return long
    nested = _nested_group_table(header[:keys], stats, rows, width)
    if nested is not None:
        return nested
    return table(long_header, long_rows, numeric=long_numeric, width=width)


def _nested_group_table(keys: Sequence[str], stats: Sequence[str],
                        rows: Sequence[Sequence[Any]], width: int) -> str | None:
    """Per group, ``key=value ... runs=N`` on a line (a line each when they are too long for
    one), then its metrics' table indented (a metric named without the ``metrics.`` every
    one starts with), all the groups' metric tables with the same columns; None when they
    cannot fit ``width``."""
    indent = "  "
    header = ("metric", "count", "mean", "min", "max")
    names = [metric.removeprefix("metrics.") for metric in stats]
    metric_rows = [[[name, *row[len(keys) + 4 * i : len(keys) + 4 * i + 4]]
                    for i, name in enumerate(names)] for row in rows]
    cells = [[fmt(v) for v in r] for group in metric_rows for r in group]
    # Cut shorter than this, metric names would no longer tell one from another.
    widths = column_widths(header, cells, numeric=range(1, 5), width=width - len(indent),
                           shortest=12)
    if widths is None:
        return None
    blocks = []
    for row, group in zip(rows, metric_rows, strict=True):
        pairs = [f"{safe(name)}={fmt(value)}"
                 for name, value in zip(keys, row[:len(keys)], strict=True)]
        title = "  ".join(pairs)
        # Too long for a line: a line per key, so that none is lost in a cut.
        titles = [title] if len(title) <= width else [cut(pair, width) for pair in pairs]
        body = aligned(header, [[fmt(v) for v in r] for r in group], widths,
                       numeric=range(1, 5))
        blocks.append("\n".join([*titles, *(indent + line for line in body.splitlines())]))
    return "\n\n".join(blocks)
