"""Go Mastok's own pages against mastok: the frames its join.js and supervise.js send, and the
answers they read (Go Mastok @02aa72d, front/src/js/join.js), over real sockets.

Go's join page sends `Land` with its fingerprint on every connection and never `Resume`, reads
`Grouping` as text (`payload.split("\\n")`), switches to its waiting view on `JoiningSize`, and
Go's supervisors read SessionStart's `AdminUrl`.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mastok.db.tables import OTreeSession
from tests.fixtures.live import LiveServer, Peer, ServerFactory
from tests.live.helpers import running_campaign


@pytest.fixture
def server(make_server: ServerFactory) -> LiveServer:
    return make_server()


async def go_page(server: LiveServer, slug: str, uid: str) -> Peer:
    """Go's join.js up to its consent: State, then Land with its fingerprint."""
    peer = await server.participant(slug)
    assert await peer.expect("State") == "Running"
    await peer.send("Land", uid)
    await peer.until("Consent")
    return peer


def go_groups(payload: str) -> tuple[str, list[str], str]:
    """What Go's join.js makes of a Grouping payload (join.js:139-150)."""
    question, *answers = payload.split("\n")
    action = answers.pop()
    return question, [answer.split(":")[0] for answer in answers], action


async def test_go_page_reads_the_grouping_text_and_connects(server: LiveServer) -> None:
    campaign = running_campaign(server, grouping="Your team?\nRed:1\nBlue:1\nJoin")
    peer = await go_page(server, campaign["slug"], "go-uid-1")
    await peer.send("Agree")
    question, labels, action = go_groups(await peer.expect("Grouping"))
    assert (question, labels, action) == ("Your team?", ["Red", "Blue"], "Join")
    await peer.send("Connect", labels[1])
    await peer.expect("Instructions")
    assert await peer.expect("JoiningSize") == "1/2"


async def test_go_page_gets_joining_size_with_the_count_hidden(server: LiveServer) -> None:
    campaign = running_campaign(server, per_session=3, show_nb_participants=False)
    peer = await go_page(server, campaign["slug"], "go-uid-1")
    await peer.send("Agree")
    await peer.expect("Instructions")
    assert await peer.expect("JoiningSize") == "1/3"  # the page's cue to show its waiting view


async def test_a_reload_by_land_takes_the_place_back(server: LiveServer) -> None:
    campaign = running_campaign(server, per_session=2)
    supervisor = await server.supervisor(campaign["namespace"])
    first = await go_page(server, campaign["slug"], "go-uid-a")
    await first.send("Agree")
    assert await first.until("JoiningSize") == "1/2"
    await first.socket.close(1001)  # the browser leaving the page on a reload
    reloaded = await server.participant(campaign["slug"])
    assert await reloaded.expect("State") == "Running"
    await reloaded.send("Land", "go-uid-a")
    await reloaded.expect("Resume")  # the same place, not a new one (Go's page ignores this)
    assert await reloaded.expect("Instructions")
    assert await reloaded.expect("JoiningSize") == "1/2"
    second = await go_page(server, campaign["slug"], "go-uid-b")
    await second.send("Agree")
    # Nobody waits for the page that was reloaded: the pool is full and present.
    assert "/InitializeParticipant/" in await reloaded.until("Starting")
    assert "/InitializeParticipant/" in await second.until("Starting")
    start = await supervisor.until("SessionStart")
    assert start["size"] == 2


async def test_a_clean_close_keeps_the_place_briefly_a_drop_for_the_grace(
    make_server: ServerFactory,
) -> None:
    server = make_server(resume_grace=30, left_grace=3)
    campaign = running_campaign(server, per_session=3)
    supervisor = await server.supervisor(campaign["namespace"])
    left = await go_page(server, campaign["slug"], "uid-left")
    await left.send("Agree")
    dropped = await go_page(server, campaign["slug"], "uid-dropped")
    await dropped.send("Agree")
    await supervisor.sees("JoiningSize", "2/3")
    await left.socket.close(1000)  # mastok's page on pagehide
    dropped.socket.transport.abort()  # a lost connection: no close frame at all
    closed_at = server.clock.now()
    assert await supervisor.after(server.clock, "JoiningSize", seconds=1) == "1/3"
    left_for = (server.clock.now() - closed_at).total_seconds()
    assert await supervisor.after(server.clock, "JoiningSize", seconds=1) == "0/3"
    dropped_for = (server.clock.now() - closed_at).total_seconds()
    # The clean close's place went after MASTOK_LEFT_GRACE, the dropped one's after the grace.
    assert 3 <= left_for < 30 <= dropped_for


async def test_go_consent_markup_reaches_the_page(server: LiveServer) -> None:
    consent = (
        "- [ ] I agree\n\n[alert]Tick it.[/alert]\n\nCode: [technical_code]\n\n"
        "[technical_code_alert]Wrong code.[/technical_code_alert]\n\n"
        "See [new_link]https://example.org/info[end_link].\n\n[accept]Go[/accept]"
    )
    campaign = running_campaign(server, consent=consent)
    peer = await server.participant(campaign["slug"])
    await peer.expect("State")
    await peer.send("Land", "go-uid")
    await peer.expect("Resume")
    html = await peer.expect("Consent")
    for markup in (
        '<div id="alert-container" class="alert alert-danger" role="alert">',
        '<input type="text" id="technical_code" name="technical_code">',
        '<div id="technical-code-alert-container" class="alert alert-danger" role="alert">',
        '<a href="https://example.org/info" target="_blank" rel="noopener noreferrer">',
        '<button id="accept" type="button">Go</button>',
    ):
        assert markup in html


async def test_session_start_carries_go_mastoks_session_record(server: LiveServer) -> None:
    campaign = running_campaign(server, per_session=1, otree_config_name="survey")
    supervisor = await server.supervisor(campaign["namespace"])
    peer = await go_page(server, campaign["slug"], "go-uid")
    await peer.send("Agree")
    start = await supervisor.until("SessionStart")
    assert start["AdminUrl"] == start["admin_url"]
    assert start["AdminUrl"].startswith(server.settings.otree_public_url)
    assert (start["Code"], start["OtreeId"], start["Size"]) == (start["code"], "mk:live:1", 1)
    async with server.database() as db:
        ids = (await db.execute(select(OTreeSession.id, OTreeSession.campaign_id))).one()
    assert (start["ID"], start["CampaignID"]) == tuple(ids)
    assert start["Duration"] == campaign["session_duration"]
    assert start["CreatedAt"] == start["LaunchedAt"] == start["created_at"]
