"""What differs between the SQL of SQLite and of PostgreSQL, for the query compiler.

Each difference is one method of ``Dialect``, so ``sql`` and ``plans`` write their
statements once; ``tests/query/test_sql.py`` checks that the two dialects differ where the
databases do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["POSTGRES", "SQLITE", "Dialect"]


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between the SQL of two databases."""

    name: str

    @property
    def numbered(self) -> bool:
        """PostgreSQL rather than SQLite (the name is the placeholders': ``$1``)."""
        return self.name == "postgresql"

    def mark(self, number: int) -> str:
        """The placeholder of the ``number``-th parameter (from 1): ``$n`` or ``?n``.

        Both are numbered, so a statement may be written in any order (common table
        expressions first, though they are compiled last) and the parameters still line up.
        """
        return f"${number}" if self.numbered else f"?{number}"

    def text(self, expr: str) -> str:
        """A text expression as compared and sorted: by code point in both databases
        (PostgreSQL's default collation may follow a locale)."""
        return f'{expr} COLLATE "C"' if self.numbered else expr

    def substring(self, expr: str, mark: str) -> str:
        """True when the text ``expr`` contains the bound text ``mark`` (no wildcards)."""
        if self.numbered:
            return f"strpos({expr}, {mark}) > 0"
        return f"instr({expr}, {mark}) > 0"

    def list_has(self, kind: str, expr: str, mark: str) -> str:
        """True when ``kind`` is ``'l'`` and the JSON array of strings ``expr`` has the
        element ``mark``. PostgreSQL may evaluate either side of an AND first, so only a
        CASE keeps it from reading other kinds' text as JSON."""
        if self.numbered:
            return (f"CASE WHEN {kind} = 'l' THEN ({expr})::jsonb @> "
                    f"jsonb_build_array({mark}::text) ELSE FALSE END")
        return (f"{kind} = 'l' AND EXISTS (SELECT 1 FROM json_each({expr}) AS j "
                f"WHERE j.value = {mark})")

    def number(self, mark: str) -> str:
        """A numeric parameter: PostgreSQL infers a parameter's type from the column it
        meets, and would refuse 0.5 compared with an integer column such as ``count``."""
        return f"{mark}::double precision" if self.numbered else mark

    def rk_list(self, mark: str) -> str:
        """A subquery yielding the run keys passed as one parameter (see ``rk_param``)."""
        if self.numbered:
            return f"SELECT unnest({mark}::bigint[])"
        return f"SELECT value FROM json_each({mark})"

    def rk_param(self, rks: Sequence[int]) -> Any:
        """The one parameter that carries a list of run keys."""
        return list(rks) if self.numbered else orjson.dumps(list(rks)).decode()

    def sort(self, expr: str, descending: bool) -> str:
        """An ORDER BY term that places NULL as SQLite does — first ascending, last
        descending — where PostgreSQL would do the opposite."""
        if self.numbered:
            return f"{expr} DESC NULLS LAST" if descending else f"{expr} NULLS FIRST"
        return f"{expr} DESC" if descending else expr

    def in_project(self, mark: str) -> str:
        """The condition that keeps a project's runs.

        SQLite reads the runs in ``rk`` order instead of through the ``(project,
        experiment, rk)`` index (the unary ``+`` hides the column from the planner): the
        index visits runs experiment by experiment, so every probe of ``metrics`` and
        ``run_configs`` lands somewhere else, while ``rk`` order walks those tables'
        primary keys in order and lets ``ORDER BY r.rk LIMIT n`` stop early. It costs a full
        read of ``runs`` when a file holds many projects.
        """
        return f"r.project = {mark}" if self.numbered else f"+r.project = {mark}"

    def fence(self, condition: str) -> str:
        """``condition`` (a subquery test) as the planner must not turn it into a join.

        PostgreSQL turns each ``IN``/``EXISTS`` subquery of a top-level ``AND`` into a
        semi-join and searches the orders of every join: planning grows exponentially
        with their number (8 such conditions take tens of milliseconds to plan, 100 take
        minutes). Only a bare subquery is turned, so ``IS TRUE`` (the same truth: these
        conditions are never NULL) keeps it a subplan — hashed once, or probed per run —
        which is how SQLite's planner runs every one.
        """
        return f"({condition}) IS TRUE" if self.numbered else condition

    def real(self, expr: str) -> str:
        """``expr`` as a double, so that ``avg`` of integers stays a float."""
        return f"CAST({expr} AS {'double precision' if self.numbered else 'REAL'})"


SQLITE = Dialect("sqlite")
POSTGRES = Dialect("postgresql")
