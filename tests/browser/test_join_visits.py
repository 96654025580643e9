"""Real paid studies in a real Chromium (issue 11): each browser's own random id, the query
string passed on to the socket, the exit view with its code and way back, Leave, and the ready
check with a member who never answers.

Neither clock is real: the server's is a ManualClock the test moves, and each page's clock is
Playwright's, paused, moved with `page.clock.run_for`. Every wait is on page state.
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.async_api import Locator, expect

from tests.browser.test_join_flow import tick_consent_and_accept
from tests.campaigns.factories import campaign_input
from tests.fixtures.browser import Person, PersonFactory
from tests.fixtures.live import LiveServer, ServerFactory
from tests.live.helpers import campaign_state, running_campaign

pytestmark = pytest.mark.browser

# Identical on purpose: a hash of browser details would be the same for every person.

BROWSER_ID = re.compile(r"^[0-9a-f]{32}$")


async def advance_until(server: LiveServer, locator: Locator, *, step: float = 1.0) -> None:
    """Move the server's clock `step` seconds at a time until `locator` shows (the server sees
    the time move at its next tick)."""
    deadline = time.monotonic() + 15
    while True:
        try:
            await expect(locator).to_be_visible(timeout=250)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            server.clock.advance(seconds=step)


def otree_code(url: str) -> str:
    return url.split("/p/")[1].split("/")[0]


# -- identity ----------------------------------------------------------------------------------


async def test_identical_browsers_get_their_own_ids_and_never_each_others_session(
    make_server: ServerFactory, person: PersonFactory
) -> None:
    server = make_server()
    running_campaign(
        server,
        "lab",
        slug="lab_study",
        otree_config_name="survey",
        per_session=1,
        max_sessions=3,
        concurrent_sessions=3,
    )
    survey = f"{server.settings.otree_public_url}/p/*/survey/Demographics/1"

    first = await person()
    await first.page.goto(f"{server.url}/join/lab_study")
    await tick_consent_and_accept(first.page)
    await first.page.wait_for_url(survey)
    first_code = otree_code(first.page.url)

    second = await person()
    await second.page.goto(f"{server.url}/join/lab_study")
    # Not sent to the first person's live session: a consent of its own, then its own session.
    await tick_consent_and_accept(second.page)
    await second.page.wait_for_url(survey)
    second_code = otree_code(second.page.url)
    assert second_code != first_code

    first_id = await first.browser_id(server.url)
    second_id = await second.browser_id(server.url)
    assert first_id and BROWSER_ID.match(first_id)
    assert second_id and BROWSER_ID.match(second_id)
    assert first_id != second_id
    # Each page landed with its own stored id, and nothing else.
    assert [f["payload"] for f in first.sent if f["kind"] == "Land"] == [first_id]
    assert [f["payload"] for f in second.sent if f["kind"] == "Land"] == [second_id]

    # The same browser coming back is sent to its own live session (the live redirect).
    again = await first.page.context.new_page()
    await again.goto(f"{server.url}/join/lab_study")
    await again.wait_for_url(survey)
    assert otree_code(again.url) == first_code
    assert await first.browser_id(server.url) == first_id
    assert campaign_state(server, "lab")["started_sessions"] == 2


# -- exits ---------------------------------------------------------------------------------------


async def test_exit_view_shows_the_code_copies_it_and_leads_back_to_the_platform(
    make_server: ServerFactory, person: PersonFactory
) -> None:
    server = make_server()
    back = f"{server.url}/healthz?cc={{code}}&pid={{PROLIFIC_PID}}&why={{outcome}}"
    with server.admin() as admin:
        fields = campaign_input(
            "closed",
            slug="closed_study",
            paused="We are **closed** for now.",
            identity_param="PROLIFIC_PID",
            capture_params=["PROLIFIC_PID", "STUDY_ID"],
            exits={"paused": {"code": "C0DE-PAUSED", "url": back}},
        )
        created = admin.post("/api/campaigns", json=fields)  # new campaigns are Paused
        assert created.status_code == 201, created.text

    someone = await person(permissions=["clipboard-read", "clipboard-write"])
    page = someone.page
    await page.goto(f"{server.url}/join/closed_study?PROLIFIC_PID=p%20x1&STUDY_ID=s9&slug=other")
    exit_view = page.locator("#step-exit")
    await expect(exit_view).to_be_visible()
    # The socket carried the page's own query string, behind the page's slug.
    assert someone.socket_urls == [
        f"ws://127.0.0.1:{server.port}/ws/join?slug=closed_study&PROLIFIC_PID=p+x1&STUDY_ID=s9"
    ]
    await expect(page.locator("#exit-title")).to_have_text("The study is paused")
    await expect(page.locator("#exit-content")).to_contain_text("We are closed for now.")
    await expect(page.locator("#exit-code")).to_have_text("C0DE-PAUSED")
    # The Disconnect that follows leaves the exit view as it is.
    await expect(page.locator("body")).to_have_attribute("data-connection", "closed")
    assert await someone.payloads("Disconnect") == ["Paused"]
    assert [f["kind"] for f in someone.received][-3:] == ["Paused", "Exit", "Disconnect"]
    await expect(exit_view).to_be_visible()
    await expect(page.locator("#step-ended")).to_be_hidden()

    await page.locator("#copy-code").click()
    await expect(page.locator("#copy-status")).to_have_text("Copied.")
    assert await page.evaluate("() => navigator.clipboard.readText()") == "C0DE-PAUSED"

    filled = f"{server.url}/healthz?cc=C0DE-PAUSED&pid=p%20x1&why=paused"
    await expect(page.locator("#exit-link")).to_have_attribute("href", filled)
    await expect(page.locator("#exit-countdown")).to_have_text("5")
    await page.clock.run_for(2_000)
    await expect(page.locator("#exit-countdown")).to_have_text("3")
    await page.clock.run_for(3_000)
    await page.wait_for_url(filled)


async def test_an_exit_without_a_url_shows_no_link_and_stays(
    make_server: ServerFactory, person: PersonFactory
) -> None:
    server = make_server()
    running_campaign(server, "gone", slug="gone_study", exits={"left": {"code": "BYE-1"}})
    someone = await person()
    page = someone.page
    await page.goto(f"{server.url}/join/gone_study")
    await tick_consent_and_accept(page)
    await expect(page.locator("#leave")).to_be_visible()  # leave_after_seconds 0: at once
    await page.locator("#leave").click()
    await page.locator("#leave-yes").click()
    await expect(page.locator("#exit-code")).to_have_text("BYE-1")
    await expect(page.locator("#exit-link-box")).to_be_hidden()
    await page.clock.run_for(10_000)
    await expect(page.locator("#step-exit")).to_be_visible()
    assert page.url == f"{server.url}/join/gone_study"


# -- waiting and leaving --------------------------------------------------------------------------


async def test_waiting_clock_and_leave_with_its_code(
    make_server: ServerFactory, person: PersonFactory
) -> None:
    server = make_server()
    running_campaign(
        server,
        "leaving",
        slug="leaving_study",
        waiting_limit=5,
        leave_after_seconds=0,
        exits={"left": {"code": "LEFT-42", "url": None}},
    )
    someone = await person()
    page = someone.page
    await page.goto(f"{server.url}/join/leaving_study")
    await tick_consent_and_accept(page)
    await expect(page.locator("#wait-panel")).to_be_visible()  # shown on the Waiting frame
    assert await someone.payloads("Waiting") == [{"waited": 0, "limit": 300, "leave_after": 0}]
    await expect(page.locator("#waited")).to_have_text("0:00")
    await expect(page.locator("#time-left")).to_have_text("5:00")
    await page.clock.run_for(65_000)
    await expect(page.locator("#waited")).to_have_text("1:05")
    await expect(page.locator("#time-left")).to_have_text("3:55")

    # Leaving asks first; staying changes nothing.
    leave = page.locator("#leave")
    await leave.click()
    await expect(page.locator("#leave-confirm")).to_be_visible()
    await expect(leave).to_be_hidden()
    await page.locator("#leave-no").click()
    await expect(page.locator("#leave-confirm")).to_be_hidden()
    await expect(leave).to_be_visible()
    assert "Leave" not in someone.kinds_sent()

    await leave.click()
    await page.locator("#leave-yes").click()
    await expect(page.locator("#exit-title")).to_have_text("You left the waiting room")
    await expect(page.locator("#exit-code")).to_have_text("LEFT-42")
    await expect(page.locator("body")).to_have_attribute("data-connection", "closed")
    await expect(page.locator("#step-exit")).to_be_visible()
    assert someone.kinds_sent().count("Leave") == 1
    assert await someone.payloads("Disconnect") == ["Left"]
    assert someone.received[-1] == {"kind": "Disconnect", "payload": "Left"}


async def test_leave_comes_only_after_the_campaigns_wait_and_without_an_exit_says_so(
    make_server: ServerFactory, person: PersonFactory
) -> None:
    server = make_server()
    running_campaign(server, "later", slug="later_study", leave_after_seconds=60)
    someone = await person()
    page = someone.page
    await page.goto(f"{server.url}/join/later_study")
    await tick_consent_and_accept(page)
    await expect(page.locator("#wait-panel")).to_be_visible()  # shown on the Waiting frame
    await expect(page.locator("#waited")).to_have_text("0:00")
    await expect(page.locator("#leave")).to_be_hidden()
    await page.clock.run_for(59_000)
    await expect(page.locator("#waited")).to_have_text("0:59")
    await expect(page.locator("#leave")).to_be_hidden()
    await page.clock.run_for(1_000)
    await expect(page.locator("#leave")).to_be_visible()
    server.clock.advance(seconds=61)  # the server counts the wait on its own clock
    await page.locator("#leave").click()
    await page.locator("#leave-yes").click()
    # No exit configured for `left`: the plain ending, by the Disconnect's reason.
    await expect(page.locator("#step-ended")).to_be_visible()
    await expect(page.locator("#ended-title")).to_have_text("You left the waiting room")
    assert await someone.payloads("Disconnect") == ["Left"]
    assert "Exit" not in [f["kind"] for f in someone.received]


# -- ready check ---------------------------------------------------------------------------------


async def answer_ready(someone: Person, seconds: int) -> None:
    page = someone.page
    await expect(page.locator("#step-ready")).to_be_visible()
    await expect(page.locator("#ready-countdown")).to_have_text(str(seconds))
    await expect(page).to_have_title(re.compile(r"^Ready\? "))
    await page.locator("#ready").click()
    await expect(page.locator("#ready-waiting")).to_have_text("Waiting for the others…")
    await expect(page).to_have_title("Join the study")


async def test_ready_check_drops_the_silent_member_and_starts_with_someone_from_pending(
    make_server: ServerFactory, person: PersonFactory
) -> None:
    server = make_server()
    running_campaign(
        server,
        "ready",
        slug="ready_study",
        per_session=2,
        max_sessions=2,
        concurrent_sessions=1,
        ready_check_seconds=10,
        exits={"not_ready": {"code": "NR-7", "url": None}},
    )
    join = f"{server.url}/join/ready_study"
    eager, silent, third = await person(), await person(), await person()

    await eager.page.goto(join)
    await tick_consent_and_accept(eager.page)
    await expect(eager.page.locator("#step-waiting")).to_be_visible()
    await silent.page.goto(join)
    await tick_consent_and_accept(silent.page)
    # The pool is full: both are asked, with the seconds to answer.
    for member in (eager, silent):
        await expect(member.page.locator("#step-ready")).to_be_visible()
        await expect(member.page.locator("#ready-countdown")).to_have_text("10")
    await third.page.goto(join)
    await tick_consent_and_accept(third.page)
    await expect(third.page.locator("#step-pending")).to_be_visible()

    await answer_ready(eager, 10)
    await silent.page.clock.run_for(4_000)  # the page counts down (the server decides)
    await expect(silent.page.locator("#ready-countdown")).to_have_text("6")
    await expect(silent.page).to_have_title(re.compile(r"^Ready\? |Please confirm"))

    # The deadline passes on the server: the silent one is out with its code, the ready one is
    # back in the pool with the third, and both are asked again.
    await advance_until(server, silent.page.locator("#step-exit"))
    await expect(silent.page.locator("#exit-title")).to_have_text("You did not confirm in time")
    await expect(silent.page.locator("#exit-code")).to_have_text("NR-7")
    assert "Ready" not in silent.kinds_sent()
    assert campaign_state(server, "ready")["started_sessions"] == 0

    for member in (eager, third):
        await expect(member.page.locator("#step-ready")).to_be_visible()
        await expect(member.page.locator("#ready")).to_be_enabled()
    assert await eager.payloads("ReadyCheck", 2) == [10, 10]
    await answer_ready(third, 10)
    await answer_ready(eager, 10)
    guess = f"{server.settings.otree_public_url}/p/*/guess/Guess/1"
    for member in (eager, third):
        await member.page.wait_for_url(guess)
        await expect(member.page.locator("input[name=guess]")).to_be_visible()
    assert otree_code(eager.page.url) != otree_code(third.page.url)
    assert campaign_state(server, "ready")["started_sessions"] == 1
    assert eager.kinds_sent().count("Ready") == 2 and third.kinds_sent().count("Ready") == 1


async def test_a_required_identity_comes_from_the_join_urls_query_string(
    make_server: ServerFactory, person: PersonFactory
) -> None:
    server = make_server()
    running_campaign(
        server,
        "platform",
        slug="platform_study",
        identity_param="PROLIFIC_PID",
        require_identity=True,
        exits={"missing_id": {"code": "NO-ID", "url": None}},
    )
    without = await person()
    await without.page.goto(f"{server.url}/join/platform_study")
    await expect(without.page.locator("#exit-title")).to_have_text("We could not tell who you are")
    await expect(without.page.locator("#exit-code")).to_have_text("NO-ID")
    assert await without.payloads("Disconnect") == ["MissingId"]

    # The same page opened from the platform, with the id in its URL: the study goes on.
    with_id = await person()
    await with_id.page.goto(f"{server.url}/join/platform_study?PROLIFIC_PID=5f00c0ffee")
    await tick_consent_and_accept(with_id.page)
    await expect(with_id.page.locator("#step-waiting")).to_be_visible()
    assert with_id.socket_urls[0].endswith("/ws/join?slug=platform_study&PROLIFIC_PID=5f00c0ffee")
    with server.admin() as admin:
        records = admin.get("/api/campaigns/platform/participants").json()["participants"]
    newest, oldest = records
    assert (newest["identity"], newest["outcome"]) == ("5f00c0ffee", None)
    assert newest["browser_id"] == await with_id.browser_id(server.url)
    assert (oldest["identity"], oldest["outcome"]) == (None, "missing_id")
