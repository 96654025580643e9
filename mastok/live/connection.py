"""One WebSocket as the runners see it: frames are queued, then written together or by a writer.

A runner never waits on a slow socket: it queues and moves on. A socket whose queue overflows
is closed (its reader will notice and leave). The frames a step of the event loop queues on a
socket (a room's turn: Instructions, JoiningSize and Waiting, say) are written together, in one
write, once the step ends, when the server offers it (`WRITE_TEXTS`, `mastok.web.ws_protocol`):
no task and no ASGI send per frame, one write where there were three. Otherwise (the write
declined: a full buffer) and for a close, a writer task sends them the ASGI way, in order. The
writer task lives only while there are frames to send: most sockets wait idle for minutes, and
an idle socket then costs an empty list, not a task and a queue (about 5 KiB less each;
bench/results). Frames shared by many sockets (a supervisors' update) are written at once, in
one write, framed once for all of them, when nothing is queued before them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from mastok.live.protocol import encode

QUEUE_LIMIT = 256
WRITE_TEXTS = "mastok.write_texts"  # the scope's extension: {"write": (texts) -> written}
_CLOSE = object()


class Connection:
    __slots__ = ("_flush_due", "_frames", "_writer", "closing", "websocket")

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        # A list, not a deque: an empty deque costs 600 bytes on each of thousands of sockets,
        # and a queue holds a few frames.
        self._frames: list[Any] = []
        self._writer: asyncio.Task[None] | None = None
        self._flush_due = False  # `_flush` is called once the loop's step ends
        self.closing = False

    def send(self, kind: str, payload: Any = None) -> None:
        self.send_text(encode(kind, payload))

    def send_text(self, text: str) -> None:
        if self.closing:
            return
        if len(self._frames) >= QUEUE_LIMIT:
            self.close(1008, "too slow")
            return
        self._frames.append(text)
        self._flush_soon()

    def send_texts(self, texts: tuple[str, ...]) -> None:
        """Send these frames, in one write now if the server can, else queued in order."""
        if self.closing or not texts:
            return
        if self._frames or self.writing() is not None:  # after those queued, in order
            for text in texts:
                self.send_text(text)
            return
        if (write := self._write_now()) is not None and write(texts):
            return
        self._frames += texts  # declined: no point asking again in this step
        self._writer = asyncio.create_task(self._write())

    def _write_now(self) -> Callable[[tuple[str, ...]], bool] | None:
        extension = (self.websocket.scope.get("extensions") or {}).get(WRITE_TEXTS)
        return extension["write"] if extension else None

    def disconnect(self, reason: str) -> None:
        """Send Disconnect with `reason`, then close."""
        self.send("Disconnect", reason)
        self.close(1000, reason[:100])

    def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closing:
            return
        self.closing = True
        self._frames.append((_CLOSE, code, reason))
        self._flush()  # the writer task exists once this returns: `wait_closed` waits for it

    def _flush_soon(self) -> None:
        if self._flush_due or self.writing() is not None:
            return  # the frame goes with those queued before it
        self._flush_due = True
        asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Write the queued frames at once if the server can, up to a close; hand what is
        left to a writer task."""
        self._flush_due = False
        if not self._frames or self.writing() is not None:
            return
        texts = tuple(self._frames[:-1] if self.closing else self._frames)  # a close is last
        if texts and (write := self._write_now()) is not None and write(texts):
            del self._frames[: len(texts)]
        if self._frames:
            self._writer = asyncio.create_task(self._write())

    def writing(self) -> asyncio.Task[None] | None:
        """The writer task while frames are being sent, else None."""
        writer = self._writer
        return writer if writer is not None and not writer.done() else None

    async def wait_closed(self) -> None:
        while (writer := self._writer) is not None and not writer.done():
            await writer

    async def stop(self) -> None:
        """End the writer: let it flush a close already asked for, else cancel it."""
        if not self.closing:
            self._frames.clear()  # the socket is done with: nothing more goes out
        writer = self._writer
        if writer is None or writer.done():
            return
        if self.closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(writer), 5)
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer

    async def _write(self) -> None:
        try:
            await self._send_queued()
        finally:
            self._writer = None  # a finished task kept on each idle socket costs 600 bytes

    async def _send_queued(self) -> None:
        while self._frames:
            item = self._frames.pop(0)
            try:
                if isinstance(item, tuple) and item[0] is _CLOSE:
                    await self.websocket.close(item[1], item[2])
                    self._frames.clear()
                    return
                await self.websocket.send_text(item)
            except (WebSocketDisconnect, RuntimeError, OSError):
                self.closing = True
                self._frames.clear()
                return


class RateLimit:
    """A token bucket: `rate` frames a second on average, bursts up to `burst`."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float = 20.0, burst: float = 40.0) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._last = time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
