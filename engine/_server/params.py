"""Reading a request: query parameters and JSON bodies, each bad one refused as a
``ValidationError`` naming it (the server answers 422), never a server error."""

from __future__ import annotations

from typing import Any, TypeVar

from starlette.exceptions import HTTPException
from starlette.requests import Request

from engine._core import wire
from engine._core.validate import check_project, check_run_id
from engine.errors import ValidationError

__all__ = ["MAX_BODY", "body", "project_of", "q_bool", "q_int", "q_number", "q_str", "run_of",
           "take"]

T = TypeVar("T")
_INT64 = 2**63


MAX_BODY = 256 * 2**20
"""The largest JSON body a request may send (file bytes stream through their own route,
without this limit): the remote client sends an append's groups in parts of at most 32 MiB
(one run's batch alone may be more), and a body past this is refused with a 413 before it is
held in memory."""


async def body(request: Request) -> dict[str, Any]:
    """The request's JSON object.

    :raises HTTPException: 413 for a body over ``MAX_BODY`` bytes.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise _too_large()
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise _too_large()
        parts.append(chunk)
    try:
        value = wire.loads(b"".join(parts))
    except (wire.WireError, UnicodeDecodeError) as exc:
        raise ValidationError(f"bad request body: {exc}", key="body") from None
    if type(value) is not dict:
        raise ValidationError("the request body must be a JSON object", key="body")
    return value


def _too_large() -> HTTPException:
    return HTTPException(413, f"the request body is over {MAX_BODY // 2**20} MiB; send fewer "
                              "points per request")


def take(data: dict[str, Any], name: str, kind: type[T] | tuple[type, ...], *,
         optional: bool = False) -> Any:
    """``data[name]``, which must be of ``kind`` (or None when ``optional``)."""
    if name not in data:
        if optional:
            return None
        raise ValidationError(f"{name} is missing", key=name)
    value = data[name]
    if value is None and optional:
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if type(value) not in kinds or (type(value) is int and not -_INT64 <= value < _INT64):
        names = " or ".join(k.__name__ for k in kinds)
        raise ValidationError(f"{name} must be {names}, not {value!r}", key=name)
    return value


def source(request: Request) -> Any:
    """Where a request's named parameters are: its query, or (after ``from_body``) its
    body's fields as text."""
    return getattr(request.state, "params", None) or request.query_params


async def from_body(request: Request) -> None:
    """Take the named parameters from the JSON body (a POST of what a GET takes in its
    query: for queries too long for a URL)."""
    data = await body(request)
    params: dict[str, str] = {}
    for name, value in data.items():
        if isinstance(value, bool):
            params[name] = "true" if value else "false"
        elif isinstance(value, (str, int, float)):
            params[name] = value if isinstance(value, str) else repr(value)
        elif value is not None:
            raise ValidationError(f"{name} must be text, a number or a bool", key=name)
    request.state.params = params


def project_of(request: Request) -> str:
    return check_project(request.path_params["project"])


def run_of(request: Request, name: str = "run_id") -> str:
    value = source(request).get(name)
    if value is None:
        raise ValidationError(f"{name} is missing", key=name)
    return check_run_id(value)


def q_str(request: Request, name: str, *, required: bool = False) -> str | None:
    value = source(request).get(name)
    if value is None and required:
        raise ValidationError(f"{name} is missing", key=name)
    if value is not None and "\x00" in value:
        raise ValidationError(f"{name} holds a NUL character", key=name)
    return value


def q_int(request: Request, name: str, default: int | None, *, low: int = 0,
          high: int = _INT64 - 1) -> int | None:
    raw = source(request).get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(f"{name} must be an int, not {raw!r}", key=name) from None
    if not low <= value <= high:
        raise ValidationError(f"{name} must be between {low} and {high}, not {value}",
                              key=name)
    return value


def q_number(request: Request, name: str) -> int | float | None:
    raw = source(request).get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        return float(raw)
    except ValueError:
        raise ValidationError(f"{name} must be a number, not {raw!r}", key=name) from None


def q_bool(request: Request, name: str) -> bool:
    raw = str(source(request).get(name, "false")).lower()
    if raw in ("true", "1", "yes"):
        return True
    if raw in ("false", "0", "no", ""):
        return False
    raise ValidationError(f"{name} must be true or false, not {raw!r}", key=name)
