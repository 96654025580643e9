"""Participant sockets per client address: the bounds alone (a hand-set clock), then a burst
of made-up ids and a full address against a real server, with a genuine participant beside."""

from __future__ import annotations

from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from mastok.clock import ManualClock
from mastok.web.http_protocol import is_trusted_proxy
from mastok.web.participant_limits import (
    FORGET_SCAN,
    PAST_OPEN_SOCKETS,
    PAST_OPENINGS,
    TOO_MANY_OPEN,
    TOO_MANY_OPENED,
    JoinGate,
    ParticipantLimits,
)
from tests.fixtures.live import Peer, ServerFactory, join
from tests.live.helpers import running_campaign


def test_an_address_holds_at_most_max_open_sockets() -> None:
    limits = ParticipantLimits(ManualClock(), max_open=2)
    assert limits.opened("a") is None and limits.opened("a") is None
    assert limits.opened("a") == PAST_OPEN_SOCKETS
    assert limits.opened("b") is None  # another address is counted apart
    limits.closed("a")
    assert limits.opened("a") is None


def test_an_ipv6_subscribers_addresses_are_one_address() -> None:
    """A host given an IPv6 /64 (any VPS) has 2**64 addresses: counted apart, it would hold
    and open sockets without bound."""
    limits = ParticipantLimits(ManualClock(), max_open=2, per_minute=2)
    assert limits.opened("2001:db8:1:2::1") is None and limits.opened("2001:db8:1:2::2") is None
    assert limits.opened("2001:db8:1:2:ffff::3") == PAST_OPEN_SOCKETS
    assert limits.opened("2001:db8:1:3::1") is None  # another /64 is another subscriber
    assert limits.may_land("2001:db8:1:2::4") and limits.may_land("2001:db8:1:2::5")
    assert not limits.may_land("2001:db8:1:2::6")
    limits.closed("2001:db8:1:2::9")
    assert limits.opened("2001:db8:1:2::10") is None
    assert limits.opened("10.0.0.1") is None and limits.opened("10.0.0.2") is None


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


def test_openings_draw_from_their_own_bucket() -> None:
    clock = ManualClock()
    limits = ParticipantLimits(clock, per_minute=1, opens_per_minute=3)
    assert all(limits.may_open("a") for _ in range(3))
    assert not limits.may_open("a")
    assert limits.may_land("a")  # landings are counted apart
    clock.advance(seconds=20)
    assert limits.may_open("a")


def test_sockets_let_through_the_gate_count_before_they_open() -> None:
    clock = ManualClock()
    limits = ParticipantLimits(clock, max_open=2)
    gate = JoinGate(limits, "/ws/join")
    burst = [gate.refusal("/ws/join", "a") for _ in range(5)]  # before any reaches the app
    assert burst == [None, None, TOO_MANY_OPEN, TOO_MANY_OPEN, TOO_MANY_OPEN]
    assert limits.opened("a") is None  # the first arrives
    assert gate.refusal("/ws/join", "a") == TOO_MANY_OPEN  # the second still counts
    clock.advance(seconds=11)  # it never arrived (its client went during the handshake)
    assert gate.refusal("/ws/join", "a") is None


def test_a_socket_turned_away_before_it_opens_no_longer_counts() -> None:
    limits = ParticipantLimits(ManualClock(), max_open=1)
    gate = JoinGate(limits, "/ws/join")
    assert gate.refusal("/ws/join", "a") is None
    limits.turned_away("a")  # refused for its origin, say
    assert gate.refusal("/ws/join", "a") is None


def test_the_gate_refuses_only_join_sockets_past_a_bound() -> None:
    limits = ParticipantLimits(ManualClock(), max_open=1, opens_per_minute=2)
    gate = JoinGate(limits, "/p/ws/join")
    assert gate.refusal("/p/ws/join", "a") is None  # a token taken
    assert limits.opened("a") is None
    assert gate.refusal("/p/ws/join", "a") == TOO_MANY_OPEN  # holds all it may
    assert gate.refusal_if_full("a") == TOO_MANY_OPEN  # asked before the path is parsed
    assert gate.request_start == b"GET /p/ws/join"
    assert gate.refusal("/p/ws/campaigns/supervise", "a") is None  # not a join socket
    limits.closed("a")
    assert gate.refusal("/p/ws/join", "a") is None  # the second token
    assert limits.opened("a") is None  # taken at the gate, not again
    limits.closed("a")
    assert gate.refusal("/p/ws/join", "a") == TOO_MANY_OPENED
    assert gate.refusal_if_full("b") is None
    assert gate.refusal("/p/ws/join", "b") is None


def test_a_socket_that_did_not_pass_the_gate_takes_its_opening_token_when_it_opens() -> None:
    limits = ParticipantLimits(ManualClock(), opens_per_minute=2)
    assert limits.opened("a") is None and limits.opened("a") is None
    assert limits.opened("a") == PAST_OPENINGS


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
    assert limits.opened("held") is None
    limits.may_land("x")
    limits.may_land("y")  # three addresses: one forgotten, not the one holding a socket
    assert limits.opened("held") == PAST_OPEN_SOCKETS


def test_an_address_spray_does_not_make_each_new_address_scan_them_all() -> None:
    """Past the bound, with every remembered address holding a socket, a new one forgets the
    least recently seen after a bounded look (it cannot keep everyone's counts)."""
    limits = ParticipantLimits(ManualClock(), max_open=1, max_addresses=1000)
    for n in range(1000):
        assert limits.opened(f"holder-{n}") is None
    looked = 0
    original = limits._addresses.items

    def counted() -> Any:
        nonlocal looked
        for item in original():
            looked += 1
            yield item

    limits._addresses.items = counted  # type: ignore[method-assign]
    limits.may_land("newcomer")
    assert looked <= FORGET_SCAN
    assert "holder-0" not in limits._addresses and "newcomer" in limits._addresses


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
        # Refused by the HTTP protocol, before the handshake and the app (issue 13).
        assert refused.value.response.body == b"too many open participant sockets from this address"
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert lines == [
        "participant sockets refused to 127.0.0.1: 1, the last past the open sockets an "
        "address may hold"
    ]  # a flood of refusals is not a flood of lines
    await first.close()
    await first.closed()
    again, _ = await join(server, campaign["slug"], "after")  # a place freed
    await again.close()


async def test_an_address_opening_sockets_in_a_loop_is_refused_before_the_handshake(
    make_server: ServerFactory,
) -> None:
    server = make_server(sockets_per_minute=3)
    campaign = running_campaign(server, "loop", per_session=2)
    for _ in range(3):
        peer = await server.participant(campaign["slug"])
        await peer.close()
        await peer.closed()
    with pytest.raises(InvalidStatus) as refused:
        await server.participant(campaign["slug"])
    assert refused.value.response.status_code == 429
    assert refused.value.response.body == b"too many participant sockets opened from this address"
    server.clock.advance(seconds=20)  # one a 20 s comes back
    genuine, _ = await join(server, campaign["slug"], "genuine")
    await genuine.close()


async def test_behind_a_trusted_proxy_each_forwarded_address_is_counted_apart(
    make_server: ServerFactory,
) -> None:
    """The HTTP layer sees only the proxy: it leaves those sockets to the app, which counts
    them by the forwarded address (else everyone behind the proxy would share one bound)."""
    server = make_server(trusted_proxies="127.0.0.1", sockets_per_minute=2)
    campaign = running_campaign(server, "proxied", per_session=9)
    url = server.ws_url(f"/ws/join?slug={campaign['slug']}")
    for n in (1, 1, 2, 2, 3, 3):
        headers = {"X-Forwarded-For": f"198.51.100.{n}"}
        peer = await Peer.open(url, origin=server.origin, headers=headers)
        assert await peer.expect("State")
        await peer.close()
    with pytest.raises(InvalidStatus) as refused:  # the third from one forwarded address
        await Peer.open(url, origin=server.origin, headers={"X-Forwarded-For": "198.51.100.1"})
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize(
    ("address", "allowed", "trusted"),
    [
        ("127.0.0.1", "127.0.0.1", True),
        ("10.89.0.7", "10.89.0.0/24, 127.0.0.1", True),
        ("10.89.1.7", "10.89.0.0/24", False),
        ("::1", "127.0.0.1,::1", True),
        ("203.0.113.9", "*", True),
        ("203.0.113.9", "proxy", False),  # a name uvicorn was given as is
        ("", "127.0.0.1", False),
    ],
)
def test_the_http_layer_knows_the_trusted_proxies(
    address: str, allowed: str, trusted: bool
) -> None:
    assert is_trusted_proxy(address, allowed) is trusted


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
