"""A run's source as the process first saw it: its files read and hashed once per process,
and the digests a tracker knows its blob store already holds.

Every run of a process records the same source (the script, ``git diff HEAD``, the globs'
files), so ``snapshot`` lists them (``environment.source_files``), reads and hashes each one
once, and keeps them — their bytes too, at most the source limit (10 MiB) — per work tree,
script, globs and limit, for the life of the process, as git's own answers are kept. Every
run of the process records the source as the process first read it (as ``git/dirty`` tells
how the tree was when the process first asked), in every database it logs to.

``Named`` remembers the digests of the file attributes a tracker has committed (at most
``limit``, the newest kept). An event names each of them, so its bytes are in the blob store
and ``gc`` never removes them: a run whose source is all there records its references in its
own first commit, with no bytes written, no read, no hash and no commit of its own. Bytes the
store lacks (the first run, or the first after the tracker opened) are put before the event
that names them is buffered, so the log never names bytes that are not stored.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio.to_thread

from engine._core import events as ev
from engine._core.events import Record
from engine._core.files import File, check_file, source_error
from engine._storage.blobs.contract import BlobStore

from .environment import DEFAULT_SOURCE_LIMIT, source_files
from .files import file_plain_of, store_files

__all__ = ["Named", "Snapshot", "SourceFile", "cached", "known_refs", "snapshot",
           "snapshot_async", "stored_refs"]

_lock = threading.Lock()
_snapshots: dict[tuple[Any, ...], Snapshot] = {}


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One file of the source: its key, its bytes as first read, what its reference says of
    it (name, media type), its digest and size."""

    key: str
    source: bytes
    plain: dict[str, Any]
    digest: str
    size: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The source files, in ``source_files`` order, and what listing them warned about."""

    files: tuple[SourceFile, ...]
    warnings: tuple[str, ...]


def cached(capture: bool | Sequence[str], *, limit: int = DEFAULT_SOURCE_LIMIT,
           git: str = "git") -> Snapshot | None:
    """The snapshot ``snapshot`` would give, if it was taken before; None if not."""
    key = _key(capture, limit, git)
    return None if key is None else _snapshots.get(key)


def snapshot(capture: bool | Sequence[str], *, limit: int = DEFAULT_SOURCE_LIMIT,
             git: str = "git") -> Snapshot:
    """The source files of ``capture`` (as ``source_files`` lists them), each read and
    hashed, once per process. A failure (a file gone between listing and reading, a bad
    glob) is raised and not kept: the next call tries again.

    :raises ValidationError: for a glob that is not a relative pattern inside the tree.
    :raises FileSourceError: for a file that cannot be read.
    """
    key = _key(capture, limit, git)
    if key is None:  # no current directory: nothing to keep it under
        return _take(capture, limit, git)
    with _lock:
        found = _snapshots.get(key)
        if found is None:
            found = _snapshots[key] = _take(capture, limit, git)
        return found


async def snapshot_async(capture: bool | Sequence[str], *, limit: int = DEFAULT_SOURCE_LIMIT,
                         git: str = "git") -> Snapshot:
    """``snapshot``, on a worker thread unless it was taken before."""
    found = cached(capture, limit=limit, git=git)
    if found is not None:
        return found
    return await anyio.to_thread.run_sync(lambda: snapshot(capture, limit=limit, git=git))


def _key(capture: bool | Sequence[str], limit: int, git: str) -> tuple[Any, ...] | None:
    try:
        cwd = os.getcwd()
    except OSError:
        return None
    script = sys.argv[0] if sys.argv else ""
    globs = capture if isinstance(capture, bool) else tuple(capture)
    return git, cwd, script, globs, limit


def _take(capture: bool | Sequence[str], limit: int, git: str) -> Snapshot:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        listed = source_files(capture, limit=limit, git=git)
    files = []
    for key, where in listed:
        file = check_file(key, where if isinstance(where, bytes) else os.fspath(where))
        data = file.source if isinstance(file.source, bytes) else _read(file.source, key)
        files.append(SourceFile(key, data, file_plain_of(file),
                                "sha256:" + hashlib.sha256(data).hexdigest(), len(data)))
    return Snapshot(tuple(files), tuple(str(w.message) for w in caught))


def _read(path: object, key: str) -> bytes:
    assert isinstance(path, str)  # check_file keeps a path as a str
    try:
        with open(path, "rb") as stream:
            return stream.read()
    except OSError as exc:
        raise source_error(path, exc, key) from exc


class Named:
    """The digests of file attributes a tracker committed: stored, and safe from ``gc``."""

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._digests: dict[str, None] = {}

    def __contains__(self, digest: object) -> bool:
        return digest in self._digests

    def add(self, digest: str) -> None:
        digests = self._digests
        digests.pop(digest, None)
        digests[digest] = None
        if len(digests) > self.limit:
            del digests[next(iter(digests))]

    def on_commit(self, records: list[Record]) -> None:
        """A commit hook: note the digests of the file attributes committed."""
        for record in records:
            if record.type == ev.FILES_UPLOADED:
                for plain in record.data["files"].values():
                    self.add(plain["digest"])


async def stored_refs(blobs: BlobStore, files: Sequence[SourceFile], named: Named,
                      at: float) -> dict[str, dict[str, Any]]:
    """The references of ``files`` as a FilesUploaded event holds them, timestamped ``at``;
    the bytes of those ``named`` does not hold are put into ``blobs`` first.

    :raises StorageError: when the store fails.
    """
    missing = [(f.key, File(f.source, name=f.plain["name"], media_type=f.plain["media_type"]))
               for f in files if f.digest not in named]
    if missing:
        await store_files(blobs, missing)
    return {file.key: {**file.plain, "digest": file.digest, "size": file.size,
                       "timestamp": at} for file in files}


def known_refs(files: Sequence[SourceFile], named: Named,
               at: float) -> dict[str, dict[str, Any]] | None:
    """The references of ``files`` when ``named`` holds every one of their digests (nothing
    to put); else None."""
    if not all(file.digest in named for file in files):
        return None
    return {file.key: {**file.plain, "digest": file.digest, "size": file.size,
                       "timestamp": at} for file in files}

