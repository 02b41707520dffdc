"""The OpenAPI schema of ``/api/v1/``: every route, its parameters, bodies and answers.

Written out rather than derived: the routes take wire JSON (``engine._core.wire``), whose
tags a generator could not guess, and a fuzzer (schemathesis, in the test suite) checks every
route against this document.
"""

from __future__ import annotations

from typing import Any

__all__ = ["schema"]

_ERROR = {
    "type": "object", "required": ["error"],
    "properties": {"error": {
        "type": "object", "required": ["type", "message"],
        "properties": {
            "type": {"type": "string", "description": "the engine.errors type, such as "
                     "ValidationError, RunExistsError, AuthError, StorageError"},
            "message": {"type": "string"},
            "field": {"type": ["string", "null"], "description": "the bad field, if any"},
        }}},
}
_OBJECT: dict[str, Any] = {"type": "object"}
_STR = {"type": "string"}
_INT = {"type": "integer", "minimum": 0}
_NUM = {"type": "number"}
_BOOL = {"type": "string", "enum": ["true", "false"]}
_TAGGED = ("Wire JSON: NaN and ±inf as {\"$f\": \"nan\"}, datetimes as {\"$t\": iso}, big "
           "ints as {\"$i\": digits}, columns as {\"$a\": [typecode, base64 little-endian]}.")

_PROJECT = {"name": "project", "in": "path", "required": True, "schema": _STR,
            "description": "the project, such as team/vision"}


def _q(name: str, schema: dict[str, Any], required: bool = False,
       description: str | None = None) -> dict[str, Any]:
    param: dict[str, Any] = {"name": name, "in": "query", "required": required,
                             "schema": schema}
    if description:
        param["description"] = description
    return param


def _answers(ok: dict[str, Any], *statuses: int) -> dict[str, Any]:
    error = {"description": "an error, named", "content": {"application/json": {
        "schema": _ERROR}}}
    out: dict[str, Any] = {"200": {"description": "done", "content": {
        "application/json": {"schema": ok}}}}
    for status in (400, 401, 403, 404, 409, 422, 503, *statuses):
        out[str(status)] = error
    return out


def _op(summary: str, ok: dict[str, Any], params: list[dict[str, Any]] | None = None,
        body: dict[str, Any] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": _answers(ok)}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": body}}}
    return op


def _obj(required: list[str], **props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


_EVENT = {"type": "array", "minItems": 3, "maxItems": 3,
          "description": "[type, id (32 hex digits), data]",
          "items": {}}
_REQUEST = _obj(["project", "run_id", "events"], project=_STR, run_id=_STR,
                events={"type": "array", "items": _EVENT},
                expected_version={"type": ["integer", "null"]})
_RUN = {"name": "run_id", "in": "query", "required": True, "schema": _STR}
_DIGEST = {"name": "digest", "in": "path", "required": True, "schema": _STR,
           "description": "sha256: and 64 lowercase hex digits"}
_FORM = {"type": "object", "description": "the GET's query parameters as fields: text, "
         "numbers and booleans", "additionalProperties": {"type": ["string", "number",
                                                                   "boolean", "null"]}}
_SELECT = [_q("where", _STR, description="a runs-table query"),
           _q("order_by", _STR, description="fields, - for descending"),
           _q("limit", _INT), _q("offset", _INT), _q("heads_only", _BOOL),
           _q("include_deleted", _BOOL)]


def schema() -> dict[str, Any]:
    """The OpenAPI 3.1 document."""
    p = "/api/v1/projects/{project}"
    paths: dict[str, Any] = {
        "/api/v1/health": {"get": _op("liveness of the server and its database", _OBJECT)},
        "/api/v1/session": {
            "get": _op("the caller's project (null: every project) and role",
                       _obj(["project", "role", "auth"])),
            "post": _op("sign in: check a token and keep it in an HttpOnly cookie (the "
                        "dashboard's EventSource cannot send a header)",
                        _obj(["project", "role", "auth"]), body=_obj(["token"], token=_STR)),
            "delete": _op("sign out: drop the cookie", _OBJECT)},
        p + "/tags": {"post": _op(
            "add and remove a run's tags, running or ended", _OBJECT, [_PROJECT],
            body=_obj(["run_id"], run_id=_STR, add={"type": "array", "items": _STR},
                      remove={"type": "array", "items": _STR}))},
        p + "/notes": {"post": _op(
            "replace a run's notes, running or ended", _OBJECT, [_PROJECT],
            body=_obj(["run_id", "notes"], run_id=_STR, notes=_STR))},
        p + "/contents": {"get": _op(
            "each key a run records besides metrics, as [kind, last step] (kind: text, "
            "file, histogram, confusion matrix or file attribute); null for no such run",
            _obj(["contents"]), [_PROJECT, _RUN])},
        p + "/abort": {"post": _op(
            "ask a running run to stop", _OBJECT, [_PROJECT],
            body=_obj(["run_id"], run_id=_STR, reason={"type": ["string", "null"]}))},
        "/api/v1/append": {"post": _op(
            "append requests to the log, one transaction (group commit); " + _TAGGED,
            _obj(["outcomes"], outcomes={"type": "array"}),
            body=_obj(["requests", "now"], requests={"type": "array", "items": _REQUEST},
                      now=_NUM))},
        "/api/v1/head": {"get": _op(
            "the log's head; with beyond and wait, held until it passes beyond",
            _obj(["head"], head=_INT),
            [_q("beyond", _INT), _q("wait", {"type": "number", "minimum": 0,
                                             "maximum": 3600})])},
        "/api/v1/read": {"post": _op(
            "records after a position, filtered", _obj(["records", "covered"]),
            body=_obj(["after", "limit"], after=_INT,
                      limit={"type": "integer", "minimum": 1},
                      filter=_obj([], project={"type": ["string", "null"]},
                                  runs={"type": ["array", "null"], "items": _STR},
                                  types={"type": ["array", "null"], "items": _STR})))},
        "/api/v1/streams": {"post": _op(
            "every record of the given runs' streams up to a position", _obj(["records"]),
            body=_obj(["project", "run_ids", "upto"], project=_STR,
                      run_ids={"type": "array", "items": _STR}, upto=_INT))},
        "/api/v1/beat": {"post": _op(
            "heartbeats of live runs", _OBJECT,
            body=_obj(["runs", "at"], runs={"type": "array", "items": {
                "type": "array", "items": _STR, "minItems": 2, "maxItems": 2}}, at=_NUM))},
        "/api/v1/stale": {"get": _op(
            "running runs silent for longer than their crash timeout at a time",
            _obj(["runs"]), [_q("now", _NUM, True),
                             _q("crash_timeout", {"type": "number", "exclusiveMinimum": 0},
                                True)])},
        "/api/v1/projects": {"get": _op("every project with runs, and its run count",
                                        _obj(["projects"]))},
        "/api/v1/admin/gc": {"post": _op(
            "remove file bytes no project's log names, stored at least grace seconds ago "
            "(admin)", _obj(["removed", "freed", "kept_young", "leftovers"]),
            body=_obj(["grace"], grace={"type": "number", "minimum": 0},
                      dry_run={"type": "boolean"}))},
        "/api/v1/blobs": {"get": _op("the stored digests (with auth: those the token's "
                                     "project names)", _obj(["digests"])),
                          "post": {
            "summary": "store the request body's bytes (a file's), streamed; its digest back",
            "requestBody": {"required": True, "content": {"application/octet-stream": {
                "schema": {"type": "string", "format": "binary"}}}},
            "responses": _answers(_obj(["digest", "size"], digest=_STR, size=_INT))}},
        "/api/v1/blobs/{digest}": {"get": {
            "summary": "a file's bytes, streamed (a token reads only what its project names)",
            "parameters": [_DIGEST],
            "responses": {**_answers(_OBJECT), "200": {
                "description": "the bytes", "content": {"application/octet-stream": {
                    "schema": {"type": "string", "format": "binary"}}}}}}},
        "/api/v1/blobs/{digest}/size": {"get": _op("a blob's size (null: not stored)",
                                                   _obj(["size"]), [_DIGEST])},
        "/api/v1/controls": {"post": _op(
            "the control state of live runs", _obj(["controls"]),
            body=_obj(["runs"], runs={"type": "array", "items": {
                "type": "array", "items": _STR, "minItems": 2, "maxItems": 2}}))},
        "/api/v1/admin/check": {"post": _op("verify the database (admin)",
                                            _obj(["findings"]))},
        "/api/v1/admin/rebuild": {"post": _op("rebuild every projection (admin)", _OBJECT)},
        "/api/v1/admin/drop-retired": {"post": _op("drop swapped-out tables (admin)",
                                                   _OBJECT)},
        "/api/v1/admin/verify-rebuild": {"post": _op(
            "compare the projections with a rebuild (admin)", _obj(["tables"]))},
        "/api/v1/tokens": {
            "post": _op("store a new token's hash (admin of its project)", _OBJECT,
                        body=_obj(["id", "project", "role", "digest", "created_at"],
                                  id=_STR, project=_STR,
                                  role={"type": "string", "enum": ["read", "write", "admin"]},
                                  digest={"type": "string", "pattern": "^[0-9a-f]{64}$"},
                                  created_at=_NUM, expires_at={"type": ["number", "null"]})),
            "get": _op("the tokens of the caller's project (admin), never their secrets",
                       _obj(["tokens"]), [_q("project", _STR)])},
        "/api/v1/tokens/find": {"post": _op("a token by its digest (admin)", _obj(["token"]),
                                            body=_obj(["digest"], digest=_STR))},
        "/api/v1/tokens/revoke": {"post": _op(
            "revoke a token of the caller's project (admin), at once on every server",
            _obj(["token"]), body=_obj(["id", "at"], id=_STR, at=_NUM))},
        p + "/runs": {
            "get": _op("the runs table", _obj(["runs"]), [_PROJECT, *_SELECT]),
            "post": _op("the runs table, its parameters in the body (for long queries)",
                        _obj(["runs"]), [_PROJECT], body=_FORM)},
        p + "/groups": {
            "get": _op("runs grouped by fields, with metric aggregates", _obj(["groups"]),
                       [_PROJECT, _q("by", _STR, True), _q("aggregates", _STR), *_SELECT]),
            "post": _op("the same, its parameters in the body", _obj(["groups"]),
                        [_PROJECT], body=_FORM)},
        p + "/run": {"get": _op("one run's state (null when missing)", _obj(["run"]),
                                [_PROJECT, _RUN, _q("now", _NUM, description=(
                                    "judge its status at this time (heartbeat promises)"))])},
        p + "/entries": {"get": _op(
            "a run's text, file, histogram or confusion-matrix series under a key",
            _obj(["entries"]), [_PROJECT, _RUN, _q("key", _STR, True), _q("tail", _INT)])},
        p + "/jobs": {"get": _op(
            "the project's jobs", _obj(["jobs"]),
            [_PROJECT, _q("queues", {"type": "array", "items": _STR}),
             _q("statuses", {"type": "array", "items": _STR}),
             _q("run_ids", {"type": "array", "items": _STR}), _q("limit", _INT),
             _q("now", _NUM)])},
        p + "/series": {"get": _op(
            "a run's effective series of one metric", _obj(["series"]),
            [_PROJECT, _RUN, _q("metric", _STR, True), _q("low", _NUM), _q("high", _NUM),
             _q("max_points", {"type": "integer", "minimum": 1})])},
        p + "/experiment": {"get": _op("an experiment's head and history", _OBJECT,
                                       [_PROJECT, _q("name", _STR, True)])},
        p + "/lineage": {"get": _op("a run's ancestors and descendants", _obj(["lineage"]),
                                    [_PROJECT, _RUN])},
        p + "/ancestry": {"get": _op("a run's id and its ancestors' ids",
                                     _obj(["ancestry"]), [_PROJECT, _RUN])},
        p + "/count": {"get": _op("runs ever created in the project", _obj(["count"]),
                                  [_PROJECT])},
        p + "/events": {"get": {
            "summary": "the project's log as server-sent events; each id is a position, "
                       "Last-Event-ID resumes after it",
            "parameters": [
                _PROJECT,
                _q("from", _STR, description="start (default), live, or a position"),
                _q("runs", {"type": "array", "items": _STR}),
                _q("types", {"type": "array", "items": _STR}),
                _q("metrics", {"type": "array", "items": _STR}),
                {"name": "Last-Event-ID", "in": "header", "required": False,
                 "schema": _STR}],
            "responses": {**_answers(_OBJECT), "200": {
                "description": "an event stream",
                "content": {"text/event-stream": {"schema": _STR}}}}}},
        "/api/v1/openapi.json": {"get": _op("this document", _OBJECT)},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Kittiwake", "version": "1",
                 "description": "The Kittiwake engine over HTTP. " + _TAGGED},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}, {}],
        "paths": paths,
    }
