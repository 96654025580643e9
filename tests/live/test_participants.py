"""A participant's way through the room, over real WebSockets against a running mastok."""

from __future__ import annotations

import pytest

from tests.fixtures.live import LiveServer, ServerFactory, join
from tests.live.helpers import running_campaign


@pytest.fixture
def server(make_server: ServerFactory) -> LiveServer:
    return make_server()


async def test_state_comes_first_then_consent_after_land(server: LiveServer) -> None:
    campaign = running_campaign(server)
    peer = await server.participant(campaign["slug"])
    assert await peer.expect("State") == "Running"
    await peer.send("Land", "fp-1")
    token = await peer.expect("Resume")
    assert isinstance(token, str) and len(token) >= 20
    consent = await peer.expect("Consent")
    assert '<input class="task-list-item-checkbox" type="checkbox">' in consent
    assert '<button id="accept" type="button">I agree</button>' in consent
    await peer.close()


@pytest.mark.parametrize("state", ["Paused", "Completed"])
async def test_paused_or_completed_campaigns_send_their_message_and_close(
    server: LiveServer, state: str
) -> None:
    campaign = running_campaign(server, paused="**Back soon**", completed="All *done*")
    with server.admin() as admin:
        admin.patch(f"/api/campaigns/{campaign['namespace']}", json={"state": state})
    peer = await server.participant(campaign["slug"])
    message = await peer.expect(state)
    assert message == (
        "<p><strong>Back soon</strong></p>\n" if state == "Paused" else "<p>All <em>done</em></p>\n"
    )
    assert await peer.expect("Disconnect") == state
    assert await peer.closed() == 1000


async def test_joining_size_only_after_agree(server: LiveServer) -> None:
    campaign = running_campaign(server, per_session=3, max_sessions=2)
    first, _ = await join(server, campaign["slug"], "fp-a")
    await first.send("Agree")
    assert await first.expect("Instructions") == "<p>Please wait for the others.</p>\n"
    assert await first.expect("JoiningSize") == "1/3"
    assert await first.expect("Waiting") == {"waited": 0, "limit": 300, "leave_after": 0}
    second, _ = await join(server, campaign["slug"], "fp-b")
    await first.silent()  # a second person landing is not in the pool yet
    await second.send("Agree")
    await second.expect("Instructions")
    assert await second.expect("JoiningSize") == "2/3"
    assert await first.expect("JoiningSize") == "2/3"


async def test_grouping_asks_then_connect_chooses(server: LiveServer) -> None:
    campaign = running_campaign(
        server, per_session=2, grouping="Your team?\nRed:1\nBlue:1\nJoin", max_sessions=2
    )
    peer, _ = await join(server, campaign["slug"], "fp-g")
    await peer.send("Connect", "Red")
    assert "after Agree" in await peer.expect("Error")
    await peer.send("Agree")
    assert await peer.expect("Grouping") == "Your team?\nRed:1\nBlue:1\nJoin"  # Go's text
    await peer.send("Connect", "Green")
    assert "one of the Grouping labels" in await peer.expect("Error")
    await peer.send("Connect", "Red")
    await peer.expect("Instructions")
    assert await peer.expect("JoiningSize") == "1/2"


async def test_malformed_frames_get_errors(server: LiveServer) -> None:
    campaign = running_campaign(server)
    peer = await server.participant(campaign["slug"])
    await peer.expect("State")
    await peer.socket.send("not json")
    assert await peer.expect("Error") == "frames must be JSON"
    await peer.socket.send("[1, 2]")
    assert "frames must be objects" in await peer.expect("Error")
    await peer.socket.send('{"payload": 1}')
    assert await peer.expect("Error") == 'frames need a "kind" string'
    await peer.send("Land", "fp")
    await peer.expect("Resume")


async def test_a_deeply_nested_frame_gets_an_error_and_the_socket_goes_on(
    server: LiveServer,
) -> None:
    campaign = running_campaign(server)
    peer = await server.participant(campaign["slug"])
    await peer.expect("State")
    await peer.socket.send("[" * 60_000)  # 60 KB, under the frame limit
    assert await peer.expect("Error") == "frames must not nest so deeply"
    await peer.socket.send('{"kind": "Land", "payload": ' + "[" * 30_000 + "]" * 30_000 + "}")
    assert await peer.expect("Error") == "frames must not nest so deeply"
    await peer.send("Land", "fp")
    await peer.expect("Resume")


async def test_frames_over_64_kib_close_the_socket(server: LiveServer) -> None:
    campaign = running_campaign(server)
    peer = await server.participant(campaign["slug"])
    await peer.expect("State")
    await peer.send("Land", "x" * (64 * 1024 + 10))
    assert await peer.closed() == 1009


async def test_binary_frames_close_the_socket(server: LiveServer) -> None:
    campaign = running_campaign(server)
    peer = await server.participant(campaign["slug"])
    await peer.expect("State")
    await peer.socket.send(b"\x00\x01")
    assert await peer.closed() == 1008


async def test_a_flood_closes_the_socket_and_the_room_goes_on(server: LiveServer) -> None:
    campaign = running_campaign(server)
    flooder = await server.participant(campaign["slug"])
    await flooder.expect("State")
    for _ in range(200):
        await flooder.socket.send('{"kind": "Agree"}')
    assert await flooder.closed() == 1008
    calm, _ = await join(server, campaign["slug"], "fp-calm")
    await calm.send("Agree")
    await calm.expect("Instructions")


@pytest.mark.parametrize("slug", ["nobody_here", "a%00b"], ids=["unknown", "a NUL"])
async def test_unknown_slug_gets_an_error_and_a_close(server: LiveServer, slug: str) -> None:
    # A NUL: PostgreSQL cannot search text for one (the read failed, the socket with it).
    peer = await server.participant(slug)
    assert "no campaign" in await peer.expect("Error")
    assert await peer.closed() == 4404
