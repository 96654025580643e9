"""Security headers on every HTTP answer: no framing (the supervise page's one-click buttons
must not be clickjacked), no MIME sniffing, no referrer sent to other sites."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
# As ASGI carries them (names in lower case), built once: this runs for every answer.
RAW_SECURITY_HEADERS = [
    (name.lower().encode("latin-1"), value.encode("latin-1"))
    for name, value in SECURITY_HEADERS.items()
]


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every HTTP response (a header a route set itself is kept)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = with_security_headers(message.get("headers", ()))
            await send(message)

        await self.app(scope, receive, sending)


def with_security_headers(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The answer's raw headers, and those of RAW_SECURITY_HEADERS it does not set itself."""
    found = list(headers)
    present = {name.lower() for name, _ in found}
    found.extend(pair for pair in RAW_SECURITY_HEADERS if pair[0] not in present)
    return found
