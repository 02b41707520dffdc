"""A state machine drives random runs, logs, forks, rewinds, resumes, deletes and rebuilds,
and jobs enqueued, claimed by workers, ended and handed back.

It keeps its own record of what it logged — per run, each metric's effective points (forks
inherit, rewinds cut), its tags and its config — so a point lost before it reached the log is
caught, not just a projection that disagrees with the log. After every step it checks, for
every run, metric, experiment and lineage, that reads equal that record and the pure fold of
the log as read back, that ``list_runs`` equals the fold, and that a fresh rebuild of every
projection equals the incrementally maintained tables row for row; a rule compares
``get_run(as_of=)`` with the fold at random past positions, and another has a second tracker
on the same database read the runs table, as another process would, before the first one has
saved its projections' rows.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, precondition, rule

from engine import Event, Histogram, Series
from engine._core import content as ct
from engine._core.fold import Fold
from engine.errors import RunNotFoundError, ValidationError
from engine.sync import SyncRun, SyncRunContext, SyncTracker
from tests.conftest import POSTGRES_URL, require_postgres
from tests.pg import fresh_schema_url
from tests.strategies import floats, same, same_state, state_diff

METRICS = ["loss", "acc", "val/loss", "odd name"]
TEXTS = ["eval/sample", "logs/stdout"]
HISTOGRAM = "grad/l1"
FILES = "eval/pred"
ENTRY_KEYS = [*TEXTS, HISTOGRAM, FILES]
EXPERIMENTS = [None, "e1", "e2"]
CHARS = st.characters(codec="utf-8", exclude_characters="\x00")  # valid text: no lone surrogate

@dataclass
class Logged:
    """What the machine itself logged into one run, as reads must show it: per metric, its
    effective steps and values (forks inherit, rewinds cut), and the run's tags and config."""

    series: dict[str, tuple[list[int], array[float]]] = field(default_factory=dict)
    tags: set[str] = field(default_factory=set)
    config: dict[str, Any] = field(default_factory=dict)
    entries: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)
    notes: str = ""
    uploads: dict[str, bytes] = field(default_factory=dict)

    def cut_entries(self, step: int) -> dict[str, list[tuple[int, Any]]]:
        """Each entry key's entries up to ``step``."""
        kept = {key: [e for e in rows if e[0] <= step] for key, rows in self.entries.items()}
        return {key: rows for key, rows in kept.items() if rows}

    def add(self, metric: str, step: int, value: float) -> None:
        steps, values = self.series.setdefault(metric, ([], array("d")))
        steps.append(step)
        values.append(value)

    def cut(self, step: int) -> dict[str, tuple[list[int], array[float]]]:
        """Each metric's points up to ``step`` (metrics left empty dropped)."""
        kept = {}
        for metric, (steps, values) in self.series.items():
            keep = bisect_right(steps, step)
            if keep:
                kept[metric] = (steps[:keep], values[:keep])
        return kept

    def shows(self, metric: str, series: Series) -> bool:
        """Whether ``series`` holds exactly the points logged (values bit for bit)."""
        steps, values = self.series.get(metric, ([], array("d")))
        return series.steps.tolist() == steps and series.values.tobytes() == values.tobytes()


class TrackerMachine(RuleBasedStateMachine):
    """The model is the fold of the log; the system under test is every projection."""

    make_url: Callable[[], str] = staticmethod(lambda: ":memory:")

    runs = Bundle("runs")
    jobs = Bundle("jobs")

    def __init__(self) -> None:
        super().__init__()
        self.url = self.make_url()
        self.tracker = SyncTracker(self.url, durability="normal", flush_interval=0.002)
        self.tracker.__enter__()
        self.other: SyncTracker | None = None
        self.fold = Fold()
        self.seen = 0
        self.count = 0
        self.live: dict[str, tuple[SyncRunContext, SyncRun]] = {}
        self.last: dict[str, dict[str, int]] = {}
        self.floor: dict[str, int] = {}
        self.deleted: set[str] = set()
        self.logged: dict[str, Logged] = {}
        self.history: list[Event] = []  # the project's log as read so far

    def teardown(self) -> None:
        for context, _ in self.live.values():
            context.__exit__(None, None, None)
        self.tracker.close()
        if self.other is not None:
            self.other.close()

    # Helpers -------------------------------------------------------------------------------

    def _next_step(self, run_id: str, metric: str, gap: int) -> int:
        return max(self.last[run_id].get(metric, -1), self.floor[run_id]) + gap

    def _enter(self, run_id: str, **options: Any) -> None:
        context = self.tracker.start_run(run_id, **options)
        self.live[run_id] = (context, context.__enter__())

    def _top(self, run_id: str) -> int:
        return max([self.floor[run_id], *self.last[run_id].values()])

    # Rules ---------------------------------------------------------------------------------

    @rule(target=runs, experiment=st.sampled_from(EXPERIMENTS),
          tags=st.lists(st.sampled_from(["a", "b", "c"]), max_size=2),
          config=st.dictionaries(st.sampled_from(["lr", "opt/name", "seed"]),
                                 st.one_of(st.integers(-5, 5), floats, st.text(
                                     CHARS, max_size=3)),
                                 max_size=2))
    def start(self, experiment: str | None, tags: list[str], config: dict[str, Any]) -> str:
        self.count += 1
        run_id = f"r{self.count}"
        self._enter(run_id, experiment=experiment, tags=tags, config=config)
        self.last[run_id], self.floor[run_id] = {}, -1
        self.logged[run_id] = Logged(tags=set(tags), config=dict(config))
        return run_id

    @rule(run_id=runs, metric=st.sampled_from(METRICS), gap=st.integers(1, 3),
          values=st.lists(floats, min_size=1, max_size=6))
    def log(self, run_id: str, metric: str, gap: int, values: list[float]) -> None:
        if run_id not in self.live:
            return
        run = self.live[run_id][1]
        other = "acc" if metric != "acc" else "loss"
        step = max(self._next_step(run_id, metric, gap), self._next_step(run_id, other, gap))
        for value in values:
            run.log_metrics({metric: value, other: -value}, step=step)
            self.last[run_id][metric] = self.last[run_id][other] = step
            self.logged[run_id].add(metric, step, value)
            self.logged[run_id].add(other, step, -value)
            step += gap

    @rule(run_id=runs, count=st.integers(2_000, 5_000), nan_every=st.integers(0, 50))
    def log_many(self, run_id: str, count: int, nan_every: int) -> None:
        """Enough points to cross chunk boundaries (4,096 points each)."""
        if run_id not in self.live:
            return
        run = self.live[run_id][1]
        start = self._next_step(run_id, "loss", 1)
        for step in range(start, start + count):
            value = math.nan if nan_every and step % nan_every == 0 else math.sin(step) * step
            run.log_metrics({"loss": value}, step=step)
            self.logged[run_id].add("loss", step, value)
        self.last[run_id]["loss"] = start + count - 1

    @rule(run_id=runs, metric=st.sampled_from(METRICS), back=st.integers(0, 3))
    def log_a_step_that_is_not_new(self, run_id: str, metric: str, back: int) -> None:
        if run_id not in self.live or metric not in self.last[run_id]:
            return
        step = self.last[run_id][metric] - back
        with pytest.raises(ValidationError, match="step"):
            self.live[run_id][1].log_metrics({"acc": 0.5, metric: 1.0, "loss": 2.0}, step=step)

    @rule(run_id=runs, tag=st.sampled_from(["a", "b", "c"]), add=st.booleans(),
          value=st.integers(0, 3))
    def tags_and_configs(self, run_id: str, tag: str, add: bool, value: int) -> None:
        if run_id not in self.live:
            return
        run = self.live[run_id][1]
        run.add_tags(tag) if add else run.remove_tags(tag)
        run.log_configs({"seed": value, "nested": {"tag": tag}})
        logged = self.logged[run_id]
        logged.tags.add(tag) if add else logged.tags.discard(tag)
        logged.config.update({"seed": value, "nested/tag": tag})

    @rule(run_id=runs, key=st.sampled_from(TEXTS), gap=st.integers(1, 3),
          values=st.lists(st.text(CHARS, max_size=5),
                          min_size=1, max_size=4))
    def log_text(self, run_id: str, key: str, gap: int, values: list[str]) -> None:
        if run_id not in self.live:
            return
        run = self.live[run_id][1]
        step = self._next_step(run_id, key, gap)
        for value in values:
            run.log_text({key: value}, step=step)
            self.last[run_id][key] = step
            self.logged[run_id].entries.setdefault(key, []).append((step, value))
            step += gap

    @rule(run_id=runs, gap=st.integers(1, 3), counts=st.lists(st.integers(0, 9), min_size=1,
                                                              max_size=4))
    def log_histogram(self, run_id: str, gap: int, counts: list[int]) -> None:
        if run_id not in self.live:
            return
        step = self._next_step(run_id, HISTOGRAM, gap)
        histogram = Histogram(list(range(len(counts) + 1)), counts)
        self.live[run_id][1].log({HISTOGRAM: histogram}, step=step)
        self.last[run_id][HISTOGRAM] = step
        self.logged[run_id].entries.setdefault(HISTOGRAM, []).append((step, histogram))

    @rule(run_id=runs, gap=st.integers(1, 3), data=st.binary(max_size=40))
    def log_file(self, run_id: str, gap: int, data: bytes) -> None:
        if run_id not in self.live:
            return
        step = self._next_step(run_id, FILES, gap)
        self.live[run_id][1].log_files({FILES: data}, step=step)
        self.last[run_id][FILES] = step
        self.logged[run_id].entries.setdefault(FILES, []).append((step, data))

    @rule(run_id=runs, key=st.sampled_from(["model/weights", "data/split"]),
          data=st.binary(max_size=40))
    def upload(self, run_id: str, key: str, data: bytes) -> None:
        if run_id not in self.live:
            return
        self.live[run_id][1].upload({key: data})
        self.logged[run_id].uploads[key] = data

    @rule(run_id=runs, notes=st.text(CHARS, max_size=8))
    def set_notes(self, run_id: str, notes: str) -> None:
        if run_id not in self.live:
            return
        self.live[run_id][1].set_notes(notes)
        self.logged[run_id].notes = notes

    @rule(run_id=runs, metric=st.sampled_from(METRICS), text=st.sampled_from(TEXTS))
    def log_another_kind_under_a_key(self, run_id: str, metric: str, text: str) -> None:
        """A key keeps its kind: a text under a metric's key, or a metric under a text's,
        is refused whole."""
        if run_id not in self.live:
            return
        run = self.live[run_id][1]
        if metric in self.logged[run_id].series:
            with pytest.raises(ValidationError, match="holds a metric"):
                run.log({metric: "text", HISTOGRAM + "/other": "x"},
                        step=self._top(run_id) + 1)
        if text in self.logged[run_id].entries:
            with pytest.raises(ValidationError, match="holds a text"):
                run.log_metrics({text: 1.0}, step=self._top(run_id) + 1)

    @rule(run_id=runs, fail=st.booleans())
    def finish(self, run_id: str, fail: bool) -> None:
        if run_id not in self.live:
            return
        context, _ = self.live.pop(run_id)
        if fail:
            error = ValueError("boom")
            context.__exit__(ValueError, error, None)
        else:
            context.__exit__(None, None, None)

    @rule(target=runs, parent=runs, data=st.data())
    def fork(self, parent: str, data: st.DataObject) -> str:
        step = data.draw(st.integers(0, self._top(parent) + 2), label="fork step")
        self.count += 1
        run_id = f"r{self.count}"
        if parent in self.deleted:
            with pytest.raises(RunNotFoundError):
                self._enter(run_id, fork=(parent, step))
            return parent
        self._enter(run_id, fork=(parent, step),
                    experiment=data.draw(st.sampled_from(EXPERIMENTS), label="experiment"))
        self.last[run_id], self.floor[run_id] = {}, step
        source = self.logged[parent]
        self.logged[run_id] = Logged(source.cut(step), set(source.tags), dict(source.config),
                                     source.cut_entries(step), source.notes,
                                     dict(source.uploads))
        return run_id

    @precondition(lambda self: any(r not in self.live for r in self.last))
    @rule(data=st.data(), rewind=st.booleans())
    def resume(self, data: st.DataObject, rewind: bool) -> None:
        run_id = data.draw(st.sampled_from(sorted(r for r in self.last if r not in self.live)))
        step = data.draw(st.integers(0, self._top(run_id) + 1), label="rewind to") \
            if rewind else None
        if run_id in self.deleted:
            with pytest.raises(RunNotFoundError):
                self._enter(run_id, resume=True, rewind_to=step)
            return
        self._enter(run_id, resume=True, rewind_to=step)
        if step is not None:
            self.floor[run_id] = step
            self.logged[run_id].series = self.logged[run_id].cut(step)
            self.logged[run_id].entries = self.logged[run_id].cut_entries(step)

    # A few jobs are enough to meet every rule; each run costs every later step its checks.
    @precondition(lambda self: len(self.logged) - len(self.last) < 3)
    @rule(target=jobs, experiment=st.sampled_from(EXPERIMENTS),
          tags=st.lists(st.sampled_from(["a", "b", "c"]), max_size=2),
          attempts=st.integers(1, 2))
    def enqueue(self, experiment: str | None, tags: list[str], attempts: int) -> str:
        self.count += 1
        run_id = f"r{self.count}"
        self.tracker.enqueue(["train"], run_id=run_id, experiment=experiment, tags=tags,
                             max_attempts=attempts)
        self.logged[run_id] = Logged(tags=set(tags))
        return run_id

    @rule(worker=st.sampled_from(["gpu-1", "gpu-2", "Box 3"]),
          queues=st.sampled_from(["default", "other"]))
    def claim(self, worker: str, queues: str) -> None:
        job = self.tracker.claim_job(queues, worker=worker)
        assert job is None or job.worker == worker

    @rule(run_id=jobs, status=st.sampled_from(["succeeded", "failed", "queued", "crashed"]))
    def end_job(self, run_id: str, status: str) -> None:
        self.tracker.end_job(run_id, status, None if status == "succeeded" else "exit code 1")

    @rule(run_id=runs)
    def delete(self, run_id: str) -> None:
        self.tracker.delete_run(run_id)
        self.deleted.add(run_id)

    @rule()
    def rebuild(self) -> None:
        self.tracker.rebuild_projections()

    @precondition(lambda self: self.history)
    @rule(data=st.data())
    def read_as_of(self, data: st.DataObject) -> None:
        """A past state comes from the log alone: it equals the fold of the log up to there."""
        # How many events a run's logging became depends on commit timing, so draw a share
        # of the log rather than from its positions (hypothesis replays draws exactly).
        share = data.draw(st.integers(0, 999), label="share of the log")
        position = self.history[share * len(self.history) // 1000].position
        run_id = data.draw(st.sampled_from(sorted(self.logged)), label="run")
        past = Fold().apply_all(e for e in self.history if e.position <= position)
        project = self.tracker.project
        if not past.has_run(project, run_id):
            with pytest.raises(RunNotFoundError):
                self.tracker.get_run(run_id, as_of=position)
            return
        expected = past.run_state(project, run_id)
        actual = self.tracker.get_run(run_id, as_of=position)
        assert same_state(actual, expected), state_diff(actual, expected)

    # The invariant -------------------------------------------------------------------------

    def _fold_the_log(self) -> None:
        for _, run in self.live.values():
            run.flush()
        for event in self.tracker.events(self.seen):
            self.fold.apply(event)
            self.history.append(event)
            self.seen = event.position

    @precondition(lambda self: self.url != ":memory:")
    @rule()
    def another_process_reads(self) -> None:
        """A second tracker on the same database — as another process would be — reads
        everything the first one committed, whether or not that one saved its projections'
        rows yet; and the first one goes on writing after it."""
        self._fold_the_log()
        if self.other is None:
            self.other = SyncTracker(self.url)
            self.other.__enter__()
        listed = self.other.list_runs(include_deleted=True)
        expected = [self.fold.run_state(p, r) for p, r in self.fold.runs]
        assert [r.run_id for r in listed] == [r.run_id for r in expected]
        for got, want in zip(listed, expected, strict=True):
            assert same_state(got, want), state_diff(got, want)

    @invariant()
    def projections_equal_the_fold_and_a_rebuild(self) -> None:
        self._fold_the_log()
        project = self.tracker.project
        assert {r for _, r in self.fold.runs} == set(self.logged)
        for (proj, run_id), folded in self.fold.runs.items():
            expected = self.fold.run_state(proj, run_id)
            actual = self.tracker.get_run(run_id)
            assert same_state(actual, expected), state_diff(actual, expected)
            logged = self.logged[run_id]
            assert actual.tags == logged.tags, run_id
            assert same(actual.config, logged.config), (run_id, actual.config, logged.config)
            assert set(actual.metrics) == set(logged.series), run_id
            if run_id not in self.last:  # a job: nothing logs into it here, only its state moves
                continue
            for metric in folded.series.keys() | set(METRICS):
                series = self.tracker.read_series(run_id, metric)
                assert series.same_as(self.fold.series(proj, run_id, metric)), (run_id, metric)
                assert logged.shows(metric, series), (run_id, metric)
            assert self.tracker.lineage(run_id) == self.fold.lineage(project, run_id)
            assert actual.notes == logged.notes, run_id
            for key in TEXTS:
                text = self.tracker.read_text(run_id, key)
                want = self.fold.entries(proj, run_id, key)
                assert list(zip(text.steps, text.values, strict=True)) == \
                    [(s, v) for s, _, v in want] == logged.entries.get(key, []), (run_id, key)
                assert text.timestamps == [t for _, t, _ in want]
                tail = self.tracker.read_text(run_id, key, tail=2)
                assert tail.steps == text.steps[-2:], (run_id, key)
            histograms = self.tracker.read_histograms(run_id, HISTOGRAM)
            assert [(e.step, e.value) for e in histograms] == \
                logged.entries.get(HISTOGRAM, []), run_id
            files = self.tracker.read_files(run_id, FILES)
            assert [(r.step, r.digest) for r in files] == [
                (s, ct.ref_of(FILES, s, t, v).digest)
                for s, t, v in self.fold.entries(proj, run_id, FILES)], run_id
            assert [(r.step, self.tracker.read_file(r)) for r in files] == \
                logged.entries.get(FILES, []), run_id
            assert {k: self.tracker.read_file(r) for k, r in actual.files.items()} == \
                logged.uploads, run_id
        for include_deleted in (False, True):
            listed = self.tracker.list_runs(include_deleted=include_deleted)
            expected_runs = [self.fold.run_state(p, r) for (p, r), run in self.fold.runs.items()
                             if include_deleted or not run.deleted]
            assert [r.run_id for r in listed] == [r.run_id for r in expected_runs]
            for got, want in zip(listed, expected_runs, strict=True):
                assert same_state(got, want), state_diff(got, want)
        for name in EXPERIMENTS[1:]:
            assert self.tracker.get_experiment(name) == self.fold.experiment(project, name)
        store = self.tracker._tracker._store
        assert store is not None
        assert self.tracker._portal.call(store.verify_rebuild) == []


def machine_test(make_url: Callable[[], str], examples: int) -> type:
    machine = type("Machine", (TrackerMachine,), {"make_url": staticmethod(make_url)})
    case = machine.TestCase
    case.settings = settings(max_examples=examples, stateful_step_count=20, deadline=None)
    return case


TestMachineInMemory = machine_test(lambda: ":memory:", examples=40)


@pytest.fixture(scope="module")
def _files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("machine")


_counter = iter(range(10**9))
TestMachineOnFile = machine_test(
    lambda: str(Path(__import__("tempfile").mkdtemp()) / f"m{next(_counter)}.db"), examples=10)


def _postgres_url() -> str:
    require_postgres()
    return fresh_schema_url(POSTGRES_URL)


TestMachineOnPostgres = pytest.mark.postgres(machine_test(_postgres_url, examples=10))
