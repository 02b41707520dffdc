"""The dashboard in a real browser: the system's Chromium driven by Playwright.

Chromium comes from the system's packages (``make test`` installs it when missing). Without
it these tests are skipped locally and fail under CI, where the browser is required.
Each test gets its own database behind a real server, and a fresh page whose console errors
fail the test.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.live import LiveServer

CHROMIUM = os.environ.get("KITTIWAKE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def _require_browser() -> None:
    if Path(CHROMIUM).exists():
        return
    message = (f"Chromium is not installed at {CHROMIUM} (apt-get install chromium, or set "
               "KITTIWAKE_CHROMIUM)")
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


# Per module, not per session: Playwright's sync API keeps an event loop running on this
# thread while it is open, and other tests run their own loops here.
@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with LiveServer(str(tmp_path / "db.sqlite"), durability="normal", keepalive=1.0) as server:
        yield server


class Console:
    """What a page said on its console: errors fail the test unless expected."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.expected: list[str] = []

    def check(self) -> None:
        unexpected = [e for e in self.errors if not any(x in e for x in self.expected)]
        assert unexpected == [], unexpected


@pytest.fixture
def console() -> Console:
    return Console()


@pytest.fixture
def page(browser: object, server: LiveServer, console: Console) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1400, "height": 900},  # type: ignore[attr-defined]
                                  accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.on("console", lambda m: console.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: console.errors.append(f"uncaught: {e}"))
    yield page
    context.close()
    console.check()
