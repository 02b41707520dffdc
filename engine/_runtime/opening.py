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

__all__ = ["RunOpener"]


class RunOpener:
    """Appends a run's first events and hands back a live handle for it."""

    def __init__(self, store: Store, writer: Writer, clock: Callable[[], float]) -> None:
        self.store = store
        self.writer = writer
        self.clock = clock
        self._numbers: dict[str, int] = {}  # last run ordinal handed out per project

    async def open(self, project: str, run_id: str | None, name: str | None,
                    experiment: str | None, fork: tuple[str, int | float] | None,
                    tags: list[str], config: dict[str, Any], resume: bool,
                    rewind_to: int | float | None) -> Run:
        """Create the run, or re-open it when ``resume`` and it exists (arguments checked)."""
        if run_id is not None and resume:
            state = await self.store.get_run(project, run_id)
            if state is not None:
                return await self._resume(state, experiment, fork, tags, config, rewind_to)
            if rewind_to is not None:
                raise RunNotFoundError(f"cannot rewind run {run_id!r}: it does not exist in "
                                       f"project {project!r}")
        for _ in range(8):
            rid = run_id or new_run_id()
            label = name or run_name(await self._number(project))
            data = {"name": label, "experiment": experiment, "tags": tags, "config": config,
                    "fork": None if fork is None else {"run_id": fork[0], "step": fork[1]}}
            try:
                records = await self.writer.submit(
                    AppendRequest(project, rid, [NewEvent(ev.RUN_CREATED, data)]))
            except RunExistsError:
                if run_id is not None:
                    raise RunExistsError(
                        f"run {run_id!r} already exists in project {project!r}; pass "
                        "resume=True to re-open it") from None
                continue  # a generated id collided: draw another
            return await self._handle(project, rid, label, records[0].position)
        raise RunExistsError("could not find a free run id")  # pragma: no cover

    async def _number(self, project: str) -> int:
        """The next run's ordinal in the project, never repeated by this tracker even when
        runs start concurrently (other processes may still pick the same number)."""
        number = max(await self.store.run_count(project) + 1,
                     self._numbers.get(project, 0) + 1)
        self._numbers[project] = number
        return number

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
        events = [NewEvent(ev.RUN_RESUMED, {"rewind_to": rewind_to})]
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
                   floor=control.floor, started_position=started, clock=self.clock)
