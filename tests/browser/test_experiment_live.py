"""An admin's Chromium on a LightMill experiment page while a client runs the experiment: the
page follows the runs live, and its Unlock button releases a run."""

from __future__ import annotations

import json

import httpx
import pytest
from playwright.async_api import Browser, expect

from tests.fixtures.app import LOGIN, PASSWORD
from tests.fixtures.live import ServerFactory
from tests.lightmill.helpers import XML, design

pytestmark = pytest.mark.browser


async def test_the_experiment_page_follows_a_client_live(
    browser: Browser, make_server: ServerFactory
) -> None:
    server = make_server()
    with server.admin() as admin:
        assert admin.post("/api/import", content=design(), headers=XML).status_code == 200
    context = await browser.new_context(http_credentials={"username": LOGIN, "password": PASSWORD})
    context.set_default_timeout(10_000)
    try:
        page = await context.new_page()
        await page.goto(f"{server.url}/experiments/pointing")
        s0 = page.locator('#runs tr[data-run="S0"]')
        await expect(s0.locator("td.status")).to_have_text("unstarted")
        await expect(s0.locator("td.lock")).to_have_text("unlocked")
        await expect(s0.locator("form.unlock")).to_have_count(0)
        await expect(page.locator("#live-status")).to_have_attribute("data-status", "live")

        # An experiment client, through LightMill's public API: takes S0, does its first trial.
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            token = (await client.get("/api/run/pointing/S0/lock")).json()["token"]
            await expect(s0.locator("td.lock")).to_have_text("locked")
            await expect(s0.locator("form.unlock button")).to_be_visible()
            body = {"token": token, "measures": {"trial": {"time": 812}, "events": [{"x": 1}]}}
            posted = await client.post("/api/trial/pointing/S0/0/0", content=json.dumps(body))
            assert posted.status_code == 200, posted.text

        # Without reloading, the page shows it.
        await expect(s0.locator("td.status")).to_have_text("started")
        await expect(s0.locator("td.progress span")).to_have_text("1/6")
        await expect(s0.locator("td.current")).to_have_text("block 0, trial 1")
        await expect(page.locator("#trials-done")).to_have_text("1/10")
        await expect(page.locator("#runs-started")).to_have_text("1/3")
        await expect(page.locator('#runs tr[data-run="S1"] td.status')).to_have_text("unstarted")

        # The Unlock button: a POST with the page's CSRF token.
        await s0.locator("form.unlock button").click()
        await expect(page.locator("p.notice.ok")).to_contain_text("Run S0 unlocked")
        await expect(s0.locator("td.lock")).to_have_text("unlocked")
        await expect(s0.locator("td.progress span")).to_have_text("1/6")
        with server.admin() as admin:
            run = admin.get("/api/monitoring/experiments/pointing/runs/S0").json()["run"]
        assert run["lock"] == "unlocked"
    finally:
        await context.close()
