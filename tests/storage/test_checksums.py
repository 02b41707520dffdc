"""Damage to the log is found, never served: each event is stored with a checksum of its whole
row, checked on every read. A flipped byte that still decodes — a value read as another, an
event moved to another run — is an ``IntegrityError`` naming its position, ``check`` lists
it, and a rebuild refuses to fold it into the projections."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import engine
from engine._core.checksum import event_checksum
from engine.errors import IntegrityError
from tests.conftest import POSTGRES_URL, require_postgres

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "runs.db")
    require_postgres()
    from tests.pg import fresh_schema_url

    return fresh_schema_url(POSTGRES_URL)


async def damage(url: str, position: int, column: str, change: Callable[[Any], Any]) -> None:
    """Rewrite one column of one event as only a broken disk or another program would: the
    log's own guards lifted."""
    if "://" not in url:
        with sqlite3.connect(url) as db:
            db.execute("DROP TRIGGER IF EXISTS events_no_update")
            ((value,),) = db.execute(f"SELECT {column} FROM events WHERE position = ?",
                                     (position,)).fetchall()
            db.execute(f"UPDATE events SET {column} = ? WHERE position = ?",
                       (change(value), position))
        return
    from tests.pg import admin

    connection = await admin(url)
    try:
        await connection.execute("SET session_replication_role = replica")  # no triggers
        value = await connection.fetchval(f"SELECT {column} FROM events WHERE position = $1",
                                          position)
        await connection.execute(f"UPDATE events SET {column} = $1 WHERE position = $2",
                                 change(value), position)
    finally:
        await connection.close()


def flip_last_byte(data: bytes) -> bytes:
    return bytes(data[:-1]) + bytes([data[-1] ^ 0x01])


async def logged(url: str) -> int:
    """Two runs; returns the position of run a's points."""
    async with engine.connect(url, durability="normal") as tracker:
        async with tracker.start_run("a", config={"lr": 0.1}) as run:
            run.log_metrics({"loss": 0.9901}, step=0)
            await run.flush()
        async with tracker.start_run("b"):
            pass
        events = [e async for e in tracker.events()]
    return next(e.position for e in events if e.run_id == "a" and e.type == "MetricsLogged")


async def test_a_flipped_byte_that_still_decodes_is_refused(url: str) -> None:
    position = await logged(url)
    await damage(url, position, "data", flip_last_byte)
    async with engine.connect(url, durability="normal") as tracker:
        with pytest.raises(IntegrityError) as caught:
            [e async for e in tracker.events()]
        assert caught.value.where == f"position {position}"
        assert f"position {position}" in str(caught.value)
        findings = await tracker.check()
        assert [f.split(":")[0] for f in findings] == [f"position {position}"]
        with pytest.raises(IntegrityError):
            await tracker.rebuild_projections()
        # The projections were not replaced by a rebuild of damaged events.
        assert (await tracker.read_series("a", "loss")).values.tolist() == [0.9901]


async def test_an_event_moved_to_another_run_is_refused(url: str) -> None:
    position = await logged(url)
    await damage(url, position, "run_id", lambda _: "c")
    async with engine.connect(url, durability="normal") as tracker:
        with pytest.raises(IntegrityError):
            [e async for e in tracker.events()]
        findings = await tracker.check()
        assert f"position {position}: the event at position {position} does not match its " \
               "checksum" in [f.split(" (")[0].replace(": the database is damaged", "")
                              for f in findings]


async def test_events_of_a_release_without_checksums_still_read(url: str) -> None:
    await logged(url)
    for position in range(1, 5):
        await damage(url, position, "checksum", lambda _: None)
    async with engine.connect(url, durability="normal") as tracker:
        assert len([e async for e in tracker.events()]) >= 4
        assert await tracker.check() == []


TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1)
ROW = st.tuples(
    st.integers(1, 2**62), st.binary(min_size=16, max_size=16), TEXT, TEXT,
    st.integers(1, 2**62), st.sampled_from(["RunCreated", "Tagged"]),
    st.integers(1, 9), st.floats(0, 2e9), st.binary(min_size=1, max_size=300))


@given(ROW, st.data())
def test_any_one_changed_byte_or_field_changes_the_checksum(row: tuple[Any, ...],
                                                            data: st.DataObject) -> None:
    before = event_checksum(*row)
    payload = bytearray(row[8])
    at = data.draw(st.integers(0, len(payload) - 1))
    payload[at] ^= data.draw(st.integers(1, 255))
    assert event_checksum(*row[:8], bytes(payload)) != before
    field = data.draw(st.sampled_from([0, 2, 3, 4]))
    changed = list(row)
    changed[field] = row[field] + 1 if isinstance(row[field], int) else row[field] + "x"
    assert event_checksum(*changed) != before
