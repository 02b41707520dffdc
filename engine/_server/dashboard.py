"""What the web dashboard needs of the server besides the API every client uses.

Its files (``engine._dashboard``) at ``/``, the list of projects its first page shows, the
abort button's request, and signing in: on a server with ``--auth`` the pages ask for a token
and keep it in a cookie (``auth.SESSION_COOKIE``), since the browser's EventSource cannot
send an ``Authorization`` header. The pages are static: every view is built in the browser
from the API, and the routes here are plain API routes any client may call.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from engine._dashboard import STATIC
from engine._runtime.tracker import Tracker
from engine._storage.contract import Store
from engine.errors import AuthError, ValidationError

from .auth import SESSION_COOKIE, access_of
from .params import body, project_of, take
from .routes import answer
from .tokens import Access

__all__ = ["dashboard_routes"]


async def projects(request: Request) -> Response:
    """Every project with runs (only the token's own, for a token bound to one)."""
    scope = (await access_of(request)).scope(None)
    store: Store = request.app.state.store
    found = await store.projects()
    return answer({"projects": [{"project": name, "runs": count} for name, count in found
                                if scope is None or name == scope]})


async def abort(request: Request) -> Response:
    """Ask a running run to stop (a run that already ended is left as it is)."""
    project = project_of(request)
    (await access_of(request)).allow(project, "write")
    data: dict[str, Any] = await body(request)
    run_id = take(data, "run_id", str)
    reason = take(data, "reason", str, optional=True)
    if reason is not None and len(reason) > 10_000:
        raise ValidationError("reason must be at most 10000 characters", key="reason")
    tracker: Tracker = request.app.state.tracker
    await tracker.abort_run(run_id, reason, project=project)
    return answer({})


def _session(access: Access, request: Request) -> dict[str, Any]:
    return {"project": access.project, "role": access.role,
            "auth": request.app.state.tokens is not None}


async def session(request: Request) -> Response:
    """Who the caller is: its project (None: every project) and role.

    :raises AuthError: without a valid token on a server with ``--auth`` (the pages then
        show the sign-in form).
    """
    return answer(_session(await access_of(request), request))


async def sign_in(request: Request) -> Response:
    """Check a token and keep it in the session cookie.

    :raises AuthError: for a token that is not valid.
    """
    data: dict[str, Any] = await body(request)
    secret = take(data, "token", str).strip()
    if not secret or len(secret) > 1000:
        raise ValidationError("token must be a non-empty string", key="token")
    tokens = request.app.state.tokens
    if tokens is None:
        return answer(_session(await access_of(request), request))
    found: Access | None = await tokens.verify(secret)
    if found is None:
        raise AuthError("the token is not valid: unknown, revoked or expired")
    response = answer(_session(found, request))
    response.set_cookie(SESSION_COOKIE, secret, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")
    return response


async def sign_out(request: Request) -> Response:
    response = answer({})
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


def dashboard_routes() -> list[BaseRoute]:
    """The dashboard's routes; the files come last, as they answer every other path."""
    return [
        Route("/api/v1/projects", projects, methods=["GET"]),
        Route("/api/v1/session", session, methods=["GET"]),
        Route("/api/v1/session", sign_in, methods=["POST"]),
        Route("/api/v1/session", sign_out, methods=["DELETE"]),
        Route("/api/v1/projects/{project:path}/abort", abort, methods=["POST"]),
        Mount("/", app=StaticFiles(directory=STATIC, html=True), name="dashboard"),
    ]
