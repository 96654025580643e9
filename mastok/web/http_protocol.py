"""uvicorn's httptools protocol with bounds on a request's head and on slow clients.

httptools (uvicorn's fast parser) takes request heads of any size (a 64 MiB header was
answered 200) and waits for ever on a client that sends a byte every few seconds. This
protocol counts the bytes of each request's head (request line and headers) and answers 431
past `HEAD_LIMIT`; closes a connection whose head is not complete `HEAD_SECONDS` after its
first byte; and closes one whose body arrives slower than `MIN_BODY_RATE` bytes a second on
average once `BODY_GRACE_SECONDS` have passed. A join socket from an address that holds all
the sockets it may, or that opened all it may this minute, is answered 403 or 429 before its
handshake (`JoinGate`, handed over in the app's lifespan state): a flood of them costs a few
microseconds each, not a WebSocket handshake through the app; one from an address that holds
all it may, its head whole in the connection's first read, before the parser even reads it.
An answer of known length is written in one write, head and body (response_writes.py).
Everything else is uvicorn's.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import time
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from mastok.web.participant_limits import JOIN_GATE, JoinGate
from mastok.web.response_writes import write_once

log = logging.getLogger("mastok.http")

HEAD_LIMIT = 64 * 1024
HEAD_SECONDS = 10.0
BODY_GRACE_SECONDS = 10.0
MIN_BODY_RATE = 1024  # bytes a second


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    head_limit = HEAD_LIMIT
    head_seconds = HEAD_SECONDS
    body_grace_seconds = BODY_GRACE_SECONDS
    min_body_rate = MIN_BODY_RATE

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._head_tail = b""  # the last bytes of the head so far: its end may straddle reads
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_started: float | None = None
        self._body_bytes = 0
        self._body_timer: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            if self._head_bytes == 0 and self._head_timer is None:
                if self.cycle is None and self._refused_on_sight(data):
                    return
                self._head_timer = self.loop.call_later(self.head_seconds, self._head_too_slow)
            # Only the head counts: a body (a design of megabytes) comes in the same reads.
            end = (self._head_tail + data).find(b"\r\n\r\n")
            if end < 0:
                self._head_bytes += len(data)
                self._head_tail = data[-3:]
            else:
                self._head_bytes += end + 4 - len(self._head_tail)
                self._head_tail = b""
            if self._head_bytes > self.head_limit:
                self._refuse(431, "Request Header Fields Too Large")
                return
        elif self._body_started is not None:
            self._body_bytes += len(data)
            if self._body_too_slow():
                return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_tail = b""

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._cancel(self._head_timer)
        self._head_timer = None
        self._body_started, self._body_bytes = time.monotonic(), 0
        self._body_timer = self.loop.call_later(self.body_grace_seconds, self._watch_body)
        previous = self.cycle
        super().on_headers_complete()
        if self.cycle is not None and self.cycle is not previous:  # not an upgrade
            write_once(self.cycle)

    def on_message_complete(self) -> None:
        self._stop_body_watch()
        self._in_head = True  # what comes next is the next request's head
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        self._stop_body_watch()  # the socket's protocol takes the transport over
        gate: JoinGate | None = self.app_state.get(JOIN_GATE)
        if gate is not None and (address := self._gated_address()) is not None:
            # An upgrade's scope has no path yet: the raw target's (a path spelt otherwise,
            # such as percent-encoded, goes on to the app, which refuses it the same way).
            path = self.url.partition(b"?")[0].decode("latin-1")
            refusal = gate.refusal(path, address)
            if refusal is not None:
                self._answer(refusal.status, refusal.reason, refusal.text)
                return
        super().handle_websocket_upgrade()

    def _refused_on_sight(self, data: bytes) -> bool:
        """Refuse a connection's first request, a join socket's from an address that holds all
        the sockets it may, before the parser: an attack of idle sockets sends thousands of them
        at once, each refused again every few seconds. Only a whole head read at once: closing
        on a head still coming would reset the connection before the client reads the answer."""
        gate: JoinGate | None = self.app_state.get(JOIN_GATE)
        if gate is None or not data.startswith(gate.request_start):
            return False
        if not data.startswith((b" ", b"?"), len(gate.request_start)) or b"\r\n\r\n" not in data:
            return False
        address = self._gated_address()
        if address is None:
            return False
        refusal = gate.refusal_if_full(address)
        if refusal is None:
            return False
        self._answer(refusal.status, refusal.reason, refusal.text)
        return True

    def _gated_address(self) -> str | None:
        """The client's address as the join gate counts it; None through a trusted proxy,
        where the client's address is in a header the app reads: the gate would count everyone
        behind the proxy as one (the app's own checks still apply)."""
        address = self.client[0] if self.client else ""
        return None if self._from_trusted_proxy(address) else address

    def _from_trusted_proxy(self, address: str) -> bool:
        if not self.config.proxy_headers:
            return False
        allowed = self.config.forwarded_allow_ips
        return is_trusted_proxy(address, allowed if isinstance(allowed, str) else ",".join(allowed))

    def _stop_body_watch(self) -> None:
        self._body_started = None
        self._cancel(self._body_timer)
        self._body_timer = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel(self._head_timer)
        self._cancel(self._body_timer)
        super().connection_lost(exc)

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._in_head and self._head_bytes and not self.transport.is_closing():
            log.warning("closed a connection whose request head took over %ss", self.head_seconds)
            self.transport.close()

    def _watch_body(self) -> None:
        """Every second after the grace, while the body is incomplete: is it too slow?"""
        self._body_timer = None
        if self._body_started is not None and not self._body_too_slow():
            self._body_timer = self.loop.call_later(1.0, self._watch_body)

    def _body_too_slow(self) -> bool:
        """Close the connection if its body comes too slowly; whether it did."""
        if self._body_started is None or self.transport.is_closing():
            return False
        elapsed = time.monotonic() - self._body_started
        if elapsed < self.body_grace_seconds or self._body_bytes >= elapsed * self.min_body_rate:
            return False
        log.warning(
            "closed a connection whose request body came slower than %d B/s", self.min_body_rate
        )
        self._stop_body_watch()
        self.transport.close()
        return True

    def _refuse(self, status: int, reason: str) -> None:
        log.warning("refused a request whose head is over %d bytes", self.head_limit)
        self._answer(status, reason, reason)

    def _answer(self, status: int, reason: str, text: str) -> None:
        """Answer `status` with `text` and close, without the app."""
        body = text.encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, reason.encode(), len(body), body)
        )
        self._in_head = False
        self.transport.close()

    @staticmethod
    def _cancel(timer: asyncio.TimerHandle | None) -> None:
        if timer is not None:
            timer.cancel()


def is_trusted_proxy(address: str, allowed: str) -> bool:
    """Whether `address` is one of `allowed` (uvicorn's `forwarded_allow_ips`: addresses and
    networks, comma-separated, or `*`)."""
    networks = _networks(allowed)
    if networks is None:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


@functools.lru_cache(maxsize=4)
def _networks(allowed: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None:
    entries = [entry.strip() for entry in allowed.split(",") if entry.strip()]
    if "*" in entries:
        return None
    networks = []
    for entry in entries:
        with contextlib.suppress(ValueError):  # uvicorn also takes names it cannot match
            networks.append(ipaddress.ip_network(entry, strict=False))
    return tuple(networks)
