"""Adding to a run later — a leaderboard score, a tag, a config value — without rewriting
its history: edit_run leaves status, reason, end time and heartbeat as they were."""

from __future__ import annotations

import anyio
import pytest

from engine import Status
from engine.errors import ClosedError, RunNotFoundError, ValidationError
from tests.conftest import MakeTracker


class Diverged(RuntimeError):
    pass


async def test_a_score_added_to_a_failed_run_keeps_it_failed(make: MakeTracker) -> None:
    async with make() as tracker:
        with pytest.raises(Diverged):  # noqa: PT012 (the block is the training)
            async with tracker.start_run("r", config={"lr": 1.5}) as run:
                run.log_metrics({"loss": 0.5}, step=0)
                raise Diverged("loss is NaN")
        before = await tracker.get_run("r")
        async with tracker.edit_run("r") as run:
            run.log_metrics({"leaderboard/score": 0.91}, step=0)
            run.log_configs({"evaluated_by": "ci"})
            run.add_tags("scored")
        after = await tracker.get_run("r")
        types = [e.type async for e in tracker.events()]
    assert (after.status, after.status_reason) == (Status.FAILED, "Diverged: loss is NaN")
    assert after.ended_at == before.ended_at
    assert after.metrics["leaderboard/score"].last == 0.91
    assert after.metrics["loss"] == before.metrics["loss"]
    assert after.config == {"lr": 1.5, "evaluated_by": "ci"}
    assert after.tags == frozenset({"scored"})
    assert "RunResumed" not in types
    assert types[-1] == "TagsAdded"


async def test_an_edit_handle_follows_the_step_rule_and_closes(make: MakeTracker) -> None:
    async with make() as tracker:
        async with tracker.start_run("r") as run:
            run.log_metrics({"loss": 0.5}, step=10)
        async with tracker.edit_run("r") as edit:
            with pytest.raises(ValidationError):
                edit.log_metrics({"loss": 0.4}, step=10)
            edit.log_metrics({"loss": 0.3}, step=11)
        with pytest.raises(ClosedError):
            edit.log_metrics({"loss": 0.2}, step=12)
        series = await tracker.read_series("r", "loss")
        assert series.steps.tolist() == [10, 11]
        assert (await tracker.get_run("r")).status is Status.SUCCEEDED


async def test_editing_a_missing_or_deleted_run_is_refused(make: MakeTracker) -> None:
    async with make() as tracker:
        with pytest.raises(RunNotFoundError):
            async with tracker.edit_run("nope"):
                pass
        async with tracker.start_run("gone"):
            pass
        await tracker.delete_run("gone")
        with pytest.raises(RunNotFoundError):
            async with tracker.edit_run("gone"):
                pass


async def test_resume_still_reopens_a_run(make: MakeTracker) -> None:
    async with make() as tracker:
        with pytest.raises(Diverged):
            async with tracker.start_run("r"):
                raise Diverged("x")
        async with tracker.start_run("r", resume=True):
            pass
        assert (await tracker.get_run("r")).status is Status.SUCCEEDED


async def test_an_edit_adds_notes_files_and_text_and_records_nothing_of_its_own(
        make: MakeTracker) -> None:
    """What an edit records is what it was handed: no environment, source, output or system
    metrics of the process that edits, no heartbeat, no change of status."""
    async with make(heartbeat_interval=0.05) as tracker:
        async with tracker.start_run("r", capture_env=True, capture_source=True) as run:
            run.log_metrics({"loss": 0.5}, step=0)
        before = await tracker.get_run("r")
        start = [e.position async for e in tracker.events()][-1]
        async with tracker.edit_run("r") as edit:
            edit.set_notes("scored by the nightly evaluation")
            edit.log_files({"eval/report": b"accuracy 0.91"}, step=1)
            edit.log_text({"eval/summary": "fine"}, step=1)
            await edit.upload({"model/card.md": b"# Model card"})
            await anyio.sleep(0.2)  # a live run would have beaten a few times by now
        after = await tracker.get_run("r")
        added = [e.type async for e in tracker.events(start)]
        (report,) = await tracker.read_files("r", "eval/report")
        assert await tracker.read_file(report) == b"accuracy 0.91"
    assert after.notes == "scored by the nightly evaluation"
    assert (after.status, after.ended_at, after.env) == (before.status, before.ended_at,
                                                         before.env)
    assert set(after.files) == set(before.files) | {"model/card.md"}
    assert sorted(added) == sorted(["NotesSet", "FilesLogged", "FilesUploaded", "TextLogged"])
