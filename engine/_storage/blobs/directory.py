"""The directory blob store (``blobs="DIR"``): one file per blob, named by its digest.

Layout under the root: ``ab/cdef…`` holds the blob whose digest is ``sha256:abcdef…`` (256
fan-out directories keep each one small), and ``tmp/`` holds puts in flight (``*.part``)
and blobs a gc is removing (``*.gc``). ``tmp/`` sits on the same file system as the blobs,
so moving a file between them is an atomic rename.

A put writes to a fresh file in ``tmp/``, hashing as it goes; at the end it fsyncs the
file, renames it to its digest's name and fsyncs that directory, so a crash at any instant
leaves either the whole blob under its name or none (a ``*.part`` file that gc removes
later). With ``durability="normal"`` the fsyncs are left out: a blob then survives a crash
of the process but not of the machine, as the log does under that setting.

A blob's age is its file's modification time, which every put of its bytes sets from the
store's clock. Gc moves an old blob to ``tmp/`` before deleting it and looks at its age
again there: a put that refreshed it in between finds it young and the gc puts it back,
while a put that comes after the move finds no blob and renames its own file into place.
Either way the bytes a put returned stay. (A read of that digest in the microseconds
between the move and the move back would see it missing; only a blob nobody referred to
when the gc began can be in that window.) A gc that died between the two moves leaves a
``*.gc`` file, which the next gc puts back when it is referenced or young and removes
otherwise.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Collection
from typing import BinaryIO, Literal, ParamSpec, TypeVar

import anyio

from engine.errors import IntegrityError, StorageError, ValidationError

from .contract import (
    CHUNK_SIZE,
    BlobInfo,
    BlobStore,
    Buffer,
    Clock,
    Collected,
    Verifier,
    check_digest,
    check_grace,
)

__all__ = ["DirectoryBlobStore"]

P = ParamSpec("P")
T = TypeVar("T")
_HEX = frozenset("0123456789abcdef")
_DURABILITY = ("full", "normal")
_ADVISE = getattr(os, "posix_fadvise", None)  # not on macOS or Windows
_ADVISE_EVERY = 8 << 20


class DirectoryBlobStore(BlobStore):
    """Blobs as files under ``root`` (created when the store starts).

    :param durability: ``"full"`` — a put survives power loss (fsync of the file and its
        directory); ``"normal"`` — it survives a crash of the process.
    :param clock: seconds since the epoch, for blob ages (a test injects one it moves).
    """

    def __init__(self, root: str | os.PathLike[str], *, chunk_size: int = CHUNK_SIZE,
                 durability: Literal["full", "normal"] = "full",
                 clock: Clock = time.time) -> None:
        super().__init__(chunk_size=chunk_size)
        if durability not in _DURABILITY:
            raise ValidationError(f"durability={durability!r} is not allowed; use 'full' or "
                                  "'normal'", key="durability")
        self.root = os.path.abspath(os.fspath(root))
        self._tmp = os.path.join(self.root, "tmp")
        self._full = durability == "full"
        self._clock = clock
        self._made: set[str] = set()  # fan-out directories known to exist

    def __repr__(self) -> str:
        return f"<DirectoryBlobStore {self.root!r}>"

    async def _start(self) -> None:
        await self._io("create the directory", self._make_root)

    async def _stop(self) -> None:
        self._made.clear()  # files need no closing: each call opens and closes its own

    # Writing ------------------------------------------------------------------------------

    async def put(self, chunks: AsyncIterable[Buffer]) -> BlobInfo:
        """Store the bytes ``chunks`` yields; see ``BlobStore.put``."""
        self._live()
        upload = await self._io("create a temporary file", self._begin)
        try:
            async for chunk in chunks:
                if not isinstance(chunk, bytes | bytearray | memoryview):
                    raise TypeError(f"a chunk must be bytes-like, not {type(chunk).__name__}")
                await self._io("write", upload.write, chunk)
            digest = "sha256:" + upload.hasher.hexdigest()
            await self._io("store the blob", self._finish, upload, digest)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(upload.discard)
            raise
        return BlobInfo(digest, upload.size)

    async def put_bytes(self, data: Buffer) -> BlobInfo:
        """``put`` for bytes in memory: up to ``chunk_size`` in one hand-off to a worker
        thread (a small image costs one, not three), larger ones streamed."""
        if memoryview(data).nbytes > self.chunk_size:
            return await super().put_bytes(data)
        self._live()
        return await self._io("store the blob", self._put_whole, data)

    def _put_whole(self, data: Buffer) -> BlobInfo:
        upload = self._begin()
        try:
            upload.write(data)
            digest = "sha256:" + upload.hasher.hexdigest()
            self._finish(upload, digest)
        except BaseException:
            upload.discard()
            raise
        return BlobInfo(digest, upload.size)

    def _begin(self) -> _Upload:
        temp = os.path.join(self._tmp, f"{uuid.uuid4().hex}.part")
        return _Upload(open(temp, "xb"), temp, self._clock)

    def _finish(self, upload: _Upload, digest: str) -> None:
        """Rename the written file to the digest's name, durably; or, when the blob is
        stored already, refresh its age and drop the file."""
        final = self._path(digest)
        now = self._clock()
        if _refresh(final, upload.size, now):
            upload.discard()
            return
        file, temp = upload.file, upload.temp
        file.flush()
        os.utime(file.fileno(), (now, now))
        if self._full:
            os.fsync(file.fileno())
        file.close()
        folder = os.path.dirname(final)
        self._make_folder(folder)
        os.replace(temp, final)
        if self._full:
            _fsync_directory(folder)

    async def delete(self, digest: str) -> bool:
        """Remove the blob; see ``BlobStore.delete``."""
        check_digest(digest)
        self._live()
        return await self._io("delete", _unlink, self._path(digest))

    async def gc(self, referenced: Collection[str], *, grace: float,
                 dry_run: bool = False) -> Collected:
        """Remove unreferenced blobs older than ``grace``; see ``BlobStore.gc``."""
        cutoff = self._clock() - check_grace(grace)
        self._live()
        keep = referenced if isinstance(referenced, set | frozenset) else set(referenced)
        leftovers = await self._io("clear leftovers", self._clear_tmp, keep, cutoff, dry_run)
        removed = freed = young = 0
        for folder in await self._io("list", self._folders):
            counts = await self._io("collect", self._collect, folder, keep, cutoff, dry_run)
            removed, freed, young = removed + counts[0], freed + counts[1], young + counts[2]
        return Collected(removed=removed, freed=freed, kept_young=young, leftovers=leftovers)

    def _collect(self, folder: str, keep: Collection[str], cutoff: float,
                 dry_run: bool) -> tuple[int, int, int]:
        removed = freed = young = 0
        with os.scandir(os.path.join(self.root, folder)) as entries:
            for entry in entries:
                digest = _digest_of(folder, entry.name)
                if digest is None or digest in keep:
                    continue
                try:
                    info = entry.stat()
                except FileNotFoundError:
                    continue
                if info.st_mtime > cutoff:
                    young += 1
                elif dry_run or self._remove_if_old(entry.path, digest, cutoff):
                    removed, freed = removed + 1, freed + info.st_size
                else:
                    young += 1
        return removed, freed, young

    def _remove_if_old(self, path: str, digest: str, cutoff: float) -> bool:
        trash = os.path.join(self._tmp, f"{digest[7:]}.{uuid.uuid4().hex[:8]}.gc")
        try:
            os.replace(path, trash)
        except FileNotFoundError:
            return False
        if os.stat(trash).st_mtime > cutoff:  # a put of these bytes came in between
            os.replace(trash, path)
            return False
        os.unlink(trash)
        return True

    def _clear_tmp(self, keep: Collection[str], cutoff: float, dry_run: bool) -> int:
        """Remove what dead puts left and finish what dead gcs began; how many removed."""
        cleared = 0
        with os.scandir(self._tmp) as entries:
            for entry in entries:
                parts = entry.name.split(".")
                if parts[-1] not in ("part", "gc"):
                    continue
                try:
                    old = entry.stat().st_mtime <= cutoff
                except FileNotFoundError:
                    continue
                digest = _digest_of(parts[0][:2], parts[0][2:]) if parts[-1] == "gc" else None
                if digest is not None and (digest in keep or not old):
                    if not dry_run:
                        self._restore(entry.path, digest)
                elif old:
                    cleared += 1
                    if not dry_run:
                        _unlink(entry.path)
        return cleared

    def _restore(self, trash: str, digest: str) -> None:
        final = self._path(digest)
        self._make_folder(os.path.dirname(final))
        os.replace(trash, final)

    # Reading ------------------------------------------------------------------------------

    async def open(self, digest: str) -> AsyncGenerator[bytes, None]:
        """The blob's bytes in chunks, checked; see ``BlobStore.open``."""
        check_digest(digest)
        self._live()
        file = await self._io("open", _open_blob, self._path(digest), digest)
        verifier = Verifier(digest)
        try:
            while chunk := await self._io("read", _read, file, verifier, self.chunk_size):
                yield chunk
        finally:
            file.close()
        verifier.check()

    async def read(self, digest: str) -> bytes:
        """The blob's bytes, whole and checked; see ``BlobStore.read``."""
        check_digest(digest)
        self._live()
        return await self._io("read", _read_whole, self._path(digest), digest)

    async def exists(self, digest: str) -> bool:
        """Whether the blob is stored; see ``BlobStore.exists``."""
        return await self.size(digest) is not None

    async def size(self, digest: str) -> int | None:
        """The blob's size, or None; see ``BlobStore.size``."""
        check_digest(digest)
        self._live()
        return await self._io("stat", _size, self._path(digest))

    async def digests(self) -> AsyncGenerator[str, None]:
        """Every stored digest; see ``BlobStore.digests``."""
        self._live()
        for folder in await self._io("list", self._folders):
            for digest in await self._io("list", self._list, folder):
                yield digest

    def _list(self, folder: str) -> list[str]:
        with os.scandir(os.path.join(self.root, folder)) as entries:
            return [d for e in entries if (d := _digest_of(folder, e.name)) is not None]

    # Files and folders ----------------------------------------------------------------------

    def _path(self, digest: str) -> str:
        return os.path.join(self.root, digest[7:9], digest[9:])

    def _folders(self) -> list[str]:
        with os.scandir(self.root) as entries:
            return [e.name for e in entries if len(e.name) == 2 and _HEX.issuperset(e.name)]

    def _make_root(self) -> None:
        created = not os.path.isdir(self.root)
        os.makedirs(self._tmp, exist_ok=True)
        if created and self._full:
            _fsync_directory(os.path.dirname(self.root))
            _fsync_directory(self.root)

    def _make_folder(self, folder: str) -> None:
        if folder in self._made:
            return
        try:
            os.mkdir(folder)
        except FileExistsError:
            pass
        else:
            if self._full:
                _fsync_directory(self.root)
        self._made.add(folder)

    async def _io(self, doing: str, fn: Callable[P, T], *args: P.args,
                  **kwargs: P.kwargs) -> T:
        """Run ``fn`` on a worker thread; a failing file system becomes ``StorageError``."""
        try:
            return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))
        except IntegrityError:
            raise
        except OSError as exc:
            raise StorageError(f"blob store {self.root!r}: could not {doing}: "
                               f"{exc.strerror or exc}") from exc


class _Upload:
    """One put's temporary file and hash; its methods run on a worker thread."""

    __slots__ = ("_advised", "clock", "file", "hasher", "size", "temp")

    def __init__(self, file: BinaryIO, temp: str, clock: Clock) -> None:
        self.file, self.temp, self.clock = file, temp, clock
        self.hasher = hashlib.sha256()
        self.size = self._advised = 0

    def write(self, chunk: Buffer) -> None:
        self.hasher.update(chunk)
        self.file.write(chunk)
        self.file.flush()
        self.size += memoryview(chunk).nbytes
        # Gc reads the age of a put in flight from its file: keep it on the store's clock.
        now = self.clock()
        os.utime(self.file.fileno(), (now, now))
        if self.size - self._advised >= _ADVISE_EVERY and _ADVISE is not None:
            # Start writing back what is written and drop what already was: the final
            # fsync then has little left to do, the disk works while we hash, and a large
            # upload does not push everything else out of the page cache. (Measured on a
            # 1 GiB upload: about twice as fast, where the kernel otherwise throttled us.)
            _ADVISE(self.file.fileno(), 0, self.size, os.POSIX_FADV_DONTNEED)
            self._advised = self.size

    def discard(self) -> None:
        self.file.close()
        _unlink(self.temp)


def _refresh(path: str, size: int, now: float) -> bool:
    """Make the stored blob young again; False when it is gone, or cut short (a file of
    another size, as a crash of the machine can leave under ``normal`` durability), so
    the caller's bytes replace it."""
    try:
        if os.stat(path).st_size != size:
            return False
        os.utime(path, (now, now))
    except FileNotFoundError:
        return False
    return True


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def _size(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return None


def _open_blob(path: str, digest: str) -> BinaryIO:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise IntegrityError(f"blob {digest} is missing from the store", where=digest) from None


def _read(file: BinaryIO, verifier: Verifier, size: int) -> bytes:
    chunk = file.read(size)
    verifier.update(chunk)
    return chunk


def _read_whole(path: str, digest: str) -> bytes:
    with _open_blob(path, digest) as file:
        data = file.read()
    verifier = Verifier(digest)
    verifier.update(data)
    verifier.check()
    return data


def _digest_of(folder: str, name: str) -> str | None:
    """The digest a file in a fan-out folder holds, or None for any other file."""
    if len(name) != 62 or not _HEX.issuperset(name):
        return None
    return f"sha256:{folder}{name}"


def _fsync_directory(path: str) -> None:
    if os.name == "nt":  # Windows cannot open a directory to sync it; NTFS journals renames
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
