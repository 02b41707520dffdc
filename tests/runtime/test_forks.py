"""Forks (docs/runs.md): what a child inherits from its parent, as it was when the fork was made,
and the child's past read back with ``get_run(as_of=)``."""

from __future__ import annotations

import pytest

import engine
from engine.errors import RunNotFoundError
from tests.conftest import MakeTracker


async def created_at(tracker: engine.Tracker, run_id: str) -> int:
    """The position of the run's RunCreated event."""
    async for event in tracker.events():
        if event.run_id == run_id and event.type == "RunCreated":
            return event.position
    raise AssertionError(f"{run_id} was never created")


async def test_a_fork_inherits_configs_and_tags_as_they_were_and_then_goes_its_own_way(
        make: MakeTracker) -> None:
    async with make() as tracker:
        async with tracker.start_run("parent", tags=("base", "gpu"),
                                     config={"lr": 0.1, "opt": {"name": "adam"}}) as parent:
            parent.log_configs({"seed": 1})
            parent.add_tags("tuned")
            await parent.flush()
            async with tracker.start_run("child", fork=("parent", 0), tags=("fork",),
                                         config={"lr": 0.01}) as child:
                parent.log_configs({"seed": 2, "extra": True})
                parent.remove_tags("gpu")
                parent.add_tags("parent-later")
                child.log_configs({"opt/name": "sgd"})
                child.remove_tags("base")
                child.add_tags("child-later")
        for _ in range(2):  # incrementally, then after a rebuild
            kid = await tracker.get_run("child")
            assert kid.config == {"lr": 0.01, "opt/name": "sgd", "seed": 1}
            assert kid.tags == {"gpu", "tuned", "fork", "child-later"}
            mother = await tracker.get_run("parent")
            assert mother.config == {"lr": 0.1, "opt/name": "adam", "seed": 2, "extra": True}
            assert mother.tags == {"base", "tuned", "parent-later"}
            await tracker.rebuild_projections()
        listed = {s.run_id: s for s in await tracker.list_runs(where="tags contains 'gpu'")}
        assert set(listed) == {"child"}


async def test_get_run_as_of_on_a_forked_child(make: MakeTracker) -> None:
    """The child's past comes from its own events and its ancestors' up to the fork: points
    the parent logs or rewinds later never show, at any position."""
    async with make() as tracker:
        async with tracker.start_run("root") as root:
            for step in range(3):
                root.log_metrics({"loss": 10.0 - step}, step=step)
            root.log_configs({"depth": 0})
        async with tracker.start_run("parent", fork=("root", 1), tags=("p",)) as parent:
            parent.log_metrics({"loss": 5.0}, step=2)
            parent.log_metrics({"loss": 4.0}, step=3)
        async with tracker.start_run("child", fork=("parent", 2)) as child:
            await child.flush()
            born = await created_at(tracker, "child")
            async with tracker.start_run("parent", resume=True, rewind_to=0) as parent:
                parent.log_metrics({"loss": -1.0}, step=1)  # rewinds the parent, not the child
            rewound = await tracker.get_run("parent")
            child.add_tags("c")
            child.log_metrics({"loss": 3.0}, step=3)
        end = (await tracker.get_run("child")).position

        with pytest.raises(RunNotFoundError, match="did not exist yet"):
            await tracker.get_run("child", as_of=born - 1)
        at_birth = await tracker.get_run("child", as_of=born)
        assert at_birth.fork is not None
        assert (at_birth.fork.run_id, at_birth.fork.step) == ("parent", 2)
        assert at_birth.tags == {"p"}
        assert at_birth.config == {"depth": 0}
        loss = at_birth.metrics["loss"]
        # root's steps 0 and 1 (10, 9), then parent's step 2 (5): up to the fork step only.
        assert (loss.count, loss.last_step, loss.last, loss.min, loss.max) == (3, 2, 5.0, 5.0,
                                                                               10.0)
        now = await tracker.get_run("child", as_of=end)
        assert now == await tracker.get_run("child")
        assert now.tags == {"p", "c"}
        assert (now.metrics["loss"].count, now.metrics["loss"].last) == (4, 3.0)
        assert rewound.metrics["loss"].count == 2  # the parent itself was rewound
        series = await tracker.read_series("child", "loss")
        assert series.steps.tolist() == [0, 1, 2, 3]
        assert series.values.tolist() == [10.0, 9.0, 5.0, 3.0]
