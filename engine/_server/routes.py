"""The routes over the storage contract: one per contract method, plus the runs table.

Every route reads its arguments through ``params`` (a bad one is a 422 naming it), checks the
caller's access for the project it touches, calls the store the server's tracker opened, and
answers in the wire JSON of ``engine._core.wire``.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from engine._client import protocol as p
from engine._core import events as ev
from engine._core import wire
from engine._core.validate import check_project, check_run_id
from engine._query.parser import parse_aggregates, parse_group_by, selection
from engine._query.tree import Selection
from engine._runtime.serving import publish
from engine._storage.contract import Store, TokenRow
from engine.errors import EngineError, StorageError, ValidationError

from .auth import access_of
from .params import (
    body,
    from_body,
    project_of,
    q_bool,
    q_int,
    q_number,
    q_str,
    run_of,
    source,
    take,
)
from .payloads import check_request
from .tokens import ROLES

__all__ = ["ROUTES"]

_MAX_READ = 100_000


def answer(value: Any, status: int = 200) -> Response:
    return Response(wire.dumps(value), status_code=status, media_type="application/json")


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


# The log ---------------------------------------------------------------------------------

async def append(request: Request) -> Response:
    access = await access_of(request)
    data = await body(request)
    raw = take(data, "requests", list)
    now = take(data, "now", (float, int))
    if not math.isfinite(now):
        raise ValidationError("now must be a finite number of seconds", key="now")
    requests = []
    for item in raw:
        if type(item) is not dict:
            raise ValidationError("each request is an object", key="requests")
        try:
            request_ = p.request_from(item)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationError(f"a malformed append request: {exc}", key="requests") from None
        check_project(request_.project)
        check_run_id(request_.run_id)
        deleting = any(e.type == ev.RUN_DELETED for e in request_.events)
        access.allow(request_.project, "admin" if deleting else "write")
        check_request(request_, request.app.state.upcasters)
        requests.append(request_)
    outcomes = await _store(request).append(requests, now=float(now))
    committed = [r for o in outcomes if isinstance(o, list) for r in o]
    publish(request.app.state.tracker, committed)  # live streams get them now
    request.app.state.heads.committed(max((r.position for r in committed), default=0))
    return answer({"outcomes": [
        {"error": p.error_body(_engine(o))["error"]} if isinstance(o, BaseException)
        else {"records": [p.receipt_to(r) for r in o]} for o in outcomes]})


def _engine(error: BaseException) -> EngineError:
    if isinstance(error, EngineError):
        return error
    return StorageError(f"the store failed: {type(error).__name__}: {error}")


async def head(request: Request) -> Response:
    await access_of(request)
    beyond = q_int(request, "beyond", None)
    wait = q_number(request, "wait") or 0.0
    if not 0 <= wait <= 3600:
        raise ValidationError("wait must be between 0 and 3600 seconds", key="wait")
    store = _store(request)
    if beyond is None or wait == 0:
        return answer({"head": await store.head()})
    state = request.app.state
    return answer({"head": await state.heads.wait(beyond, min(wait, state.long_poll))})


async def read(request: Request) -> Response:
    access = await access_of(request)
    data = await body(request)
    after = take(data, "after", int)
    limit = take(data, "limit", int)
    if after < 0:
        raise ValidationError(f"after must be a position >= 0, not {after}", key="after")
    if limit < 1:
        raise ValidationError(f"limit must be at least 1, not {limit}", key="limit")
    try:
        where = p.filter_from(take(data, "filter", dict, optional=True) or {})
    except ValueError as exc:
        raise ValidationError(str(exc), key="filter") from None
    scoped = access.scope(where.project)
    if scoped != where.project:
        where = type(where)(scoped, where.run_ids, where.types)
    # A page is capped: it then covers only what it returned, and the client reads on.
    records, covered = await _store(request).read(after, limit=min(limit, _MAX_READ),
                                                  where=where, arrays=True)
    return answer({"records": [p.record_to(r) for r in records], "covered": covered})


async def streams(request: Request) -> Response:
    access = await access_of(request)
    data = await body(request)
    project = check_project(take(data, "project", str))
    access.allow(project, "read")
    run_ids = take(data, "run_ids", list)
    for run_id in run_ids:
        check_run_id(run_id)
    upto = take(data, "upto", int)
    records = await _store(request).stream_records(project, run_ids, upto)
    return answer({"records": [p.record_to(r) for r in records]})


# Projections -------------------------------------------------------------------------------

async def _project(request: Request) -> str:
    project = project_of(request)
    (await access_of(request)).allow(project, "read")
    return project


def _selection(request: Request) -> Selection | None:
    names = ("where", "order_by", "limit", "offset", "heads_only", "now")
    if not any(n in source(request) for n in names):
        return None
    picked = selection(q_str(request, "where"), q_str(request, "order_by"),
                       q_int(request, "limit", None), q_int(request, "offset", 0) or 0,
                       q_bool(request, "heads_only"))
    now = q_number(request, "now")
    if now is not None:
        if not math.isfinite(now):
            raise ValidationError("now must be a finite time", key="now")
        picked = replace(picked, now=float(now))  # statuses judged at that time
    return picked


async def runs(request: Request) -> Response:
    if request.method == "POST":
        await from_body(request)
    project = await _project(request)
    found = await _store(request).list_runs(
        project, include_deleted=q_bool(request, "include_deleted"),
        selection=_selection(request))
    return answer({"runs": [p.state_to(s) for s in found]})


async def groups(request: Request) -> Response:
    if request.method == "POST":
        await from_body(request)
    project = await _project(request)
    by = parse_group_by(q_str(request, "by", required=True) or "")
    raw = q_str(request, "aggregates")
    aggregates = parse_aggregates([] if raw == "" else raw)  # empty: no aggregates
    picked = _selection(request) or Selection()
    found = await _store(request).group_runs(
        project, include_deleted=q_bool(request, "include_deleted"), selection=picked, by=by,
        aggregates=aggregates)
    return answer({"groups": [p.group_to(g) for g in found]})


async def run(request: Request) -> Response:
    project = await _project(request)
    now = q_number(request, "now")
    if now is not None and not math.isfinite(now):
        raise ValidationError("now must be a finite time", key="now")
    state = await _store(request).get_run(project, run_of(request),
                                          now=None if now is None else float(now))
    return answer({"run": None if state is None else p.state_to(state)})


async def series(request: Request) -> Response:
    project = await _project(request)
    metric = q_str(request, "metric", required=True)
    assert metric is not None
    found = await _store(request).read_series(
        project, run_of(request), metric, low=q_number(request, "low"),
        high=q_number(request, "high"), max_points=q_int(request, "max_points", None, low=1))
    return answer({"series": None if found is None else p.series_to(found)})


async def experiment(request: Request) -> Response:
    project = await _project(request)
    name = q_str(request, "name", required=True)
    assert name is not None
    return answer(p.experiment_to(await _store(request).get_experiment(project, name)))


async def lineage(request: Request) -> Response:
    project = await _project(request)
    found = await _store(request).lineage(project, run_of(request))
    return answer({"lineage": None if found is None else p.lineage_to(found)})


async def ancestry(request: Request) -> Response:
    project = await _project(request)
    return answer({"ancestry": await _store(request).ancestry(project, run_of(request))})


async def entries(request: Request) -> Response:
    project = await _project(request)
    key = q_str(request, "key", required=True)
    assert key is not None
    found = await _store(request).read_entries(project, run_of(request), key,
                                               tail=q_int(request, "tail", None))
    return answer({"entries": None if found is None else [found[0], found[1]]})


async def jobs(request: Request) -> Response:
    project = await _project(request)
    query = request.query_params
    found = await _store(request).jobs(
        project, queues=query.getlist("queues") or None,
        statuses=query.getlist("statuses") or None,
        run_ids=query.getlist("run_ids") or None, limit=q_int(request, "limit", None),
        now=q_number(request, "now"))
    return answer({"jobs": [p.job_to(j) for j in found]})


async def projects(request: Request) -> Response:
    access = await access_of(request)
    access.need("read")
    found = await _store(request).projects()
    scope = access.scope(None)
    return answer({"projects": {k: v for k, v in found.items()
                                if scope is None or k == scope}})


async def count(request: Request) -> Response:
    project = await _project(request)
    return answer({"count": await _store(request).run_count(project)})


# Liveness ----------------------------------------------------------------------------------

def _run_keys(data: dict[str, Any]) -> list[tuple[str, str]]:
    keys = []
    for item in take(data, "runs", list):
        if type(item) is not list or len(item) != 2:
            raise ValidationError("runs holds [project, run_id] pairs", key="runs")
        keys.append((check_project(item[0]), check_run_id(item[1])))
    return keys


async def beat(request: Request) -> Response:
    access = await access_of(request)
    data = await body(request)
    keys = _run_keys(data)
    at = take(data, "at", (float, int))
    if not math.isfinite(at):
        raise ValidationError("at must be a finite number of seconds", key="at")
    for project, _ in keys:
        access.allow(project, "write")
    await _store(request).beat(keys, float(at))
    return answer({})


async def stale(request: Request) -> Response:
    access = await access_of(request)
    now = q_number(request, "now")
    timeout = q_number(request, "crash_timeout")
    if now is None or not math.isfinite(now):
        raise ValidationError("now must be a number of seconds", key="now")
    if timeout is None or not math.isfinite(timeout) or timeout <= 0:
        raise ValidationError("crash_timeout must be a positive number of seconds",
                              key="crash_timeout")
    found = await _store(request).stale_runs(float(now), float(timeout))
    scope = access.scope(None)
    return answer({"runs": [p.stale_to(s) for s in found
                            if scope is None or s.project == scope]})


async def controls(request: Request) -> Response:
    access = await access_of(request)
    keys = _run_keys(await body(request))
    for project, _ in keys:
        access.allow(project, "read")
    found = await _store(request).controls(keys)
    return answer({"controls": [p.control_to(k, c) for k, c in found.items()]})


# The database as a whole (admin) -----------------------------------------------------------

async def _admin(request: Request) -> Store:
    (await access_of(request)).need("admin")
    return _store(request)


async def check(request: Request) -> Response:
    return answer({"findings": await (await _admin(request)).check()})


async def rebuild(request: Request) -> Response:
    await (await _admin(request)).rebuild()
    return answer({})


async def drop_retired(request: Request) -> Response:
    await (await _admin(request)).drop_retired()
    return answer({})


async def verify_rebuild(request: Request) -> Response:
    return answer({"tables": await (await _admin(request)).verify_rebuild()})


# Tokens (admin of the token's project) -----------------------------------------------------

_DIGEST = re.compile(r"[0-9a-f]{64}")


async def token_save(request: Request) -> Response:
    access = await access_of(request)
    data = await body(request)
    role = take(data, "role", str)
    if role not in ROLES:
        raise ValidationError(f"role must be one of {', '.join(ROLES)}", key="role")
    digest = take(data, "digest", str)
    if not _DIGEST.fullmatch(digest):
        raise ValidationError("digest must be a SHA-256 in hex", key="digest")
    token_id = take(data, "id", str)
    if not 1 <= len(token_id) <= 64 or not token_id.isascii() or not token_id.isprintable():
        raise ValidationError("id must be 1-64 printable ASCII characters", key="id")
    row = TokenRow(token_id, check_project(take(data, "project", str)), role, digest,
                   float(take(data, "created_at", (float, int))),
                   _seconds(take(data, "expires_at", (float, int), optional=True)), None)
    if not math.isfinite(row.created_at):
        raise ValidationError("created_at must be a finite time", key="created_at")
    access.allow(row.project, "admin")
    await _store(request).save_token(row)
    return answer({})


def _seconds(value: float | int | None) -> float | None:
    if value is None:
        return None
    if not math.isfinite(value):
        raise ValidationError("expires_at must be a finite time", key="expires_at")
    return float(value)


async def token_list(request: Request) -> Response:
    access = await access_of(request)
    access.need("admin")
    project = q_str(request, "project")
    found = await _store(request).list_tokens(access.scope(project))
    return answer({"tokens": [p.token_to(t) for t in found]})


async def token_find(request: Request) -> Response:
    access = await access_of(request)
    access.need("admin")
    found = await _store(request).find_token(take(await body(request), "digest", str))
    if found is not None and access.project not in (None, found.project):
        found = None  # another project's token is none of this admin's business
    return answer({"token": None if found is None else p.token_to(found)})


async def token_revoke(request: Request) -> Response:
    access = await access_of(request)
    access.need("admin")
    data = await body(request)
    token_id = take(data, "id", str)
    at = take(data, "at", (float, int))
    if not math.isfinite(at):
        raise ValidationError("at must be a finite time", key="at")
    store = _store(request)
    mine = {t.id for t in await store.list_tokens(access.scope(None))}
    found = await store.revoke_token(token_id, float(at)) if token_id in mine else None
    return answer({"token": None if found is None else p.token_to(found)})


async def health(request: Request) -> Response:
    await _store(request).head()  # the database answers too
    return answer({"status": "ok"})


P = "/api/v1/projects/{project:path}"
ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/api/v1/health", health),
    ("POST", "/api/v1/append", append),
    ("GET", "/api/v1/head", head),
    ("POST", "/api/v1/read", read),
    ("POST", "/api/v1/streams", streams),
    ("POST", "/api/v1/beat", beat),
    ("GET", "/api/v1/stale", stale),
    ("POST", "/api/v1/controls", controls),
    ("POST", "/api/v1/admin/check", check),
    ("POST", "/api/v1/admin/rebuild", rebuild),
    ("POST", "/api/v1/admin/drop-retired", drop_retired),
    ("POST", "/api/v1/admin/verify-rebuild", verify_rebuild),
    ("POST", "/api/v1/tokens", token_save),
    ("GET", "/api/v1/tokens", token_list),
    ("POST", "/api/v1/tokens/find", token_find),
    ("POST", "/api/v1/tokens/revoke", token_revoke),
    ("GET", P + "/runs", runs),
    ("POST", P + "/runs", runs),
    ("GET", P + "/groups", groups),
    ("POST", P + "/groups", groups),
    ("GET", P + "/run", run),
    ("GET", P + "/series", series),
    ("GET", P + "/experiment", experiment),
    ("GET", P + "/lineage", lineage),
    ("GET", P + "/ancestry", ancestry),
    ("GET", P + "/count", count),
    ("GET", P + "/entries", entries),
    ("GET", P + "/jobs", jobs),
    ("GET", "/api/v1/projects", projects),
]
