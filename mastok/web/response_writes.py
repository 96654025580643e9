"""A response's head and body in one write, and no access line made for a stored trial.

uvicorn writes an answer's head (status line and headers) and its body to the socket in two
writes, two `send` system calls and two TCP segments, which were a fifth of the server's time
holding the GIL for a LightMill trial post (py-spy, bench scenario 6). An answer whose length
its head gives (every JSON answer: one body message) is now written once, head and body
together; a streamed answer (no Content-Length) still has its head written at once, so a
client sees it before the first chunk however long that takes.

A LightMill trial POST answered 2xx has no access line (`is_stored_trial_post`, which the
access log's filter also applies): here uvicorn is told not to make the record at all, which
cost 4% of that time even though the filter then dropped it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

TRIAL_POSTS = "/api/trial/"


def is_stored_trial_post(method: str, path: str, status: int) -> bool:
    """A LightMill trial POST the server stored (a refused one keeps its access line)."""
    return method == "POST" and status < 300 and TRIAL_POSTS in path


class _HeadHeld:
    """The cycle's transport, holding what is written while `holding` (an answer's head)
    until the next write (its body), or until the connection is closed."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held = b""
        self.holding = False

    def write(self, data: bytes) -> None:
        if self.holding:
            self._held += data
            return
        if self._held:
            data, self._held = self._held + data, b""
        self._transport.write(data)

    def flush(self) -> None:
        """Write what is held (a HEAD request's answer has no body to write it with)."""
        if self._held:
            self._transport.write(self._held)
            self._held = b""

    def close(self) -> None:
        self.flush()  # the app failed between head and body: its head goes out, as before
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def write_once(cycle: RequestResponseCycle) -> None:
    """Have the cycle write its answer's head with its body, unless the answer is streamed."""
    transport = _HeadHeld(cycle.transport)
    cycle.transport = transport  # type: ignore[assignment]
    send = cycle.send

    async def sending(message: ASGISendEvent) -> None:
        if message["type"] != "http.response.start":
            await send(message)
            transport.flush()
            return
        scope = cycle.scope
        if is_stored_trial_post(scope["method"], scope["path"], message["status"]):
            cycle.access_log = False
        transport.holding = _has_length(message.get("headers", ()))
        try:
            await send(message)
        finally:
            transport.holding = False

    cycle.send = sending  # type: ignore[method-assign]


def _has_length(headers: Any) -> bool:
    return any(name.lower() == b"content-length" for name, _ in headers)
