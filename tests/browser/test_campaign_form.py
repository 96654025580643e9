"""An admin's Chromium on the campaign form: the platform presets fill the identity and the
parameters to record, typing works as well, and the campaign is saved with them (issue 11)."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, expect

from tests.fixtures.app import LOGIN, PASSWORD
from tests.fixtures.live import ServerFactory

pytestmark = pytest.mark.browser


async def test_presets_fill_the_platform_fields_and_the_campaign_keeps_them(
    browser: Browser, make_server: ServerFactory
) -> None:
    server = make_server()
    context = await browser.new_context(http_credentials={"username": LOGIN, "password": PASSWORD})
    context.set_default_timeout(10_000)
    try:
        page = await context.new_page()
        await page.goto(f"{server.url}/campaigns/new")
        identity, capture = page.locator("#identity_param"), page.locator("#capture_params")
        await expect(identity).to_have_value("")
        await page.get_by_role("button", name="Prolific").click()
        await expect(identity).to_have_value("PROLIFIC_PID")
        await expect(capture).to_have_value("PROLIFIC_PID, STUDY_ID, SESSION_ID")
        await page.get_by_role("button", name="MTurk").click()
        await expect(identity).to_have_value("workerId")
        await expect(capture).to_have_value("workerId, assignmentId, hitId")
        # The buttons are a shortcut: what the admin types is what is saved.
        await capture.fill("workerId hitId extra_one")
        await page.locator("#namespace").fill("preset_study")
        await page.locator("#slug").fill("preset_join")
        await page.locator("#otree_config_name").select_option("survey")
        await page.locator("#require_identity").check()
        await page.locator("#exits").fill("left: BYE https://example.org/done?w={workerId}")
        await page.locator("#leave_after_seconds").fill("30")
        await page.locator("#ready_check_seconds").fill("15")
        await page.get_by_role("button", name="Create campaign").click()
        await expect(page).to_have_url(f"{server.url}/campaigns")

        with server.admin() as admin:
            saved = admin.get("/api/campaigns/preset_study").json()
        assert saved["identity_param"] == "workerId"
        assert saved["capture_params"] == ["workerId", "hitId", "extra_one"]
        assert saved["require_identity"] is True
        assert saved["exits"] == {
            "left": {"code": "BYE", "url": "https://example.org/done?w={workerId}"}
        }
        assert (saved["leave_after_seconds"], saved["ready_check_seconds"]) == (30, 15)

        await page.goto(f"{server.url}/campaigns/edit/preset_study")
        await expect(page.locator("#capture_params")).to_have_value("workerId, hitId, extra_one")
        await expect(page.locator("#exits")).to_have_value(
            "left: BYE https://example.org/done?w={workerId}"
        )
    finally:
        await context.close()
