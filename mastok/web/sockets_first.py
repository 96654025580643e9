"""The WebSocket endpoints, served ahead of the app's middleware and router.

Every layer an ASGI call passes through stays on the stack, a suspended coroutine, for as long
as the socket is open: through the middleware and the router a waiting participant's socket
kept 21 coroutines with their cells, lists and bound methods, 146 objects in all that each of
the garbage collector's full passes walked. None of those layers does anything for a socket:
there is no body, no session cookie and no page, and the handshake is bounded before the app
(`mastok.web.http_protocol`). So the app hands each socket path straight to its own small app,
where the supervisors' keeps its login check: 99 objects a participant's socket instead of 146,
and 28.1 KiB of server memory a waiting participant instead of 33.5 (2,000 waiting; the bare
Starlette echo app's socket: 24.4 KiB).

A LightMill trial POST that succeeds is answered ahead of them too, for its time
(`mastok.web.quick_lane`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from mastok.web import unavailable
from mastok.web.quick_lane import QuickLane
from mastok.web.sockets import try_again_later

Endpoint = Callable[[WebSocket], Awaitable[None]]


class SocketsFirst(Starlette):
    """Starlette's app, which hands each path of `sockets` (full paths) to its own app, and a
    POST `quick_lane` takes to it (quick_lane.py: LightMill's trial POST)."""

    def __init__(
        self, sockets: Mapping[str, ASGIApp], quick_lane: QuickLane | None = None, **options: Any
    ) -> None:
        super().__init__(**options)
        self.sockets = dict(sockets)
        self.quick_lane = quick_lane

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.quick_lane and self.quick_lane.takes(scope):
            scope["app"] = self
            await self.quick_lane(scope, receive, send, super().__call__)
            return
        socket_app = self.sockets.get(scope["path"]) if scope["type"] == "websocket" else None
        if socket_app is None:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        await socket_app(scope, receive, send)


def socket_app(endpoint: Endpoint) -> ASGIApp:
    """The ASGI app of a socket endpoint; the database away answers it 503 (or closes 1013)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        websocket = WebSocket(scope, receive, send)
        try:
            await endpoint(websocket)
        except unavailable.HANDLED as error:
            if not unavailable.is_database_away(error):
                raise
            unavailable.note_away(scope["app"].state, error)
            await try_again_later(websocket, unavailable.MESSAGE)

    return app
