"""A run's files: file series (``log_files``) and file attributes (``upload``), their bytes in
the run database by default or in a directory, stored once, read back checked, inherited by
forks, collected by ``gc`` — and refused whole when a source cannot be read."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import anyio
import numpy as np
import pytest

import engine
from engine.errors import FileSourceError, IntegrityError, ValidationError
from tests.conftest import MakeTracker


async def test_a_file_series_reads_back_every_kind_of_source(make: MakeTracker,
                                                            tmp_path: Path) -> None:
    weights = tmp_path / "pred_3.png"
    weights.write_bytes(b"not really a png")
    async with make() as tracker:
        async with tracker.start_run("r") as run:
            run.log_files({"eval/pred": str(weights)}, step=3)
            run.log_files({"eval/pred": b"raw bytes"}, step=4)
            run.log_files({"eval/pred": io.BytesIO(b"from a file object")}, step=5)
            run.log_files({"eval/pred": engine.File(b"named", name="x.txt")}, step=6)
            run.log({"loss": 0.5, "eval/img": engine.Image(np.zeros((4, 6, 3), np.uint8),
                                                           caption="epoch 3")}, step=7)
        refs = await tracker.read_files("r", "eval/pred")
        assert [r.step for r in refs] == [3, 4, 5, 6]
        assert [r.name for r in refs] == ["pred_3.png", None, None, "x.txt"]
        assert [r.size for r in refs] == [16, 9, 18, 5]
        assert refs[0].media_type == "image/png"  # from the name
        assert [await tracker.read_file(r) for r in refs] == [
            b"not really a png", b"raw bytes", b"from a file object", b"named"]
        (image,) = await tracker.read_files("r", "eval/img")
        assert (image.media_type, image.caption, image.width, image.height) == (
            "image/png", "epoch 3", 6, 4)
        assert (await tracker.read_file(image)).startswith(b"\x89PNG")
        assert b"".join([c async for c in tracker.open_file(refs[1])]) == b"raw bytes"
        written = await tracker.download(refs[0], tmp_path / "out.png")
        assert await anyio.Path(written).read_bytes() == b"not really a png"
        assert "loss" in (await tracker.get_run("r")).metrics


async def test_uploads_are_attributes_replaced_whole_and_kept_in_the_log(
        make: MakeTracker, tmp_path: Path) -> None:
    first, second = tmp_path / "best.pt", tmp_path / "better.pt"
    first.write_bytes(os.urandom(3000))
    second.write_bytes(os.urandom(5000))
    async with make() as tracker:
        async with tracker.start_run("r") as run:
            refs = await run.upload({"model/weights": str(first), "data/split": b"0,1,2"})
            assert refs["model/weights"].size == 3000
            before = (await tracker.get_run("r")).position
            await run.upload({"model/weights": second})
        for _ in range(2):  # live, then after a rebuild
            files = (await tracker.get_run("r")).files
            assert sorted(files) == ["data/split", "model/weights"]
            assert files["model/weights"].size == 5000
            assert await tracker.read_file(files["model/weights"]) == second.read_bytes()
            old = (await tracker.get_run("r", as_of=before)).files["model/weights"]
            assert await tracker.read_file(old) == first.read_bytes()
            await tracker.rebuild_projections()
        async with tracker.start_run("kid", fork=("r", 0)) as kid:
            with pytest.raises(ValidationError, match="holds a file attribute"):
                kid.log_files({"model/weights": b"x"})
        assert (await tracker.get_run("kid")).files == (await tracker.get_run("r")).files


def local_only(backend: str) -> None:
    """Skip a test that looks into the blob store itself: through a server it is the
    server's (its own tests look there)."""
    if backend.startswith("remote-"):
        pytest.skip("the blob store behind a server is the server's to inspect")


async def test_the_same_bytes_are_stored_once(make: MakeTracker, backend: str) -> None:
    local_only(backend)
    async with make() as tracker:
        async with tracker.start_run("r") as run:
            for step in range(5):
                run.log_files({"a": b"same", "b": b"same"}, step=step)
            await run.upload({"c": b"same"})
        store = tracker._blob_store()
        assert len([d async for d in store.digests()]) == 1
        assert len(await tracker.read_files("r", "a")) == 5


@pytest.mark.parametrize("source", ["missing.bin", "."])
async def test_a_source_that_cannot_be_read_is_refused_at_the_call(
        make: MakeTracker, tmp_path: Path, source: str, backend: str) -> None:
    path = str(tmp_path / source)
    async with make() as tracker:
        async with tracker.start_run("r") as run:
            with pytest.raises(FileSourceError) as caught:
                run.log_files({"ok": b"fine", "bad": path}, step=0)
            assert caught.value.key == "bad"
            with pytest.raises(FileSourceError):
                await run.upload({"bad": path})
            with pytest.raises(FileSourceError):
                run.log({"loss": 1.0, "bad": engine.File(path)}, step=0)
        assert [e.type async for e in tracker.events()] == ["RunCreated", "StatusChanged"]
        if not backend.startswith("remote-"):
            assert [d async for d in tracker._blob_store().digests()] == []


async def test_damaged_bytes_raise_integrity_error(tmp_path: Path) -> None:
    url = str(tmp_path / "runs.db")
    async with engine.connect(url) as tracker:
        async with tracker.start_run("r") as run:
            ref = (await run.upload({"w": b"precious bytes"}))["w"]

        async def damage(session: object) -> None:
            await session.execute(  # type: ignore[attr-defined]
                "UPDATE blob_chunks SET data = ?", (b"precious bytez",))

        assert tracker._store is not None
        await tracker._store.blob_transaction(damage)
        with pytest.raises(IntegrityError):
            await tracker.read_file(ref)
        with pytest.raises(IntegrityError):
            await tracker.download(ref, tmp_path / "w.bin")
        assert not (tmp_path / "w.bin").exists()  # damaged bytes never take its place


async def test_gc_removes_only_bytes_no_event_names_once_they_are_old(
        make: MakeTracker, backend: str) -> None:
    local_only(backend)
    async with make() as tracker:
        async with tracker.start_run("r") as run:
            await run.upload({"kept": b"named by an event"})
        store = tracker._blob_store()
        orphan = await store.put_bytes(b"an upload whose event never came")
        # Young bytes stay: an upload in flight has stored them and not yet named them.
        assert (await tracker.gc()).removed == 0
        assert await store.exists(orphan.digest)
        done = await tracker.gc(grace=0)
        assert (done.removed, done.freed) == (1, orphan.size)
        assert not await store.exists(orphan.digest)
        ref = (await tracker.get_run("r")).files["kept"]
        assert await tracker.read_file(ref) == b"named by an event"
        await tracker.delete_run("r")  # a deleted run's events still name their bytes
        assert (await tracker.gc(grace=0)).removed == 0


async def test_blobs_can_live_in_a_directory(tmp_path: Path) -> None:
    async with engine.connect(str(tmp_path / "runs.db"), blobs=tmp_path / "blobs") as tracker:
        async with tracker.start_run("r") as run:
            run.log_files({"f": b"in a directory"}, step=0)
        (ref,) = await tracker.read_files("r", "f")
        assert await tracker.read_file(ref) == b"in a directory"
    digest = ref.digest.removeprefix("sha256:")
    assert (tmp_path / "blobs" / digest[:2] / digest[2:]).read_bytes() == b"in a directory"


def test_the_sync_facade_logs_uploads_and_reads_files(tmp_path: Path) -> None:
    with engine.sync.connect(str(tmp_path / "runs.db")) as tracker:
        with tracker.start_run("r") as run:
            run.log_files({"f": b"abc"}, step=1)
            ref = run.upload({"w": b"weights"})["w"]
        (logged,) = tracker.read_files("r", "f")
        assert tracker.read_file(logged) == b"abc"
        assert b"".join(tracker.open_file(ref)) == b"weights"
        assert tracker.gc(grace=0).removed == 0


async def test_a_download_gets_the_permissions_of_a_file_the_user_writes(
        make: MakeTracker, tmp_path: Path) -> None:
    async with make() as tracker:
        async with tracker.start_run("r") as run:
            ref = (await run.upload({"model/weights": b"weights"}))["model/weights"]
        mine = tmp_path / "mine.bin"
        mine.write_bytes(b"")
        fresh = await tracker.download(ref, tmp_path / "fresh.bin")
        assert stat.S_IMODE(os.stat(fresh).st_mode) == stat.S_IMODE(mine.stat().st_mode)
        kept = tmp_path / "kept.bin"
        kept.write_bytes(b"old")
        kept.chmod(0o640)
        await tracker.download(ref, kept)  # replacing a file keeps its permissions
        assert (stat.S_IMODE(kept.stat().st_mode), kept.read_bytes()) == (0o640, b"weights")
