"""What a training loop hands to logging: NumPy scalars, 0-d arrays and one-element tensors
as metric values and steps, and NumPy values, tuples and lists in configs — stored as the
plain ints, floats and bools they stand for."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import engine
from engine.errors import ValidationError
from tests.conftest import MakeTracker, in_thread


class Tensor:
    """A one-element tensor as PyTorch or JAX hand it out: a number behind ``item()``."""

    def __init__(self, value: float | int | bool) -> None:
        self.value = value

    def item(self) -> float | int | bool:
        return self.value


VALUES = [
    pytest.param(np.float32(0.25), 0.25, id="float32"),
    pytest.param(np.float16(0.5), 0.5, id="float16"),
    pytest.param(np.float64(0.125), 0.125, id="float64"),
    pytest.param(np.int64(7), 7.0, id="int64"),
    pytest.param(np.int8(-3), -3.0, id="int8"),
    pytest.param(np.array(1.5), 1.5, id="0-d-array"),
    pytest.param(np.array([2.5], dtype=np.float32), 2.5, id="one-element-array"),
    pytest.param(Tensor(0.75), 0.75, id="tensor"),
    pytest.param(Tensor(3), 3.0, id="int-tensor"),
]


@pytest.mark.parametrize(("value", "stored"), VALUES)
async def test_array_scalars_are_metric_values(make: MakeTracker, value: Any,
                                               stored: float) -> None:
    async with make() as tracker:
        async with tracker.start_run("r") as run:
            run.log_metrics({"loss": value}, step=0)
            run.log_metrics({"loss": value, "acc": value}, step=np.int64(1))
            run.log_metrics({"loss": value}, step=np.array(2))
            run.log_metrics({"loss": value}, step=Tensor(3))
        series = await tracker.read_series("r", "loss")
        assert series.values.tolist() == [stored] * 4
        assert series.steps.tolist() == [0, 1, 2, 3]
        assert type(series.steps[1]) is int


async def test_float_steps_from_numpy_keep_their_value(make: MakeTracker) -> None:
    async with make() as tracker:
        async with tracker.start_run("r") as run:
            run.log_metrics({"lr": 0.1}, step=np.float32(0.5))
            run.log_metrics({"lr": 0.1}, step=np.float64(1.5))
        assert (await tracker.read_series("r", "lr")).steps.tolist() == [0.5, 1.5]


@pytest.mark.parametrize("value", [
    pytest.param(np.bool_(True), id="bool_"),
    pytest.param(np.array(True), id="0-d-bool"),
    pytest.param(Tensor(False), id="bool-tensor"),
    pytest.param(np.array([1.0, 2.0]), id="two-elements"),
    pytest.param(np.str_("0.5"), id="str_"),
])
async def test_what_is_not_a_number_stays_refused(make: MakeTracker, value: Any) -> None:
    async with make() as tracker, tracker.start_run("r") as run:
        with pytest.raises(ValidationError) as caught:
            run.log_metrics({"ok": 1.0, "bad": value}, step=0)
        assert caught.value.key == "bad"
        with pytest.raises(ValidationError):
            run.log_metrics({"ok": 1.0}, step=value)
        await run.flush()
        assert (await tracker.get_run("r")).metrics == {}


async def test_configs_take_numpy_values_tuples_and_lists(make: MakeTracker) -> None:
    config = {
        "lr": np.float32(0.5), "batch": np.int64(64), "shuffle": np.bool_(True),
        "layers": [64, 128], "shape": (3, 224, 224), "names": ("cat", "dog"),
        "mixed": ["relu", 0.1, True, np.int32(2)], "array_item": np.array(0.25),
    }
    async with make() as tracker:
        async with tracker.start_run("r", config=config) as run:
            run.log_configs({"later": [np.float64(0.5), np.int16(1)]})
        stored = (await tracker.get_run("r")).config
    assert stored == {
        "lr": 0.5, "batch": 64, "shuffle": True, "layers": [64, 128], "shape": [3, 224, 224],
        "names": ["cat", "dog"], "mixed": ["relu", 0.1, True, 2], "array_item": 0.25,
        "later": [0.5, 1],
    }
    assert [type(v) for v in stored["mixed"]] == [str, float, bool, int]
    assert type(stored["lr"]) is float
    assert type(stored["batch"]) is int
    assert type(stored["shuffle"]) is bool


async def test_a_config_list_can_be_queried_and_shown(make: MakeTracker) -> None:
    async with make() as tracker:
        async with tracker.start_run("r", config={"layers": [64, 128], "opts": ["a", "b"]}):
            pass
        runs = await tracker.list_runs(where="config.opts contains 'b' and config.layers exists")
        assert [r.run_id for r in runs] == ["r"]
        table = await tracker.fetch_runs_table(columns="run_id, config.layers")
        assert table.rows == (("r", [64, 128]),)


def test_the_sync_facade_takes_numpy_values_too(file_url: str) -> None:
    def train() -> None:
        with engine.sync.connect(file_url) as tracker:
            with tracker.start_run("r", config={"layers": (np.int64(8), 16)}) as run:
                for step in np.arange(3):
                    run.log_metrics({"loss": np.float32(step) / 4}, step=step)
            assert tracker.read_series("r", "loss").values.tolist() == [0.0, 0.25, 0.5]
            assert tracker.get_run("r").config == {"layers": [8, 16]}

    in_thread(train)
