"""What the web dashboard needs of the server besides the API every client uses.

Its files (``engine._dashboard``) at ``/``, the list of projects its first page shows, and
the abort button's request. The pages are static: every view is built in the browser from
the API, and the routes here are plain API routes any client may call.
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
from engine.errors import ValidationError

from .auth import access_of
from .params import body, project_of, take
from .routes import answer

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


def dashboard_routes() -> list[BaseRoute]:
    """The dashboard's routes; the files come last, as they answer every other path."""
    return [
        Route("/api/v1/projects", projects, methods=["GET"]),
        Route("/api/v1/projects/{project:path}/abort", abort, methods=["POST"]),
        Mount("/", app=StaticFiles(directory=STATIC, html=True), name="dashboard"),
    ]
