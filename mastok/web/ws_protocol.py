"""uvicorn's WebSocket protocol, plus one write of a socket's frames.

A supervisors' update goes to hundreds of sockets. Through ASGI each frame to each socket is a
task's `send` through Starlette and uvicorn, framed again, and a write of its own (over
loopback a write is the receiver's whole TCP path: most of the fan-out's time with 500
supervisors). `write_texts` (offered to the app as the scope's `mastok.write_texts`
extension) writes a socket's frames of an update in one write, framed once for every socket;
the frames a loop step queues on one socket (`mastok.live.connection`) go the same way. It
declines (the app then sends the ASGI way) whenever uvicorn's own `send` would wait or refuse:
before the handshake, after a close, while the transport's buffer is full.

websockets' own lines about a socket go to `SOCKET_LOGGER`, which `mastok.logs` keeps at
WARNING: at INFO it logs "connection open" for every socket (and "connection rejected" for
every refusal), which mastok dropped (`mastok.serving`) once they were made. Not making them
took 1.5% of the Python opcodes off a join (34,150 to 33,650 a participant; `bench.instructions
--join --opcodes`, 1,200 flows, 100 at a time, the progress poller off).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from mastok.live.connection import WRITE_TEXTS

SOCKET_LOGGER = "mastok.websockets"
_socket_log = logging.getLogger(SOCKET_LOGGER)


class MastokWebSocketProtocol(WebSocketsSansIOProtocol):
    def handle_connect(self, event: Any) -> None:
        self.conn.logger = _socket_log  # before the handshake's answer, and its line
        super().handle_connect(event)
        if self.response.status_code == 101:
            self.scope["extensions"][WRITE_TEXTS] = {"write": self.write_texts}

    def connection_lost(self, exc: Exception | None) -> None:
        # The scope would hold the protocol (a cycle): let a closed socket go without the GC.
        if hasattr(self, "scope"):  # set by an accepted handshake only
            self.scope["extensions"].pop(WRITE_TEXTS, None)
        super().connection_lost(exc)
        # websockets' parser is a generator of its connection's, suspended for good once the
        # socket closed: a cycle of about 15 objects that outlived the young passes, so only a
        # full pass freed it. 6,300 closed sockets waited in the oldest generation for one,
        # which then stopped the event loop 110 to 175 ms (bench scenario 1, SQLite, the runs at
        # 50% of saturation: a p99 of 50 to 140 ms). Nothing steps it after the loss.
        self.conn.parser.close()
        # A parser's error (a frame over the limit) holds its traceback, whose frames hold the
        # connection: another cycle. uvicorn read it when it came; nothing reads it now.
        self.conn.parser_exc = None

    def write_texts(self, texts: tuple[str, ...]) -> bool:
        """Write these text frames now, in one write; False if they cannot go now."""
        if not self._open():
            return False
        if self.conn.extensions:  # compressed: each socket has its own compressor's state
            for text in texts:
                self.conn.send_text(text.encode())
            self.transport.write(b"".join(self.conn.data_to_send()))
        else:
            self.transport.write(_wire(texts))
        return True

    def _open(self) -> bool:
        return (
            self.handshake_complete
            and not self.close_sent
            and not self.disconnected
            and self.initial_response is None
            and self.writable.is_set()
            and not self.transport.is_closing()
            and self.conn.state is State.OPEN
            and not self.conn.expect_continuation_frame
        )


@functools.lru_cache(maxsize=16)
def _wire(texts: tuple[str, ...]) -> bytes:
    """The frames as a server sends them (unmasked, no extension): the same for every socket."""
    frames = (Frame(Opcode.TEXT, text.encode()) for text in texts)
    return b"".join(frame.serialize(mask=False) for frame in frames)
