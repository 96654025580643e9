"""The supervise page's figures in a real Chromium: the funnel, the outcomes, the charts, who
is waiting and the sessions' progress change as scripted participants arrive, wait, time out
and start. The server's clock is a ManualClock the test moves; every wait is on page state.
A screenshot of the page at the end is written to test-artifacts/supervise.png."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.async_api import Browser, Page, expect

from tests.fixtures.app import LOGIN, PASSWORD
from tests.fixtures.browser import ARTIFACTS
from tests.fixtures.live import LiveServer, Peer, ServerFactory, join
from tests.live.helpers import running_campaign

pytestmark = pytest.mark.browser


async def open_supervise(browser: Browser, server: LiveServer, namespace: str) -> Page:
    context = await browser.new_context(
        http_credentials={"username": LOGIN, "password": PASSWORD},
        viewport={"width": 1280, "height": 900},
    )
    page = await context.new_page()
    await page.goto(f"{server.url}/campaigns/supervise/{namespace}")
    await expect(page.locator("#live-status")).to_have_text("live", ignore_case=True)
    return page


async def arrive(server: LiveServer, slug: str, name: str) -> Peer:
    peer, _ = await join(server, slug, name)
    await peer.send("Agree")
    return peer


def funnel(page: Page, key: str, column: str = "all") -> object:
    return page.locator(f"#funnel tr[data-key={key}] .{column}")


async def test_the_figures_follow_the_room(browser: Browser, make_server: ServerFactory) -> None:
    server = make_server()
    campaign = running_campaign(server, "figures", per_session=2, waiting_limit=5)
    slug = campaign["slug"]
    page = await open_supervise(browser, server, "figures")
    await expect(funnel(page, "arrived")).to_have_text("0")
    await expect(page.locator("#waiting-people tbody")).to_have_text("Nobody.")

    first = await arrive(server, slug, "first")
    await first.until("Waiting")
    await expect(funnel(page, "arrived")).to_have_text("1 (100%)")
    await expect(funnel(page, "joined")).to_have_text("1 (100%)")
    await expect(funnel(page, "joined", "recent")).to_have_text("1 (100%)")
    people = page.locator("#waiting-people tbody tr")
    await expect(people).to_have_count(1)
    await expect(people.first).to_contain_text("joining")
    await expect(people.first).to_contain_text("connected")
    await expect(page.locator("#chart-arrivals")).to_have_attribute("data-points", "1")

    server.clock.advance(minutes=5, seconds=1)  # past the waiting limit: timed out
    assert await first.until("Disconnect") == "Timeout"
    await expect(page.locator("#outcomes tr[data-outcome=timeout] .all")).to_have_text("1 (100%)")
    await expect(page.locator("#waiting-people tbody")).to_have_text("Nobody.")
    await expect(page.locator("#chart-waits")).to_have_attribute("data-points", "1")
    await expect(page.locator("#wait-max")).to_have_text("5 min 1 s")

    second = await arrive(server, slug, "second")
    await second.until("Waiting")
    server.clock.advance(seconds=20)
    third = await arrive(server, slug, "third")
    for peer in (second, third):
        await peer.until("Starting")
    await expect(funnel(page, "started")).to_have_text("2 (67%)")
    await expect(funnel(page, "arrived")).to_have_text("3 (100%)")
    await expect(page.locator("#fill-median")).to_have_text("20 s")
    await expect(page.locator("#fill-last")).to_have_text("20 s")
    await expect(page.locator("#chart-waits")).to_have_attribute("data-points", "3")
    await expect(page.locator("#chart-arrivals")).to_have_attribute("data-points", "3")
    session = page.locator("#progress tbody tr[data-live=true]")
    await expect(session).to_have_count(1)
    await expect(session.locator(".progress-chip")).to_have_count(2)
    await expect(session.locator(".progress-chip").first).to_contain_text("page 0/", timeout=15_000)
    assert await page.locator("#chart-arrivals canvas").count() == 1
    assert await page.locator("#chart-waits canvas").count() == 1

    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / "supervise.png", full_page=True)


async def test_the_time_waited_counts_up_in_the_page(
    browser: Browser, make_server: ServerFactory
) -> None:
    """Between reads the page counts each wait up itself: the server's clock stands still at
    40 s waited while the page's (Playwright's fake clock, paused but when the test runs it)
    moves 4 s: the wait shown is 43 or 44 s (44 if no read came after the first, 43 if one
    came at +1 s, as a frame of the supervisor socket asks)."""
    server = make_server()
    campaign = running_campaign(server, "counting", per_session=2, waiting_limit=5)
    first = await arrive(server, campaign["slug"], "first")
    await first.until("Waiting")
    server.clock.advance(seconds=40)
    context = await browser.new_context(http_credentials={"username": LOGIN, "password": PASSWORD})
    page = await context.new_page()
    start = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    # Installed before the moment it pauses at: the page's clock runs between the two calls,
    # and pausing at a moment it has passed is an error (this failed under load).
    await page.clock.install(time=start - timedelta(minutes=1))
    await page.clock.pause_at(start)
    await page.goto(f"{server.url}/campaigns/supervise/counting")
    waited = page.locator("#waiting-people tbody tr .waited")
    await expect(waited).to_have_text("40 s")
    await page.clock.run_for(1000)  # a read the socket's frames asked for, if any
    await page.wait_for_load_state("networkidle")
    await page.clock.run_for(3000)  # the next read is 5 s after the last
    await expect(waited).to_have_text(re.compile(r"^4[34] s$"))
    await context.close()


async def test_the_page_checks_its_quiet_socket_with_a_ping(
    browser: Browser, make_server: ServerFactory
) -> None:
    """With nothing to show for 15 s (`MASTOK_PAGE_HEARTBEAT`), the page sends `Ping` and
    mastok answers `Pong` (front/js/frames.js leaves a socket that does not answer: the join
    page's tests cut one)."""
    server = make_server(page_heartbeat=15)
    running_campaign(server, "quiet")
    context = await browser.new_context(http_credentials={"username": LOGIN, "password": PASSWORD})
    page = await context.new_page()
    start = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    await page.clock.install(time=start - timedelta(minutes=1))
    await page.clock.pause_at(start)
    async with page.expect_websocket() as opened:
        await page.goto(f"{server.url}/campaigns/supervise/quiet")
    socket = await opened.value
    sent: list[str] = []
    socket.on("framesent", lambda data: sent.append(str(data)))
    await expect(page.locator("#live-status")).to_have_text("live", ignore_case=True)
    await page.wait_for_load_state("networkidle")
    async with socket.expect_event("framereceived") as answered:
        await page.clock.run_for(15_000)
    assert sent == ['{"kind":"Ping"}']
    assert await answered.value == '{"kind":"Pong"}'
    await page.clock.run_for(5_000)  # answered: the socket is kept
    await expect(page.locator("#live-status")).to_have_text("live", ignore_case=True)
    await context.close()
