"""Places survive dropped connections and oTree failures; sessions are never doubled."""

from __future__ import annotations

from sqlalchemy import select, text

from mastok.db.tables import Participant
from mastok.otree import OTreeClient
from tests.fixtures.live import FaultyOTree, ServerFactory, join
from tests.live.helpers import campaign_state, running_campaign

GROUPS = "Team?\nRed:1\nBlue:1\nGo"


async def test_resume_gives_the_place_back(make_server: ServerFactory) -> None:
    server = make_server()
    campaign = running_campaign(server, "resume", per_session=3)
    peer, token = await join(server, campaign["slug"], "a")
    await peer.send("Agree")
    await peer.expect("Instructions")
    assert await peer.expect("JoiningSize") == "1/3"
    await peer.close()
    back = await server.participant(campaign["slug"])
    assert await back.expect("State") == "Running"
    await back.send("Resume", token)
    assert await back.expect("Resume") == token
    assert await back.expect("Instructions") == "<p>Please wait for the others.</p>\n"
    assert await back.expect("JoiningSize") == "1/3"
    other, _ = await join(server, campaign["slug"], "b")
    await other.send("Agree")
    await other.expect("Instructions")
    assert await other.expect("JoiningSize") == "2/3"
    assert await back.expect("JoiningSize") == "2/3"


async def test_a_running_campaign_keeps_its_slug_for_those_waiting(
    make_server: ServerFactory,
) -> None:
    """The rename is refused: the join page keeps its token under its slug, and reloaded after
    a rename it would land on the new slug without it (`rules._check_slug_kept`)."""
    server = make_server()
    campaign = running_campaign(server, "renamed", per_session=3)
    peer, token = await join(server, campaign["slug"], "a")
    await peer.send("Agree")
    await peer.expect("Instructions")
    with server.admin() as admin:
        answer = admin.patch("/api/campaigns/renamed", json={"slug": "other_slug"})
    assert answer.status_code == 422
    assert "Running" in answer.json()["errors"]["slug"]
    await peer.close()
    back = await server.participant(campaign["slug"])
    assert await back.expect("State") == "Running"
    await back.send("Resume", token)
    assert await back.expect("Resume") == token


async def test_a_second_socket_with_the_token_replaces_the_first(
    make_server: ServerFactory,
) -> None:
    server = make_server()
    campaign = running_campaign(server, "twice", per_session=3)
    first, token = await join(server, campaign["slug"], "a")
    second = await server.participant(campaign["slug"])
    await second.expect("State")
    await second.send("Resume", token)
    assert await first.until("Disconnect") == "Replaced"
    await second.expect("Resume")
    await second.expect("Consent")


async def test_leaving_frees_the_place_after_the_grace_period(make_server: ServerFactory) -> None:
    server = make_server(resume_grace=30)
    campaign = running_campaign(server, "leave", per_session=2, grouping=GROUPS)
    supervisor = await server.supervisor("leave")
    first, token = await join(server, campaign["slug"], "a")
    await first.send("Agree")
    await first.expect("Grouping")
    await first.send("Connect", "Red")
    await first.expect("Instructions")
    second, _ = await join(server, campaign["slug"], "b")
    await second.send("Agree")
    await second.expect("Grouping")
    await second.send("Connect", "Red")
    assert await second.expect("Pending") == "<p>The room is full, please wait.</p>\n"
    await supervisor.sees("PendingSize", "1/8")  # 2 groups x 1 x (3 + 1)
    await first.close()
    instructions = await second.after(server.clock, "Instructions", seconds=30)
    assert instructions == "<p>Please wait for the others.</p>\n"
    await supervisor.sees("PendingSize", "0/8")
    late = await server.participant(campaign["slug"])
    await late.expect("State")
    await late.send("Resume", token)
    assert "expired" in await late.expect("Error")


async def test_a_session_waits_for_members_who_are_away(make_server: ServerFactory) -> None:
    server = make_server(resume_grace=30)
    campaign = running_campaign(server, "away", per_session=2, max_sessions=2)
    first, token = await join(server, campaign["slug"], "a")
    await first.send("Agree")
    await first.expect("Instructions")
    await first.close()
    second, _ = await join(server, campaign["slug"], "b")
    await second.send("Agree")
    await second.expect("Instructions")
    assert await second.expect("JoiningSize") == "2/2"
    assert (await second.expect("Waiting"))["waited"] == 0
    await second.silent(0.6)  # full, but one member is away: no session yet
    back = await server.participant(campaign["slug"])
    await back.expect("State")
    await back.send("Resume", token)
    assert "/InitializeParticipant/" in await back.until("Starting")
    assert "/InitializeParticipant/" in await second.until("Starting")


async def test_otree_failure_keeps_people_waiting_and_is_retried(
    make_server: ServerFactory,
    faulty_otree: tuple[FaultyOTree, str],
    otree_client: OTreeClient,
) -> None:
    proxy, proxy_url = faulty_otree
    proxy.fail_creations(2, status=500, text="database is locked")
    server = make_server(otree_api_url=proxy_url)
    campaign = running_campaign(server, "flaky", per_session=2, max_sessions=2)
    supervisor = await server.supervisor("flaky")
    a, _ = await join(server, campaign["slug"], "a")
    b, _ = await join(server, campaign["slug"], "b")
    await a.send("Agree")
    await b.send("Agree")
    await supervisor.sees("State", "Unavailable")
    assert await supervisor.until("Error") == "oTree session creation failed: database is locked"
    await a.expect("Instructions")
    start = await supervisor.after(server.clock, "SessionStart", seconds=5)
    assert start["mastok_id"] == "mk:flaky:1"
    await supervisor.sees("State", "Busy")
    assert proxy.session_posts == 3
    assert proxy.listings == 2  # each retry looks for a session the failed call might have made
    assert "/InitializeParticipant/" in await a.until("Starting")
    assert "/InitializeParticipant/" in await b.until("Starting")
    label = f"mk:flaky:1:{campaign['uid']}"
    assert [s.label for s in await otree_client.list_sessions()].count(label) == 1
    assert campaign_state(server, "flaky")["started_sessions"] == 1


async def test_a_timed_out_creation_is_claimed_not_repeated(
    make_server: ServerFactory,
    faulty_otree: tuple[FaultyOTree, str],
    otree_client: OTreeClient,
) -> None:
    proxy, proxy_url = faulty_otree
    proxy.answer_creation_late(seconds=2.5)
    server = make_server(otree_api_url=proxy_url, otree_timeout=1)
    campaign = running_campaign(server, "slow", per_session=2, max_sessions=2)
    supervisor = await server.supervisor("slow")
    a, _ = await join(server, campaign["slug"], "a")
    b, _ = await join(server, campaign["slug"], "b")
    await a.send("Agree")
    await b.send("Agree")
    assert "did not answer in time" in await supervisor.until("Error")
    start = await supervisor.after(server.clock, "SessionStart", seconds=5)
    assert proxy.session_posts == 1
    label = f"mk:slow:1:{campaign['uid']}"
    sessions = [s for s in await otree_client.list_sessions() if s.label == label]
    assert [s.code for s in sessions] == [start["code"]]
    urls = [await a.until("Starting"), await b.until("Starting")]
    assert sorted(u.rsplit("/", 1)[1] for u in urls) == sorted(start["participant_codes"])


FAILING_UPDATES = {
    "sqlite": [
        "CREATE TABLE fail_now (x INTEGER)",
        "CREATE TRIGGER fail_moves BEFORE UPDATE ON participants "
        "WHEN EXISTS (SELECT 1 FROM fail_now) BEGIN SELECT RAISE(ABORT, 'disk full'); END",
    ],
    "postgresql": [
        "CREATE TABLE fail_now (x INTEGER)",
        "CREATE FUNCTION fail_moves() RETURNS trigger AS $$ BEGIN "
        "IF EXISTS (SELECT 1 FROM fail_now) THEN RAISE EXCEPTION 'disk full'; END IF; "
        "RETURN NEW; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER fail_moves BEFORE UPDATE ON participants "
        "FOR EACH ROW EXECUTE FUNCTION fail_moves()",
    ],
}


async def test_a_failed_write_changes_nothing_and_the_retry_succeeds(
    make_server: ServerFactory,
) -> None:
    """The database refuses the move an Agree writes: the participant is asked to retry and
    is where it was (before, memory moved on and the retried Agree was refused for good)."""
    server = make_server()
    campaign = running_campaign(server, "refused", per_session=2)
    supervisor = await server.supervisor("refused")
    peer, token = await join(server, campaign["slug"], "a")
    async with server.database() as db:
        for statement in FAILING_UPDATES[db.bind.dialect.name]:
            await db.execute(text(statement))
        await db.execute(text("INSERT INTO fail_now VALUES (1)"))
        await db.commit()
    await peer.send("Agree")
    assert await peer.expect("Error") == "mastok could not handle that: please retry"
    async with server.database() as db:
        assert await db.scalar(select(Participant.step).where(Participant.token == token)) == (
            "landed"
        )
        await db.execute(text("DELETE FROM fail_now"))
        await db.commit()
    await peer.send("Agree")
    assert await peer.expect("Instructions")
    assert await peer.expect("JoiningSize") == "1/2"
    await supervisor.sees("JoiningSize", "1/2")
    async with server.database() as db:
        assert await db.scalar(select(Participant.step).where(Participant.token == token)) == (
            "joining"
        )
