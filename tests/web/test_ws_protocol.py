"""Frames written together (mastok/web/ws_protocol.py, mastok/live/connection.py): a
supervisors' update in one write, and the frames a step queues on a socket in one write when the
step ends. They arrive as frames, in order, compressed or not; the write is declined whenever
uvicorn's own send would wait (a full buffer) or refuse, and the frames then go the ASGI way,
never ahead of frames already queued, and a close always after the frames before it."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from uvicorn.server import ServerState
from websockets.asyncio.client import connect
from websockets.frames import Close, Frame, Opcode
from websockets.server import ServerProtocol

from mastok.live.connection import WRITE_TEXTS, Connection
from mastok.live.protocol import MAX_FRAME_BYTES, encode
from mastok.logs import dict_config
from mastok.serving import uvicorn_config
from mastok.web.ws_protocol import SOCKET_LOGGER, MastokWebSocketProtocol
from tests.fixtures.live import ThreadServer

UPDATE = (encode("JoiningSize", "1/4"), encode("PendingSize", "0/8"))


async def supervised(websocket: WebSocket) -> None:
    """Sends an update on "go", then says whether it went without a writer task."""
    await websocket.accept()
    connection = Connection(websocket)
    await websocket.receive_text()
    connection.send_texts(UPDATE)
    connection.send("Written", "at once" if connection.writing() is None else "queued")
    await websocket.receive_text()


@pytest.fixture(params=[False, True], ids=["plain", "deflate"])
def port(request: pytest.FixtureRequest) -> Iterator[int]:
    app = Starlette(routes=[WebSocketRoute("/ws", supervised)])
    with ThreadServer.running(app, ws_per_message_deflate=request.param) as served:
        yield served


async def test_supervisors_frames_written_at_once_arrive_as_frames_in_order(port: int) -> None:
    assert uvicorn_config(Starlette()).ws is MastokWebSocketProtocol  # what mastok serve runs
    async with connect(f"ws://127.0.0.1:{port}/ws") as client:
        await client.send("go")
        received = [await asyncio.wait_for(client.recv(), 10) for _ in range(3)]
        await client.send("bye")
    assert received == [*UPDATE, encode("Written", "at once")]


class FakeWebSocket:
    def __init__(self, *answers: bool) -> None:
        """`answers`: what each write answers in turn (the last one from then on)."""
        self.scope: dict[str, Any] = {"extensions": {WRITE_TEXTS: {"write": self.write}}}
        self.answers = list(answers)
        self.asked: list[tuple[str, ...]] = []  # each write asked, written or declined
        self.sent: list[Any] = []  # what went the ASGI way
        self.gate = asyncio.Event()
        self.gate.set()

    def write(self, texts: tuple[str, ...]) -> bool:
        self.asked.append(texts)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    async def send_text(self, text: str) -> None:
        await self.gate.wait()
        self.sent.append(text)

    async def close(self, code: int, reason: str) -> None:
        await self.gate.wait()
        self.sent.append(("close", code, reason))


async def test_supervisors_frames_go_the_asgi_way_when_the_write_is_declined() -> None:
    websocket = FakeWebSocket(False)
    connection = Connection(websocket)  # type: ignore[arg-type]
    connection.send_texts(UPDATE)
    assert websocket.asked == [UPDATE]
    await connection.wait_closed()
    assert websocket.asked == [UPDATE]  # not asked again
    assert websocket.sent == list(UPDATE)


async def test_frames_queued_in_one_step_are_written_together_once_it_ends() -> None:
    websocket = FakeWebSocket(True)
    connection = Connection(websocket)  # type: ignore[arg-type]
    connection.send("State", "Running")
    connection.send("Consent", "the text")
    connection.send_texts(UPDATE)  # behind the frames queued before it
    assert websocket.asked == []  # nothing before the step ends
    await asyncio.sleep(0)
    assert websocket.asked == [(encode("State", "Running"), encode("Consent", "the text"), *UPDATE)]
    assert connection.writing() is None  # no task, no ASGI send
    assert websocket.sent == []
    connection.send("Waiting", "again")  # the next step's frames: a write of their own
    await asyncio.sleep(0)
    assert websocket.asked[1:] == [(encode("Waiting", "again"),)]


async def test_frames_wait_behind_a_writer_already_sending() -> None:
    websocket = FakeWebSocket(False, True)  # the buffer full, then not
    websocket.gate.clear()
    connection = Connection(websocket)  # type: ignore[arg-type]
    connection.send("State", "Running")
    await asyncio.sleep(0)  # declined: a writer sends it, held at the gate
    assert connection.writing() is not None
    connection.send_texts(UPDATE)
    connection.send("Waiting", "again")
    await asyncio.sleep(0)
    assert websocket.asked == [(encode("State", "Running"),)]  # none written ahead of State
    websocket.gate.set()
    await connection.wait_closed()
    assert websocket.sent == [encode("State", "Running"), *UPDATE, encode("Waiting", "again")]


async def test_a_close_goes_after_the_frames_queued_before_it() -> None:
    websocket = FakeWebSocket(True)
    connection = Connection(websocket)  # type: ignore[arg-type]
    connection.send("Starting", "https://otree.example/p")
    connection.disconnect("Start")
    connection.send("Late", "never")  # after the close: dropped
    assert websocket.asked == [
        (encode("Starting", "https://otree.example/p"), encode("Disconnect", "Start"))
    ]
    await connection.wait_closed()  # the close, the ASGI way (uvicorn's own close handshake)
    assert websocket.sent == [("close", 1000, "Start")]


async def test_frames_of_a_socket_stopped_before_the_step_ends_are_not_sent() -> None:
    websocket = FakeWebSocket(True)
    connection = Connection(websocket)  # type: ignore[arg-type]
    connection.send("Waiting", "the peer has gone")
    await connection.stop()  # its reader saw the peer leave
    await asyncio.sleep(0)
    assert websocket.asked == []
    assert connection.writing() is None


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1), "sockname": ("127.0.0.1", 2)}.get(name, default)


HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


async def test_supervisors_frames_are_not_written_while_the_buffer_is_full() -> None:
    accepted = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        accepted.set()
        await receive()

    config = uvicorn_config(app, log_config=None, log_level="warning")
    config.load()
    state = ServerState()
    protocol = MastokWebSocketProtocol(config, state, {})
    transport = Transport()
    assert not protocol.write_texts(UPDATE)  # no connection yet
    protocol.connection_made(transport)
    protocol.data_received(HANDSHAKE)
    await accepted.wait()
    assert protocol.scope["extensions"][WRITE_TEXTS] == {"write": protocol.write_texts}
    handshake = len(transport.written)
    protocol.pause_writing()
    assert not protocol.write_texts(UPDATE)
    protocol.resume_writing()
    assert protocol.write_texts(UPDATE)
    assert transport.written[handshake:] == _as_websockets_frames_them(UPDATE)
    protocol.connection_lost(None)
    assert not protocol.write_texts(UPDATE)
    assert WRITE_TEXTS not in protocol.scope["extensions"]  # no cycle left to the GC
    await asyncio.gather(*state.tasks)  # the app has seen the disconnect and returned


def _as_websockets_frames_them(texts: tuple[str, ...]) -> bytes:
    server = ServerProtocol()
    server.state = server.state.OPEN
    for text in texts:
        server.send_text(text.encode())
    return b"".join(server.data_to_send())


async def test_websockets_logs_a_sockets_errors_and_not_each_opening(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(dict_config()["loggers"][SOCKET_LOGGER]["level"], logger=SOCKET_LOGGER)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})

    config = uvicorn_config(app, log_config=None, log_level="warning")
    config.load()
    state = ServerState()
    protocol = MastokWebSocketProtocol(config, state, {})
    protocol.connection_made(Transport())
    protocol.data_received(HANDSHAKE)
    await asyncio.gather(*state.tasks)
    protocol.connection_lost(None)

    assert not [r for r in caplog.records if r.name == SOCKET_LOGGER]  # no "connection open"
    protocol.conn.logger.error("parser failed")  # as websockets logs a bug of its own
    assert [(r.name, r.levelno) for r in caplog.records] == [(SOCKET_LOGGER, logging.ERROR)]


@contextlib.contextmanager
def no_garbage_collector() -> Iterator[None]:
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.parametrize("closing", ["handshake", "dropped", "too_big"])
async def test_a_closed_socket_is_freed_without_the_garbage_collector(closing: str) -> None:
    """`closing`: the client's close frame answered, the connection lost without one, or a
    frame over the limit refused (1009) before the loss."""
    accepted = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        accepted.set()
        await receive()  # the client's close, or the loss

    config = uvicorn_config(app, log_config=None, log_level="warning")
    config.load()
    state = ServerState()
    with no_garbage_collector():
        protocol = MastokWebSocketProtocol(config, state, {})
        transport = Transport()
        protocol.connection_made(transport)
        protocol.data_received(HANDSHAKE)
        await accepted.wait()
        if closing == "handshake":
            close = Frame(Opcode.CLOSE, Close(1000, "bye").serialize())
            protocol.data_received(close.serialize(mask=True))
            assert transport.written.endswith(close.serialize(mask=False))  # answered
        elif closing == "too_big":
            head = bytes([0x81, 0xFF]) + (MAX_FRAME_BYTES + 1).to_bytes(8, "big") + b"mask"
            protocol.data_received(head)
            close_frame = transport.written[transport.written.rindex(b"\x88") :]
            assert Close.parse(close_frame[2:]).code == 1009  # "message too big"
        protocol.connection_lost(None)
        await asyncio.gather(*state.tasks)
        websockets_side = weakref.ref(protocol.conn)
        del protocol
        assert websockets_side() is None
