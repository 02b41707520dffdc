"""Files through a server: bytes streamed up and down, checked against their digest, and
a token that never reaches another project's files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

import engine
from engine._core.events import default_upcasters
from engine._server.tokens import create
from engine._storage.registry import open_store
from tests.server.live import LiveServer

pytestmark = [pytest.mark.remote, pytest.mark.timeout(120)]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with LiveServer(str(tmp_path / "db.sqlite"), durability="normal") as server:
        yield server


async def test_files_go_up_and_come_back_byte_for_byte(server: LiveServer,
                                                       tmp_path: Path) -> None:
    big = os.urandom(3 * 2**20 + 17)  # several chunks each way
    source = tmp_path / "weights.bin"
    source.write_bytes(big)
    async with engine.connect(server.url, project="p", spool=str(tmp_path / "s")) as tracker:
        async with tracker.start_run("r") as run:
            run.log_files({"samples": b"small bytes"}, step=0)
            refs = await run.upload({"model/weights": str(source)})
        state = await tracker.get_run("r")
        assert state.files["model/weights"].digest == refs["model/weights"].digest
        assert await tracker.read_file(state.files["model/weights"]) == big
        (sample,) = await tracker.read_files("r", "samples")
        assert await tracker.read_file(sample) == b"small bytes"
        written = await tracker.download(state.files["model/weights"], tmp_path / "out")
        assert await anyio.Path(written).read_bytes() == big


async def _admin(db: str, project: str) -> str:
    store = open_store(db, durability="normal", upcasters=default_upcasters())
    await store.open()
    try:
        return (await create(store, project, "admin"))[1]
    finally:
        await store.close()


def test_a_token_never_reaches_another_projects_files(tmp_path: Path) -> None:
    db = str(tmp_path / "db.sqlite")

    async def seed() -> dict[str, str]:
        digests = {}
        for project, payload in (("team/a", b"a's file"), ("team/b", b"b's secret file")):
            tracker = engine.connect(db, project=project, durability="normal")
            async with tracker, tracker.start_run("r") as run:
                refs = await run.upload({"f": payload})
                digests[project] = refs["f"].digest
        return digests

    digests = anyio.run(seed)
    secret = anyio.run(_admin, db, "team/a")
    with LiveServer(db, auth=True, durability="normal") as server, \
            httpx.Client(base_url=server.url, timeout=10,
                         headers={"authorization": f"Bearer {secret}"}) as client:
        mine = client.get(f"/api/v1/blobs/{digests['team/a']}")
        assert (mine.status_code, mine.content) == (200, b"a's file")
        theirs = client.get(f"/api/v1/blobs/{digests['team/b']}")
        assert theirs.status_code == 403
        assert theirs.json()["error"]["type"] == "AuthError"
        assert client.get(f"/api/v1/blobs/{digests['team/b']}/size").status_code == 403
        assert b"secret" not in theirs.content
