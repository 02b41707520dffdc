"""A run's files: storing their bytes before the events that name them, and reading them back.

``log_files`` buffers a ``FileEvent``: its payload lacks each file's digest and size until
the writer, in its next cycle and before it appends anything, puts the bytes into the blob
store (many small files in one transaction) and fills them in. So the log never names bytes
that are not stored, logging stays a plain call, and ``flush()`` waits for the bytes too. A
source that turned unreadable meanwhile refuses the event (the run's next flush reports it);
a failing store keeps it for the next cycle. ``upload`` stores its bytes at once, then
appends its event, and returns when both are durable.

The tracker's reads of files (``FileReads``) stream bytes from the blob store, each read
checked against its digest.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import aclosing
from typing import Any, BinaryIO

import anyio
import anyio.to_thread

from engine._core import content as ct
from engine._core import events as ev
from engine._core.events import NewEvent
from engine._core.files import File, FileRef
from engine._core.images import Image
from engine._storage.blobdb import DatabaseBlobStore
from engine._storage.blobs.contract import BlobInfo, BlobStore, Collected
from engine._storage.blobs.sources import store_file
from engine._storage.contract import AppendRequest, EventFilter, Store
from engine.errors import ClosedError, IntegrityError, StorageError, ValidationError

from .past import AsOf

__all__ = ["FileEvent", "FileReads", "file_plain_of", "referenced", "store_pending"]

GC_GRACE = 3600.0
"""How old unreferenced bytes must be before ``gc`` removes them: longer than any upload
takes from its first byte to the commit of the event that names it."""

_SMALL = 1 << 20  # files up to this size are put together, many per transaction


class FileEvent(NewEvent):
    """A FilesLogged event whose files' bytes are not yet stored."""

    __slots__ = ("files", "stored")

    def __init__(self, data: dict[str, Any], files: list[tuple[str, int, File]]) -> None:
        super().__init__(ev.FILES_LOGGED, data)
        self.files = files  # (key, index in the key's list, file)
        self.stored = False


def file_plain_of(file: File) -> dict[str, Any]:
    """What a file's entry says of it before its bytes are stored (name, media type, and an
    image's caption and size)."""
    plain: dict[str, Any] = {"name": file.name, "media_type": file.media_type}
    if isinstance(file, Image):
        if file.caption is not None:
            plain["caption"] = file.caption
        plain["width"], plain["height"] = file.width, file.height
    return plain


def _small(file: File) -> bool:
    return isinstance(file.source, bytes) and len(file.source) <= _SMALL


async def store_files(blobs: BlobStore, files: Sequence[tuple[str, File]]) -> list[BlobInfo]:
    """Put the files' bytes, small in-memory ones together in one transaction."""
    infos: list[BlobInfo | None] = [None] * len(files)
    small = [i for i, (_, f) in enumerate(files) if _small(f)]
    if len(small) > 1 and isinstance(blobs, DatabaseBlobStore):
        sources = [files[i][1].source for i in small]
        for i, info in zip(small, await blobs.put_many(sources), strict=True):  # type: ignore[arg-type]
            infos[i] = info
    for i, (key, file) in enumerate(files):
        if infos[i] is None:
            infos[i] = await store_file(blobs, file, key=key)
    return [info for info in infos if info is not None]


async def store_pending(blobs: BlobStore | None,
                        requests: Sequence[AppendRequest]) -> dict[int, BaseException]:
    """Store the bytes of every ``FileEvent`` of ``requests`` not yet stored and complete
    its payload; the requests that cannot be sent, by index, with why. The small in-memory
    files of all of them go in one transaction (a cycle's worth of logged images costs one
    commit), the rest one by one."""
    pending = [(index, event) for index, request in enumerate(requests)
               for event in request.events if isinstance(event, FileEvent) and not event.stored]
    if not pending:
        return {}
    if blobs is None:
        return {index: ClosedError("the tracker's blob store is closed") for index, _ in pending}
    failed: dict[int, BaseException] = {}
    small = [(event, key, at, file.source) for _, event in pending
             for key, at, file in event.files if isinstance(file.source, bytes)
             and len(file.source) <= _SMALL]
    done: dict[tuple[int, str, int], BlobInfo] = {}
    if len(small) > 1 and isinstance(blobs, DatabaseBlobStore):
        try:
            infos = await blobs.put_many([source for *_, source in small])
        except StorageError as exc:
            return {index: exc for index, _ in pending}
        done = {(id(event), key, at): info
                for (event, key, at, _), info in zip(small, infos, strict=True)}
    for index, event in pending:
        if index in failed:
            continue
        try:
            for key, at, file in event.files:
                info = done.get((id(event), key, at))
                if info is None:
                    info = await store_file(blobs, file, key=key)
                entry = event.data["files"][key][at]
                entry["digest"], entry["size"] = info.digest, info.size
        except (ValidationError, StorageError) as exc:
            failed[index] = exc
            continue
        except OSError as exc:
            failed[index] = StorageError(f"storing file bytes failed: {exc}")
            continue
        event.stored = True
    return failed


def referenced(events: Sequence[Any]) -> set[str]:
    """Every digest the given records name."""
    digests: set[str] = set()
    for record in events:
        files = record.data.get("files", {})
        for value in files.values():
            for item in value if isinstance(value, list) else [value]:
                digest = item.get("digest")
                if digest is not None:
                    digests.add(digest)
    return digests


class FileReads:
    """The tracker's reads of files; mixed into its reads, which supply the store, the blob
    store and the project."""

    # Declared, not defined: supplied by TrackerReads, EntryReads and the Tracker.
    project: str
    _reader: Callable[[], Awaitable[Store]]
    _project: Callable[[str | None], str]
    _entries: Callable[[str, str, str, int | None, AsOf | None, str | None],
                       Awaitable[list[ct.EntryRow]]]
    _blob_store: Callable[[], BlobStore]

    async def read_files(self, run_id: str, key: str, *, tail: int | None = None,
                         as_of: AsOf | None = None,
                         project: str | None = None) -> list[FileRef]:
        """The run's file series ``key`` (``run.log_files``) as ``FileRef``s, in step order.

        :raises RunNotFoundError: if there is no such run.
        :raises ValidationError: if ``key`` holds another kind in the run.
        """
        rows = await self._entries(run_id, key, ct.FILE, tail, as_of, project)
        return [ct.ref_of(key, step, at, plain) for step, at, plain in rows]

    async def read_file(self, ref: FileRef) -> bytes:
        """A logged file's bytes, whole (``open_file`` streams them).

        :raises IntegrityError: when the stored bytes do not match the digest, or are gone.
        """
        await self._reader()
        return await self._blob_store().read(_digest(ref))

    async def open_file(self, ref: FileRef) -> AsyncGenerator[bytes, None]:
        """A logged file's bytes as an async iterator of chunks, checked as they pass
        (``IntegrityError`` at the end when they do not match the digest).

        :raises IntegrityError: when the stored bytes do not match the digest, or are gone.
        """
        await self._reader()
        async with aclosing(self._blob_store().open(_digest(ref))) as chunks:
            async for chunk in chunks:
                yield chunk

    async def download(self, ref: FileRef, path: str | os.PathLike[str]) -> str:
        """Write a logged file's bytes to ``path`` (a directory: the file's name inside it),
        checked against the digest; damaged bytes never take the place of the file.
        Returns the path written.

        :raises IntegrityError: when the stored bytes do not match the digest, or are gone.
        :raises StorageError: when ``path`` cannot be written.
        """
        await self._reader()
        digest = _digest(ref)
        target, out, temp = await anyio.to_thread.run_sync(_prepare, path, ref)
        try:
            async with aclosing(self._blob_store().open(digest)) as chunks:
                async for chunk in chunks:
                    await anyio.to_thread.run_sync(out.write, chunk)
            await anyio.to_thread.run_sync(_keep, out, temp, target)
        except OSError as exc:
            raise StorageError(f"cannot write {target!r}: {exc}") from exc
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_discard, out, temp)
        return target

    async def gc(self, *, grace: float = GC_GRACE, dry_run: bool = False) -> Collected:
        """Remove stored file bytes that no event of the log names (deleted runs' events
        included: ``as_of`` and forks still see them) and that were stored at least
        ``grace`` seconds ago — so bytes an upload has just stored, before its event
        commits, stay. With ``dry_run``, only count them.

        :raises ValidationError: for a negative ``grace``.
        """
        names = await self._named_digests()
        return await self._blob_store().gc(names, grace=grace, dry_run=dry_run)

    async def _named_digests(self) -> set[str]:
        """Every digest an event of the log names."""
        store = await self._reader()
        names: set[str] = set()
        after = 0
        types = frozenset({ev.FILES_LOGGED, ev.FILES_UPLOADED})
        while True:
            records, covered = await store.read(after, limit=1000,
                                                where=EventFilter(types=types))
            names |= referenced(records)
            if len(records) < 1000:
                break
            after = covered
        return names

    async def _check_blobs(self) -> list[str]:
        """``check``'s part for file bytes: every blob an event names is there, and reads
        back matching its digest (read through, in chunks). One line per finding."""
        blobs = self._blob_store()
        findings = []
        for digest in sorted(await self._named_digests()):
            if not await blobs.exists(digest):
                findings.append(f"blob {digest}: named by the log, but its bytes are missing")
                continue
            try:
                async for _ in blobs.open(digest):
                    pass
            except IntegrityError as exc:
                findings.append(f"blob {digest}: {exc}")
        return findings


def _prepare(path: str | os.PathLike[str], ref: FileRef) -> tuple[str, BinaryIO, str]:
    """The file to write (inside ``path`` when it is a directory) and a temporary file
    beside it to write first."""
    target = os.path.abspath(os.fspath(path))
    if os.path.isdir(target):
        target = os.path.join(target, _local_name(ref))
    folder = os.path.dirname(target)
    try:
        fd, temp = tempfile.mkstemp(prefix=".kittiwake-", dir=folder)
    except OSError as exc:
        raise StorageError(f"cannot write into {folder!r}: {exc}") from exc
    return target, os.fdopen(fd, "wb"), temp


def _local_name(ref: FileRef) -> str:
    """The name a downloaded file takes inside a directory: the last part of its logged name
    (a name may say where the file came from, ``ckpt/model.pt``, and whoever logged it chose
    it: ``../../.bashrc`` must not leave the directory), or its digest when nothing is left."""
    name = os.path.basename((ref.name or "").replace("\\", "/"))
    if name in ("", ".", ".."):
        return ref.digest.removeprefix("sha256:")
    return name


def _keep(out: BinaryIO, temp: str, target: str) -> None:
    out.close()
    # The temporary file was made private (0600); the file kept gets the permissions a
    # file the user writes gets, or those of the one it replaces.
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    os.chmod(temp, mode)
    os.replace(temp, target)


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: set and put back at once
    os.umask(mask)
    return mask


def _discard(out: BinaryIO, temp: str) -> None:
    if not out.closed:
        out.close()
    if os.path.exists(temp):
        os.unlink(temp)


def _digest(ref: object) -> str:
    if not isinstance(ref, FileRef):
        raise ValidationError(f"expected a FileRef (from read_files or RunState.files), not "
                              f"{type(ref).__name__}", key="ref")
    return ref.digest
