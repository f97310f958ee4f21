"""The web UI across a restart of `heddle up`: an open page goes on working without a
refresh (the session survives, the run's stream reconnects)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.stack import Up
from tests.ui.conftest import admin_key, sign_in, start

pytestmark = pytest.mark.e2e


def test_an_open_run_page_steers_the_run_after_heddle_up_restarts(stack: Up, page: Page) -> None:
    run_id = start(stack, "refund-approval", customer="Ada", amount=120)
    stack.wait_for_run(run_id, until=("running",))
    sign_in(page, admin_key(stack))
    page.goto(f"/ui/runs/{run_id}")
    expect(page.locator("#run-status")).to_have_text("running")

    code, _ = stack.interrupt()
    assert code == 0
    stack.start()
    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#outcome")).to_contain_text("accepted")
    expect(page.locator("#run-status")).to_have_text("paused")
