"""What the web dashboard needs of the server besides the API every client uses.

Its files (``engine._dashboard``) at ``/``, the abort button's and the tag editor's
requests, and signing in: on a server with ``--auth`` the pages ask for a token and keep it
in a cookie (``auth.SESSION_COOKIE``), since the browser's EventSource cannot send an
``Authorization`` header. The pages are static: every view is built in the browser from the
API, and the routes here are plain API routes any client may call.
"""

from __future__ import annotations

import hashlib
import mimetypes
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from engine._core.validate import check_tags
from engine._dashboard import STATIC
from engine._runtime.tracker import Tracker
from engine.errors import AuthError, ValidationError

from .auth import SESSION_COOKIE, access_of
from .params import body, project_of, run_of, take
from .routes import answer
from .tokens import Access

__all__ = ["dashboard_routes"]


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


async def tags(request: Request) -> Response:
    """Add and remove a run's tags, running or ended (``{run_id, add, remove}``).

    :raises ValidationError: for a bad tag, naming it; nothing changes.
    :raises RunNotFoundError: for a run that does not exist.
    """
    project = project_of(request)
    (await access_of(request)).allow(project, "write")
    data: dict[str, Any] = await body(request)
    run_id = take(data, "run_id", str)
    add = check_tags(take(data, "add", list, optional=True) or [])
    remove = check_tags(take(data, "remove", list, optional=True) or [])
    tracker: Tracker = request.app.state.tracker
    async with tracker.edit_run(run_id, project=project) as run:
        if add:
            run.add_tags(add)
        if remove:
            run.remove_tags(remove)
    return answer({})


async def notes(request: Request) -> Response:
    """Replace a run's notes, running or ended (``{run_id, notes}``).

    :raises ValidationError: for notes that are not a str or longer than 1 MiB.
    :raises RunNotFoundError: for a run that does not exist.
    """
    project = project_of(request)
    (await access_of(request)).allow(project, "write")
    data: dict[str, Any] = await body(request)
    run_id = take(data, "run_id", str)
    text = take(data, "notes", str)
    tracker: Tracker = request.app.state.tracker
    async with tracker.edit_run(run_id, project=project) as run:
        run.set_notes(text)
    return answer({})


async def contents(request: Request) -> Response:
    """What a run records besides metrics: each key's kind (text, file, histogram, confusion
    matrix or file attribute) and last step, a fork's inherited keys included; None when
    the run does not exist."""
    project = project_of(request)
    (await access_of(request)).allow(project, "read")
    run_id = run_of(request)
    found = await request.app.state.store.controls([(project, run_id)])
    control = found.get((project, run_id))
    return answer({"contents": None if control is None else control.kinds})


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
        Route("/api/v1/session", session, methods=["GET"]),
        Route("/api/v1/session", sign_in, methods=["POST"]),
        Route("/api/v1/session", sign_out, methods=["DELETE"]),
        Route("/api/v1/projects/{project:path}/abort", abort, methods=["POST"]),
        Route("/api/v1/projects/{project:path}/tags", tags, methods=["POST"]),
        Route("/api/v1/projects/{project:path}/notes", notes, methods=["POST"]),
        Route("/api/v1/projects/{project:path}/contents", contents, methods=["GET"]),
        # Every method, so that an unknown path is a 404 whatever the method.
        Route("/{path:path}", Files(STATIC).serve,
              methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
    ]


class Files:
    """The dashboard's files, read once and served from memory.

    They are a few hundred kilobytes; serving each from memory instead of opening it per
    request takes the page's first load from hundreds of milliseconds to tens on a busy
    machine (``bench/dashboard.py``). Each answer carries an ETag and ``no-cache``, so a
    browser revalidates (a 304) and never keeps a page of an older release.
    """

    def __init__(self, root: Path) -> None:
        self.files: dict[str, tuple[bytes, str, str]] = {}
        for path in sorted(root.rglob("*")):
            if path.is_file():
                data = path.read_bytes()
                kind = _KINDS.get(path.suffix) or mimetypes.guess_type(path.name)[0]
                self.files[path.relative_to(root).as_posix()] = (
                    data, kind or "application/octet-stream",
                    '"' + hashlib.sha256(data).hexdigest()[:32] + '"')

    async def serve(self, request: Request) -> Response:
        """The file at the request's path (``index.html`` at ``/``).

        :raises HTTPException: 404 for any other path or method.
        """
        name = request.path_params["path"] or "index.html"
        found = self.files.get(name)
        if found is None or request.method not in ("GET", "HEAD"):
            raise HTTPException(404, f"no such file: {name}")
        data, kind, etag = found
        headers = {"etag": etag, "cache-control": "no-cache",
                   "x-content-type-options": "nosniff"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(b"" if request.method == "HEAD" else data, media_type=kind,
                        headers=headers)


_KINDS = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".html": "text/html; charset=utf-8", ".md": "text/markdown; charset=utf-8",
          "": "text/plain; charset=utf-8"}
