"""Notes and text series: set, logged, read back (``tail``), inherited by forks as they were
at the fork, cut by rewinds, queried, kept by a rebuild, and refused whole when bad."""

from __future__ import annotations

import pytest

import engine
from engine.errors import ValidationError
from tests.conftest import MakeTracker


async def test_notes_are_replaced_whole_and_queried_by_substring(make: MakeTracker) -> None:
    async with make() as tracker:
        async with tracker.start_run("a") as run:
            run.set_notes("first try")
            run.set_notes("baseline with warmup")
        async with tracker.start_run("b") as run:
            run.set_notes("no warm start")
        async with tracker.start_run("c"):
            pass
        for _ in range(2):  # live, then after a rebuild
            assert (await tracker.get_run("a")).notes == "baseline with warmup"
            assert (await tracker.get_run("c")).notes == ""
            found = await tracker.list_runs(where="notes contains 'warmup'")
            assert [r.run_id for r in found] == ["a"]
            found = await tracker.list_runs(where="notes = ''")
            assert [r.run_id for r in found] == ["c"]
            await tracker.rebuild_projections()


async def test_text_reads_back_in_step_order_and_tail_gives_the_last(make: MakeTracker) -> None:
    async with make() as tracker:
        async with tracker.start_run("r") as run:
            for step in range(10):
                run.log_text({"eval/sample": f"line {step}"}, step=step * 2)
            run.log_text({"other": "x"})  # no step: the key's next, 0 first
            run.log_text({"other": "y"})
        text = await tracker.read_text("r", "eval/sample")
        assert text.steps == list(range(0, 20, 2))
        assert text.values == [f"line {i}" for i in range(10)]
        assert len(text.timestamps) == 10
        tail = await tracker.read_text("r", "eval/sample", tail=3)
        assert tail.values == ["line 7", "line 8", "line 9"]
        assert (await tracker.read_text("r", "other")).steps == [0, 1]
        assert len(await tracker.read_text("r", "never")) == 0


async def test_a_fork_sees_its_parents_text_up_to_the_fork_step_as_it_was(
        make: MakeTracker) -> None:
    async with make() as tracker:
        async with tracker.start_run("parent") as parent:
            parent.set_notes("parent notes")
            parent.log_text({"t": "p1"}, step=1)
            await parent.flush()
            async with tracker.start_run("child", fork=("parent", 5)) as child:
                # The parent goes on below the fork step after the fork: the child must not
                # see it, however the projections keep the parent's entries.
                parent.log_text({"t": "p3"}, step=3)
                parent.set_notes("changed later")
                child.log_text({"t": "c6"}, step=6)
                with pytest.raises(ValidationError, match="step 5"):
                    child.log_text({"t": "too early"}, step=5)
        for _ in range(2):
            child_text = await tracker.read_text("child", "t")
            assert list(zip(child_text.steps, child_text.values, strict=True)) == [
                (1, "p1"), (6, "c6")]
            assert (await tracker.read_text("parent", "t")).values == ["p1", "p3"]
            assert (await tracker.get_run("child")).notes == "parent notes"
            await tracker.rebuild_projections()


async def test_a_rewind_cuts_text_after_its_step_and_as_of_shows_the_past(
        make: MakeTracker) -> None:
    async with make() as tracker:
        async with tracker.start_run("r") as run:
            for step in range(5):
                run.log_text({"t": str(step)}, step=step)
        head = (await tracker.get_run("r")).position
        async with tracker.start_run("r", resume=True, rewind_to=2) as run:
            run.log_text({"t": "again 3"}, step=3)
        assert (await tracker.read_text("r", "t")).values == ["0", "1", "2", "again 3"]
        assert (await tracker.read_text("r", "t", as_of=head)).values == ["0", "1", "2", "3", "4"]
        assert (await tracker.read_text("r", "t", tail=2)).values == ["2", "again 3"]


async def test_a_key_keeps_one_kind_in_a_run_and_its_forks(make: MakeTracker) -> None:
    async with make() as tracker:
        async with tracker.start_run("r") as run:
            run.log_metrics({"loss": 1.0}, step=0)
            run.log_text({"sample": "x"}, step=0)
            with pytest.raises(ValidationError, match="'loss' holds a metric"):
                run.log_text({"loss": "text"}, step=1)
            with pytest.raises(ValidationError, match="'sample' holds a text"):
                run.log_metrics({"sample": 1.0}, step=1)
            with pytest.raises(ValidationError, match="'sample' holds a text"):
                run.log({"ok": 2.0, "sample": engine.Histogram([0, 1], [1])}, step=1)
        async with tracker.start_run("kid", fork=("r", 0)) as kid:
            with pytest.raises(ValidationError, match="'sample' holds a text"):
                kid.log_metrics({"sample": 1.0}, step=1)
        # Nothing of the refused calls was written.
        state = await tracker.get_run("r")
        assert set(state.metrics) == {"loss"}
        assert (await tracker.read_text("r", "sample")).values == ["x"]
        with pytest.raises(ValidationError, match="holds a text"):
            await tracker.read_histograms("r", "sample")


@pytest.mark.parametrize(("call", "match"), [
    (lambda run: run.log_text({"t": "x" * (2**20 + 1)}), "1 MiB"),
    (lambda run: run.log_text({"t": "é" * (2**19 + 1)}), "1 MiB"),
    (lambda run: run.log_text({"t": 3}), "not a str"),
    (lambda run: run.log_text({"t": "a\x00b"}), "NUL"),
    (lambda run: run.log_text({"": "x"}), "empty"),
    (lambda run: run.set_notes(None), "not a str"),
    (lambda run: run.log_text({"t": "late", "u": "ok"}, step=-1), "step"),
])
async def test_bad_text_is_refused_naming_the_key_and_nothing_is_written(
        make: MakeTracker, call: object, match: str) -> None:
    async with make() as tracker:
        async with tracker.start_run("r") as run:
            with pytest.raises(ValidationError, match=match):
                call(run)  # type: ignore[operator]
        events = [e.type async for e in tracker.events()]
        assert events == ["RunCreated", "StatusChanged"]


async def test_subscribers_receive_text_and_notes_events(make: MakeTracker) -> None:
    async with make() as tracker:
        async with tracker.start_run("r") as run:
            run.set_notes("n")
            run.log_text({"t": "hello"}, step=0)
        seen = []
        async for event in tracker.subscribe(runs=["r"], from_position=0):
            seen.append((event.type, dict(event.data)))
            if event.type == "TextLogged":
                break
        assert ("NotesSet", {"notes": "n"}) in seen
        assert seen[-1][1]["text"]["t"]["values"] == ["hello"]
