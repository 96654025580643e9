"""HTTP Basic authentication for everything but the public routes."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from mastok.web.throttle import LoginThrottle

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


def client_address(scope: Scope) -> str:
    """The client's address as the server saw it (behind a trusted proxy: the forwarded one)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def too_many_attempts(retry_after: int) -> PlainTextResponse:
    return PlainTextResponse(
        "Too many wrong credentials from your address: try again later",
        429,
        headers={"Retry-After": str(retry_after)},
    )


@dataclass(frozen=True)
class Verdict:
    """What an admin request's credentials got: in, or not (`retry_after`: locked out)."""

    allowed: bool
    retry_after: int | None = None


async def check_credentials(
    throttle: LoginThrottle, scope: Scope, login: str, password: str
) -> Verdict:
    """Whether the request's Authorization header carries these credentials, through
    `throttle`: a locked-out address is refused whatever it sends; wrong credentials are
    counted (and wait their delay); a request without any is only refused."""
    address = client_address(scope)
    locked = throttle.retry_after(address)
    if locked is not None:
        return Verdict(False, locked)
    authorization = Headers(scope=scope).get("authorization")
    if credentials_match(authorization, login, password):
        throttle.succeeded(address)
        return Verdict(True)
    if authorization:
        return Verdict(False, await throttle.failed(address))
    return Verdict(False)


class BasicAuthMiddleware:
    """Answers 401 with a Basic challenge unless the path is public or credentials match.

    WebSocket handshakes get the same 401 (a browser sends the page's credentials on a socket
    only after such a challenge). Wrong credentials go through `throttle` (slowed, then 429 for
    the address); a request without credentials is only challenged.
    """

    def __init__(
        self,
        app: ASGIApp,
        login: str,
        password: str,
        public_prefixes: Iterable[str],
        throttle: LoginThrottle,
    ) -> None:
        self.app = app
        self.login = login
        self.password = password
        self.public_prefixes = tuple(public_prefixes)
        self.throttle = throttle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self._is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        verdict = await check_credentials(self.throttle, scope, self.login, self.password)
        if verdict.allowed:
            await self.app(scope, receive, send)
            return
        if verdict.retry_after is not None:
            response = too_many_attempts(verdict.retry_after)
        else:
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
        reason = "too many attempts" if response.status_code == 429 else "authentication required"
        await send({"type": "websocket.close", "code": 1008, "reason": reason})
