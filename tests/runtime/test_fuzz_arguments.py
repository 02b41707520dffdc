"""Hypothesis throws anything at the public API's arguments: every call is either taken or
refused with a ``ValidationError`` — never another exception from deep inside — and a refused
call writes nothing (the run's version, configs, tags and metrics are as they were)."""

from __future__ import annotations

import math
from datetime import UTC
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import engine
from engine.errors import ValidationError

TEXT = st.text(max_size=12) | st.sampled_from(
    ["", "a/b", "/x", "a//b", "\x00", "\x1b[2J", "\ud800", "é" * 300, "x" * 1_100,
     "'; DROP TABLE events; --", "../../etc/passwd", "metrics.loss"])
SCALARS = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats()
           | TEXT | st.binary(max_size=4)
           | st.datetimes(timezones=st.just(UTC) | st.none())
           | st.sampled_from([np.float32(0.5), np.int64(3), np.bool_(True), np.array(2.0),
                              np.array([1.0, 2.0]), np.float16("nan"), object(), math.inf,
                              complex(1, 2), {1, 2}]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.tuples(inner, inner)
                      | st.dictionaries(TEXT | st.integers(), inner, max_size=3),
                      max_leaves=8)
MAPPINGS = st.dictionaries(TEXT | st.integers() | st.none(), VALUES, max_size=4) | VALUES
STEPS = st.none() | st.integers(-5, 2**64) | st.floats() | st.booleans() | TEXT | st.just(
    np.int64(7))

FUZZ = settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                         HealthCheck.too_slow])


def snapshot(tracker: engine.sync.SyncTracker, run_id: str) -> tuple[Any, ...]:
    state = tracker.get_run(run_id)
    return (state.version, repr(state.config), sorted(state.tags),
            {k: (m.count, m.last_step) for k, m in state.metrics.items()})


@pytest.mark.slow
def test_logging_calls_take_or_refuse_anything(tmp_path: Path) -> None:
    taken: set[str] = set()
    with engine.sync.connect(str(tmp_path / "runs.db"), durability="normal") as tracker, \
            tracker.start_run("r") as run:

        @FUZZ
        @given(call=st.sampled_from(["metrics", "configs", "tags", "untag"]),
               values=MAPPINGS, step=STEPS)
        def one(call: str, values: Any, step: Any) -> None:
            run.flush()
            before = snapshot(tracker, "r")
            try:
                if call == "metrics":
                    run.log_metrics(values, step=step)
                elif call == "configs":
                    run.log_configs(values)
                elif call == "tags":
                    run.add_tags(values)
                else:
                    run.remove_tags(values)
            except ValidationError:
                run.flush()
                assert snapshot(tracker, "r") == before, "a refused call wrote something"
                return
            run.flush()  # what was taken, the store takes too
            taken.add(call)

        one()
    assert taken  # the strategies reach the accepting side too


@pytest.mark.slow
def test_start_run_takes_or_refuses_anything(tmp_path: Path) -> None:
    with engine.sync.connect(str(tmp_path / "runs.db"), durability="normal") as tracker:
        taken = 0

        @FUZZ
        @given(run_id=st.none() | TEXT | st.integers(), name=st.none() | TEXT | VALUES,
               experiment=st.none() | TEXT, tags=st.just(()) | TEXT | VALUES,
               config=st.none() | MAPPINGS)
        @example(run_id="ok", name=None, experiment=None, tags=("a",), config={"lr": 0.1})
        def one(run_id: Any, name: Any, experiment: Any, tags: Any, config: Any) -> None:
            nonlocal taken
            runs = [(r.run_id, r.version) for r in tracker.list_runs()]
            try:
                context = tracker.start_run(run_id, name=name, experiment=experiment,
                                            tags=tags, config=config, resume=True)
                with context:  # resuming into another experiment is refused on entry
                    taken += 1
            except ValidationError:
                assert [(r.run_id, r.version) for r in tracker.list_runs()] == runs, \
                    "a refused start_run wrote something"

        one()
        assert taken  # the strategies reach the accepting side too
