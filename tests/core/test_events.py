"""Schema versions of the log (docs/log.md): the engine's upcaster registry, old payloads lifted on
every read and never rewritten, and logs from a newer release refused rather than misread."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

import engine
from engine._core import events as ev
from engine._core.codec import encode
from engine._core.events import CURRENT_VERSIONS, UPCASTS, Upcasters, default_upcasters
from engine._core.ids import event_id
from engine.errors import EngineError


def tracker(url: str, upcasters: Upcasters) -> engine.Tracker:
    """A tracker reading the log with ``upcasters`` (as another release would)."""
    return engine.Tracker(
        url, project="default", durability="normal", flush_interval=0.02, batch_points=50_000,
        max_pending_points=1_000_000, heartbeat_interval=10.0, crash_timeout=120.0,
        reap_interval=None, poll_interval=0.025, clock=time.time, upcasters=upcasters)


def _v1_tags(data: dict[str, Any]) -> dict[str, Any]:
    """TagsAdded as a (pretend) older release wrote it: ``{"names": [...]}``."""
    return {"tags": data["names"]}


def with_tags_at(version: int, *steps: tuple[int, Any]) -> Upcasters:
    registry = Upcasters({**CURRENT_VERSIONS, ev.TAGS_ADDED: version})
    for from_version, step in steps:
        registry.register(ev.TAGS_ADDED, from_version, step)
    return registry


def append_raw(path: str, position: int, version: int, kind: str, schema: int,
               data: dict[str, Any]) -> bytes:
    """Append an event row as another release would have written it; returns its bytes."""
    payload = encode(data)
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO events (position, event_id, project, run_id, version, type, "
                   "schema_version, recorded_at, data) "
                   "VALUES (?, ?, 'default', 'r', ?, ?, ?, ?, ?)",
                   (position, event_id(), version, kind, schema, time.time(), payload))
    return payload


def stored(path: str, position: int) -> tuple[int, bytes]:
    with sqlite3.connect(path) as db:
        (row,) = db.execute("SELECT schema_version, data FROM events WHERE position = ?",
                            (position,)).fetchall()
    return row[0], bytes(row[1])


# The registry -----------------------------------------------------------------------------


def test_this_releases_registry_has_a_step_for_every_old_version() -> None:
    default_upcasters().check()
    for kind, current in CURRENT_VERSIONS.items():
        assert all((kind, v) in UPCASTS for v in range(1, current)), kind


def test_a_registry_with_a_gap_stops_a_tracker_before_it_opens_anything(
        tmp_path: Path) -> None:
    path = tmp_path / "never.db"
    gap = with_tags_at(3, (1, _v1_tags))
    with pytest.raises(EngineError, match="no upcaster for TagsAdded from version 2 to 3"):
        tracker(str(path), gap)
    with pytest.raises(EngineError, match="TagsAdded from version 1 is past the current "
                                          "version 1"):
        tracker(str(path), with_tags_at(1, (1, _v1_tags)))
    stray = Upcasters()
    stray.register("NoSuchEvent", 1, _v1_tags)
    with pytest.raises(EngineError, match="NoSuchEvent, a type with no current version"):
        stray.check()
    assert not path.exists()
    tracker(str(path), with_tags_at(3, (1, _v1_tags), (2, dict)))  # complete: accepted


def test_registering_a_step_twice_or_from_no_version_is_refused() -> None:
    registry = with_tags_at(2, (1, _v1_tags))
    with pytest.raises(EngineError, match="already registered"):
        registry.register(ev.TAGS_ADDED, 1, _v1_tags)
    with pytest.raises(EngineError, match="from_version must be an int >= 1"):
        registry.register(ev.TAGS_ADDED, 0, _v1_tags)


def test_upcasters_chain_from_any_old_version() -> None:
    registry = with_tags_at(3, (1, _v1_tags), (2, lambda d: {**d, "tags": sorted(d["tags"])}))
    assert registry.upcast(ev.TAGS_ADDED, 1, {"names": ["b", "a"]}) == {"tags": ["a", "b"]}
    assert registry.upcast(ev.TAGS_ADDED, 2, {"tags": ["b", "a"]}) == {"tags": ["a", "b"]}
    assert registry.upcast(ev.TAGS_ADDED, 3, {"tags": ["b", "a"]}) == {"tags": ["b", "a"]}


# Reading old events -----------------------------------------------------------------------


async def test_old_payloads_are_upcast_on_every_read_and_never_rewritten(
        tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    async with engine.connect(path, durability="normal") as old, old.start_run("r"):
        pass  # RunCreated (1), StatusChanged (2)
    written = append_raw(path, 3, 3, ev.TAGS_ADDED, 1, {"names": ["gpu", "old"]})

    async with tracker(path, with_tags_at(2, (1, _v1_tags))) as new:
        # The projections lagged the log, so opening rebuilt them, through the upcaster.
        assert (await new.get_run("r")).tags == {"gpu", "old"}
        tags = [e.data async for e in new.events() if e.type == ev.TAGS_ADDED]
        assert tags == [{"tags": ["gpu", "old"]}]
        assert (await new.get_run("r", as_of=3)).tags == {"gpu", "old"}
        assert (await new.get_run("r", as_of=2)).tags == frozenset()
        async with new.start_run("r", resume=True) as run:
            run.add_tags("fresh")  # written at version 2: never put through the v1 step
        await new.rebuild_projections()
        assert (await new.get_run("r")).tags == {"gpu", "old", "fresh"}
        head = (await new.get_run("r")).position
        assert (await new.get_run("r", as_of=head)).tags == {"gpu", "old", "fresh"}
    assert stored(path, 3) == (1, written)
    with sqlite3.connect(path) as db:
        versions = db.execute("SELECT schema_version FROM events WHERE type = 'TagsAdded' "
                              "ORDER BY position").fetchall()
    assert versions == [(1,), (2,)]


# Reading newer events ---------------------------------------------------------------------


async def test_a_log_from_a_newer_release_is_refused_not_misread(tmp_path: Path) -> None:
    path = str(tmp_path / "newer.db")
    async with tracker(path, with_tags_at(2, (1, _v1_tags))) as newer:
        async with newer.start_run("r") as run:
            run.add_tags("gpu")
        head = (await newer.get_run("r")).position

    message = (r"position 2 is TagsAdded at schema version 2, newer than this release reads "
               r"\(up to 1\); upgrade kittiwake")
    async with engine.connect(path, durability="normal") as older:
        # The projections the newer release kept still answer; the log is not misread.
        assert (await older.get_run("r")).tags == {"gpu"}
        with pytest.raises(EngineError, match=message):
            _ = [e async for e in older.events()]
        with pytest.raises(EngineError, match=message):
            await older.get_run("r", as_of=head)
        with pytest.raises(EngineError, match=message):
            await older.rebuild_projections()
        assert (await older.get_run("r")).tags == {"gpu"}
        assert [e.type async for e in older.events(2)] == [ev.STATUS_CHANGED]


async def test_an_event_type_this_release_does_not_know_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "unknown.db")
    async with engine.connect(path, durability="normal") as old, old.start_run("r"):
        pass
    append_raw(path, 3, 3, "ModelRegistered", 1, {"model": "resnet"})
    before = set(threading.enumerate())
    with pytest.raises(EngineError, match=r"position 3 has type 'ModelRegistered' \(schema "
                                          r"version 1\), which this release does not know"):
        async with engine.connect(path, durability="normal"):
            pass  # opening rebuilds the lagging projections, and that reads the log
    # The refused open closed its connections (their threads end soon after).
    with anyio.move_on_after(10):
        while True:
            if not set(threading.enumerate()) - before:
                break
            await anyio.sleep(0.01)
    assert set(threading.enumerate()) <= before
