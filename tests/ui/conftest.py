"""Browser tests: a real `heddle up` per module (as tests/e2e starts one) and Debian's
Chromium driven by Playwright, one browser for the session and a fresh context (no
cookies) per test. Without chromium they are skipped, except in CI (CI=true), where
they fail: `make test` installs it."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import httpx
import psutil
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.e2e.stack import Up

SCREENSHOTS = os.environ.get("HEDDLE_UI_SCREENSHOTS")
"""A folder to save each page's screenshot in (docs/ui/, when refreshing them by hand)."""


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    if chromium is None:
        needed("browser tests need Debian's chromium (make test installs it, as root)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium)
        try:
            yield launched
        finally:
            launched.close()


def needed(reason: str) -> NoReturn:
    """Skip for want of a tool, except in CI (CI=true), where it fails: `make test`
    installs what the browser tests need."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def axe() -> str:
    """axe-core's source, to run in a page (`make test` installs it with npm)."""
    path = Path(__file__).with_name("node_modules") / "axe-core" / "axe.min.js"
    if not path.exists():
        needed("the accessibility check needs axe-core: npm ci --prefix tests/ui")
    return path.read_text()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    """One `heddle up` for the tests of a module (a failed start shows its log)."""
    up = Up(tmp_path_factory.mktemp("stack") / "heddle-data")
    try:
        up.start()
        yield up
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):  # it exited by itself
            up.kill()


@pytest.fixture
def context(browser: Browser, stack: Up) -> Iterator[BrowserContext]:
    """A browser of its own (no cookies), its pages at the stack's address."""
    opened = browser.new_context(base_url=stack.api, viewport={"width": 1280, "height": 900})
    opened.set_default_timeout(20_000)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def sign_in(page: Page, key: str) -> None:
    """Paste `key` into the sign-in page, as a person would."""
    page.goto("/ui")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/ui/runs")


def shot(page: Page, name: str) -> None:
    """Save the page's screenshot as `<name>.png` when HEDDLE_UI_SCREENSHOTS names a folder."""
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


def start(stack: Up, workflow: str, **inputs: Any) -> str:
    """Start a run through the API (not the page under test); returns its id."""
    body = {"workflow": workflow, "input": inputs}
    answer = httpx.post(f"{stack.api}/v1/runs", json=body, headers=stack.headers())
    assert answer.status_code == 202, answer.text
    run_id: str = answer.json()["run_id"]
    return run_id


def new_key(stack: Up, *args: str) -> str:
    made = stack.cli("keys", "create", *args)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def admin_key(stack: Up) -> str:
    return stack.key_file.read_text().strip()
