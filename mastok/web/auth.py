"""HTTP Basic authentication for everything but the public routes."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

CHALLENGE = {"WWW-Authenticate": 'Basic realm="mastok", charset="UTF-8"'}


def credentials_match(authorization: str | None, login: str, password: str) -> bool:
    """Whether an Authorization header carries these credentials (constant-time compare)."""
    if not authorization:
        return False
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    given_login, colon, given_password = decoded.partition(b":")
    login_ok = hmac.compare_digest(given_login, login.encode())
    password_ok = hmac.compare_digest(given_password, password.encode())
    return bool(colon) and login_ok and password_ok


class BasicAuthMiddleware:
    """Answers 401 with a Basic challenge unless the path is public or credentials match.

    WebSocket handshakes get the same 401 (a browser sends the page's credentials on a socket
    only after such a challenge).
    """

    def __init__(
        self, app: ASGIApp, login: str, password: str, public_prefixes: Iterable[str]
    ) -> None:
        self.app = app
        self.login = login
        self.password = password
        self.public_prefixes = tuple(public_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self._is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        authorization = Headers(scope=scope).get("authorization")
        if credentials_match(authorization, self.login, self.password):
            await self.app(scope, receive, send)
            return
        response = PlainTextResponse("Authentication required", 401, headers=CHALLENGE)
        if scope["type"] == "http":
            await response(scope, receive, send)
        else:
            await _deny_websocket(scope, receive, send, response)

    def _is_public(self, path: str) -> bool:
        return path.startswith(self.public_prefixes)


async def _deny_websocket(
    scope: Scope, receive: Receive, send: Send, response: PlainTextResponse
) -> None:
    await receive()  # websocket.connect
    if "websocket.http.response" in scope.get("extensions", {}):
        await send(
            {
                "type": "websocket.http.response.start",
                "status": response.status_code,
                "headers": response.raw_headers,
            }
        )
        await send({"type": "websocket.http.response.body", "body": response.body})
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": "authentication required"})
