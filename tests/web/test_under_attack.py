"""Issue 13's attacks, all at once and at a small scale, while genuine participants start.

Each attack comes from addresses of its own, forwarded by a trusted proxy (the test's own
loopback), as they would reach mastok behind the deployment's HAProxy; the genuine participants
come from another address. The bench (`python -m bench attacks`) runs them at full scale and
reports `/healthz` latency under each.
"""

from __future__ import annotations

import asyncio
import base64
import os
from typing import Any

import httpx

from tests.fixtures.live import LiveServer, Peer, ServerFactory
from tests.live.helpers import running_campaign

GENUINE = "198.51.100.2"
IDLE, BIG_FRAMES, MADE_UP, SLOW = "203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4"
SOCKETS_PER_ADDRESS = 20
LANDINGS_PER_MINUTE = 5
SIXTEEN_MIB = 16 * 1024 * 1024

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def _head(server: LiveServer, request_line: str, address: str, *extra: str) -> bytes:
    lines = [
        request_line,
        f"Host: 127.0.0.1:{server.port}",
        f"X-Forwarded-For: {address}",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _upgrade(server: LiveServer, slug: str, address: str) -> tuple[Stream, int]:
    """A raw join socket's handshake: the stream and the HTTP status it got."""
    key = base64.b64encode(os.urandom(16)).decode()
    stream = await asyncio.open_connection("127.0.0.1", server.port)
    stream[1].write(
        _head(
            server,
            f"GET /ws/join?slug={slug} HTTP/1.1",
            address,
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            f"Origin: {server.origin}",
        )
    )
    head = await stream[0].readuntil(b"\r\n\r\n")
    return stream, int(head.split(b" ")[1])


async def _close_code(reader: asyncio.StreamReader) -> int:
    """The code of the server's close frame (its other frames passed over)."""
    while True:
        first, second = await reader.readexactly(2)
        size = second & 0x7F
        if size == 126:
            size = int.from_bytes(await reader.readexactly(2), "big")
        elif size == 127:
            size = int.from_bytes(await reader.readexactly(8), "big")
        payload = await reader.readexactly(size)
        if first & 0x0F == 0x8:
            return int.from_bytes(payload[:2], "big")


async def _big_frame(server: LiveServer, slug: str) -> int:
    """A join socket that announces a 16 MiB frame and sends its first 64 KiB."""
    (reader, writer), status = await _upgrade(server, slug, BIG_FRAMES)
    assert status == 101
    writer.write(bytes([0x81, 0xFF]) + SIXTEEN_MIB.to_bytes(8, "big") + os.urandom(4))
    writer.write(os.urandom(64 * 1024))
    code = await _close_code(reader)
    writer.close()
    return code


async def _big_header(server: LiveServer) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(_head(server, "GET /healthz HTTP/1.1", SLOW, "X-Big: " + "a" * 1024 * 1024))
    try:
        answer = await reader.readline()
    except ConnectionResetError:  # closed while the rest of the head was still arriving
        return 0
    finally:
        writer.close()
    return int(answer.split(b" ")[1])


async def _slow_head(server: LiveServer) -> Stream:
    stream = await asyncio.open_connection("127.0.0.1", server.port)
    stream[1].write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: a")  # and then nothing
    return stream


async def _slow_body(server: LiveServer) -> Stream:
    stream = await asyncio.open_connection("127.0.0.1", server.port)
    head = _head(
        server,
        "POST /api/trial/xp/S0/0/0 HTTP/1.1",
        SLOW,
        "Content-Type: application/json",
        "Content-Length: 100000",
    )
    stream[1].write(head + b'{"token": "')  # and then nothing
    return stream


async def _made_up(server: LiveServer, slug: str, n: int) -> Any:
    """A socket that lands a made-up id: `Resume`'s token, or the Disconnect reason."""
    peer = await _peer(server, slug, MADE_UP)
    await peer.expect("State")
    await peer.send("Land", f"made-up-{n}")
    frame = await peer.next()
    return frame


async def _peer(server: LiveServer, slug: str, address: str) -> Peer:
    url = server.ws_url(f"/ws/join?slug={slug}")
    return await Peer.open(url, origin=server.origin, headers={"X-Forwarded-For": address})


async def _genuine(server: LiveServer, slug: str, browser: str) -> Peer:
    """A participant from an address of its own, up to Consent."""
    peer = await _peer(server, slug, GENUINE)
    await peer.expect("State")
    await peer.send("Land", browser)
    await peer.expect("Resume")
    await peer.expect("Consent")
    return peer


async def test_genuine_participants_start_while_every_attack_runs(
    make_server: ServerFactory,
) -> None:
    server = make_server(
        trusted_proxies="127.0.0.1",
        sockets_per_address=SOCKETS_PER_ADDRESS,
        landings_per_minute=LANDINGS_PER_MINUTE,
    )
    slug = running_campaign(server, "attacked", per_session=2)["slug"]

    big_frames = await asyncio.gather(*(_big_frame(server, slug) for _ in range(3)))
    held = await asyncio.gather(*(_upgrade(server, slug, IDLE) for _ in range(30)))
    slow = [await _slow_head(server) for _ in range(20)]
    slow += [await _slow_body(server) for _ in range(10)]
    big_headers = await asyncio.gather(*(_big_header(server) for _ in range(2)))
    landed = [await _made_up(server, slug, n) for n in range(8)]

    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("/healthz")).status_code == 200
    genuine = [await _genuine(server, slug, name) for name in ("ada", "bo")]
    for peer in genuine:
        await peer.send("Agree")
    for peer in genuine:
        assert "/InitializeParticipant/" in await peer.until("Starting")

    assert big_frames == [1009] * 3
    statuses = sorted(status for _, status in held)
    assert statuses == [101] * SOCKETS_PER_ADDRESS + [403] * (30 - SOCKETS_PER_ADDRESS)
    assert all(status in (431, 0) for status in big_headers)
    kinds = [frame["kind"] for frame in landed]
    assert kinds == ["Resume"] * LANDINGS_PER_MINUTE + ["Disconnect"] * 3
    assert [frame["payload"] for frame in landed[LANDINGS_PER_MINUTE:]] == ["LandingFailed"] * 3
    with server.admin() as admin:
        assert admin.get("/api/campaigns/attacked").json()["started_sessions"] == 1
    for _, writer in [*(stream for stream, _ in held), *slow]:
        writer.close()
