"""File bytes on a server: the blob store a remote tracker logs files to and reads them from.

``put`` streams the bytes up as they come (one request, chunked), and returns once the
server has them durable; ``open`` streams them down, checked against their digest as they
pass, as every blob store's reads are. Collecting unreferenced blobs runs on the server,
which reads every project's references itself.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Collection
from typing import Any, Protocol

import httpx
import orjson

from engine._storage.blobs.contract import (
    BlobInfo,
    BlobStore,
    Buffer,
    Collected,
    Verifier,
    check_digest,
    check_grace,
)
from engine.errors import IntegrityError, StorageError, ValidationError

from . import protocol as p

__all__ = ["RemoteBlobStore"]


class Remote(Protocol):
    """What the blob store needs of the remote store it belongs to."""

    url: str

    def client(self) -> httpx.AsyncClient:
        """The open HTTP client."""
        ...

    async def get(self, path: str) -> Any:
        """A GET of the API, answered and checked."""
        ...

    async def post(self, path: str, body: Any) -> Any:
        """A POST of the API, answered and checked."""
        ...


class RemoteBlobStore(BlobStore):
    """The blob store of the server a ``RemoteStore`` talks to."""

    def __init__(self, remote: Remote) -> None:
        super().__init__()
        self._remote = remote

    def __repr__(self) -> str:
        return f"<RemoteBlobStore {self._remote.url}>"

    async def _start(self) -> None:
        return None

    async def _stop(self) -> None:
        return None

    def _client(self) -> httpx.AsyncClient:
        return self._remote.client()

    async def put(self, chunks: AsyncIterable[Buffer]) -> BlobInfo:
        self._live()

        async def body() -> AsyncIterator[bytes]:
            async for chunk in chunks:
                yield bytes(memoryview(chunk).cast("B"))

        try:
            response = await self._client().post(
                "/api/v1/blobs", content=body(),
                headers={"content-type": "application/octet-stream"})
        except httpx.TransportError as exc:
            raise StorageError(f"storing file bytes on {self._remote.url} failed: {exc}") \
                from exc
        answer = _answer(response)
        return BlobInfo(str(answer["digest"]), int(answer["size"]))

    async def delete(self, digest: str) -> bool:
        raise ValidationError("blobs are deleted on the server's database (kittiwake gc), not "
                              "through the server", key="digest")

    async def gc(self, referenced: Collection[str], *, grace: float,
                 dry_run: bool = False) -> Collected:
        """Collect on the server, which reads the references of every project's log itself
        (``referenced``, this tracker's view, may not see them all)."""
        self._live()
        check_grace(grace)
        answer = await self._remote.post("/api/v1/admin/gc",
                                          {"grace": grace, "dry_run": dry_run})
        return Collected(answer["removed"], answer["freed"], answer["kept_young"],
                         answer["leftovers"])

    async def open(self, digest: str) -> AsyncGenerator[bytes, None]:
        self._live()
        digest = check_digest(digest)
        verifier = Verifier(digest)
        try:
            async with self._client().stream("GET", f"/api/v1/blobs/{digest}") as response:
                if response.status_code >= 400:
                    await response.aread()
                    _answer(response)
                async for chunk in response.aiter_bytes(self.chunk_size):
                    verifier.update(chunk)
                    yield chunk
        except httpx.TransportError as exc:
            raise StorageError(f"reading file bytes from {self._remote.url} failed: {exc}") \
                from exc
        verifier.check()

    async def exists(self, digest: str) -> bool:
        return await self.size(digest) is not None

    async def size(self, digest: str) -> int | None:
        self._live()
        digest = check_digest(digest)
        answer = await self._remote.get(f"/api/v1/blobs/{digest}/size")
        found: int | None = answer["size"]
        return found

    async def digests(self) -> AsyncGenerator[str, None]:
        self._live()
        answer = await self._remote.get("/api/v1/blobs")
        for digest in answer["digests"]:
            yield digest


def _answer(response: httpx.Response) -> dict[str, Any]:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = None
    if response.status_code >= 400:
        error = p.error_from(body, response.status_code)
        if response.status_code == 404 and isinstance(error, IntegrityError | StorageError):
            raise IntegrityError(str(error), where=response.url.path.rsplit("/", 1)[-1])
        raise error
    if not isinstance(body, dict):
        raise StorageError(f"the server answered what is not Kittiwake's API: {body!r}")
    return body
