"""Request heads and slow clients bounded (mastok/web/http_protocol.py) on a real uvicorn
configured as `mastok serve` configures it, over raw sockets: a huge head gets 431, a head or
a body that trickles in is cut off, while ordinary requests and sockets carry on; a join
socket from an address that holds all it may is refused before the parser reads it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect

from mastok.clock import ManualClock
from mastok.serving import uvicorn_config
from mastok.web.http_protocol import BoundedHttpToolsProtocol
from mastok.web.participant_limits import JOIN_GATE, TOO_MANY_OPEN, JoinGate, ParticipantLimits
from tests.fixtures.live import ThreadServer


class Quick(BoundedHttpToolsProtocol):
    """The same bounds, with times a test can wait out."""

    head_seconds = 0.3
    body_grace_seconds = 0.3
    min_body_rate = 1024


async def echo(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"got {len(await request.body())}")


async def stall(request: Request) -> PlainTextResponse:
    time.sleep(0.5)  # noqa: ASYNC251 - the loop stalls: what is sent meanwhile is read at once
    return PlainTextResponse("stalled")


async def hold(websocket: WebSocket) -> None:
    await websocket.accept()
    text = await websocket.receive_text()
    await websocket.send_text(text)
    await websocket.close()


@pytest.fixture
def port() -> Iterator[int]:
    app = Starlette(
        routes=[
            Route("/", echo, methods=["GET", "POST"]),
            Route("/stall", stall),
            WebSocketRoute("/ws", hold),
        ]
    )
    assert uvicorn_config(app).http is BoundedHttpToolsProtocol  # what mastok serve runs
    with ThreadServer.running(app, http=Quick) as served:
        yield served


def connected(port: int) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port))
    client.settimeout(10)  # only a bound on a test that fails: the server answers or closes
    return client


def answer(client: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while chunk := client.recv(65536):
        received += chunk
    return received


def test_an_ordinary_request_is_answered(port: int) -> None:
    client = connected(port)
    client.sendall(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
    )
    assert answer(client).endswith(b"got 5")


def test_an_answer_names_no_server_software_and_carries_its_date(port: int) -> None:
    client = connected(port)
    client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head = answer(client).split(b"\r\n\r\n", 1)[0].lower()
    assert b"\r\ndate: " in head
    assert b"\r\nserver:" not in head


def test_a_head_over_64_kib_gets_431_or_a_reset_never_an_answer(port: int) -> None:
    client = connected(port)
    try:
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n")
        received = answer(client)
    except (ConnectionResetError, BrokenPipeError):
        received = b""  # closed with the rest of the head unread: the peer sees a reset
    assert received == b"" or received.startswith(b"HTTP/1.1 431 "), received[:80]
    test_an_ordinary_request_is_answered(port)  # the server carries on


def test_a_large_body_sent_with_its_head_is_answered(port: int) -> None:
    """The body is not the head, though it comes in the same reads (a design import)."""
    stalling = connected(port)
    stalling.sendall(b"GET /stall HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    time.sleep(0.1)  # the server's loop stalls: it then reads head and body in large chunks
    client = connected(port)
    body = b"x" * (1 << 20)
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
    client.sendall(head % len(body) + body)
    assert answer(client).endswith(b"got %d" % len(body))
    assert answer(stalling).endswith(b"stalled")


def test_a_head_that_trickles_in_is_cut_off(port: int) -> None:
    client = connected(port)
    client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the rest
    assert answer(client) == b""  # closed, unanswered


def test_a_body_slower_than_the_minimum_rate_is_cut_off(port: int) -> None:
    client = connected(port)
    client.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
    started = time.monotonic()
    with pytest.raises((ConnectionResetError, BrokenPipeError, OSError)):
        while time.monotonic() - started < 10:
            client.sendall(b"x")  # a byte now and then
            time.sleep(0.05)
        raise AssertionError("the server kept a trickling body for 10 s")


def test_a_socket_outlives_the_body_bounds(port: int) -> None:
    async def talk() -> str:
        async with connect(f"ws://127.0.0.1:{port}/ws") as websocket:
            await asyncio.sleep(0.6)  # past the head and body bounds: it is a socket now
            await websocket.send("still here")
            return str(await websocket.recv())

    assert asyncio.run(talk()) == "still here"


class Counted(Quick):
    """Counts the request heads its parser begins (a class's count: the server has a thread)."""

    heads_parsed: ClassVar[int] = 0

    def on_message_begin(self) -> None:
        Counted.heads_parsed += 1
        super().on_message_begin()


def gated(limits: ParticipantLimits) -> Starlette:
    """An app whose lifespan hands the HTTP protocol a join gate on `/ws`, as mastok's does."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[dict[str, Any]]:
        yield {JOIN_GATE: JoinGate(limits, "/ws")}

    routes = [Route("/", echo), WebSocketRoute("/ws", hold), WebSocketRoute("/wsx", hold)]
    return Starlette(routes=routes, lifespan=lifespan)


@pytest.fixture
def full_address() -> Iterator[int]:
    """A gated server before which 127.0.0.1 holds all the join sockets it may (one)."""
    limits = ParticipantLimits(ManualClock(), max_open=1)
    assert limits.opened("127.0.0.1") is None
    Counted.heads_parsed = 0
    with ThreadServer.running(gated(limits), http=Counted) as served:
        yield served


def upgrade(path: str = "/ws") -> bytes:
    return (
        f"GET {path}?slug=s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def refused_as_full(received: bytes) -> bool:
    return received.startswith(b"HTTP/1.1 403 Forbidden\r\n") and received.endswith(
        TOO_MANY_OPEN.text.encode()
    )


def test_a_join_socket_from_a_full_address_is_refused_before_the_parser(
    full_address: int,
) -> None:
    """A flood of idle sockets is thousands of these at once (bench/README.md, scenario 9)."""
    client = connected(full_address)
    client.sendall(upgrade())  # one small write: one read
    assert refused_as_full(answer(client))
    assert Counted.heads_parsed == 0


def test_a_join_head_in_two_writes_is_refused_all_the_same(full_address: int) -> None:
    client = connected(full_address)
    head = upgrade()
    client.sendall(head[:20])
    client.sendall(head[20:])
    assert refused_as_full(answer(client))


def test_a_join_socket_after_another_request_on_its_connection_is_refused_by_the_parser(
    full_address: int,
) -> None:
    client = connected(full_address)
    client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    received = b""
    while not received.endswith(b"got 0"):
        chunk = client.recv(65536)
        assert chunk, received  # the server closed before its answer was whole
        received += chunk
    client.sendall(upgrade())
    assert refused_as_full(answer(client))
    assert Counted.heads_parsed == 2


def test_a_full_address_still_opens_other_sockets_and_a_trusted_proxys_go_on(
    full_address: int,
) -> None:
    """A path that only begins as the join socket's is another socket."""

    async def talk(port: int, path: str) -> str:
        async with connect(f"ws://127.0.0.1:{port}{path}") as websocket:
            await websocket.send("hello")
            return str(await websocket.recv())

    assert asyncio.run(talk(full_address, "/wsx")) == "hello"
    limits = ParticipantLimits(ManualClock(), max_open=1)
    assert limits.opened("127.0.0.1") is None
    app = gated(limits)
    with ThreadServer.running(app, http=Counted, trusted_proxies="127.0.0.1") as proxied:
        assert asyncio.run(talk(proxied, "/ws")) == "hello"  # the app's to count


def test_an_address_with_room_opens_its_join_socket() -> None:
    limits = ParticipantLimits(ManualClock(), max_open=1)
    with ThreadServer.running(gated(limits), http=Counted) as served:
        client = connected(served)
        client.sendall(upgrade())
        assert client.recv(65536).startswith(b"HTTP/1.1 101 ")
        client.close()
