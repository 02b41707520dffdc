"""A server with --auth: the pages ask for a token, keep it in an HttpOnly cookie (the live
stream cannot send a header), show only the token's project, and hide the controls a read
token may not use."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from engine._core import events as ev
from engine._core.events import NewEvent, default_upcasters
from engine._server.tokens import create
from engine._storage.contract import AppendRequest
from engine._storage.registry import open_store
from tests.conftest import in_thread
from tests.server.live import LiveServer

pytestmark = pytest.mark.browser


def _created(name: str) -> NewEvent:
    return NewEvent(ev.RUN_CREATED, {"name": name, "experiment": None, "tags": [],
                                     "config": {}, "fork": None})


@pytest.fixture
def tokens(tmp_path: Path) -> dict[str, str]:
    """Two projects, a run left running in the first, and tokens for it."""
    db = str(tmp_path / "db.sqlite")

    async def seed() -> dict[str, str]:
        store = open_store(db, durability="normal", upcasters=default_upcasters())
        await store.open()
        try:
            await store.append([AppendRequest("team/a", "live", [_created("live")]),
                                AppendRequest("team/b", "other", [_created("other")])],
                               now=time.time())
            return {role: (await create(store, "team/a", role, expires_in=None))[1]
                    for role in ("read", "write")}
        finally:
            await store.close()

    found: dict[str, str] = {"db": db}
    # On a thread of its own: the browser's driver runs an event loop on this one.
    in_thread(lambda: found.update(anyio.run(seed)))
    return found


@pytest.fixture
def server(tokens: dict[str, str]) -> Iterator[LiveServer]:
    with LiveServer(tokens["db"], auth=True, durability="normal") as server:
        yield server


def sign_in(page: Any, token: str) -> None:
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def test_the_pages_ask_for_a_token_and_show_only_its_project(
        page: Any, server: LiveServer, tokens: dict[str, str], console: Any) -> None:
    console.expected.append("401")
    page.goto(server.url + "/")
    sign_in(page, "not-a-token")
    page.get_by_role("alert").filter(has_text="not valid").wait_for()
    sign_in(page, tokens["read"])
    page.get_by_role("link", name="team/a").wait_for()
    assert page.get_by_role("link", name="team/b").count() == 0
    cookie = next(c for c in page.context.cookies() if c["name"] == "kittiwake_token")
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # out of scripts' reach
    page.goto(server.url + "/#/run?project=team/a&id=live")
    page.wait_for_selector("h1 .chip:has-text('running')")
    page.wait_for_selector("#live[data-state=live]")  # the stream took the cookie
    # A read token sees no edit controls.
    assert page.get_by_role("button", name="Abort…").count() == 0
    assert page.get_by_label("Add a tag").count() == 0
    assert page.locator(".notes button").count() == 0  # no "Add notes" / "Edit notes"
    page.get_by_role("button", name="Sign out (team/a, read)").click()
    page.get_by_label("Token").wait_for()
    page.reload()
    page.get_by_label("Token").wait_for()


def test_a_write_token_sees_the_abort_button(page: Any, server: LiveServer,
                                             tokens: dict[str, str], console: Any) -> None:
    console.expected.append("401")
    page.goto(server.url + "/#/run?project=team/a&id=live")
    sign_in(page, tokens["write"])
    page.get_by_role("button", name="Abort…").wait_for()


def test_the_cookie_is_a_token_like_the_header(server: LiveServer,
                                               tokens: dict[str, str]) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get("/api/v1/session").status_code == 401
        refused = client.post("/api/v1/session", json={"token": "wrong"})
        assert refused.status_code == 401
        assert "kittiwake_token" not in refused.cookies
        signed = client.post("/api/v1/session", json={"token": tokens["read"]})
        assert signed.json() == {"project": "team/a", "role": "read", "auth": True}
        assert client.get("/api/v1/projects").json() == {"projects": {"team/a": 1}}
        assert client.get("/api/v1/projects/team/b/runs").status_code == 403
        denied = client.post("/api/v1/projects/team/a/abort", json={"run_id": "live"})
        assert denied.status_code == 403
        notes = client.post("/api/v1/projects/team/a/notes", json={"run_id": "live",
                                                                    "notes": "x"})
        assert notes.status_code == 403
        client.delete("/api/v1/session")
        assert client.get("/api/v1/projects").status_code == 401
