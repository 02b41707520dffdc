"""Bad input to every call that records more than metrics: a typed error naming the key, and
nothing of the refused call written — not its good keys, not its metrics, not file bytes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.errors import FileSourceError, ValidationError
from tests.conftest import MakeTracker

Call = Callable[[engine.Run, Path], Any]

CATALOGUE: list[tuple[str, Call, type[Exception], str]] = [
    ("a text over 1 MiB",
     lambda run, _: run.log_text({"ok": "fine", "big": "x" * (2**20 + 1)}, step=0),
     ValidationError, "big"),
    ("a text that is not a str",
     lambda run, _: run.log_text({"t": b"bytes"}, step=0), ValidationError, "t"),
    ("notes over 1 MiB",
     lambda run, _: run.set_notes("n" * (2**20 + 1)), ValidationError, "notes"),
    ("a histogram with negative counts",
     lambda run, _: run.log_histograms({"h": {"edges": [0, 1, 2], "counts": [1, -1]}},
                                       step=0), ValidationError, "h"),
    ("a histogram with unsorted edges",
     lambda run, _: run.log_histograms({"h": {"edges": [0, 2, 1], "counts": [1, 1]}},
                                       step=0), ValidationError, "h"),
    ("a histogram with one count too many",
     lambda run, _: run.log_histograms({"h": {"edges": [0, 1], "counts": [1, 1]}}, step=0),
     ValidationError, "h"),
    ("a non-square confusion matrix",
     lambda run, _: run.log_confusion_matrices(
         {"cm": {"labels": ["a", "b"], "matrix": [[1, 2, 3], [4, 5, 6]]}}, step=0),
     ValidationError, "cm"),
    ("a confusion matrix with negative counts",
     lambda run, _: run.log_confusion_matrices(
         {"cm": {"labels": ["a", "b"], "matrix": [[1, -2], [3, 4]]}}, step=0),
     ValidationError, "cm"),
    ("a directory given as a file",
     lambda run, tmp: run.log_files({"ok": b"fine", "dir": str(tmp)}, step=0),
     FileSourceError, "dir"),
    ("a missing file",
     lambda run, tmp: run.log_files({"gone": str(tmp / "missing.pt")}, step=0),
     FileSourceError, "gone"),
    ("a key that changes kind within one call of run.log",
     lambda run, _: run.log({"ok/metric": 2.0, "logged/text": 3.0}, step=1),
     ValidationError, "logged/text"),
    ("a value run.log cannot route",
     lambda run, _: run.log({"ok/metric": 2.0, "what": object()}, step=1),
     ValidationError, "what"),
    ("a step that does not increase",
     lambda run, _: run.log_text({"logged/text": "again"}, step=0),
     ValidationError, "logged/text"),
]


@pytest.mark.parametrize(("what", "call", "error", "key"), CATALOGUE,
                         ids=[c[0] for c in CATALOGUE])
async def test_bad_input_is_refused_naming_the_key_and_nothing_is_written(
        make: MakeTracker, tmp_path: Path, what: str, call: Call, error: type[Exception],
        key: str, backend: str) -> None:
    async with make() as tracker:
        async with tracker.start_run("r") as run:
            run.log_text({"logged/text": "first"}, step=0)
            await run.flush()
            before = [e.type async for e in tracker.events()]
            with pytest.raises(error) as caught:
                call(run, tmp_path)
            assert getattr(caught.value, "key", None) == key, what
            await run.flush()
            assert [e.type async for e in tracker.events()] == before, what
        state = await tracker.get_run("r")
        assert state.metrics == {}
        assert state.notes == ""
        if not backend.startswith("remote-"):  # a server's blob store is the server's
            assert [d async for d in tracker._blob_store().digests()] == []


async def test_an_upload_that_cannot_be_read_stores_nothing(make: MakeTracker,
                                                           tmp_path: Path,
                                                           backend: str) -> None:
    async with make() as tracker:
        async with tracker.start_run("r") as run:
            with pytest.raises(FileSourceError) as caught:
                await run.upload({"good": b"fine", "bad": str(tmp_path / "nope")})
            assert caught.value.key == "bad"
        assert (await tracker.get_run("r")).files == {}
        if not backend.startswith("remote-"):
            assert [d async for d in tracker._blob_store().digests()] == []
