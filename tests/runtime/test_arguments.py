"""Arguments no call can use get a ValidationError that names them — never a TypeError,
a RecursionError or an OverflowError from deep inside — and nothing is written."""

from __future__ import annotations

from typing import Any

import pytest

from engine.errors import ValidationError
from tests.conftest import MakeTracker


def self_referential() -> dict[str, Any]:
    config: dict[str, Any] = {"model": {"depth": 3}}
    config["model"]["again"] = config
    return config


def deep(levels: int) -> dict[str, Any]:
    config: dict[str, Any] = {"leaf": 1}
    for _ in range(levels):
        config = {"k": config}
    return config


@pytest.mark.parametrize(("config", "key"), [
    pytest.param(self_referential(), "model/again", id="self-referential"),
    pytest.param(deep(5_000), None, id="deeper-than-the-recursion-limit"),
])
async def test_configs_that_never_end_are_refused(make: MakeTracker, config: dict[str, Any],
                                                  key: str | None) -> None:
    async with make() as tracker:
        with pytest.raises(ValidationError) as caught:
            tracker.start_run("r", config=config)
        if key is not None:
            assert caught.value.key == key
        async with tracker.start_run("r") as run:
            with pytest.raises(ValidationError):
                run.log_configs(config)
        assert (await tracker.get_run("r")).config == {}


async def test_a_config_as_deep_as_keys_allow_is_taken(make: MakeTracker) -> None:
    async with make() as tracker:
        async with tracker.start_run("r", config=deep(400)):
            pass
        (path, value), = (await tracker.get_run("r")).config.items()
    assert path == "k/" * 400 + "leaf"
    assert value == 1


@pytest.mark.parametrize("tags", [None, 5, 1.5, {"a": "b"}])
async def test_tags_that_are_not_strings_are_refused_by_name(make: MakeTracker,
                                                             tags: Any) -> None:
    async with make() as tracker:
        with pytest.raises(ValidationError) as caught:
            tracker.start_run("r", tags=tags)
        assert caught.value.key == "tags"
        assert await tracker.list_runs() == []


@pytest.mark.parametrize(("argument", "value"), [
    ("runs", 5), ("runs", {"a": 1}), ("types", 3.5), ("metrics", [1, 2]),
])
async def test_subscribe_filters_that_are_not_names_are_refused(make: MakeTracker,
                                                                argument: str,
                                                                value: Any) -> None:
    async with make() as tracker:
        with pytest.raises(ValidationError) as caught:
            tracker.subscribe(**{argument: value})
        assert caught.value.key == argument


@pytest.mark.parametrize("position", [2**63, 2**64 + 1, -1, 1.0, "3"])
async def test_positions_past_64_bits_are_refused(make: MakeTracker, position: Any) -> None:
    async with make() as tracker:
        async with tracker.start_run("r"):
            pass
        with pytest.raises(ValidationError) as caught:
            [e async for e in tracker.events(position)]
        assert caught.value.key == "from_position"
        with pytest.raises(ValidationError) as caught:
            await tracker.get_run("r", as_of=position)
        assert caught.value.key == "as_of"
        with pytest.raises(ValidationError) as caught:
            tracker.subscribe(from_position=position)
        assert caught.value.key == "from_position"


async def test_step_bounds_past_64_bits_read_like_any_other(make: MakeTracker) -> None:
    async with make() as tracker:
        async with tracker.start_run("r") as run:
            run.log_metrics({"m": 1.0}, step=0)
            run.log_metrics({"m": 2.0}, step=10)
        assert len(await tracker.read_series("r", "m", max_step=2**70)) == 2
        assert len(await tracker.read_series("r", "m", min_step=-(2**70))) == 2
        assert len(await tracker.read_series("r", "m", min_step=2**70)) == 0


@pytest.mark.parametrize("run_id", [None, 5, "", "no spaces allowed", b"r"])
@pytest.mark.parametrize("call", ["abort_run", "delete_run"])
async def test_a_run_id_no_run_can_have_is_refused_by_name(make: MakeTracker, call: str,
                                                          run_id: Any) -> None:
    """Not "no such run": the argument itself is wrong, and the error says which."""
    async with make() as tracker:
        async with tracker.start_run("r"):
            pass
        with pytest.raises(ValidationError) as caught:
            await getattr(tracker, call)(run_id)
        assert caught.value.key == "run_id"
        state = await tracker.get_run("r")
        assert (state.status, state.deleted) == ("succeeded", False)
