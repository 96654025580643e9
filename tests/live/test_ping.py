"""`Ping` on a participant's or a supervisor's socket: answered with `Pong` at once, before
`Land` as after it, and the room never hears of it (no `Error`, no frame of the room's, the
visit and the pools as they were). Go Mastok's clients never send it, so never get `Pong`."""

from __future__ import annotations

from mastok.live.protocol import Kind
from tests.fixtures.live import ServerFactory, join
from tests.live.helpers import running_campaign


async def test_a_participant_ping_is_answered_and_changes_nothing(
    make_server: ServerFactory,
) -> None:
    server = make_server()
    campaign = running_campaign(server, "pinged", per_session=2)
    early = await server.participant(campaign["slug"])
    assert await early.expect("State") == "Running"
    await early.send(Kind.PING)  # before Land: the room would answer anything else with Error
    assert await early.next() == {"kind": "Pong"}

    peer, _token = await join(server, campaign["slug"], "pinging")
    await peer.send("Agree")
    await peer.expect("Instructions")
    assert await peer.expect("JoiningSize") == "1/2"
    await peer.expect("Waiting")
    await peer.send(Kind.PING, "anything")  # a payload is ignored
    assert await peer.next() == {"kind": "Pong"}
    await peer.silent()

    other, _ = await join(server, campaign["slug"], "other")
    await other.send("Agree")
    assert await peer.until("JoiningSize") == "2/2"  # the same pool, and it starts
    assert await peer.until("Starting")
    await early.close()


async def test_a_supervisor_ping_is_answered(make_server: ServerFactory) -> None:
    server = make_server()
    campaign = running_campaign(server, "watched")
    supervisor = await server.supervisor(campaign["namespace"])
    assert await supervisor.expect("State") == "Running"
    await supervisor.until("PendingSize")
    await supervisor.send(Kind.PING)
    assert await supervisor.next() == {"kind": "Pong"}
    await supervisor.silent()
    await supervisor.close()
