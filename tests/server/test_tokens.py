"""Tokens per project: a token reaches its own project's runs and streams, within its role,
and nothing else; only hashes are stored; revocation is at once, on every server."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.to_thread
import httpx
import pytest

import engine
from engine._cli.main import main
from engine._client import store as remote
from engine._core.events import default_upcasters
from engine._server.tokens import create
from engine._storage.registry import open_store
from engine.errors import AuthError
from tests.ports import free_port
from tests.server.live import LiveServer

pytestmark = [pytest.mark.remote, pytest.mark.timeout(90)]


async def _token(db: str, project: str, role: str, expires_in: float | None = None) -> str:
    store = open_store(db, durability="normal", upcasters=default_upcasters())
    await store.open()
    try:
        _, secret = await create(store, project, role, expires_in=expires_in)
    finally:
        await store.close()
    return secret


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "db.sqlite")

    async def seed() -> None:
        for project, run_id in (("team/a", "a1"), ("team/b", "b1")):
            tracker = engine.connect(path, project=project, durability="normal")
            async with tracker, tracker.start_run(run_id) as run:
                run.log_metrics({"loss": 1.0}, step=0)

    anyio.run(seed)
    return path


@pytest.fixture
def server(db: str) -> Iterator[LiveServer]:
    with LiveServer(db, auth=True, durability="normal") as server:
        yield server


def _client(server: LiveServer, secret: str | None) -> httpx.Client:
    headers = {} if secret is None else {"authorization": f"Bearer {secret}"}
    return httpx.Client(base_url=server.url, headers=headers, timeout=10)


@pytest.mark.parametrize("secret", [None, "kw_not-a-token", "x y"])
def test_without_a_valid_token_every_route_is_a_401(server: LiveServer,
                                                    secret: str | None) -> None:
    with _client(server, secret) as client:
        for method, path in [("GET", "/api/v1/projects/team/a/runs"), ("GET", "/api/v1/head"),
                             ("POST", "/api/v1/read"),
                             ("GET", "/api/v1/projects/team/a/events")]:
            answer = client.request(method, path, content=b"{}")
            assert answer.status_code == 401, path
            assert answer.json()["error"]["type"] == "AuthError"


def test_a_token_never_reaches_another_projects_runs_or_streams(server: LiveServer,
                                                                db: str) -> None:
    secret = anyio.run(_token, db, "team/a", "admin")
    with _client(server, secret) as client:
        assert [r["run_id"] for r in client.get("/api/v1/projects/team/a/runs").json()["runs"]
                ] == ["a1"]
        for path, params in [("/api/v1/projects/team/b/runs", {}),
                             ("/api/v1/projects/team/b/run", {"run_id": "b1"}),
                             ("/api/v1/projects/team/b/series",
                              {"run_id": "b1", "metric": "loss"}),
                             ("/api/v1/projects/team/b/lineage", {"run_id": "b1"}),
                             ("/api/v1/projects/team/b/count", {}),
                             ("/api/v1/projects/team/b/events", {}),
                             ("/api/v1/projects/team/b/events", {"from": "live"})]:
            answer = client.get(path, params=params)
            assert answer.status_code == 403, path
            assert answer.json()["error"]["type"] == "AuthError"
        # A read of the whole log sees the token's project only, and naming another is refused.
        page = client.post("/api/v1/read", json={"after": 0, "limit": 100}).json()
        assert {r[2] for r in page["records"]} == {"team/a"}
        answer = client.post("/api/v1/read",
                             json={"after": 0, "limit": 100, "filter": {"project": "team/b"}})
        assert answer.status_code == 403
        answer = client.post("/api/v1/streams",
                             json={"project": "team/b", "run_ids": ["b1"], "upto": 100})
        assert answer.status_code == 403
        answer = client.post("/api/v1/controls", json={"runs": [["team/b", "b1"]]})
        assert answer.status_code == 403


async def test_roles_read_write_admin_through_the_remote_tracker(server: LiveServer,
                                                                 db: str) -> None:
    reader = await _token(db, "team/a", "read")
    writer = await _token(db, "team/a", "write")
    admin = await _token(db, "team/a", "admin")
    async with engine.connect(server.url, project="team/a", token=reader) as tracker:
        assert [r.run_id for r in await tracker.list_runs()] == ["a1"]
        with pytest.raises(AuthError):
            async with tracker.start_run("new"):
                pass
    async with engine.connect(server.url, project="team/a", token=writer) as tracker:
        async with tracker.start_run("w1") as run:
            run.log_metrics({"loss": 0.5}, step=0)
        await tracker.abort_run("a1")
        with pytest.raises(AuthError):
            await tracker.delete_run("w1")
        with pytest.raises(AuthError):  # the token's project is not the tracker's
            await tracker.list_runs(project="team/b")
    async with engine.connect(server.url, project="team/a", token=admin) as tracker:
        await tracker.delete_run("w1")
        assert [r.run_id for r in await tracker.list_runs()] == ["a1"]


async def test_the_client_reads_kittiwake_token(server: LiveServer, db: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITTIWAKE_TOKEN", await _token(db, "team/a", "read"))
    async with engine.connect(server.url, project="team/a") as tracker:
        assert len(await tracker.list_runs()) == 1
    monkeypatch.setattr(remote, "WAIT", 0.5)
    monkeypatch.delenv("KITTIWAKE_TOKEN")
    with pytest.raises(AuthError):
        async with engine.connect(server.url, project="team/a"):
            pass


def test_an_expired_token_is_refused(server: LiveServer, db: str) -> None:
    secret = anyio.run(_token, db, "team/a", "read", 1.0)
    with _client(server, secret) as client:
        assert client.get("/api/v1/projects/team/a/runs").status_code == 200
        time.sleep(1.2)
        assert client.get("/api/v1/projects/team/a/runs").status_code == 401


def test_only_hashes_are_stored_and_list_never_prints_a_secret(
        db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tokens", "create", "--db", db, "--project", "team/a", "--role", "write",
                 "--expires", "30d"]) == 0
    out = capsys.readouterr().out.splitlines()
    secret = out[-1]
    assert secret.startswith("kw_")
    assert len(secret) > 40
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT * FROM tokens").fetchall()
    assert len(rows) == 1
    assert not any(secret in str(value) for value in rows[0])
    assert main(["tokens", "list", "--db", db, "--project", "team/a"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 1
    assert listed[0].split()[:3] == [rows[0][0], "team/a", "write"]
    assert secret not in listed[0]
    assert "expires 20" in listed[0]


def test_revoking_takes_effect_at_once_on_every_server(db: str,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    assert main(["tokens", "create", "--db", db, "--project", "team/a", "--role", "read"]) == 0
    secret = capsys.readouterr().out.splitlines()[-1]
    with LiveServer(db, auth=True) as one, LiveServer(db, auth=True) as two:
        clients = [_client(one, secret), _client(two, secret)]
        assert [c.get("/api/v1/projects/team/a/runs").status_code for c in clients] == [200,
                                                                                         200]
        main(["tokens", "list", "--db", db, "--project", "team/a"])
        token_id = capsys.readouterr().out.split()[0]
        assert main(["tokens", "revoke", "--db", db, token_id]) == 0
        assert [c.get("/api/v1/projects/team/a/runs").status_code for c in clients] == [401,
                                                                                         401]
        for client in clients:
            client.close()
    assert main(["tokens", "revoke", "--db", db, "tok_missing"]) == 1


async def test_a_stream_open_when_its_token_is_revoked_ends_and_carries_nothing_later(
        server: LiveServer, db: str, capsys: pytest.CaptureFixture[str]) -> None:
    secret = await _token(db, "team/a", "read")
    headers = {"authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as client, \
            client.stream("GET", "/api/v1/projects/team/a/events",
                          params={"from": "live"}) as response:
        assert response.status_code == 200
        lines = response.aiter_lines()
        assert await anext(lines) == "retry: 1000"
        command = anyio.to_thread.run_sync  # the command runs an event loop of its own
        assert await command(main, ["tokens", "list", "--db", db, "--project", "team/a"]) == 0
        token_id = capsys.readouterr().out.split()[0]
        assert await command(main, ["tokens", "revoke", "--db", db, token_id]) == 0
        await anyio.sleep(1.2)  # the stream looks at its token at least once a second
        tracker = engine.connect(db, project="team/a", durability="normal")
        async with tracker, tracker.start_run("after") as run:
            run.log_metrics({"loss": 2.0}, step=0)
        with anyio.fail_after(10):
            rest = [line async for line in lines]
    assert not any(line.startswith(("id:", "data:")) for line in rest)
    assert ": the token is no longer valid" in rest


def test_an_admin_manages_its_projects_tokens_through_the_server(server: LiveServer,
                                                                  db: str) -> None:
    admin = anyio.run(_token, db, "team/a", "admin")
    other = anyio.run(_token, db, "team/b", "read")
    with _client(server, admin) as client:
        listed = client.get("/api/v1/tokens").json()["tokens"]
        assert {t[1] for t in listed} == {"team/a"}
        assert all(admin not in str(t) for t in listed)
    with _client(server, other) as client:
        assert client.get("/api/v1/tokens").status_code == 403  # read, not admin


def test_the_server_log_records_requests_and_never_a_token(
        db: str, capsys: pytest.CaptureFixture[str]) -> None:
    """uvicorn's access log names each request; the token travels in the Authorization
    header, which is never written out — neither a valid one nor a wrong one."""
    import signal
    import subprocess
    import sys
    import time

    import httpx

    assert main(["tokens", "create", "--db", db, "--project", "team/a", "--role", "read"]) == 0
    secret = capsys.readouterr().out.splitlines()[-1]
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "engine._cli.main", "--db", db, "serve", "--auth", "--port",
         str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.05)
        for token in (secret, "kw_not-a-real-token-but-secret-all-the-same"):
            httpx.get(f"http://127.0.0.1:{port}/api/v1/projects/team%2Fa/runs",
                      headers={"authorization": f"Bearer {token}"}, timeout=10)
    finally:
        server.send_signal(signal.SIGTERM)
        log, _ = server.communicate(timeout=30)
    assert "/api/v1/projects/team%2Fa/runs" in log  # the access log is on
    assert secret not in log
    assert "kw_not-a-real-token" not in log
