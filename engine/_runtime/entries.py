"""The tracker's reads of what a run records besides metrics: text, histogram and
confusion-matrix series (and file series, with the blob store's reads in ``files``).

Each reads the run's effective entries under one key — a fork's inherited ones first, a
rewind's cut ones left out — from the projections, or from the pure fold for ``as_of``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from engine._core import content as ct
from engine._core.confusion import ConfusionMatrix
from engine._core.entries import Entry
from engine._core.histograms import Histogram
from engine._core.series import as_step
from engine._core.text import TextSeries
from engine._core.validate import check_key
from engine._storage.contract import Store
from engine.errors import RunNotFoundError, ValidationError

from .past import AsOf, chain_fold, position_of

__all__ = ["EntryReads"]

V = TypeVar("V")


class EntryReads:
    """Reads of entries; mixed into the tracker's reads, which supply ``_reader`` and
    ``_project``."""

    # Declared, not defined: a definition here would shadow the one the tracker's reads
    # supply whenever this class comes first in their bases.
    project: str
    _reader: Callable[[], Awaitable[Store]]
    _project: Callable[[str | None], str]

    async def read_text(self, run_id: str, key: str, *, tail: int | None = None,
                        as_of: AsOf | None = None, project: str | None = None) -> TextSeries:
        """The run's text series ``key`` in step order (``tail=N``: its last N entries);
        captured output is ``logs/stdout`` and ``logs/stderr``.

        :raises RunNotFoundError: if there is no such run.
        :raises ValidationError: if ``key`` holds another kind in the run.
        """
        rows = await self._entries(run_id, key, ct.TEXT, tail, as_of, project)
        return TextSeries([s for s, _, _ in rows], [v for _, _, v in rows],
                          [t for _, t, _ in rows])

    async def read_histograms(self, run_id: str, key: str, *, tail: int | None = None,
                              as_of: AsOf | None = None,
                              project: str | None = None) -> list[Entry[Histogram]]:
        """The run's histograms under ``key`` as ``Entry(step, value, timestamp)``, in step
        order.

        :raises RunNotFoundError: if there is no such run.
        :raises ValidationError: if ``key`` holds another kind in the run.
        """
        rows = await self._entries(run_id, key, ct.HISTOGRAM, tail, as_of, project)
        return _entries(rows, Histogram.from_plain)

    async def read_confusion_matrices(self, run_id: str, key: str, *,
                                      tail: int | None = None, as_of: AsOf | None = None,
                                      project: str | None = None,
                                      ) -> list[Entry[ConfusionMatrix]]:
        """The run's confusion matrices under ``key`` as ``Entry(step, value, timestamp)``,
        in step order.

        :raises RunNotFoundError: if there is no such run.
        :raises ValidationError: if ``key`` holds another kind in the run.
        """
        rows = await self._entries(run_id, key, ct.CONFUSION_MATRIX, tail, as_of, project)
        return _entries(rows, ConfusionMatrix.from_plain)

    async def _entries(self, run_id: str, key: str, kind: str, tail: int | None,
                       as_of: AsOf | None, project: str | None) -> list[ct.EntryRow]:
        check_key(key)
        if tail is not None and (type(tail) is not int or tail < 0):
            raise ValidationError(f"tail must be an int >= 0, not {tail!r}", key="tail")
        store = await self._reader()
        project = self._project(project)
        if as_of is not None:
            upto = await position_of(store, project, as_of)
            fold = await chain_fold(store, project, run_id, upto)
            if fold is None or not fold.has_run(project, run_id):
                raise RunNotFoundError(f"no run {run_id!r} in project {project!r} at "
                                       f"position {upto}")
            had = fold.kind(project, run_id, key)
            rows = fold.entries(project, run_id, key)
            if tail is not None:
                rows = rows[len(rows) - tail:] if tail else []
        else:
            found = await store.read_entries(project, run_id, key, tail=tail)
            if found is None:
                raise RunNotFoundError(f"no run {run_id!r} in project {project!r}")
            had, rows = found
            if had is None and rows == [] and (state := await store.get_run(project, run_id)):
                had = ct.METRIC if key in state.metrics else None
        if had is not None and had != kind:
            raise ValidationError(f"key {key!r} holds a {had} in run {run_id!r}, not a {kind}",
                                  key=key)
        return [(as_step(s), t, v) for s, t, v in rows]


def _entries(rows: list[ct.EntryRow], make: Callable[[Any], V]) -> list[Entry[V]]:
    return [Entry(step, make(value), datetime.fromtimestamp(at, UTC))
            for step, at, value in rows]
