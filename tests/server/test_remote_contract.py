"""The storage contract through a server: the shared contract suite with the remote store as
a third backend, the server in front of SQLite and of PostgreSQL.

What the suite does to the database itself (raw SQL, faults) it does to the store behind the
server, on the server's own event loop. A driver's exception never crosses the wire: a
database failing behind the server reaches the client as a ``StorageError`` of its own,
with no driver error attached (``driver_errors``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine._core.events import NewEvent, Upcasters
from engine._storage.contract import AppendRequest, Store
from engine._storage.session import Session
from engine.errors import ValidationError
from tests.conftest import serve
from tests.storage import test_postgres as on_postgres
from tests.storage import test_sqlite as on_sqlite
from tests.store_contract import StoreContract, WriterContract, _current, created

pytestmark = pytest.mark.remote


class _Behind:
    """Runs the suite's database-level steps on the store behind the server."""

    backend = "remote-sqlite"
    inner: Any = on_sqlite.TestSqliteFile()
    driver_errors: tuple[type[BaseException], ...] = (type(None),)
    server: Any = None

    @pytest.fixture
    def url(self, tmp_path: Path) -> Iterator[str]:
        server = self.server = serve(self.backend, tmp_path)
        try:
            yield server.url
        finally:
            server.stop()

    async def raw(self, store: Store, sql: str) -> list[tuple[Any, ...]]:
        server = self.server
        result: list[tuple[Any, ...]] = await server.call(
            lambda: self.inner.raw(server.store, sql))
        return result

    async def on_writer(self, store: Store, work: Callable[[Session], Awaitable[Any]]) -> Any:
        server = self.server
        return await server.call(lambda: self.inner.on_writer(server.store, work))

    async def fault(self, store: Store, on: bool) -> None:
        server = self.server
        await server.call(lambda: self.inner.fault(server.store, on))


class _RemoteContract(_Behind, StoreContract):
    async def test_events_are_upcast_on_read_never_rewritten(self, url: str) -> None:
        """Replaced: the registry that reads the log is the server's, so an event type its
        release does not know is refused at the door (a log holding one could not be read
        by anyone), and nothing of the request is written."""
        async with self.opened(url, Upcasters({"Note": 1, **_current()})) as store:
            await self.one(store, AppendRequest("p", "a", [created()]))
            with pytest.raises(ValidationError) as caught:
                await self.one(store, AppendRequest("p", "a", [NewEvent("Note", {"t": 1})]))
            assert caught.value.key == "type"
            assert await store.head() == 1


class TestRemoteSqlite(_RemoteContract):
    pass


class TestRemoteSqliteWriter(_Behind, WriterContract):
    pass


@pytest.mark.postgres
class TestRemotePostgres(_RemoteContract):
    backend = "remote-postgres"
    inner = on_postgres.TestPostgres()


@pytest.mark.postgres
class TestRemotePostgresWriter(_Behind, WriterContract):
    backend = "remote-postgres"
    inner = on_postgres.TestPostgres()
