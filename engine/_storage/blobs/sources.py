"""Reading a file to log into chunks, off the event loop, for a blob store's ``put``.

A ``File`` was checked when it was logged (``engine._core.files.check_file``), but its bytes
are read later: a path may have gone or turned into a directory since, and a file object may
have been closed. Those surface here as ``FileSourceError`` naming the key, and the put that
was reading stores nothing.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import BinaryIO

import anyio

from engine._core.files import File, Readable, open_source, source_error, stream_error
from engine.errors import FileSourceError

from .contract import CHUNK_SIZE, BlobInfo, BlobStore, Buffer

__all__ = ["read_source", "store_file"]


async def read_source(file: File, *, chunk_size: int = CHUNK_SIZE,
                      key: str | None = None) -> AsyncGenerator[Buffer, None]:
    """The bytes of ``file`` in chunks of at most ``chunk_size``: a path's file from its
    start, bytes as they are (views, no copies), a file object from its position to its end.
    Each read runs on a worker thread.

    :raises FileSourceError: when the source cannot be read (naming ``key`` when given).
    """
    source = file.source
    if isinstance(source, bytes):
        view = memoryview(source)
        for start in range(0, len(view), chunk_size):
            yield view[start:start + chunk_size]
        return
    if isinstance(source, str):
        stream = await anyio.to_thread.run_sync(open_source, source, key)
        try:
            while chunk := await anyio.to_thread.run_sync(_read_path, stream, source,
                                                          chunk_size, key):
                yield chunk
        finally:
            stream.close()
        return
    while chunk := await anyio.to_thread.run_sync(_read_stream, source, chunk_size, key):
        yield chunk


async def store_file(store: BlobStore, file: File, *, key: str | None = None) -> BlobInfo:
    """Put the bytes of ``file`` into ``store``, streamed in the store's chunk size.

    :raises FileSourceError: when the source cannot be read; nothing is stored.
    :raises StorageError: when the store fails.
    """
    if isinstance(file.source, bytes):
        return await store.put_bytes(file.source)
    async with aclosing(read_source(file, chunk_size=store.chunk_size, key=key)) as chunks:
        return await store.put(chunks)


def _read_path(stream: BinaryIO, path: str, size: int, key: str | None) -> bytes:
    try:
        return stream.read(size)
    except OSError as exc:
        raise source_error(path, exc, key) from exc


def _read_stream(stream: Readable, size: int, key: str | None) -> bytes:
    try:
        chunk = stream.read(size)
    except (OSError, ValueError) as exc:  # ValueError: read from a closed file
        raise stream_error(stream, exc, key) from exc
    if chunk is None:  # a non-blocking stream with nothing to read yet
        raise FileSourceError(f"{_where(key)}the file object has no data ready; give a "
                              "blocking file object", key=key or "source")
    if not isinstance(chunk, bytes | bytearray | memoryview):
        raise FileSourceError(f"{_where(key)}the file object gave {type(chunk).__name__}, "
                              "not bytes; open it in binary mode ('rb')", key=key or "source")
    return bytes(chunk) if not isinstance(chunk, bytes) else chunk


def _where(key: str | None) -> str:
    return f"file {key!r}: " if key else ""
