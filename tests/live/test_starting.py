"""oTree creates a session while the room goes on: newcomers never wait for it, and the pool
being started keeps its places whatever happens meanwhile."""

from __future__ import annotations

from mastok.otree import OTreeClient
from tests.fixtures.live import FaultyOTree, ServerFactory, join
from tests.live.helpers import campaign_state, running_campaign

SLOW = 1.5  # seconds oTree takes to answer a creation in these tests


async def test_newcomers_fill_the_next_pool_while_otree_creates_a_session(
    make_server: ServerFactory, faulty_otree: tuple[FaultyOTree, str]
) -> None:
    proxy, proxy_url = faulty_otree
    proxy.answer_creation_late(SLOW, count=2)
    server = make_server(otree_api_url=proxy_url)
    campaign = running_campaign(
        server, "flow", per_session=2, max_sessions=3, concurrent_sessions=3
    )
    supervisor = await server.supervisor("flow")
    await supervisor.until("PendingSize")
    a, _ = await join(server, campaign["slug"], "a")
    b, _ = await join(server, campaign["slug"], "b")
    await a.send("Agree")
    await a.expect("Instructions")  # in the room before b: sockets have no order between them
    await b.send("Agree")
    await b.expect("Instructions")
    assert await b.expect("JoiningSize") == "2/2"
    await a.sees("JoiningSize", "2/2")
    assert await supervisor.until("JoiningSize") == "1/2"
    assert await supervisor.until("JoiningSize") == "0/2"  # the full pool is being started

    c, _ = await join(server, campaign["slug"], "c")
    await c.send("Agree")
    await c.expect("Instructions")  # the next pool, not the pending one
    assert await c.expect("JoiningSize") == "1/2"
    assert await supervisor.until("JoiningSize") == "1/2"
    assert proxy.creations_answered == 0  # all of it while oTree was still creating

    start = await supervisor.until("SessionStart", within=10)
    assert start["mastok_id"] == "mk:flow:1"
    urls = [await a.until("Starting"), await b.until("Starting")]
    assert sorted(u.rsplit("/", 1)[1] for u in urls) == sorted(start["participant_codes"])
    d, _ = await join(server, campaign["slug"], "d")
    await d.send("Agree")
    second = await supervisor.until("SessionStart", within=10)
    assert second["mastok_id"] == "mk:flow:2"
    assert (await c.until("Starting")).rsplit("/", 1)[1] in second["participant_codes"]
    assert proxy.session_posts == 2


async def test_a_member_who_drops_while_its_session_is_created_keeps_its_place(
    make_server: ServerFactory, faulty_otree: tuple[FaultyOTree, str]
) -> None:
    proxy, proxy_url = faulty_otree
    proxy.answer_creation_late(SLOW)
    server = make_server(otree_api_url=proxy_url)
    campaign = running_campaign(server, "drop", per_session=2)
    supervisor = await server.supervisor("drop")
    a, token = await join(server, campaign["slug"], "a")
    b, _ = await join(server, campaign["slug"], "b")
    await a.send("Agree")
    await b.send("Agree")
    await a.until("JoiningSize")
    await a.close()
    start = await supervisor.until("SessionStart", within=10)
    assert start["size"] == 2
    assert "/InitializeParticipant/" in await b.until("Starting")

    back = await server.participant(campaign["slug"])
    await back.expect("State")
    await back.send("Resume", token)
    url = await back.expect("Starting")
    assert url.rsplit("/", 1)[1] in start["participant_codes"]
    assert await back.expect("Disconnect") == "Start"


async def test_a_pause_waits_for_the_session_being_created(
    make_server: ServerFactory, faulty_otree: tuple[FaultyOTree, str]
) -> None:
    proxy, proxy_url = faulty_otree
    proxy.answer_creation_late(SLOW)
    server = make_server(otree_api_url=proxy_url)
    campaign = running_campaign(server, "hold", per_session=2, paused="Back soon.")
    supervisor = await server.supervisor("hold")
    a, _ = await join(server, campaign["slug"], "a")
    b, _ = await join(server, campaign["slug"], "b")
    c, _ = await join(server, campaign["slug"], "c")
    await a.send("Agree")
    await b.send("Agree")
    await b.until("JoiningSize")
    await supervisor.send("State", "Paused")

    # The pool being started was promised its session; everyone else is told the pause.
    assert "/InitializeParticipant/" in await a.until("Starting", within=10)
    assert "/InitializeParticipant/" in await b.until("Starting")
    assert await c.expect("Paused") == "<p>Back soon.</p>\n"
    assert await c.expect("Disconnect") == "Paused"
    await supervisor.until("SessionStart")
    await supervisor.sees("State", "Paused")
    state = campaign_state(server, "hold")
    assert (state["state"], state["started_sessions"]) == ("Paused", 1)


async def test_a_failed_creation_puts_its_pool_back_ahead_of_newcomers(
    make_server: ServerFactory,
    faulty_otree: tuple[FaultyOTree, str],
    otree_client: OTreeClient,
) -> None:
    proxy, proxy_url = faulty_otree
    proxy.fail_creations(1, status=500, text="oTree broke", after=SLOW)
    server = make_server(otree_api_url=proxy_url)
    campaign = running_campaign(
        server, "back", per_session=2, max_sessions=3, concurrent_sessions=3
    )
    supervisor = await server.supervisor("back")
    a, _ = await join(server, campaign["slug"], "a")
    b, _ = await join(server, campaign["slug"], "b")
    await a.send("Agree")
    await b.send("Agree")
    await b.until("JoiningSize")
    c, _ = await join(server, campaign["slug"], "c")
    await c.send("Agree")
    assert await c.expect("Instructions")
    assert await c.expect("JoiningSize") == "1/2"

    assert (
        await supervisor.until("Error", within=10) == "oTree session creation failed: oTree broke"
    )
    # a and b are back in the joining pool: c, who came later, waits in the pending pool.
    assert await c.expect("Pending")
    first = await supervisor.after(server.clock, "SessionStart", seconds=1)
    assert first["mastok_id"] == "mk:back:1"
    codes = [(await p.until("Starting")).rsplit("/", 1)[1] for p in (a, b)]
    assert sorted(codes) == sorted(first["participant_codes"])
    assert await c.expect("Instructions")  # moved up once the retried session started
    assert proxy.session_posts == 2
    assert campaign_state(server, "back")["started_sessions"] == 1
    label = f"mk:back:1:{campaign['uid']}"
    assert [s.label for s in await otree_client.list_sessions()].count(label) == 1
