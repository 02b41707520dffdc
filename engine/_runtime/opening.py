"""Starting runs: creating them (with generated ids and names), resuming and rewinding."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine._core import events as ev
from engine._core.events import NewEvent
from engine._core.ids import run_id as new_run_id
from engine._core.ids import run_name
from engine._core.model import RunState
from engine._storage.contract import AppendRequest, Store
from engine.errors import RunExistsError, RunNotFoundError, ValidationError

from .run import Run
from .writer import Writer

__all__ = ["RunOpener", "created_payload"]


class RunOpener:
    """Appends a run's first events and hands back a live handle for it."""

    def __init__(self, store: Store, writer: Writer, clock: Callable[[], float],
                 promise: dict[str, Any]) -> None:
        self.store = store
        self.writer = writer
        self.clock = clock
        self.promise = promise  # the heartbeat promise every (re)start records
        self._numbers: dict[str, int] = {}  # last run ordinal handed out per project

    async def open(self, project: str, run_id: str | None, name: str | None,
                   experiment: str | None, fork: tuple[str, int | float] | None,
                   tags: list[str], config: dict[str, Any], resume: bool,
                   rewind_to: int | float | None) -> Run:
        """Create the run, or re-open it when ``resume`` and it exists (arguments checked).

        A new run with a generated id that is not a fork costs no commit before logging
        starts: nobody else can name it yet, so its RunCreated is buffered with whatever the
        run logs and committed with it (this tracker's reads wait for it; other processes
        see the run from that commit on, within ``flush_interval``). A run whose id was
        given, or a fork, is created at once, so that a taken id or a missing parent is
        refused here and every process can address the run as soon as its block is entered.
        """
        if run_id is not None and resume:
            return await self._resume_or_create(project, run_id, name, experiment, fork, tags,
                                                config, rewind_to)
        if run_id is not None or fork is not None:
            return await self._create_now(project, run_id, name, experiment, fork, tags,
                                          config)
        label = name or run_name(await self._number(project))
        creation = NewEvent(ev.RUN_CREATED, created_payload(label, experiment, tags, config, None)
                             | self.promise)
        return Run(self.writer, project, new_run_id(), label, last_steps={}, floor=None,
                   started_position=0, clock=self.clock, creation=creation)

    async def _resume_or_create(self, project: str, run_id: str, name: str | None,
                                experiment: str | None, fork: tuple[str, int | float] | None,
                                tags: list[str], config: dict[str, Any],
                                rewind_to: int | float | None) -> Run:
        """Resume the run, or create it when it does not exist — atomically as far as the
        caller can tell: a process that loses the race to create it resumes it instead."""
        for _ in range(3):
            state = await self.store.get_run(project, run_id)
            if state is not None:
                return await self._resume(state, experiment, fork, tags, config, rewind_to)
            if rewind_to is not None:
                raise RunNotFoundError(f"cannot rewind run {run_id!r}: it does not exist in "
                                       f"project {project!r}")
            try:
                return await self._create_now(project, run_id, name, experiment, fork, tags,
                                              config)
            except RunExistsError:
                continue  # created by another process meanwhile: resume it
        raise RunExistsError(f"run {run_id!r} in project {project!r} was created and "
                             "deleted or changed concurrently; try again")

    async def _create_now(self, project: str, run_id: str | None, name: str | None,
                          experiment: str | None, fork: tuple[str, int | float] | None,
                          tags: list[str], config: dict[str, Any]) -> Run:
        """Create the run with a commit of its own, then hand back its handle."""
        for _ in range(8):
            rid = run_id or new_run_id()
            label = name or run_name(await self._number(project))
            data = created_payload(label, experiment, tags, config, fork) | self.promise
            try:
                records = await self.writer.submit(
                    AppendRequest(project, rid, [NewEvent(ev.RUN_CREATED, data)]))
            except RunExistsError:
                if run_id is not None:
                    raise _taken(project, run_id) from None
                continue  # a generated id collided: draw another
            if fork is None:  # a new run has no points yet and no floor: nothing to read
                return Run(self.writer, project, rid, label, last_steps={}, floor=None,
                           started_position=records[0].position, clock=self.clock)
            return await self._handle(project, rid, label, records[0].position)
        raise RunExistsError("could not find a free run id")  # pragma: no cover

    async def create_job(self, project: str, run_id: str | None, name: str | None,
                         experiment: str | None, tags: list[str], config: dict[str, Any],
                         spec: dict[str, Any]) -> str:
        """Create a run ``queued`` with a job's spec; returns its id. No promise: nothing
        beats for a job until a worker claims it."""
        for _ in range(8):
            rid = run_id or new_run_id()
            label = name or run_name(await self._number(project))
            data = created_payload(label, experiment, tags, config, None) | {"job": spec}
            try:
                await self.writer.submit(
                    AppendRequest(project, rid, [NewEvent(ev.RUN_CREATED, data)]))
            except RunExistsError:
                if run_id is not None:
                    raise RunExistsError(f"run {run_id!r} already exists in project "
                                         f"{project!r}") from None
                continue
            return rid
        raise RunExistsError("could not find a free run id")  # pragma: no cover

    async def edit(self, project: str, run_id: str) -> Run:
        """A handle on an existing run that logs without reopening it (no RunResumed).

        :raises RunNotFoundError: if there is no such run, or it was deleted.
        """
        state = await self.store.get_run(project, run_id)
        if state is None or state.deleted:
            raise RunNotFoundError(f"no run {run_id!r} in project {project!r}")
        return await self._handle(project, run_id, state.name, state.position)

    async def _number(self, project: str) -> int:
        """The next run's ordinal in the project: the project's run count, read once per
        tracker, then counted here (other processes may pick the same number: names are
        labels, not keys)."""
        last = self._numbers.get(project)
        if last is None:
            count = await self.store.run_count(project)
            last = self._numbers.get(project, count)  # a run started while this one read
        self._numbers[project] = last + 1
        return last + 1

    async def _resume(self, state: RunState, experiment: str | None,
                      fork: tuple[str, int | float] | None, tags: list[str],
                      config: dict[str, Any], rewind_to: int | float | None) -> Run:
        if state.deleted:
            raise RunNotFoundError(f"run {state.run_id!r} was deleted and cannot be resumed")
        if experiment is not None and experiment != state.experiment:
            raise ValidationError(
                f"run {state.run_id!r} belongs to experiment {state.experiment!r}, "
                f"not {experiment!r}", key="experiment")
        if fork is not None and (state.fork is None or fork != (state.fork.run_id,
                                                                 state.fork.step)):
            raise ValidationError(f"run {state.run_id!r} was not forked from {fork}", key="fork")
        events = [NewEvent(ev.RUN_RESUMED, {"rewind_to": rewind_to} | self.promise)]
        if config:
            events.append(NewEvent(ev.CONFIGS_LOGGED, {"config": config}))
        if tags:
            events.append(NewEvent(ev.TAGS_ADDED, {"tags": tags}))
        records = await self.writer.submit(AppendRequest(state.project, state.run_id, events))
        return await self._handle(state.project, state.run_id, state.name, records[0].position)

    async def _handle(self, project: str, run_id: str, name: str, started: int) -> Run:
        state = await self.store.get_run(project, run_id)
        control = (await self.store.controls([(project, run_id)])).get((project, run_id))
        assert state is not None
        assert control is not None
        return Run(self.writer, project, run_id, name,
                   last_steps={m: s.last_step for m, s in state.metrics.items()},
                   floor=control.floor, started_position=started, clock=self.clock,
                   kinds=control.kinds)


def created_payload(name: str, experiment: str | None, tags: list[str],
                    config: dict[str, Any],
                    fork: tuple[str, int | float] | None) -> dict[str, Any]:
    """The payload of a RunCreated event."""
    return {"name": name, "experiment": experiment, "tags": tags, "config": config,
            "fork": None if fork is None else {"run_id": fork[0], "step": fork[1]}}


def _taken(project: str, run_id: str) -> RunExistsError:
    return RunExistsError(f"run {run_id!r} already exists in project {project!r}; pass "
                          "resume=True to re-open it")
