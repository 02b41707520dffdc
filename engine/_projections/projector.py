"""The database projections, applied inline: records in, row changes out.

One ``Projector`` per writer keeps the rows it touches in memory (run rows, metric summaries,
tail chunks, fork segments) and collects what changed; the backend loads rows by key through
``ProjectionIO`` and writes the changes with a few bulk statements at commit (the rows and
that contract live in ``rows``). The cache stays valid across transactions for as
long as nobody else appends (the store checks the log's head before trusting it), so steady
logging costs no reads at all.

Every ``apply`` checks an event fully before it changes anything it can refuse; a refusal
raises an ``EngineError`` and the store rolls the transaction back and clears the cache.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from engine._core import events as ev
from engine._core.events import Record
from engine._core.series import (
    CHUNK,
    Chunk,
    Summary,
    combine,
    from_le,
    steps_array,
    summarize_points,
)
from engine.errors import RunExistsError, RunNotFoundError, ValidationError

from .content import apply_content, fork_content, kind_error, rewind_content
from .rows import Changes, MetricRow, ProjectionIO, RunRow, Segment

__all__ = ["TAIL_POINTS", "Projector"]

# The points the cached tail chunks may hold in all: 24 MiB of columns. Each (run, metric)
# being logged keeps its open chunk here (up to ``CHUNK`` points) so that the next commit
# extends it without a read; a server with many writers of many metrics would otherwise
# hold a chunk for every one of them. Past this, the least recently extended tails go, and
# are read back when their series is logged again.
TAIL_POINTS = 1 << 20


class Projector:
    """Applies records to the projections through a cache of the rows they touch."""

    def __init__(self, io: ProjectionIO) -> None:
        self.io = io
        self.changes = Changes()
        self._runs: dict[tuple[str, str], RunRow | None] = {}
        self._metrics: dict[int, dict[str, MetricRow]] = {}
        self._segments: dict[int, dict[str, list[Segment]]] = {}
        self._tails: dict[tuple[int, str], Chunk] = {}
        # At least the points the tails hold: counting them exactly each commit would cost
        # a walk over every tail, and a project of many runs keeps a tail per run.
        self._tail_bound = 0
        self._projects: dict[str, int] = {}
        self._ancestors: dict[int, list[tuple[int, int, int | float]]] = {}

    def clear(self) -> None:
        """Forget every cached row and pending change (after a rollback or a foreign write)."""
        self.changes = Changes()
        self._runs.clear()
        self._metrics.clear()
        self._segments.clear()
        self._tails.clear()
        self._tail_bound = 0
        self._projects.clear()
        self._ancestors.clear()

    def trim(self, max_runs: int, max_tail_points: int | None = None) -> None:
        """Bound the cache between transactions (it is only an optimization): at most
        ``max_runs`` runs' rows, and tails of at most ``max_tail_points`` points in all
        (``TAIL_POINTS`` when None), the least recently extended dropped first."""
        if len(self._runs) > max_runs:
            self.clear()
            return
        budget = TAIL_POINTS if max_tail_points is None else max_tail_points
        tails = self._tails
        if len(tails) * CHUNK <= budget or self._tail_bound <= budget:
            return  # full chunks in every tail, or all that was kept, would still fit
        held = sum(len(chunk.values) for chunk in tails.values())
        while held > budget:
            held -= len(tails.pop(next(iter(tails))).values)
        self._tail_bound = held

    def keep_tail(self, key: tuple[int, str], chunk: Chunk) -> None:
        """Keep ``chunk`` as the open chunk of ``key`` (run, metric), the most recently
        extended."""
        self._tails.pop(key, None)  # to the end
        self._tails[key] = chunk
        # The chunk it replaces stays counted: a bound, made exact by the next count.
        self._tail_bound += len(chunk.values)

    async def save(self) -> None:
        """Write pending changes; the cache keeps the rows."""
        if self.changes:
            await self.io.save(self.take_changes())

    def take_changes(self) -> Changes:
        """The pending changes, for the caller to write (the cache keeps the rows)."""
        changes, self.changes = self.changes, Changes()
        return changes

    def uncached(self, keys: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """Those of the runs ``(project, run_id)`` whose rows the cache does not hold."""
        return [key for key in dict.fromkeys(keys) if key not in self._runs]

    def prime(self, rows: dict[tuple[str, str], RunRow | None]) -> None:
        """Take run rows read inside the current transaction (None: no such run), so that
        applying the group's events needs no load of its own; rows already cached win."""
        for key, row in rows.items():
            self._runs.setdefault(key, row)

    async def run(self, project: str, run_id: str) -> RunRow | None:
        """The run's row as of the records applied so far."""
        key = (project, run_id)
        if key not in self._runs:
            self._runs[key] = await self.io.load_run(project, run_id)
        return self._runs[key]

    async def metrics(self, rk: int) -> dict[str, MetricRow]:
        rows = self._metrics.get(rk)
        if rows is None:
            rows = self._metrics[rk] = await self.io.load_metrics(rk)
        return rows

    async def segments(self, rk: int) -> dict[str, list[Segment]]:
        segs = self._segments.get(rk)
        if segs is None:
            segs = self._segments[rk] = await self.io.load_segments(rk)
        return segs

    async def ancestors(self, rk: int) -> list[tuple[int, int, int | float]]:
        """``(ancestor_rk, depth, step)`` of every ancestor of the run, parent first."""
        found = self._ancestors.get(rk)
        if found is None:
            await self.save()  # lineage rows of this transaction must be visible to the query
            found = self._ancestors[rk] = await self.io.load_ancestors(rk)
        return found

    def _touch(self, row: RunRow) -> None:
        self.changes.runs[row.rk] = row

    # Applying records ----------------------------------------------------------------------

    async def apply(self, rec: Record) -> None:
        """Fold one record into the projections.

        :raises RunExistsError: RunCreated for a run that exists.
        :raises RunNotFoundError: any other event for a missing run, or a missing fork parent.
        :raises ValidationError: a metric step that is not past the run's last step.
        """
        if rec.type == ev.RUN_CREATED:
            await self._create(rec)
            return
        row = await self.run(rec.project, rec.run_id)
        if row is None:
            raise RunNotFoundError(f"run {rec.run_id!r} does not exist in project {rec.project!r}")
        kind = rec.type
        data = rec.data
        if kind == ev.METRICS_LOGGED:
            await self._metrics_logged(row, data["metrics"])
        elif kind == ev.CONFIGS_LOGGED:
            row.config.update(data["config"])
            self.changes.configs[row.rk] = row
        elif kind == ev.TAGS_ADDED:
            row.tags = sorted(set(row.tags).union(data["tags"]))
            self.changes.tags[row.rk] = row
        elif kind == ev.TAGS_REMOVED:
            row.tags = sorted(set(row.tags).difference(data["tags"]))
            self.changes.tags[row.rk] = row
        elif kind == ev.STATUS_CHANGED:
            row.status = data["status"]
            row.status_reason = data.get("reason")
            row.ended_at = None if row.status == "running" else rec.timestamp
        elif kind == ev.RUN_RESUMED:
            await self._resumed(row, rec, data.get("rewind_to"))
        elif kind == ev.ABORT_REQUESTED:
            row.abort_position = rec.position
            row.abort_reason = data.get("reason")
        elif kind == ev.RUN_DELETED:
            await self._deleted(row)
        elif kind == ev.JOB_CLAIMED:
            row.status, row.status_reason, row.ended_at = "running", None, None
            row.started_position = rec.position
            row.heartbeat_interval = data.get("heartbeat_interval")
            row.crash_timeout = data.get("crash_timeout")
            row.attempt, row.worker = data["attempt"], data["worker"]
        elif kind == ev.JOB_REQUEUED:
            row.status, row.status_reason, row.ended_at = "queued", data.get("reason"), None
            row.attempt = data["attempt"]
        elif kind in ev.CONTENT_TYPES:
            apply_content(row, rec, await self.metrics(row.rk), self.changes)
        row.version = rec.version
        row.position = rec.position
        row.updated_at = rec.timestamp
        self._touch(row)

    async def _create(self, rec: Record) -> None:
        data = rec.data
        if await self.run(rec.project, rec.run_id) is not None:
            raise RunExistsError(f"run {rec.run_id!r} already exists in project {rec.project!r}")
        fork = data.get("fork")
        parent = None
        if fork:
            parent = await self.run(rec.project, fork["run_id"])
            if parent is None or parent.deleted:
                raise RunNotFoundError(
                    f"fork parent {fork['run_id']!r} does not exist in project {rec.project!r}"
                )
        rk = rec.position
        row = RunRow(
            rk=rk, project=rec.project, run_id=rec.run_id, name=data["name"],
            experiment=data.get("experiment"),
            status="queued" if data.get("job") else "running", status_reason=None,
            tags=sorted(set(data.get("tags") or ())), config=dict(data.get("config") or {}),
            fork_rk=None, fork_run_id=None, fork_step=None, created_at=rec.timestamp,
            updated_at=rec.timestamp, ended_at=None, deleted=False, version=rec.version,
            position=rec.position, epoch=0, floor=None, started_position=rec.position,
            abort_position=None, abort_reason=None,
            heartbeat_interval=data.get("heartbeat_interval"),
            crash_timeout=data.get("crash_timeout"),
        )
        job = data.get("job")
        if job:
            row.queue, row.attempt, row.max_attempts = job["queue"], 0, job["max_attempts"]
            row.job = {k: v for k, v in job.items() if k != "queue"}
        self._runs[(rec.project, rec.run_id)] = row
        self._metrics[rk] = {}
        self._segments[rk] = {}
        if parent is not None:
            assert fork is not None
            step = fork["step"]
            row.fork_rk, row.fork_run_id = parent.rk, parent.run_id
            row.fork_step = row.floor = step
            row.tags = sorted(set(parent.tags).union(row.tags))
            row.config = {**parent.config, **row.config}
            await self._inherit(row, parent, step)
            fork_content(row, parent, step, rec.position)
            lineage = [(parent.rk, 1, step)] + [
                (a, depth + 1, s) for a, depth, s in await self.ancestors(parent.rk)]
            self._ancestors[rk] = lineage
            self.changes.lineage.extend((a, rk, depth, s) for a, depth, s in lineage)
        else:
            self._ancestors[rk] = []
        self.changes.configs[rk] = row
        self.changes.tags[rk] = row
        if row.experiment is not None:
            self.changes.experiments[(rec.project, row.experiment)] = rk
        count = self._projects.get(rec.project)
        if count is None:
            count = await self.io.project_runs(rec.project)
        self._projects[rec.project] = self.changes.projects[rec.project] = count + 1
        self._touch(row)

    async def _inherit(self, child: RunRow, parent: RunRow, step: int | float) -> None:
        """Give the child the parent's effective series up to ``step``, as it is now.

        The parent's current epoch keeps growing after the fork, so its segment is capped at
        the parent's last step as well: later points never leak into the child.
        """
        parent_segments = await self.segments(parent.rk)
        for metric, prow in (await self.metrics(parent.rk)).items():
            cap = min(step, prow.summary.last_step)
            segs = [Segment(s.rk, s.epoch, min(s.cap, cap))
                    for s in parent_segments.get(metric, ())]
            if prow.tail_epoch == parent.epoch:
                segs.append(Segment(parent.rk, parent.epoch, cap))
            if step >= prow.summary.last_step:
                summary: Summary | None = replace(prow.summary)
            else:
                summary = await self._summarize(metric, segs)
            if summary is None:
                continue
            self._set_metric(MetricRow(child.rk, metric, summary, None, None))
            self._set_segments(child.rk, metric, segs)

    async def _resumed(self, row: RunRow, rec: Record, rewind: int | float | None) -> None:
        row.status, row.status_reason, row.ended_at = "running", None, None
        row.started_position = rec.position
        row.heartbeat_interval = rec.data.get("heartbeat_interval")
        row.crash_timeout = rec.data.get("crash_timeout")
        if rewind is None:
            return
        rewind_content(row, rewind)
        metrics = await self.metrics(row.rk)
        segments = await self.segments(row.rk)
        for metric, mrow in list(metrics.items()):
            segs = [Segment(s.rk, s.epoch, min(s.cap, rewind)) for s in segments.get(metric, ())]
            if mrow.tail_epoch == row.epoch:
                segs.append(Segment(row.rk, row.epoch, rewind))
            summary = (mrow.summary if mrow.summary.last_step <= rewind
                       else await self._summarize(metric, segs))
            if summary is None:
                del metrics[metric]
                segments.pop(metric, None)
                self.changes.metrics.pop((row.rk, metric), None)
                self.changes.dropped_metrics.add((row.rk, metric))
                self.changes.segments[(row.rk, metric)] = []
                self._tails.pop((row.rk, metric), None)
                continue
            mrow.summary = summary
            self._set_metric(mrow)
            self._set_segments(row.rk, metric, segs)
        row.epoch += 1
        row.floor = rewind

    async def _deleted(self, row: RunRow) -> None:
        row.deleted = True
        if row.experiment is None:
            return
        # The head may be this run: let the database answer which run is newest and alive.
        self._touch(row)
        await self.save()
        self.changes.experiments[(row.project, row.experiment)] = await self.io.newest_alive(
            row.project, row.experiment
        )

    async def _metrics_logged(self, row: RunRow, metrics: dict[str, dict[str, Any]]) -> None:
        rows = await self.metrics(row.rk)
        floor = row.floor
        columns = []
        for metric, column in metrics.items():
            steps = column["steps"]
            if not isinstance(steps, array):
                steps = steps_array(steps)
            values = column["values"]
            times = column["timestamps"]
            if not isinstance(values, array):
                values, times = array("d", values), array("d", times)
            if not steps:
                continue
            mrow = rows.get(metric)
            if mrow is None and metric in row.kinds:
                raise kind_error(metric, "metric", row.kinds[metric][0])
            bound = mrow.summary.last_step if mrow is not None else None
            if floor is not None and (bound is None or floor > bound):
                bound = floor
            if bound is not None and steps[0] <= bound:
                raise ValidationError(
                    f"metric {metric!r}: step {steps[0]} is not greater than the last step "
                    f"{bound} of run {row.run_id!r}; another writer may be logging to it",
                    key=metric,
                )
            columns.append((metric, mrow, steps, values, times))
        for metric, mrow, steps, values, times in columns:
            await self._append(row, metric, mrow, steps, values, times)

    async def _append(self, row: RunRow, metric: str, mrow: MetricRow | None,
                      steps: array[Any], values: array[float], times: array[float]) -> None:
        key = (row.rk, metric)
        chunk = None
        if mrow is not None and mrow.tail_epoch == row.epoch:
            chunk = self._tails.get(key)
            if chunk is None or chunk.epoch != row.epoch or chunk.seq != mrow.tail_seq:
                assert mrow.tail_seq is not None
                chunk = await self.io.load_chunk(row.rk, metric, row.epoch, mrow.tail_seq)
        if chunk is None:
            chunk = Chunk(row.epoch, 0)
        low = high = float("nan")
        i, n = 0, len(values)
        while i < n:
            if chunk.full:
                chunk = Chunk(row.epoch, chunk.seq + 1)
            i, lo, hi = chunk.extend(steps, values, times, i)
            low = lo if low != low or lo < low else low
            high = hi if high != high or hi > high else high
            self.changes.chunks[(row.rk, metric, chunk.epoch, chunk.seq)] = chunk
        self.keep_tail(key, chunk)
        added = Summary(n, values[-1], steps[-1], low, high)
        summary = combine(mrow.summary, added) if mrow is not None else added
        assert summary is not None
        if mrow is None:
            mrow = MetricRow(row.rk, metric, summary, chunk.epoch, chunk.seq)
        else:
            mrow.summary, mrow.tail_epoch, mrow.tail_seq = summary, chunk.epoch, chunk.seq
        self._set_metric(mrow)

    # Helpers -------------------------------------------------------------------------------

    def _set_metric(self, mrow: MetricRow) -> None:
        self._metrics.setdefault(mrow.rk, {})[mrow.metric] = mrow
        self.changes.metrics[(mrow.rk, mrow.metric)] = mrow
        self.changes.dropped_metrics.discard((mrow.rk, mrow.metric))

    def _set_segments(self, rk: int, metric: str, segs: list[Segment]) -> None:
        self._segments.setdefault(rk, {})[metric] = segs
        self.changes.segments[(rk, metric)] = segs

    async def _summarize(self, metric: str, segments: list[Segment]) -> Summary | None:
        """The summary of the given segments, from chunk summaries plus the chunk at each cap."""
        await self.save()  # the heads are read from the database, so unsaved chunks must land
        total: Summary | None = None
        for seg in segments:
            for head in await self.io.load_heads(seg.rk, metric, seg.epoch, seg.cap):
                if head.last_step <= seg.cap:
                    part: Summary | None = Summary(head.n, head.last_value, head.last_step,
                                                   head.vmin, head.vmax)
                else:
                    assert head.steps is not None and head.values is not None
                    steps = from_le(chr(head.steps[0]), memoryview(head.steps)[1:])
                    keep = bisect_right(steps, seg.cap)
                    part = summarize_points(steps[:keep], from_le("d", head.values)[:keep])
                total = combine(total, part)
        return total

