"""Participant sockets per client address: the bounds alone (a hand-set clock), then a burst
of made-up ids and a full address against a real server, with a genuine participant beside."""

from __future__ import annotations

import pytest
from websockets.exceptions import InvalidStatus

from mastok.clock import ManualClock
from mastok.web.participant_limits import ParticipantLimits
from tests.fixtures.live import ServerFactory, join
from tests.live.helpers import running_campaign


def test_an_address_holds_at_most_max_open_sockets() -> None:
    limits = ParticipantLimits(ManualClock(), max_open=2)
    assert limits.opened("a") and limits.opened("a")
    assert not limits.opened("a")
    assert limits.opened("b")  # another address is counted apart
    limits.closed("a")
    assert limits.opened("a")


def test_landings_draw_from_a_bucket_refilled_over_a_minute() -> None:
    clock = ManualClock()
    limits = ParticipantLimits(clock, per_minute=60)
    assert all(limits.may_land("a") for _ in range(60))  # a lab of 60 at once gets through
    assert not limits.may_land("a")
    assert limits.may_land("b")
    clock.advance(seconds=1)
    assert limits.may_land("a")  # one a second comes back
    assert not limits.may_land("a")
    clock.advance(minutes=5)
    assert sum(limits.may_land("a") for _ in range(100)) == 60  # never more than a minute's


def test_refusals_are_logged_at_once_then_at_most_once_a_minute() -> None:
    clock = ManualClock()
    limits = ParticipantLimits(clock)
    assert limits.refused("a") == 1  # the first at once
    assert [limits.refused("a") for _ in range(500)] == [0] * 500
    assert limits.refused("b") == 1  # another address is counted apart
    clock.advance(seconds=59)
    assert limits.refused("a") == 0
    clock.advance(seconds=1)
    assert limits.refused("a") == 502  # every refusal of the minute, in one line
    assert limits.refused("a") == 0


def test_forgetting_addresses_keeps_those_with_open_sockets() -> None:
    limits = ParticipantLimits(ManualClock(), max_open=1, max_addresses=2)
    assert limits.opened("held")
    limits.may_land("x")
    limits.may_land("y")  # three addresses: one forgotten, not the one holding a socket
    assert not limits.opened("held")


async def test_a_burst_of_made_up_ids_is_refused_and_a_genuine_participant_joins(
    make_server: ServerFactory,
) -> None:
    server = make_server(landings_per_minute=3)
    campaign = running_campaign(server, "burst", per_session=2, max_sessions=1)
    made_up = []
    for n in range(3):
        peer, _ = await join(server, campaign["slug"], f"made-up-{n}")
        made_up.append(peer)
    refused = await server.participant(campaign["slug"])
    await refused.expect("State")
    await refused.send("Land", "made-up-3")
    assert await refused.expect("Disconnect") == "LandingFailed"
    assert await refused.closed() == 1000
    server.clock.advance(seconds=20)  # a landing a 20 s comes back
    genuine, _ = await join(server, campaign["slug"], "genuine")
    await genuine.send("Agree")
    await made_up[0].send("Agree")
    assert "/InitializeParticipant/" in await genuine.until("Starting")


async def test_an_address_past_its_open_sockets_is_refused_at_the_handshake(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = make_server(sockets_per_address=2)
    campaign = running_campaign(server, "full", per_session=2)
    first = await server.participant(campaign["slug"])
    await server.participant(campaign["slug"])
    for _ in range(20):
        with pytest.raises(InvalidStatus) as refused:
            await server.participant(campaign["slug"])
        assert refused.value.response.status_code == 403
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert lines == [
        "participant sockets refused to 127.0.0.1: 1, the last past the open sockets an "
        "address may hold"
    ]  # a flood of refusals is not a flood of lines
    await first.close()
    await first.closed()
    again, _ = await join(server, campaign["slug"], "after")  # a place freed
    await again.close()


async def test_made_up_ids_cannot_start_a_campaign_that_requires_an_identity(
    make_server: ServerFactory,
) -> None:
    server = make_server()
    campaign = running_campaign(
        server, "ids", per_session=2, identity_param="PROLIFIC_PID", require_identity=True
    )
    for _ in range(4):
        peer = await server.participant(campaign["slug"])
        assert await peer.expect("Disconnect") == "MissingId"
    with server.admin() as admin:
        live = admin.get("/api/campaigns/ids").json()
    assert live["started_sessions"] == 0
