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
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

import anyio
import httpx
import orjson

from engine._core import wire
from engine._core.codec import plain
from engine._core.events import Record, Upcasters
from engine._core.model import Experiment, Lineage, RunState, Series
from engine._query.tree import Field, RunGroup, Selection
from engine._storage.contract import (
    ANY,
    AppendRequest,
    EventFilter,
    Progress,
    RunControl,
    StaleRun,
    Store,
)
from engine.errors import ClosedError, EngineError, StorageError, ValidationError

from . import protocol as p

__all__ = ["RemoteStore", "open_url"]

WAIT = 30.0
"""Seconds a call keeps asking a server that does not answer before it raises
``StorageError``."""
LONG_POLL = 5.0  # seconds the server may hold a request for the head when nothing happens
_RETRYABLE = frozenset({502, 503, 504})


def open_url(url: str, *, durability: str, upcasters: Upcasters, token: str | None = None,
             spool: str | None = None, offline: bool = False) -> Store:
    """The store for an ``http://`` or ``https://`` URL (the backend registry's entry point).

    :raises ValidationError: for a token that is not a string.
    """
    del durability  # the server's own setting decides what a commit survives
    if token is not None and (type(token) is not str or not token):
        raise ValidationError("token must be a non-empty string", key="token")
    return RemoteStore(url, upcasters=upcasters,
                       token=token or os.environ.get("KITTIWAKE_TOKEN") or None)


class RemoteStore(Store):
    """A ``Store`` whose database is behind a Kittiwake server."""

    def __init__(self, url: str, *, upcasters: Upcasters, token: str | None,
                 wait: float | None = None) -> None:
        self.url = url.rstrip("/")
        self.upcasters = upcasters
        self.wait = WAIT if wait is None else wait
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
        try:
            await self._call("GET", "/api/v1/health")
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with anyio.CancelScope(shield=True):
                await client.aclose()

    # The wire ------------------------------------------------------------------------------

    async def _call(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                    body: Any = None, retry: bool = True, seconds: float | None = None,
                    arrays: bool = True) -> Any:
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
            content = None if body is None else wire.dumps(body)
            request = client.build_request(method, path, params=params, content=content,
                                           **extra)
        except (UnicodeEncodeError, TypeError) as exc:  # orjson's error is a TypeError
            raise ValidationError(f"cannot send this to a server: {exc}",
                                  key=_culprit(params, body)) from None
        deadline = time.monotonic() + self.wait
        pause = 0.05
        while True:
            try:
                response = await client.send(request)
            except httpx.TransportError as exc:
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
        answer = await self._call(
            "POST", "/api/v1/append", retry=False,
            body={"requests": [p.request_to(r) for r in requests], "now": now})
        return [p.error_from(o, 0) if "error" in o
                else [p.record_from(r) for r in o["records"]] for o in answer["outcomes"]]

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

    async def get_run(self, project: str, run_id: str) -> RunState | None:
        answer = await self._call("GET", self._project(project) + "/run",
                                  params={"run_id": run_id})
        return None if answer["run"] is None else p.state_from(answer["run"])

    async def list_runs(self, project: str, *, include_deleted: bool,
                        selection: Selection | None = None) -> list[RunState]:
        params = _selection(selection)
        params["include_deleted"] = _flag(include_deleted)
        answer = await self._call("GET", self._project(project) + "/runs", params=params)
        return [p.state_from(s) for s in answer["runs"]]

    async def group_runs(self, project: str, *, include_deleted: bool, selection: Selection,
                         by: Sequence[Field],
                         aggregates: Sequence[Field] | None) -> list[RunGroup]:
        params = _selection(selection)
        params["include_deleted"] = _flag(include_deleted)
        params["by"] = ", ".join(str(f) for f in by)
        if aggregates is not None:
            params["aggregates"] = ", ".join(str(f) for f in aggregates)
        answer = await self._call("GET", self._project(project) + "/groups", params=params)
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

    async def get_experiment(self, project: str, name: str) -> Experiment:
        answer = await self._call("GET", self._project(project) + "/experiment",
                                  params={"name": name})
        return p.experiment_from(answer)

    async def lineage(self, project: str, run_id: str) -> Lineage | None:
        answer = await self._call("GET", self._project(project) + "/lineage",
                                  params={"run_id": run_id})
        return None if answer["lineage"] is None else p.lineage_from(answer["lineage"])

    async def projects(self) -> list[tuple[str, int]]:
        answer = await self._call("GET", "/api/v1/projects")
        return [(str(p["project"]), int(p["runs"])) for p in answer["projects"]]

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

    async def stale_runs(self, before: float) -> list[StaleRun]:
        answer = await self._call("GET", "/api/v1/stale", params={"before": repr(before)})
        return [p.stale_from(s) for s in answer["runs"]]

    async def controls(self, runs: Sequence[tuple[str, str]]) -> dict[tuple[str, str],
                                                                     RunControl]:
        answer = await self._call("POST", "/api/v1/controls",
                                  body={"runs": [list(r) for r in runs]})
        return dict(p.control_from(c) for c in answer["controls"])


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
    return params
