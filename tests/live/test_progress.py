"""Sessions' progress read from the real oTree: participants played through to the end over
HTTP show as finished and the campaign leaves Busy long before `session_duration`; a
participant who stays on one page past the campaign's `idle_flag_seconds` is flagged.

The poller reads oTree every few seconds of real time; the tests wait for what it shows (a
State frame, the /live answer changing), and move the server's clock for idle times."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from mastok.live.progress import POLL_SECONDS
from tests.fixtures.live import LiveServer, Peer, ServerFactory, join
from tests.live.helpers import running_campaign

WITHIN = 5 * POLL_SECONDS


async def start_pool(server: LiveServer, slug: str, names: list[str]) -> list[str]:
    """People join, agree and start: their oTree start URLs."""
    peers: list[Peer] = [(await join(server, slug, name))[0] for name in names]
    for peer in peers:
        await peer.send("Agree")
    return [await peer.until("Starting") for peer in peers]


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def first_page(browser: httpx.AsyncClient, start_url: str) -> str:
    response = await browser.get(path_of(start_url))
    assert response.status_code == 307, response.text[-300:]
    return str(response.headers["location"])


async def submit(browser: httpx.AsyncClient, url: str, data: dict[str, str]) -> str:
    response = await browser.post(path_of(url), data=data)
    assert response.status_code == 302, response.text[-300:]
    return str(response.headers["location"])


async def play_to_the_end(otree_url: str, start_urls: list[str]) -> None:
    """Both players of the demo's guessing game guess, see their results, and finish."""
    browsers = [httpx.AsyncClient(base_url=otree_url) for _ in start_urls]
    try:
        waits = []
        for n, (browser, url) in enumerate(zip(browsers, start_urls, strict=True)):
            waits.append(await submit(browser, await first_page(browser, url), {"guess": str(n)}))
        for browser, wait in zip(browsers, waits, strict=True):
            released = await browser.get(path_of(wait))
            assert released.status_code == 302
            assert "/OutOfRangeNotification/" in await submit(
                browser, released.headers["location"], {}
            )
    finally:
        for browser in browsers:
            await browser.aclose()


async def live_until(
    server: LiveServer, namespace: str, ready: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """GET /live until `ready` holds of it (the poller has read oTree), within WITHIN s."""
    deadline = time.monotonic() + WITHIN
    async with httpx.AsyncClient(base_url=server.url, auth=server.admin().auth) as admin:
        while True:
            answer = (await admin.get(f"/api/campaigns/{namespace}/live")).json()
            if ready(answer):
                return answer
            assert time.monotonic() < deadline, answer
            await asyncio.sleep(0.2)  # between reads of a condition, not to order events


async def test_finished_sessions_end_busy_before_their_duration(make_server: ServerFactory) -> None:
    server = make_server()
    campaign = running_campaign(server, "prog", per_session=2, concurrent_sessions=1)
    supervisor = await server.supervisor("prog")
    assert await supervisor.expect("State") == "Running"
    urls = await start_pool(server, campaign["slug"], ["a", "b"])
    await supervisor.sees("State", "Busy")
    behind = [(await join(server, campaign["slug"], name))[0] for name in ("c", "d")]
    for peer in behind:
        await peer.send("Agree")
        assert await peer.until("Pending") is not None

    otree = server.settings.otree_public_url
    await play_to_the_end(otree, urls)

    # The clock has not moved: session_duration (30 minutes) is far away. Session 1 ends, the
    # pending pool moves up and starts session 2 (Busy again), whose end leaves Busy.
    later = [await peer.until("Starting") for peer in behind]
    assert all(url.startswith(otree) for url in later)
    await play_to_the_end(otree, later)
    await supervisor.sees("State", "Running", within=WITHIN)
    live = await live_until(server, "prog", lambda a: len(a["sessions"]) == 2)
    for session in live["sessions"]:
        assert session["live"] is False
        assert session["finished_at"] is not None
        assert [p["finished"] for p in session["participants"]] == [True, True]
        assert all(p["page_index"] > p["page_count"] for p in session["participants"])
        assert {p["code"] for p in session["participants"]} == set(session["participant_codes"])


async def test_a_participant_idle_on_a_page_is_flagged(make_server: ServerFactory) -> None:
    server = make_server()
    campaign = running_campaign(server, "idle", per_session=2, idle_flag_seconds=60)
    urls = await start_pool(server, campaign["slug"], ["a", "b"])

    def progress(answer: dict[str, Any]) -> list[dict[str, Any]]:
        return list(answer["sessions"][0]["participants"]) if answer["sessions"] else []

    live = await live_until(
        server,
        "idle",
        lambda a: all(p["page_index"] == 0 for p in progress(a)) and bool(progress(a)),
    )
    assert [p["idle"] for p in progress(live)] == [False, False]
    assert live["sessions"][0]["live"] is True

    server.clock.advance(seconds=61)  # nobody has moved for 61 s of the server's time
    live = await live_until(server, "idle", lambda a: True)
    assert [(p["idle"], p["idle_seconds"] >= 61) for p in progress(live)] == [(True, True)] * 2

    async with httpx.AsyncClient(base_url=server.settings.otree_public_url) as browser:
        await submit(browser, await first_page(browser, urls[0]), {"guess": "5"})
    mover = urls[0].rsplit("/", 1)[1]
    live = await live_until(
        server,
        "idle",
        lambda a: any(p["code"] == mover and p["page_index"] > 0 for p in progress(a)),
    )
    flags = {p["code"]: (p["idle"], p["idle_seconds"]) for p in progress(live)}
    other = next(code for code in flags if code != mover)
    assert flags[mover] == (False, 0)  # its page changed: idle from then
    assert flags[other][0] is True
    assert live["sessions"][0]["live"] is True  # not everyone finished
