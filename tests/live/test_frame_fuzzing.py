"""The join socket fuzzed: random and mutated frames of docs/protocol.md, text and binary, on a
real server. Whatever a stranger sends, mastok answers with frames or closes with a protocol
close code; nothing is logged as an error, and genuine participants still start together."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed

from mastok.live.protocol import Kind
from tests.fixtures.live import LiveServer, ServerFactory, join
from tests.live.helpers import running_campaign

CLOSE_CODES = {1000, 1007, 1008, 1009}  # done, bad data, policy (rate), too big

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
kinds = st.sampled_from([*Kind, "", "land", "Land ", "\x00", "\u216cand"])
protocol_frames = st.builds(
    lambda kind, payload, drop: json.dumps(
        {"kind": kind} if drop else {"kind": kind, "payload": payload}
    ),
    kinds,
    json_values,
    st.booleans(),
)
garbage = st.one_of(
    st.text(max_size=200),
    json_values.map(json.dumps),
    st.builds(lambda depth: "[" * depth, st.integers(1, 5000)),
    st.builds(lambda n: json.dumps({"kind": "Land", "payload": "x" * n}), st.integers(200, 70_000)),
)
frames = st.lists(
    st.one_of(protocol_frames, garbage, st.binary(max_size=64)), min_size=1, max_size=6
)


async def send_all(server: LiveServer, slug: str, sent: list[Any]) -> int | None:
    """Send the frames; the close code if mastok closed the socket."""
    peer = await server.participant(slug)
    try:
        for frame in sent:
            await peer.socket.send(frame)
        await peer.socket.send(json.dumps({"kind": "Bogus"}))
        while True:  # an Error for the bogus frame: everything before it was handled
            answer = json.loads(await asyncio.wait_for(peer.socket.recv(), 10))
            if answer.get("kind") == "Error" and "Bogus" in str(answer.get("payload")):
                break
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None
    finally:
        await peer.close()
    return None


def test_whatever_a_stranger_sends_the_room_holds(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = make_server(landings_per_minute=100_000)
    campaign = running_campaign(server, "fuzz", per_session=2, max_sessions=100)
    slug = campaign["slug"]
    codes: list[int | None] = []

    @given(sent=frames)
    @settings(
        max_examples=120,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(sent: list[Any]) -> None:
        code = asyncio.run(send_all(server, slug, sent))
        assert code is None or code in CLOSE_CODES, f"closed with {code} after {sent!r:.300}"
        codes.append(code)

    uvicorn_errors = logging.getLogger("uvicorn.error")  # it does not propagate to the root
    uvicorn_errors.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING):
            fuzz()
    finally:
        uvicorn_errors.removeHandler(caplog.handler)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors][:3]
    assert None in codes and any(code in CLOSE_CODES for code in codes)

    server.clock.advance(minutes=10)  # whoever the fuzz left in the pools is gone for good

    async def genuine() -> None:
        peers = []
        for n in range(2):
            peer, _ = await join(server, slug, f"genuine-{n}")
            await peer.send("Agree")
            peers.append(peer)
        for peer in peers:
            assert "/InitializeParticipant/" in await peer.until("Starting")

    asyncio.run(genuine())
