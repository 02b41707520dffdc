"""Both backends take the same values: a config text up to 1 MiB is stored, indexed and
queried alike; more is refused at the call, as are keys and names over 1,024 bytes of UTF-8
(PostgreSQL's btree holds at most 2,704 bytes per entry)."""

from __future__ import annotations

import pytest

from engine.errors import ValidationError
from tests.conftest import MakeTracker

MIB = 2**20
WIDE = "\U00010348"  # four bytes in UTF-8


async def test_config_text_of_a_mebibyte_is_stored_and_queried(make: MakeTracker,
                                                                 backend: str) -> None:
    big = "x" * (MIB - 1) + "y"
    near = "x" * (MIB - 1) + "a"  # shares the indexed prefix, differs at the end
    wide = WIDE * 3000  # 12,000 bytes: more than one btree entry may hold
    async with make() as tracker:
        async with tracker.start_run("big", config={"text": big, "wide": wide}) as run:
            run.log_configs({"list": [big[:MIB // 2], "b" * (MIB // 2)]})
        async with tracker.start_run("near", config={"text": near}):
            pass
        state = await tracker.get_run("big")
        assert state.config["text"] == big
        assert state.config["wide"] == wide
        assert state.status == "succeeded"
        found = await tracker.list_runs(where=f"config.text = '{big}'")
        assert [r.run_id for r in found] == ["big"]
        found = await tracker.list_runs(where=f"config.text < '{big}'")
        assert [r.run_id for r in found] == ["near"]
        found = await tracker.list_runs(where=f"config.text >= '{near}'")
        assert sorted(r.run_id for r in found) == ["big", "near"]
        found = await tracker.list_runs(where=f"config.wide = '{wide}'")
        assert [r.run_id for r in found] == ["big"]


async def test_config_text_over_a_mebibyte_is_refused_at_the_call(make: MakeTracker) -> None:
    async with make() as tracker:
        with pytest.raises(ValidationError) as caught:
            tracker.start_run("r", config={"ok": 1, "notes": "x" * (MIB + 1)})
        assert caught.value.key == "notes"
        async with tracker.start_run("r") as run:
            with pytest.raises(ValidationError) as caught:
                run.log_configs({"ok": 2, "labels": ["x" * MIB, "y"]})
            assert caught.value.key == "labels"
            run.log_configs({"kept": 1})
        state = await tracker.get_run("r")
        assert state.config == {"kept": 1}  # nothing of the refused calls
        assert state.status == "succeeded"


async def test_keys_and_names_are_measured_in_bytes(make: MakeTracker) -> None:
    fits = WIDE * 256  # 1,024 bytes
    too_wide = WIDE * 257
    async with make() as tracker:
        async with tracker.start_run("r", experiment=fits, config={fits: 1}) as run:
            run.log_metrics({fits: 1.0}, step=0)
            with pytest.raises(ValidationError) as caught:
                run.log_metrics({too_wide: 1.0}, step=1)
            assert caught.value.key == too_wide
            with pytest.raises(ValidationError):
                run.log_configs({"a": {too_wide: 1}})
        with pytest.raises(ValidationError):
            tracker.start_run("s", experiment=too_wide)
        with pytest.raises(ValidationError):
            tracker.start_run("s", project=too_wide)
        state = await tracker.get_run("r")
        assert state.status == "succeeded"
        assert state.config == {fits: 1}
        assert (await tracker.read_series("r", fits)).values.tolist() == [1.0]
