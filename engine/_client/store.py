"""The remote store: the storage contract over HTTP, so that the whole tracker — buffering,
validation at the call site, backpressure, flushes, subscriptions, reads — runs unchanged
against a Kittiwake server (``engine.connect("http://…")``).

Every call crosses the wire as the JSON of ``engine._core.wire``; an error the server names
is raised as the same ``engine.errors`` type. A server that does not answer (refused, reset,
timed out, or answering 502-504) is asked again with growing pauses for up to ``wait``
seconds, then the call raises ``StorageError`` — which the tracker's writer and loops treat as
any failing database: nothing accepted is dropped, and it is sent again. Appends are not
retried here: the writer retries them, with the same event ids, so a retry whose first
attempt did commit is not written twice.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import anyio
import httpx
import orjson

from engine._core import wire
from engine._core.codec import plain
from engine._core.content import EntryRow
from engine._core.events import Record, Upcasters
from engine._core.model import Experiment, Lineage, RunState, Series
from engine._query.tree import Field, RunGroup, Selection
from engine._storage.blobs.contract import BlobStore
from engine._storage.contract import (
    ANY,
    AppendRequest,
    EventFilter,
    JobRow,
    Progress,
    RunControl,
    StaleRun,
    Store,
    TokenRow,
)
from engine._storage.registry import open_store
from engine._storage.session import Reader, Session
from engine.errors import (
    ClosedError,
    ConcurrencyError,
    EngineError,
    RunExistsError,
    RunNotFoundError,
    StorageError,
    ValidationError,
)

from . import protocol as p
from .blobs import RemoteBlobStore
from .spool import Spool, default_spool, note_offline, offline_path

__all__ = ["RemoteStore", "open_url"]

T = TypeVar("T")

WAIT = 30.0
"""Seconds a call keeps asking a server that does not answer before it raises
``StorageError``."""
# An append's body at most, unless one run's batch alone is larger: a group past it goes in
# parts (the server refuses a body over ``engine._server.params.MAX_BODY``).
BODY_TARGET = 32 * 2**20
LONG_POLL = 5.0  # seconds the server may hold a request for the head when nothing happens
_RETRYABLE = frozenset({502, 503, 504})
_DROPPED = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)
# The server's refusals: nothing of the request was written, and sending it again cannot
# change that, so the spool lets go of it.
REFUSALS = (ValidationError, RunExistsError, RunNotFoundError, ConcurrencyError)


def open_url(url: str, *, durability: str, upcasters: Upcasters, token: str | None = None,
             spool: str | None = None, offline: bool = False) -> Store:
    """The store for an ``http://`` or ``https://`` URL (the backend registry's entry point):
    the server's, through the spool — or, ``offline``, a local database beside the spool
    that ``kittiwake sync`` uploads later.

    :raises ValidationError: for a token, spool or offline flag of the wrong kind.
    """
    if token is not None and (type(token) is not str or not token):
        raise ValidationError("token must be a non-empty string", key="token")
    if spool is not None and (not isinstance(spool, (str, os.PathLike)) or not str(spool)):
        raise ValidationError("spool must be a file path", key="spool")
    if type(offline) is not bool:
        raise ValidationError("offline must be True or False", key="offline")
    server = url.rstrip("/")
    path = os.fspath(spool) if spool is not None else default_spool(server)
    if offline:
        note_offline(path, server)
        return open_store(offline_path(path), durability=durability, upcasters=upcasters)
    # The server's own setting decides what a commit survives; the spool is always fsynced.
    token = token or os.environ.get("KITTIWAKE_TOKEN") or None
    return RemoteStore(server, upcasters=upcasters, token=token,
                       spool=Spool(path, token, durability=durability))


class RemoteStore(Store):
    """A ``Store`` whose database is behind a Kittiwake server."""

    def __init__(self, url: str, *, upcasters: Upcasters, token: str | None,
                 spool: Spool | None = None, wait: float | None = None,
                 resend_on_open: bool = True) -> None:
        self.url = url.rstrip("/")
        self.upcasters = upcasters
        self.wait = WAIT if wait is None else wait
        self.spool = spool
        self._resend_on_open = resend_on_open
        self._token = token
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"<RemoteStore {self.url}>"

    # Lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        headers = {"accept": "application/json", "content-type": "application/json"}
        if self._token is not None:
            headers["authorization"] = f"Bearer {self._token}"
        self._client = httpx.AsyncClient(
            base_url=self.url, headers=headers,
            timeout=httpx.Timeout(120.0, connect=10.0),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16))
        try:  # an authenticated call: a bad token is refused here, not at first use
            await self._call("GET", "/api/v1/head")
            if self.spool is not None:
                await self.spool.open()
                if self._resend_on_open:
                    await self.resend()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with anyio.CancelScope(shield=True):
                await client.aclose()
        if self.spool is not None:
            await self.spool.close()

    async def resend(self, *, everyone: bool = False) -> tuple[int, int]:
        """Send what the spool still holds for this server (left by a process that died, or
        by a server that was down), oldest first: what this token sent, or (``everyone``)
        all of it; returns (requests committed, refused).

        :raises StorageError: when the server stops answering (the rest stays spooled).
        """
        assert self.spool is not None
        sent = refused = 0
        after = 0
        while True:
            rows = await self.spool.pending(self.url, after=after, everyone=everyone)
            if not rows:
                return sent, refused
            outcomes = await self.send([r for _, r in rows], now=time.time())
            settled = [seq for (seq, _), o in zip(rows, outcomes, strict=True)
                       if not isinstance(o, BaseException) or isinstance(o, REFUSALS)]
            self.spool.forget(settled)
            sent += sum(1 for o in outcomes if not isinstance(o, BaseException))
            refused += sum(1 for o in outcomes if isinstance(o, REFUSALS))
            after = rows[-1][0]

    # The wire ------------------------------------------------------------------------------

    async def _call(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                    body: Any = None, retry: bool = True, seconds: float | None = None,
                    arrays: bool = True, content: bytes | None = None) -> Any:
        """The answer to one request, decoded; typed errors raised as the server named them.

        :raises StorageError: when the server did not answer within ``wait`` seconds.
        """
        client = self._client
        if client is None:
            raise ClosedError(f"the store at {self.url} is not open")
        extra: dict[str, Any] = {}
        if seconds is not None:
            extra["timeout"] = httpx.Timeout(seconds, connect=10.0)
        try:
            if content is None and body is not None:
                content = wire.dumps(body)
            request = client.build_request(method, path, params=params, content=content,
                                           **extra)
        except (UnicodeEncodeError, TypeError) as exc:  # orjson's error is a TypeError
            raise ValidationError(f"cannot send this to a server: {exc}",
                                  key=_culprit(params, body)) from None
        except httpx.InvalidURL as exc:  # a query (``where``) past what a URL may hold
            raise ValidationError(f"cannot send this to a server: {exc} (a URL holds at most "
                                  "64 KiB: shorten the query)",
                                  key=next(iter(params or {}), None)) from None
        deadline = time.monotonic() + self.wait
        pause = 0.05
        resent = False
        while True:
            try:
                response = await client.send(request)
            except httpx.TransportError as exc:
                if isinstance(exc, _DROPPED) and not resent:
                    # A kept-alive connection the server closed as the request went out:
                    # once more, on a new one (an append is idempotent by its event ids).
                    resent = True
                    continue
                error: EngineError = StorageError(f"the server at {self.url} did not answer: "
                                     f"{type(exc).__name__}: {exc}")
                error.__cause__ = exc
            else:
                status = response.status_code
                if status < 400:
                    try:
                        return wire.loads(response.content, arrays=arrays)
                    except wire.WireError as exc:
                        raise StorageError(f"the server at {self.url} answered what is not "
                                           f"Kittiwake's API: {exc}") from exc
                try:
                    info = orjson.loads(response.content)
                except orjson.JSONDecodeError:
                    info = None
                error = p.error_from(info, status)
                if status not in _RETRYABLE:
                    raise error
            if not retry or time.monotonic() + pause > deadline:
                raise error
            await anyio.sleep(pause)
            pause = min(pause * 2, 1.0)

    @staticmethod
    def _project(project: str) -> str:
        try:
            return "/api/v1/projects/" + quote(project, safe="")
        except UnicodeEncodeError:
            raise ValidationError(f"project {project!r} is not valid text (a lone surrogate)",
                                  key="project") from None

    # The log -------------------------------------------------------------------------------

    async def append(self, requests: Sequence[AppendRequest], *,
                     now: float) -> list[list[Record] | BaseException]:
        """Keep the requests in the spool, send them, and let go of those the server answered
        for (committed or refused); the rest stay for the writer's retry, or a later sync."""
        if self.spool is None:
            return await self.send(requests, now=now)
        seqs = await self.spool.keep(self.url, requests)
        outcomes = await self.send(requests, now=now)
        self.spool.forget([seq for seq, o in zip(seqs, outcomes, strict=True)
                           if not isinstance(o, BaseException) or isinstance(o, REFUSALS)])
        return outcomes

    async def send(self, requests: Sequence[AppendRequest], *,
                   now: float) -> list[list[Record] | BaseException]:
        """Send requests without the spool (what ``append`` and ``sync`` do once they are
        kept): per request, its records or the server's refusal."""
        body = {"requests": [p.request_to(r) for r in requests], "now": now}
        try:
            content = wire.dumps(body)
        except (UnicodeEncodeError, TypeError) as exc:  # orjson's error is a TypeError
            raise ValidationError(f"cannot send this to a server: {exc}",
                                  key=_culprit(None, body)) from None
        if len(content) > BODY_TARGET and len(requests) > 1:
            # Many runs' batches after an outage: in parts, each well under the server's
            # limit on a request body (the server takes each part as the group it is).
            half = len(requests) // 2
            return [*await self.send(requests[:half], now=now),
                    *await self.send(requests[half:], now=now)]
        answer = await self._call("POST", "/api/v1/append", retry=False, content=content)
        sent = {e.id: e.data for r in requests for e in r.events}
        return [p.error_from(o, 0) if "error" in o
                else [p.receipt_from(r, sent) for r in o["records"]]
                for o in answer["outcomes"]]

    async def head(self) -> int:
        answer = await self._call("GET", "/api/v1/head")
        return int(answer["head"])

    async def wait_for_head(self, beyond: int, within: float) -> int:
        """The head once it passes ``beyond``: the server holds the request until it does,
        or up to ``LONG_POLL`` seconds (it is told of every commit, so nothing is missed by
        waiting longer than ``within``)."""
        wait = max(within, LONG_POLL)
        answer = await self._call("GET", "/api/v1/head",
                                  params={"beyond": beyond, "wait": wait},
                                  seconds=wait + 30.0)
        return int(answer["head"])

    async def read(self, after: int, *, limit: int, where: EventFilter = ANY,
                   arrays: bool = False) -> tuple[list[Record], int]:
        answer = await self._call("POST", "/api/v1/read", body={
            "after": after, "limit": limit, "filter": p.filter_to(where)})
        records = [p.record_from(r) for r in answer["records"]]
        if not arrays:
            for record in records:
                record.data = plain(record.data)
        return records, int(answer["covered"])

    async def stream_records(self, project: str, run_ids: Sequence[str],
                             upto: int) -> list[Record]:
        answer = await self._call("POST", "/api/v1/streams", body={
            "project": project, "run_ids": list(run_ids), "upto": upto})
        return [p.record_from(r) for r in answer["records"]]

    # Projections ---------------------------------------------------------------------------

    async def get_run(self, project: str, run_id: str, *,
                      now: float | None = None) -> RunState | None:
        params: dict[str, Any] = {"run_id": run_id}
        if now is not None:
            params["now"] = repr(now)
        answer = await self._call("GET", self._project(project) + "/run", params=params)
        return None if answer["run"] is None else p.state_from(answer["run"])

    async def list_runs(self, project: str, *, include_deleted: bool,
                        selection: Selection | None = None) -> list[RunState]:
        params = _selection(selection)
        params["include_deleted"] = _flag(include_deleted)
        # A POST: a query may hold a long text (a config value of a mebibyte) that no URL
        # may carry.
        answer = await self._call("POST", self._project(project) + "/runs", body=params)
        return [p.state_from(s) for s in answer["runs"]]

    async def group_runs(self, project: str, *, include_deleted: bool, selection: Selection,
                         by: Sequence[Field],
                         aggregates: Sequence[Field] | None) -> list[RunGroup]:
        params = _selection(selection)
        params["include_deleted"] = _flag(include_deleted)
        params["by"] = ", ".join(str(f) for f in by)
        if aggregates is not None:
            params["aggregates"] = ", ".join(str(f) for f in aggregates)
        answer = await self._call("POST", self._project(project) + "/groups", body=params)
        return [p.group_from(g) for g in answer["groups"]]

    async def read_series(self, project: str, run_id: str, metric: str, *,
                          low: int | float | None, high: int | float | None,
                          max_points: int | None) -> Series | None:
        params: dict[str, Any] = {"run_id": run_id, "metric": metric}
        for name, value in (("low", low), ("high", high), ("max_points", max_points)):
            if value is not None:
                params[name] = repr(value)
        answer = await self._call("GET", self._project(project) + "/series", params=params)
        return None if answer["series"] is None else p.series_from(answer["series"])

    async def read_entries(self, project: str, run_id: str, key: str, *,
                           tail: int | None) -> tuple[str | None, list[EntryRow]] | None:
        params: dict[str, Any] = {"run_id": run_id, "key": key}
        if tail is not None:
            params["tail"] = tail
        answer = await self._call("GET", self._project(project) + "/entries", params=params,
                                  arrays=False)
        found = answer["entries"]
        return None if found is None else (found[0], [tuple(e) for e in found[1]])

    async def projects(self) -> dict[str, int]:
        answer = await self._call("GET", "/api/v1/projects")
        found: dict[str, int] = answer["projects"]
        return found

    async def jobs(self, project: str, *, queues: Sequence[str] | None,
                   statuses: Sequence[str] | None, run_ids: Sequence[str] | None = None,
                   limit: int | None = None, now: float | None = None) -> list[JobRow]:
        params: dict[str, Any] = {} if now is None else {"now": now}
        for name, values in (("queues", queues), ("statuses", statuses),
                             ("run_ids", run_ids)):
            if values is not None:
                params[name] = list(values)
        if limit is not None:
            params["limit"] = limit
        answer = await self._call("GET", self._project(project) + "/jobs", params=params)
        return [p.job_from(j) for j in answer["jobs"]]

    # File bytes ----------------------------------------------------------------------------

    def own_blobs(self) -> BlobStore:
        return RemoteBlobStore(self)

    async def blob_transaction(self, work: Callable[[Session], Awaitable[T]], *,
                               streaming: bool = False) -> T:
        raise StorageError("a remote store has no blob tables of its own: its files are the "
                           "server's (own_blobs)")

    @property
    def blob_reader(self) -> Reader:
        raise StorageError("a remote store has no blob tables of its own: its files are the "
                           "server's (own_blobs)")

    def client(self) -> httpx.AsyncClient:
        """The open HTTP client (for the server's blob store).

        :raises ClosedError: when the store is not open.
        """
        if self._client is None:
            raise ClosedError(f"the store at {self.url} is not open")
        return self._client

    async def get(self, path: str) -> Any:
        """A GET of the API, answered and checked as every call is."""
        return await self._call("GET", path)

    async def post(self, path: str, body: Any) -> Any:
        """A POST of the API, answered and checked as every call is."""
        return await self._call("POST", path, body=body, seconds=3600.0)

    async def get_experiment(self, project: str, name: str) -> Experiment:
        answer = await self._call("GET", self._project(project) + "/experiment",
                                  params={"name": name})
        return p.experiment_from(answer)

    async def lineage(self, project: str, run_id: str) -> Lineage | None:
        answer = await self._call("GET", self._project(project) + "/lineage",
                                  params={"run_id": run_id})
        return None if answer["lineage"] is None else p.lineage_from(answer["lineage"])

    async def run_count(self, project: str) -> int:
        answer = await self._call("GET", self._project(project) + "/count")
        return int(answer["count"])

    async def ancestry(self, project: str, run_id: str) -> list[str] | None:
        answer = await self._call("GET", self._project(project) + "/ancestry",
                                  params={"run_id": run_id})
        found: list[str] | None = answer["ancestry"]
        return found

    async def rebuild(self, progress: Progress | None = None) -> None:
        await self._call("POST", "/api/v1/admin/rebuild", seconds=3600.0)

    async def check(self, progress: Callable[[int], None] | None = None) -> list[str]:
        answer = await self._call("POST", "/api/v1/admin/check", seconds=3600.0)
        return [str(f) for f in answer["findings"]]

    async def drop_retired(self) -> None:
        await self._call("POST", "/api/v1/admin/drop-retired", seconds=3600.0)

    async def verify_rebuild(self) -> list[str]:
        answer = await self._call("POST", "/api/v1/admin/verify-rebuild", seconds=3600.0)
        return [str(t) for t in answer["tables"]]

    # Liveness ------------------------------------------------------------------------------

    async def beat(self, runs: Sequence[tuple[str, str]], at: float) -> None:
        await self._call("POST", "/api/v1/beat", body={"runs": [list(r) for r in runs],
                                                        "at": at})

    async def stale_runs(self, now: float, crash_timeout: float) -> list[StaleRun]:
        answer = await self._call("GET", "/api/v1/stale", params={
            "now": repr(now), "crash_timeout": repr(crash_timeout)})
        return [p.stale_from(s) for s in answer["runs"]]

    async def controls(self, runs: Sequence[tuple[str, str]]) -> dict[tuple[str, str],
                                                                     RunControl]:
        answer = await self._call("POST", "/api/v1/controls",
                                  body={"runs": [list(r) for r in runs]})
        return dict(p.control_from(c) for c in answer["controls"])

    # Tokens --------------------------------------------------------------------------------

    async def save_token(self, token: TokenRow) -> None:
        await self._call("POST", "/api/v1/tokens", body={
            "id": token.id, "project": token.project, "role": token.role,
            "digest": token.digest, "created_at": token.created_at,
            "expires_at": token.expires_at})

    async def list_tokens(self, project: str | None) -> list[TokenRow]:
        params = {} if project is None else {"project": project}
        answer = await self._call("GET", "/api/v1/tokens", params=params)
        return [p.token_from(t) for t in answer["tokens"]]

    async def find_token(self, digest: str) -> TokenRow | None:
        answer = await self._call("POST", "/api/v1/tokens/find", body={"digest": digest})
        return None if answer["token"] is None else p.token_from(answer["token"])

    async def revoke_token(self, token_id: str, at: float) -> TokenRow | None:
        answer = await self._call("POST", "/api/v1/tokens/revoke",
                                  body={"id": token_id, "at": at})
        return None if answer["token"] is None else p.token_from(answer["token"])


def _culprit(params: dict[str, Any] | None, body: Any) -> str | None:
    """The parameter whose text cannot be sent (a lone surrogate), if one can be named."""
    for name, value in (params or {}).items():
        if isinstance(value, str):
            try:
                value.encode()
            except UnicodeEncodeError:
                return name
    return None


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _selection(selection: Selection | None) -> dict[str, Any]:
    """A selection as query parameters (its trees render to text that parses back equal)."""
    if selection is None:
        return {}
    params: dict[str, Any] = {"offset": selection.offset,
                              "heads_only": _flag(selection.heads_only)}
    if selection.where is not None:
        params["where"] = str(selection.where)
    if selection.order:
        params["order_by"] = ", ".join(str(k) for k in selection.order)
    if selection.limit is not None:
        params["limit"] = selection.limit
    if selection.now is not None:
        params["now"] = repr(selection.now)
    return params
