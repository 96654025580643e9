"""Real people's view: Chromium participants join through the page and land on oTree, while a
supervisor's page follows the room live."""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import Browser, Page, Route, expect

from tests.fixtures.app import LOGIN, PASSWORD
from tests.fixtures.live import LiveServer, ServerFactory, join
from tests.live.helpers import running_campaign

pytestmark = pytest.mark.browser


async def tick_consent_and_accept(page: Page) -> None:
    await expect(page.locator("#step-consent")).to_be_visible()
    accept = page.locator("#accept")
    await expect(accept).to_be_disabled()
    boxes = page.locator("#step-consent input[type=checkbox]")
    assert await boxes.count() == 2
    await boxes.nth(0).check()
    await expect(accept).to_be_disabled()
    await boxes.nth(1).check()
    await expect(accept).to_be_enabled()
    await accept.click()


async def supervise(browser: Browser, server: LiveServer, namespace: str) -> Page:
    context = await browser.new_context(http_credentials={"username": LOGIN, "password": PASSWORD})
    page = await context.new_page()
    await page.goto(f"{server.url}/campaigns/supervise/{namespace}")
    await expect(page.locator("#live-status")).to_have_text("live", ignore_case=True)
    return page


async def test_two_browsers_join_and_arrive_on_otree(
    browser: Browser, make_server: ServerFactory
) -> None:
    server = make_server()
    running_campaign(server, "browser", slug="browser_study", per_session=2, max_sessions=2)
    supervisor = await supervise(browser, server, "browser")
    await expect(supervisor.locator("#joining-size")).to_have_text("0 / 2")

    people = []
    for _ in range(2):
        context = await browser.new_context()
        people.append(await context.new_page())
    first, second = people
    await first.goto(f"{server.url}/join/browser_study")
    await tick_consent_and_accept(first)
    await expect(first.locator("#step-waiting")).to_be_visible()
    await expect(first.locator("#joining-size")).to_contain_text("1 of 2")
    await expect(supervisor.locator("#joining-size")).to_have_text("1 / 2")

    await second.goto(f"{server.url}/join/browser_study")
    await tick_consent_and_accept(second)
    for page in people:
        await page.wait_for_url(f"{server.settings.otree_public_url}/p/**/guess/Guess/1")
        await expect(page.locator("input[name=guess]")).to_be_visible()
    codes = {page.url.split("/p/")[1].split("/")[0] for page in people}
    assert len(codes) == 2

    rows = supervisor.locator("#sessions tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("mk:browser:1")
    await expect(supervisor.locator("#joining-size")).to_have_text("0 / 2")
    await expect(supervisor.locator("#state")).to_have_text("Busy")


async def test_supervisor_pauses_from_the_page(
    browser: Browser, page: Page, make_server: ServerFactory
) -> None:
    server = make_server()
    running_campaign(server, "pausing", slug="pausing_study", per_session=2, paused="Back soon")
    supervisor = await supervise(browser, server, "pausing")
    await page.goto(f"{server.url}/join/pausing_study")
    await expect(page.locator("#step-consent")).to_be_visible()
    await supervisor.locator("button[data-state=Paused]").click()
    await expect(supervisor.locator("#state")).to_have_text("Paused")
    await expect(page.locator("#step-ended")).to_contain_text("Back soon")
    with server.admin() as admin:
        assert admin.get("/api/campaigns/pausing").json()["state"] == "Paused"


async def test_a_session_started_before_the_supervisors_socket_opened_is_on_the_page(
    browser: Browser, make_server: ServerFactory
) -> None:
    server = make_server()
    campaign = running_campaign(server, "late", per_session=2, max_sessions=2)
    context = await browser.new_context(http_credentials={"username": LOGIN, "password": PASSWORD})
    supervisor = await context.new_page()
    served = asyncio.Event()

    async def held(route: Route) -> None:
        await served.wait()
        await route.continue_()

    # The page as served (no session yet), its script held back until a session has started:
    # as a socket reconnecting after a session started.
    await supervisor.route("**/front/js/supervise.js", held)
    await supervisor.goto(f"{server.url}/campaigns/supervise/late", wait_until="commit")
    first, _ = await join(server, campaign["slug"], "a")
    second, _ = await join(server, campaign["slug"], "b")
    await first.send("Agree")
    await first.until("Instructions")
    await second.send("Agree")
    await first.until("Starting")
    served.set()

    await expect(supervisor.locator("#live-status")).to_have_text("live", ignore_case=True)
    await expect(supervisor.locator("#state")).to_have_text("Busy")
    await expect(supervisor.locator("#sessions tbody tr[data-code]")).to_have_count(1)
    await expect(supervisor.locator("#started")).to_have_text("1/2")


GO_CONSENT = """Please read.

- [ ] I am over 18
- [ ] I agree to take part

[alert]Tick both boxes to go on.[/alert]

Your code: [technical_code]

[technical_code_alert]Type the code you were given.[/technical_code_alert]

[accept]I agree[/accept]"""


async def test_go_mastoks_consent_grouping_and_hidden_count_on_mastoks_page(
    page: Page, make_server: ServerFactory
) -> None:
    server = make_server()
    running_campaign(
        server,
        "gocompat",
        slug="gocompat_study",
        per_session=2,
        consent=GO_CONSENT,
        grouping="Your team?\nRed:1\nBlue:1\nJoin",
        show_nb_participants=False,
    )
    await page.goto(f"{server.url}/join/gocompat_study")
    accept, alert = page.locator("#accept"), page.locator("#alert-container")
    code_alert = page.locator("#technical-code-alert-container")
    await expect(alert).to_be_visible()  # the researcher's words instead of mastok's hint
    await expect(page.locator("#consent-hint")).to_be_hidden()
    await expect(code_alert).to_be_hidden()
    boxes = page.locator("#step-consent input[type=checkbox]")
    await boxes.nth(0).check()
    await boxes.nth(1).check()
    await expect(alert).to_be_hidden()
    await expect(code_alert).to_be_visible()
    await expect(accept).to_be_disabled()
    await page.locator("#technical_code").fill("2025")
    await expect(code_alert).to_be_hidden()
    await accept.click()
    # Go's grouping text, parsed by the page.
    await expect(page.locator("#grouping-question")).to_have_text("Your team?")
    await expect(page.locator("#grouping-action")).to_have_text("Join")
    await page.get_by_label("Blue").check()
    await page.locator("#grouping-action").click()
    await expect(page.locator("#step-waiting")).to_be_visible()
    await expect(page.locator("#joining-size")).to_be_hidden()  # show_nb_participants off


async def test_the_join_page_works_under_its_content_security_policy(
    page: Page, make_server: ServerFactory
) -> None:
    server = make_server()
    running_campaign(
        server,
        "csp",
        slug="csp_study",
        per_session=2,
        consent=(
            "![logo](https://example.org/logo.png)\n\n- [ ] Yes\n- [ ] Sure\n\n[accept]Go[/accept]"
        ),
    )
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Security Policy" in m.text else None)
    answer = await page.goto(f"{server.url}/join/csp_study")
    assert answer is not None
    policy = answer.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    await tick_consent_and_accept(page)  # the script ran, the socket connected
    await expect(page.locator("#step-waiting")).to_be_visible()
    await expect(page.locator("#joining-size")).to_contain_text("1 of 2")
    assert violations == []
    # A script smuggled into the page would not run: inline scripts are refused.
    await page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.ran = true'; document.body.append(s); }"
    )
    assert await page.evaluate("() => window.ran === undefined")
    assert any("Security Policy" in v for v in violations)
