"""Shared fixtures: backends to run the suite on, and tracker factories.

Trackers are opened inside each test (``async with make() as tracker``), not in async
fixtures: pytest-asyncio may run a fixture's setup and teardown in different tasks, and a
tracker owns a task group that must be exited by the task that entered it.

``KITTIWAKE_TEST_POSTGRES`` names the PostgreSQL server for the ``postgres`` backend (default
``postgresql://postgres@127.0.0.1:5432/test``). When it is unreachable those tests are skipped
locally, and fail when ``CI`` is set.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from hypothesis import HealthCheck, settings

import engine

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=False)
settings.load_profile("ci" if os.environ.get("CI") else "default")

# Remote trackers keep their default spools under the cache directory: the suite's go to a
# directory of its own, never the user's (subprocesses inherit it).
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="kittiwake-test-cache-")

# Captures (output, environment, source, system metrics) add events to every run; tests that
# count events or lines would depend on the machine. They are off by default here, and the
# tests of captures turn them on by argument.
os.environ["KITTIWAKE_CAPTURE"] = "off"

# A table's width is each test's to choose ($COLUMNS, or none: stdout here is no terminal).
# Readline, which pytest loads, puts COLUMNS=80 and LINES=24 into the process's environment;
# subprocesses inherit them, and pytest-xdist's workers start with them in os.environ.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)

POSTGRES_URL = os.environ.get("KITTIWAKE_TEST_POSTGRES",
                              "postgresql://postgres@127.0.0.1:5432/test")

MakeTracker = Callable[..., engine.Tracker]


def in_thread(fn: Callable[[], Any], timeout: float = 120.0) -> None:
    """Run ``fn`` on a plain thread of its own and re-raise whatever it raised (for code that
    must not run on the test's event loop: another loop, or blocking sync-facade calls)."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(timeout=timeout)
    assert not thread.is_alive(), "the thread did not finish"
    if errors:
        raise errors[0]


def postgres_reachable() -> bool:
    """Whether something listens at the PostgreSQL address the tests use."""
    parsed = urlparse(POSTGRES_URL)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 5432), 2):
            return True
    except OSError:
        return False


def require_postgres() -> None:
    """Skip without PostgreSQL locally; fail under CI, where it is a required service."""
    if postgres_reachable():
        return
    message = f"PostgreSQL is not reachable at {POSTGRES_URL} (KITTIWAKE_TEST_POSTGRES)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


BACKENDS: list[Any] = ["sqlite-file", "sqlite-memory",
                       pytest.param("postgres", marks=pytest.mark.postgres)]

# The same suite through a Kittiwake server (real HTTP on loopback), in front of SQLite; in
# front of PostgreSQL too with KITTIWAKE_TEST_REMOTE_POSTGRES=1 (the store contract suite
# runs through a server on both at every run: tests/server/test_remote_contract.py; the
# tracker-level suite on both would add minutes to every run for little more).
REMOTE_BACKENDS: list[Any] = [pytest.param("remote-sqlite", marks=pytest.mark.remote)]
if os.environ.get("KITTIWAKE_TEST_REMOTE_POSTGRES"):
    REMOTE_BACKENDS.append(pytest.param("remote-postgres",
                                        marks=[pytest.mark.remote, pytest.mark.postgres]))
_SERVERS: list[Any] = []  # servers started for module-scoped databases, stopped at the end


# Modules whose tests check what a call accepts before any store is touched: the same code
# runs on every backend, so through a server they would repeat the embedded runs for minutes.
_CALL_SITE_ONLY = frozenset({"test_logging_rules.py", "test_logging_paths.py",
                             "test_array_values.py", "test_arguments.py"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave the call-site checks' remote variants out (``_CALL_SITE_ONLY``)."""
    kept, dropped = [], []
    for item in items:
        remote = "[remote-" in item.nodeid or "-remote-" in item.nodeid
        (dropped if remote and item.path.name in _CALL_SITE_ONLY else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_sessionstart(session: pytest.Session) -> None:
    """Drop test schemas that runs killed before their end left behind."""
    if postgres_reachable():
        from tests.pg import drop_schemas

        drop_schemas(POSTGRES_URL, leftovers=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop the servers still running; drop every PostgreSQL schema this run created."""
    from tests.pg import drop_schemas

    while _SERVERS:
        _SERVERS.pop().stop()

    if postgres_reachable():
        drop_schemas(POSTGRES_URL)


def backend_url(backend: str, tmp_path: Path) -> str:
    """A fresh, isolated database URL for ``backend`` (a remote one's server runs until the
    session ends)."""
    if backend.startswith("remote-"):
        server = serve(backend, tmp_path)
        _SERVERS.append(server)
        return server.url
    if backend == "sqlite-file":
        return str(tmp_path / f"kw-{uuid.uuid4().hex[:8]}.db")
    if backend == "sqlite-memory":
        return ":memory:"
    require_postgres()
    from tests.pg import fresh_schema_url

    return fresh_schema_url(POSTGRES_URL)


def serve(backend: str, tmp_path: Path) -> Any:
    """A started server on a fresh database of the backend a remote one names."""
    from tests.server.live import LiveServer

    inner = "sqlite-file" if backend == "remote-sqlite" else "postgres"
    return LiveServer(backend_url(inner, tmp_path), durability="normal").start()


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's default spools apart from every other's: a server started later on the
    same port must not be sent what an earlier test left spooled."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(params=BACKENDS + REMOTE_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each backend the shared suite runs on."""
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A fresh database on the current backend."""
    if backend.startswith("remote-"):
        server = serve(backend, tmp_path)
        try:
            yield server.url
        finally:
            server.stop()
        return
    yield backend_url(backend, tmp_path)


@pytest.fixture
def make(db_url: str) -> MakeTracker:
    """``make(**settings)`` gives an unopened tracker on the test's database."""

    def factory(**settings: Any) -> engine.Tracker:
        settings.setdefault("durability", "normal")
        return engine.connect(db_url, **settings)

    return factory


@pytest.fixture
def file_url(tmp_path: Path) -> str:
    """A SQLite file path (for tests about files, processes and the command line)."""
    return str(tmp_path / "kittiwake.db")


@pytest.fixture(params=["compiled", "python"])
def hot_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test once with the compiled core of ``log_metrics``' hot path and once with its
    Python twin (``engine._runtime.hot_path``); the compiled run is skipped where it was not
    built."""
    from engine._runtime import hot_path as _take
    from engine._runtime import run as _run

    if request.param == "python":
        monkeypatch.setattr(_run, "take_floats", _take.take_floats_py)
    elif not _take.COMPILED:
        if os.environ.get("CI"):
            pytest.fail("engine._runtime._speedups was not built: the hot path runs in Python")
        pytest.skip("engine._runtime._speedups was not built on this machine")
    return str(request.param)
