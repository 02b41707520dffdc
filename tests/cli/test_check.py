"""``kittiwake check`` finds what is damaged — a payload that no longer decodes, a gap in the
log, a projection that differs from a rebuild — names where, and says so in its exit code."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import engine
from engine._cli.main import main


@pytest.fixture
def logged(file_url: str) -> str:
    with engine.sync.connect(file_url, durability="normal") as tracker:
        for r in ("a", "b"):
            with tracker.start_run(r, config={"lr": 0.1}) as run:
                for step in range(3):
                    run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    return file_url


def damage(path: str, *statements: str) -> None:
    """What only a broken disk or another program would do: the log's own guards lifted."""
    with sqlite3.connect(path) as db:
        db.execute("DROP TRIGGER events_no_update")
        db.execute("DROP TRIGGER events_no_delete")
        for statement in statements:
            db.execute(statement)


def run_check(capsys: pytest.CaptureFixture[str], path: str) -> tuple[int, str]:
    code = main(["--db", path, "check"])
    out, _ = capsys.readouterr()
    return code, out


def test_a_healthy_database_checks_clean(capsys: pytest.CaptureFixture[str],
                                         logged: str) -> None:
    code, out = run_check(capsys, logged)
    assert code == 0
    assert "healthy" in out
    with engine.sync.connect(logged) as tracker:
        assert tracker.check() == []


def test_a_payload_that_no_longer_decodes_is_named_by_its_position(
        capsys: pytest.CaptureFixture[str], logged: str) -> None:
    damage(logged, "UPDATE events SET data = X'01FFFFFF7F00' WHERE position = 2")
    code, out = run_check(capsys, logged)
    assert code == 1
    assert "position 2:" in out
    assert "1 finding" in out


def test_a_gap_in_the_log_and_a_version_out_of_order_are_found(
        capsys: pytest.CaptureFixture[str], logged: str) -> None:
    damage(logged, "DELETE FROM events WHERE position = 2")  # run a's points
    code, out = run_check(capsys, logged)
    assert code == 1
    assert "position 2: the log jumps from position 1 to 3" in out
    assert "position 3: run default/a is at version 3 after 1" in out


def test_a_projection_that_differs_from_a_rebuild_is_named(capsys: pytest.CaptureFixture[str],
                                                           logged: str) -> None:
    with sqlite3.connect(logged) as db:
        db.execute("UPDATE metrics SET max = 42")
    code, out = run_check(capsys, logged)
    assert code == 1
    assert "table metrics: differs from a rebuild" in out
    assert main(["--db", logged, "rebuild"]) == 0
    capsys.readouterr()
    assert run_check(capsys, logged)[0] == 0
    assert Path(logged).exists()


@pytest.fixture
def with_files(file_url: str) -> str:
    with engine.sync.connect(file_url, durability="normal") as tracker, \
            tracker.start_run("r") as run:
        run.log_files({"weights": b"\x01" * 100_000}, step=0)
        run.upload({"notes.txt": b"hello"})
    return file_url


def test_damaged_and_missing_file_bytes_are_named_by_their_digest(
        capsys: pytest.CaptureFixture[str], with_files: str) -> None:
    assert run_check(capsys, with_files)[0] == 0
    with engine.sync.connect(with_files) as tracker:
        weights = tracker.read_files("r", "weights")[-1]
        notes = tracker.get_run("r").files["notes.txt"]
    with sqlite3.connect(with_files) as db:
        db.execute("UPDATE blob_chunks SET data = zeroblob(length(data)) WHERE upload = "
                   "(SELECT upload FROM blobs WHERE digest = ?)", (weights.digest,))
        db.execute("DELETE FROM blobs WHERE digest = ?", (notes.digest,))
    code, out = run_check(capsys, with_files)
    assert code == 1
    assert f"blob {weights.digest}:" in out
    assert f"blob {notes.digest}: named by the log, but its bytes are missing" in out
    assert "2 findings" in out
