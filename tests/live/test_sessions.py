"""Full pools become real oTree sessions: codes, records, completion, redirect, Busy."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from mastok.db.tables import OTreeSession, Participant
from mastok.otree import OTreeClient
from tests.fixtures.live import Peer, ServerFactory, join
from tests.live.helpers import campaign_state, running_campaign


async def agree_all(*peers: Peer) -> None:
    """Each agrees once the one before is in the room: frames sent on different sockets reach
    the server in no set order, and pools are made in the order it got them."""
    for peer in peers:
        await peer.send("Agree")
        await peer.until("Instructions")


async def starting_url(peer: Peer) -> str:
    url = await peer.until("Starting")
    assert await peer.expect("Disconnect") == "Start"
    assert await peer.closed() == 1000
    return url


async def test_four_participants_make_two_real_otree_sessions(
    make_server: ServerFactory, otree_client: OTreeClient
) -> None:
    server = make_server()
    campaign = running_campaign(server, "e2e", per_session=2, max_sessions=3, concurrent_sessions=2)
    peers = [(await join(server, campaign["slug"], f"fp-{n}"))[0] for n in range(4)]
    await agree_all(*peers)
    urls = [await starting_url(peer) for peer in peers]
    assert len(set(urls)) == 4
    public = server.settings.otree_public_url
    assert all(url.startswith(f"{public}/InitializeParticipant/") for url in urls)

    sessions = {s.label: s for s in await otree_client.list_sessions()}
    uid = campaign["uid"]
    first, second = sessions[f"mk:e2e:1:{uid}"], sessions[f"mk:e2e:2:{uid}"]
    assert first.num_participants == second.num_participants == 2
    detail = await otree_client.get_session(first.code)
    assert detail.config["mastok_id"] == "mk:e2e:1"
    codes = {p.code for p in detail.participants}
    assert {url.rsplit("/", 1)[1] for url in urls[:2]} == codes

    async with httpx.AsyncClient() as http:
        for url in urls:
            code = url.rsplit("/", 1)[1]
            page = await http.get(url, follow_redirects=True)
            assert page.status_code == 200
            assert str(page.url).startswith(f"{public}/p/{code}/guess/Guess/1")
            assert 'name="guess"' in page.text

    assert campaign_state(server, "e2e")["started_sessions"] == 2
    async with server.database() as db:
        rows = list(await db.scalars(select(Participant).order_by(Participant.id)))
        assert [r.step for r in rows] == ["started"] * 4
        assert [r.browser_id for r in rows] == ["fp-0", "fp-1", "fp-2", "fp-3"]
        assert [r.outcome for r in rows] == ["started"] * 4
        assert [r.start_url for r in rows] == urls
        recorded = list(await db.scalars(select(OTreeSession).order_by(OTreeSession.number)))
        assert [(s.mastok_id, s.otree_code, s.size) for s in recorded] == [
            ("mk:e2e:1", first.code, 2),
            ("mk:e2e:2", second.code, 2),
        ]


async def test_supervisor_sees_sizes_and_session_start(make_server: ServerFactory) -> None:
    server = make_server()
    campaign = running_campaign(server, "sup", per_session=2, max_sessions=2)
    supervisor = await server.supervisor("sup")
    assert await supervisor.expect("State") == "Running"
    assert await supervisor.expect("JoiningSize") == "0/2"
    assert await supervisor.expect("PendingSize") == "0/6"
    first, _ = await join(server, campaign["slug"], "a")
    second, _ = await join(server, campaign["slug"], "b")
    await first.send("Agree")
    assert await supervisor.until("JoiningSize") == "1/2"
    await second.send("Agree")
    start = await supervisor.until("SessionStart")
    assert start["mastok_id"] == "mk:sup:1"
    assert start["size"] == 2
    assert len(start["participant_codes"]) == 2
    assert start["admin_url"].startswith(server.settings.otree_public_url)
    assert start["created_at"].endswith("+00:00")
    assert await supervisor.until("PendingSize") == "0/4"  # 2 x (2 - 1 + 1)
    # The full pool left the joining pool as its session was created (sizes are coalesced:
    # the supervisor may or may not have seen 0/2 before the session started).
    joining = [f["payload"] for f in supervisor.received if f["kind"] == "JoiningSize"]
    assert joining[-1] == "0/2"
    urls = [await starting_url(first), await starting_url(second)]
    assert sorted(u.rsplit("/", 1)[1] for u in urls) == sorted(start["participant_codes"])
    with server.admin() as admin:
        live = admin.get("/api/campaigns/sup/live").json()
    assert live["live"] == {"state": "Busy", "joining": "0/2", "pending": "0/4"}
    assert live["sessions"][0]["participant_codes"] == sorted(start["participant_codes"])


async def test_the_supervise_page_shows_the_room_as_its_twin_does(
    make_server: ServerFactory,
) -> None:
    server = make_server()
    campaign = running_campaign(server, "page", per_session=2, max_sessions=2)
    first, _ = await join(server, campaign["slug"], "a")
    second, _ = await join(server, campaign["slug"], "b")
    await agree_all(first, second)
    await starting_url(first)
    third, _ = await join(server, campaign["slug"], "c")
    await third.send("Agree")
    await third.until("Pending")  # one session at a time: the room is Busy, "c" waits
    with server.admin() as admin:
        assert admin.get("/api/campaigns/page/live").json()["live"] == {
            "state": "Busy",
            "joining": "0/2",
            "pending": "1/4",
        }
        page = admin.get("/campaigns/supervise/page").text
    # Not the campaign's stored state (Running) and no blanks: on a standby, whose socket is
    # refused, the page stays as it was served.
    assert '<span id="state" class="state state-busy">Busy</span>' in page
    assert '<dd id="joining-size">0 / 2</dd>' in page
    assert '<dd id="pending-size">1 / 4</dd>' in page


async def test_last_session_completes_the_campaign_and_ends_the_wait(
    make_server: ServerFactory,
) -> None:
    server = make_server()
    campaign = running_campaign(
        server, "last", per_session=2, max_sessions=1, completed="Thanks, we are full."
    )
    a, _ = await join(server, campaign["slug"], "a")
    b, _ = await join(server, campaign["slug"], "b")
    waiting, _ = await join(server, campaign["slug"], "c")
    await agree_all(a, b)
    await starting_url(a)
    await starting_url(b)
    assert await waiting.expect("Completed") == "<p>Thanks, we are full.</p>\n"
    assert await waiting.expect("Disconnect") == "Completed"
    assert campaign_state(server, "last")["state"] == "Completed"
    late = await server.participant(campaign["slug"])
    assert await late.expect("State") == "Completed"  # a's and b's session is live: theirs?
    await late.send("Land", "d")
    assert await late.expect("Completed") == "<p>Thanks, we are full.</p>\n"
    assert await late.expect("Disconnect") == "Completed"
    # Running again, it would start nothing: a supervisor is told to raise max_sessions first.
    supervisor = await server.supervisor("last")
    assert await supervisor.expect("State") == "Completed"
    await supervisor.send("State", "Running")
    assert await supervisor.until("Error") == (
        "max_sessions is 1 and 1 are started: raise it to run the campaign"
    )
    assert campaign_state(server, "last")["state"] == "Completed"


async def test_coming_back_to_a_live_session_redirects_to_it(make_server: ServerFactory) -> None:
    server = make_server()
    campaign = running_campaign(
        server, "back", per_session=1, otree_config_name="survey", max_sessions=3
    )
    peer, _ = await join(server, campaign["slug"], "fp-back")
    await peer.send("Agree")
    url = await starting_url(peer)
    again = await server.participant(campaign["slug"])
    await again.expect("State")
    await again.send("Land", "fp-back")
    assert await again.expect("Disconnect") == f"Redirect:{url}"


async def test_past_participants_are_known_after_a_restart(make_server: ServerFactory) -> None:
    server = make_server()
    campaign = running_campaign(
        server, "known", per_session=1, otree_config_name="survey", max_sessions=3, join_once=True
    )
    peer, _ = await join(server, campaign["slug"], "fp-known")
    await peer.send("Agree")
    url = await starting_url(peer)
    # mastok restarted on the same database builds the room from what the first wrote.
    previous = server
    for n, options in enumerate(({}, {"disable_live_redirect": True})):
        previous.stop()
        restarted = previous = make_server(**options)
        again = await restarted.participant(campaign["slug"])
        await again.expect("State")
        await again.send("Land", "fp-known")
        expected = (
            "LandingFailed" if restarted.settings.disable_live_redirect else f"Redirect:{url}"
        )
        assert await again.expect("Disconnect") == expected
        await join(restarted, campaign["slug"], f"fp-new-{n}")  # anyone else lands


async def test_busy_holds_newcomers_in_pending_until_a_session_ends(
    make_server: ServerFactory,
) -> None:
    server = make_server()
    campaign = running_campaign(
        server,
        "busy",
        per_session=1,
        otree_config_name="survey",
        max_sessions=5,
        concurrent_sessions=1,
        session_duration=5,
    )
    supervisor = await server.supervisor("busy")
    assert await supervisor.expect("State") == "Running"
    first, _ = await join(server, campaign["slug"], "a")
    await first.send("Agree")
    await starting_url(first)
    assert await supervisor.until("State") == "Busy"

    newcomer = await server.participant(campaign["slug"])
    assert await newcomer.expect("State") == "Busy"
    await newcomer.send("Land", "b")
    await newcomer.expect("Resume")
    await newcomer.expect("Consent")
    await newcomer.send("Agree")
    assert await newcomer.expect("Pending") == "<p>The room is full, please wait.</p>\n"
    await supervisor.sees("PendingSize", "1/5")

    server.clock.advance(minutes=5)  # the first session is over: its slot is free at a tick
    assert await newcomer.expect("Instructions")
    url = await starting_url(newcomer)
    assert "/InitializeParticipant/" in url
    assert campaign_state(server, "busy")["started_sessions"] == 2


@pytest.mark.parametrize("state", ["Paused", "Completed"])
async def test_supervisor_state_change_reaches_everyone(
    make_server: ServerFactory, state: str
) -> None:
    server = make_server()
    campaign = running_campaign(server, "steer", per_session=3, paused="Pause!", completed="End!")
    watcher, steerer = await server.supervisor("steer"), await server.supervisor("steer")
    for supervisor in (watcher, steerer):
        await supervisor.expect("State")
    unlanded = await server.participant(campaign["slug"])
    await unlanded.expect("State")
    waiting, _ = await join(server, campaign["slug"], "w")
    await waiting.send("Agree")
    await waiting.expect("Instructions")
    await steerer.send("State", state)
    assert await watcher.until("State") == state
    assert await steerer.until("State") == state
    for peer in (unlanded, waiting):
        assert await peer.until(state) == f"<p>{'Pause!' if state == 'Paused' else 'End!'}</p>\n"
        assert await peer.expect("Disconnect") == state
    assert campaign_state(server, "steer")["state"] == state
    assert await watcher.until("JoiningSize") == "0/3"
    await steerer.send("State", "Running")
    assert await watcher.until("State") == "Running"
    await join(server, campaign["slug"], "again")


async def test_supervisor_frames_are_checked(make_server: ServerFactory) -> None:
    server = make_server()
    running_campaign(server, "check")
    supervisor = await server.supervisor("check")
    await supervisor.expect("State")
    await supervisor.send("State", "Busy")
    assert await supervisor.until("Error") == "State must be Running, Paused or Completed"
    await supervisor.send("Land", "x")
    assert "supervisors can send State" in await supervisor.until("Error")
    assert campaign_state(server, "check")["state"] == "Running"


async def test_edits_reach_a_running_campaign(make_server: ServerFactory) -> None:
    server = make_server()
    campaign = running_campaign(server, "edit", per_session=3, instructions="Old text")
    with server.admin() as admin:
        admin.patch("/api/campaigns/edit", json={"instructions": "New *text*", "per_session": 2})
    first, _ = await join(server, campaign["slug"], "a")
    await first.send("Agree")
    assert await first.expect("Instructions") == "<p>New <em>text</em></p>\n"
    assert await first.expect("JoiningSize") == "1/2"
