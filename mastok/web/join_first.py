"""The participants' socket, served ahead of the app's middleware and router.

Every layer an ASGI call passes through stays on the stack, a suspended coroutine, for as long
as the socket is open: through the middleware and the router a waiting participant's socket
kept 21 coroutines with their cells, lists and bound methods, 146 objects in all that each of
the garbage collector's full passes walked. None of those layers does anything for this socket:
it is public (no login, no session cookie), it has no body, its handshake is bounded before
the app (`mastok.web.http_protocol`) and its errors are not pages. So the app hands it straight
to its endpoint: 99 objects a socket instead of 146, and 28.1 KiB of server memory a waiting
participant instead of 33.5 (2,000 waiting; the bare Starlette echo app's socket: 24.4 KiB).
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from mastok.web import unavailable
from mastok.web.sockets import JOIN_PATH, join_socket, try_again_later


class JoinFirst(Starlette):
    """Starlette's app, which serves `join_path` (the prefix's `/ws/join`) itself."""

    def __init__(self, prefix: str, **options: Any) -> None:
        super().__init__(**options)
        self.join_path = prefix + JOIN_PATH

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket" or scope["path"] != self.join_path:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        websocket = WebSocket(scope, receive, send)
        try:
            await join_socket(websocket)
        except unavailable.HANDLED as error:
            if not unavailable.is_database_away(error):
                raise
            unavailable.note_away(self.state, error)
            await try_again_later(websocket, unavailable.MESSAGE)
