"""File bytes over HTTP, streamed both ways: ``POST /api/v1/blobs`` stores a request body
in the server's blob store as it arrives (a ``write`` token); ``GET /api/v1/blobs/{digest}``
streams a blob back.

Blobs are addressed by content and shared by every project, so a token reads a blob only
when its own project's log names that digest (a file logged or uploaded there): each server
keeps, per project, the digests its log names up to the position it has read, and reads on
from there when asked for one it has not seen. (Storing bytes reveals nothing, so any
``write`` token may; knowing a digest is, in practice, knowing the bytes.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from engine._core import events as ev
from engine._runtime.files import referenced
from engine._runtime.serving import blob_store
from engine._storage.blobs.contract import check_digest
from engine._storage.contract import EventFilter, Store

from .auth import access_of
from .params import body, take
from .routes import answer
from .tokens import Forbidden

__all__ = ["ROUTES"]

_FILE_EVENTS = frozenset({ev.FILES_LOGGED, ev.FILES_UPLOADED})


class Named:
    """The digests each project's log names, read on as the log grows."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, set[str]]] = {}

    async def names(self, store: Store, project: str, digest: str) -> bool:
        covered, digests = self._seen.get(project, (0, set()))
        if digest not in digests:
            where = EventFilter(project=project, types=_FILE_EVENTS)
            while True:
                records, upto = await store.read(covered, limit=10_000, where=where)
                digests |= referenced(records)
                if upto <= covered or not records:
                    covered = max(covered, upto)
                    break
                covered = upto
            self._seen[project] = (covered, digests)
        return digest in digests


async def _readable(request: Request) -> str:
    access = await access_of(request)
    access.need("read")
    digest = check_digest(request.path_params["digest"])
    state = request.app.state
    if access.project is not None and not await state.named.names(
            state.store, access.project, digest):
        raise Forbidden(f"project {access.project!r} names no file with digest {digest}")
    return digest


async def put_blob(request: Request) -> Response:
    (await access_of(request)).need("write")

    async def chunks() -> AsyncIterator[bytes]:
        async for chunk in request.stream():
            if chunk:
                yield chunk

    info = await blob_store(request.app.state.tracker).put(chunks())
    return answer({"digest": info.digest, "size": info.size})


async def get_blob(request: Request) -> Response:
    digest = await _readable(request)
    blobs = blob_store(request.app.state.tracker)
    if not await blobs.exists(digest):
        return answer({"error": {"type": "IntegrityError", "field": "digest",
                                 "message": f"no blob {digest} is stored"}}, 404)
    return StreamingResponse(blobs.open(digest), media_type="application/octet-stream")


async def blob_size(request: Request) -> Response:
    digest = await _readable(request)
    return answer({"size": await blob_store(request.app.state.tracker).size(digest)})


async def list_blobs(request: Request) -> Response:
    """Every stored digest; with auth, those the token's project names."""
    access = await access_of(request)
    access.need("read")
    state = request.app.state
    found = [d async for d in blob_store(state.tracker).digests()]
    if access.project is not None:
        found = [d for d in found if await state.named.names(state.store, access.project, d)]
    return answer({"digests": sorted(found)})


async def gc(request: Request) -> Response:
    """Collect unreferenced blobs: the references are every project's, read here on the
    server, whoever asks (an admin)."""
    (await access_of(request)).need("admin")
    data = await body(request)
    grace = take(data, "grace", (float, int))
    dry_run = take(data, "dry_run", bool, optional=True) or False
    done = await request.app.state.tracker.gc(grace=grace, dry_run=dry_run)
    return answer({"removed": done.removed, "freed": done.freed,
                   "kept_young": done.kept_young, "leftovers": done.leftovers})


P = "/api/v1/blobs"
ROUTES = [("POST", P, put_blob), ("GET", P, list_blobs), ("GET", P + "/{digest}", get_blob),
          ("GET", P + "/{digest}/size", blob_size), ("POST", "/api/v1/admin/gc", gc)]
