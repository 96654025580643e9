"""The join page cut off from mastok: it keeps reconnecting, with capped and jittered backoff, for
as long as mastok keeps its place (`MASTOK_RESUME_GRACE`, told by the page's HTML), says so
while it tries, tries at once when the browser is back online or the tab is shown again, and
only then shows the lost connection with a retry button. A socket that goes silent without
closing is found by the page's heartbeat (`MASTOK_PAGE_HEARTBEAT`) and left for a new one.

The page reaches mastok through a TCP gate that the test shuts (every connection through it is
cut, new ones are closed as soon as they are accepted) and opens again, or points at a new
mastok on the same database (a restart). Neither clock is real: the servers' are ManualClocks
that the tests never move (mastok keeps the places), each page's is Playwright's, paused, moved a
second at a time while every socket the page opened is given time to fail.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.browser.test_join_flow import tick_consent_and_accept
from tests.fixtures.browser import Person, PersonFactory
from tests.fixtures.gate import TcpGate
from tests.fixtures.live import LOOPBACK, LiveServer, ServerFactory
from tests.live.helpers import running_campaign

pytestmark = pytest.mark.browser

RECONNECTING = "Connection lost. Reconnecting… Please keep this page open."
OFFLINE = (
    "You are offline. This page reconnects as soon as your connection is back: please keep it open."
)
RETRY_CAP = 10_000  # ms: the longest wait between two tries

# Every socket the page opens, with the page's time when it was opened and whether it opened
# or closed since: a test moves the page's time on only once none is still trying.
COUNT_ATTEMPTS = """(() => {
  const Native = window.WebSocket;
  const attempts = (window.__attempts = []);
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      const attempt = { at: Date.now(), open: false, closed: false };
      attempts.push(attempt);
      this.addEventListener("open", () => { attempt.open = true; });
      this.addEventListener("close", () => { attempt.closed = true; });
    }
  };
})();"""


@pytest.fixture
def gate() -> Iterator[TcpGate]:
    """Between the browser and mastok; it leads to the server `behind` starts."""
    gate = TcpGate(LOOPBACK, 9)
    yield gate
    gate.close()


def behind(gate: TcpGate, make_server: ServerFactory, **settings: Any) -> LiveServer:
    """A mastok whose pages are reached through the gate (its origin is the gate's)."""
    server = make_server(origin=gate_url(gate), **settings)
    gate.target = (LOOPBACK, server.port)
    return server


def gate_url(gate: TcpGate) -> str:
    return f"http://{LOOPBACK}:{gate.port}"


async def counted(person: PersonFactory) -> Person:
    someone = await person()
    await someone.page.add_init_script(COUNT_ATTEMPTS)
    return someone


async def attempts(page: Page) -> list[dict[str, Any]]:
    """The page's sockets once none is still trying to open: {at, open, closed} each."""
    await page.wait_for_function(
        "() => window.__attempts.every((a) => a.open || a.closed)", polling=20
    )
    found: list[dict[str, Any]] = await page.evaluate("() => window.__attempts")
    return found


async def page_now(page: Page) -> int:
    now: int = await page.evaluate("() => Date.now()")
    return now


async def cut_seen(page: Page) -> int:
    """The page's time once it has seen its socket cut. The cut reaches the page in real time:
    moved on before, its clock could pass part of a second first, and each try come that late."""
    await expect(page.locator("body")).to_have_attribute("data-connection", "reconnecting")
    return await page_now(page)


async def cut_for(page: Page, seconds: int) -> None:
    """Move the page's time on by `seconds`, a second at a time, each try failing before the
    next second (the gate is shut)."""
    for _ in range(seconds):
        await page.clock.run_for(1_000)
        await attempts(page)


async def run_until_open(page: Page, within: int = RETRY_CAP // 1000 + 1) -> None:
    """Move the page's time on a second at a time until its socket is back (the gate open)."""
    body = page.locator("body")
    for _ in range(within):
        await page.clock.run_for(1_000)
        await attempts(page)
        if await body.get_attribute("data-connection") == "open":
            return
    raise AssertionError(f"the page did not reconnect within {within} s")


def kinds(frames: list[dict[str, Any]], kind: str) -> list[Any]:
    return [frame.get("payload") for frame in frames if frame["kind"] == kind]


async def back_in_place(server: LiveServer, someone: Person, token: str, namespace: str) -> None:
    """The page came back with its token to its place in the pools, the banner gone: one visit
    (one Land), still waiting."""
    await expect(someone.page.locator("#step-waiting")).to_be_visible()
    await expect(someone.page.locator("#connection-status")).to_be_hidden()
    assert kinds(someone.sent, "Resume")[-1] == token
    assert len(kinds(someone.sent, "Land")) == 1
    assert kinds(someone.received, "Resume")[-1] == token
    with server.admin() as admin:
        records = admin.get(f"/api/campaigns/{namespace}/participants").json()["participants"]
    assert [record["outcome"] for record in records] == [None]


async def one_page(
    gate: TcpGate,
    make_server: ServerFactory,
    person: PersonFactory,
    name: str,
    grace: int,
    *,
    waiting: bool = False,
    before: str = "",
    heartbeat: float = 0.0,
    **campaign: Any,
) -> tuple[LiveServer, Person, str]:
    """A mastok behind the gate (`grace`: its resume grace; `heartbeat`: its pages') running
    campaign `name` (pools of two unless told), and one person's page on its consent, or
    `waiting` in its pools (`before`: a script run in the page first): the server, the person
    and its resume token."""
    server = behind(gate, make_server, resume_grace=grace, page_heartbeat=heartbeat)
    running_campaign(server, name, slug=f"{name}_study", **{"per_session": 2, **campaign})
    someone = await counted(person)
    if before:
        await someone.page.add_init_script(before)
    await someone.page.goto(f"{gate_url(gate)}/join/{name}_study")
    if waiting:
        await tick_consent_and_accept(someone.page)
        await expect(someone.page.locator("#step-waiting")).to_be_visible()
    else:
        await expect(someone.page.locator("#step-consent")).to_be_visible()
    [token] = await someone.payloads("Resume")
    return server, someone, token


async def test_a_waiting_page_gets_its_place_back_after_a_two_minute_restart(
    gate: TcpGate,
    make_server: ServerFactory,
    person: PersonFactory,
) -> None:
    first, someone, token = await one_page(gate, make_server, person, "restart", 300, waiting=True)
    page, body = someone.page, someone.page.locator("body")
    banner = page.locator("#connection-status")
    await expect(banner).to_be_hidden()

    # mastok goes away for two minutes of the page's time (the old page gave up after 31 s).
    gate.shut()
    first.stop()
    await expect(body).to_have_attribute("data-connection", "reconnecting")
    await expect(banner).to_have_text(RECONNECTING)
    cut_at = await page_now(page)
    await cut_for(page, 120)
    await expect(body).to_have_attribute("data-connection", "reconnecting")
    await expect(banner).to_have_text(RECONNECTING)
    await expect(page.locator("#step-waiting")).to_be_visible()
    await expect(page.locator("#step-ended")).to_be_hidden()
    # It tried all along: at first within a second, then never more than the cap apart.
    tries = [attempt["at"] - cut_at for attempt in (await attempts(page))[1:]]
    assert 0 < tries[0] <= 1_000
    gaps = [later - earlier for earlier, later in itertools.pairwise(tries)]
    assert max(gaps) <= RETRY_CAP + 1_000, gaps
    assert tries[-1] > 120_000 - RETRY_CAP - 1_000
    assert len(tries) >= 120_000 // (RETRY_CAP + 1_000)

    # mastok is back (a new process on the same database): the page resumes with its token.
    second = behind(gate, make_server, resume_grace=300)
    gate.open()
    await run_until_open(page)
    await back_in_place(second, someone, token, "restart")


async def test_a_page_tries_for_the_whole_grace_then_offers_to_retry(
    gate: TcpGate,
    make_server: ServerFactory,
    person: PersonFactory,
) -> None:
    _, someone, token = await one_page(gate, make_server, person, "grace", 45)
    page, body = someone.page, someone.page.locator("body")

    gate.shut()
    cut_at = await cut_seen(page)
    await cut_for(page, 43)
    await expect(body).to_have_attribute("data-connection", "reconnecting")
    await expect(page.locator("#connection-status")).to_have_text(RECONNECTING)
    await expect(page.locator("#step-consent")).to_be_visible()

    # The grace runs out: a last try in its final second, then the page says so.
    await cut_for(page, 2)
    await expect(body).to_have_attribute("data-connection", "closed")
    await expect(page.locator("#step-ended")).to_be_visible()
    await expect(page.locator("#ended-title")).to_have_text("Connection lost")
    await expect(page.locator("#retry")).to_be_visible()
    await expect(page.locator("#connection-status")).to_be_hidden()
    tries = [attempt["at"] - cut_at for attempt in (await attempts(page))[1:]]
    assert 44_000 <= tries[-1] <= 45_000, tries
    await cut_for(page, 60)
    assert [a["at"] - cut_at for a in (await attempts(page))[1:]] == tries  # no more tries

    # Retrying, mastok reachable again (its clock did not move: the place is still kept).
    gate.open()
    await page.locator("#retry").click()
    await expect(page.locator("#step-consent")).to_be_visible()
    assert kinds(someone.sent, "Resume") == [token]
    assert len(kinds(someone.sent, "Land")) == 1


async def test_pages_cut_off_together_do_not_retry_together(
    gate: TcpGate,
    make_server: ServerFactory,
    person: PersonFactory,
) -> None:
    server = behind(gate, make_server, resume_grace=60)
    running_campaign(server, "herd", slug="herd_study", per_session=4)
    people = [await counted(person) for _ in range(3)]
    for someone in people:
        await someone.page.goto(f"{gate_url(gate)}/join/herd_study")
        await expect(someone.page.locator("#step-consent")).to_be_visible()
    gate.shut()
    tries = []
    for someone in people:  # each page's clock stood still until now: they were cut together
        cut_at = await cut_seen(someone.page)
        await cut_for(someone.page, 30)
        tries.append(tuple(a["at"] - cut_at for a in (await attempts(someone.page))[1:]))
    assert len(set(tries)) == len(tries), tries
    for each in tries:
        assert each == tuple(sorted(each)) and each[0] <= 1_000


async def test_back_online_the_page_reconnects_at_once_and_never_after_its_visit_ended(
    gate: TcpGate,
    make_server: ServerFactory,
    person: PersonFactory,
) -> None:
    _, someone, token = await one_page(
        gate, make_server, person, "online", 60, waiting=True, leave_after_seconds=0
    )
    page, body = someone.page, someone.page.locator("body")
    banner = page.locator("#connection-status")

    # The network goes away: the browser says it is offline, the connection breaks (Chromium
    # keeps a socket to its page's own host open when told it is offline: the gate cuts it).
    await page.context.set_offline(True)
    gate.shut()
    await expect(body).to_have_attribute("data-connection", "reconnecting")
    await expect(banner).to_have_text(OFFLINE)
    await cut_for(page, 5)
    await expect(banner).to_have_text(OFFLINE)
    made = len(await attempts(page))

    # Back online: a try at once, the page's time standing still.
    gate.open()
    await page.context.set_offline(False)
    await expect(body).to_have_attribute("data-connection", "open")
    await expect(banner).to_be_hidden()
    assert len(await attempts(page)) == made + 1
    assert kinds(someone.sent, "Resume")[-1] == token
    await expect(page.locator("#step-waiting")).to_be_visible()

    # The visit ends (Leave): going offline and online again opens nothing.
    await page.locator("#leave").click()
    await page.locator("#leave-yes").click()
    await expect(page.locator("#step-ended")).to_be_visible()
    await expect(body).to_have_attribute("data-connection", "closed")
    made = len(await attempts(page))
    await page.context.set_offline(True)
    await page.context.set_offline(False)
    await cut_for(page, 30)
    assert len(await attempts(page)) == made
    await expect(page.locator("#ended-title")).to_have_text("You left the waiting room")


async def test_back_online_just_before_the_last_try_the_page_still_makes_it(
    gate: TcpGate,
    make_server: ServerFactory,
    person: PersonFactory,
) -> None:
    # Each wait the longest the backoff allows: tries 1, 3, 7, 15, 25, 35, 45 and 55 s after
    # the drop, then the last one at 59 s.
    longest = "Math.random = () => 1;"
    _, someone, _ = await one_page(gate, make_server, person, "early", 60, before=longest)
    page, body = someone.page, someone.page.locator("body")

    await page.context.set_offline(True)
    gate.shut()
    cut_at = await cut_seen(page)
    await cut_for(page, 57)
    tries = [a["at"] - cut_at for a in (await attempts(page))[1:]]
    assert tries == [1_000, 3_000, 7_000, 15_000, 25_000, 35_000, 45_000, 55_000]

    # Online again, mastok still out of reach: the try made at once fails, the last is still due.
    await page.context.set_offline(False)
    assert len(await attempts(page)) == len(tries) + 2
    await expect(body).to_have_attribute("data-connection", "reconnecting")
    await cut_for(page, 1)
    await expect(page.locator("#step-consent")).to_be_visible()
    gate.open()
    await cut_for(page, 1)
    await expect(body).to_have_attribute("data-connection", "open")
    tries = [a["at"] - cut_at for a in (await attempts(page))[1:]]
    assert tries[-2:] == [57_000, 59_000]
    await expect(page.locator("#step-consent")).to_be_visible()
    assert len(kinds(someone.sent, "Resume")) == 1


async def test_a_backgrounded_page_tries_once_more_when_its_late_timer_fires(
    gate: TcpGate,
    make_server: ServerFactory,
    person: PersonFactory,
) -> None:
    _, someone, token = await one_page(gate, make_server, person, "late", 60, waiting=True)
    page, body = someone.page, someone.page.locator("body")

    # A tab in the background (or a laptop asleep): its timer fires once, five minutes late,
    # past the grace. mastok, reachable again by then, kept the place: the page resumes.
    gate.shut()
    await cut_seen(page)
    await cut_for(page, 1)
    gate.open()
    await page.clock.fast_forward("05:00")
    await expect(body).to_have_attribute("data-connection", "open")
    assert kinds(someone.sent, "Resume")[-1] == token
    await expect(page.locator("#step-waiting")).to_be_visible()

    # Shown again while it waits to retry: it tries at once.
    gate.shut()
    await cut_for(page, 1)
    await expect(body).to_have_attribute("data-connection", "reconnecting")
    gate.open()
    await page.evaluate("() => document.dispatchEvent(new Event('visibilitychange'))")
    await expect(body).to_have_attribute("data-connection", "open")
    assert kinds(someone.sent, "Resume")[-2:] == [token, token]

    # Late and still cut off: that one try fails, and only then does the page give up.
    gate.shut()
    await cut_seen(page)
    await cut_for(page, 1)
    made = len(await attempts(page))
    await page.clock.fast_forward("05:00")
    await expect(page.locator("#ended-title")).to_have_text("Connection lost")
    assert len(await attempts(page)) == made + 1
    await expect(page.locator("#retry")).to_be_visible()


# -- the heartbeat ---------------------------------------------------------------------------

HEARTBEAT = 15  # s: MASTOK_PAGE_HEARTBEAT's default
ANSWER = 5  # s: how long the page waits for an answer to its Ping (front/js/frames.js)


async def test_a_socket_gone_silent_is_found_by_the_heartbeat_and_the_page_comes_back(
    gate: TcpGate,
    make_server: ServerFactory,
    person: PersonFactory,
) -> None:
    server, someone, token = await one_page(
        gate, make_server, person, "silent", 60, waiting=True, heartbeat=HEARTBEAT
    )
    page, body = someone.page, someone.page.locator("body")

    # The way to mastok dies without a word (a leader's machine gone behind a proxy, a changed
    # network): the socket looks open, nothing comes through it; a new connection would pass.
    gate.freeze()
    await page.clock.run_for((HEARTBEAT - 1) * 1000)
    assert "Ping" not in someone.kinds_sent()
    await page.clock.run_for(1000)
    assert someone.kinds_sent().count("Ping") == 1
    await page.clock.run_for((ANSWER - 1) * 1000)
    await expect(body).to_have_attribute("data-connection", "open")  # an answer may still come
    assert len(await attempts(page)) == 1

    await page.clock.run_for(1000)  # none came: the page leaves the socket and reconnects
    await expect(body).to_have_attribute("data-connection", "reconnecting")
    await run_until_open(page)
    await back_in_place(server, someone, token, "silent")
    assert len(await attempts(page)) == 2


async def test_a_socket_that_answers_the_heartbeat_is_kept(
    gate: TcpGate,
    make_server: ServerFactory,
    person: PersonFactory,
) -> None:
    _, someone, _ = await one_page(
        gate, make_server, person, "answered", 60, waiting=True, heartbeat=HEARTBEAT
    )
    page, body = someone.page, someone.page.locator("body")
    for beat in range(1, 5):  # a minute in all with nothing to say: the page asks, mastok answers
        await page.clock.run_for(HEARTBEAT * 1000)
        assert await someone.payloads("Pong", count=beat) == [None] * beat
    await page.clock.run_for(ANSWER * 1000)  # the answer came: nothing happens
    await expect(body).to_have_attribute("data-connection", "open")
    assert someone.kinds_sent().count("Ping") == 4
    assert len(await attempts(page)) == 1
    await expect(page.locator("#step-waiting")).to_be_visible()
