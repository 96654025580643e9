"""URLs holding a NUL character answered 400 before any route: nothing mastok stores holds one.

PostgreSQL's text cannot hold a NUL, and a search for one fails (`invalid byte sequence`): a
stranger's `/join/a%00b` was a 500 and a traceback in the log. SQLite merely finds nothing. The
answer has the route's error shape: JSON under /api/, a short text page elsewhere. LightMill's
client routes answer for themselves, in LightMill's shape (`UnknownElement`, with CORS).
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

MESSAGE = "the URL holds a NUL character (%00): nothing here is named so"


class NulUrls:
    def __init__(self, app: ASGIApp, exempt_prefixes: Sequence[str], api_prefix: str) -> None:
        self.app = app
        self.exempt_prefixes = tuple(exempt_prefixes)
        self.api_prefix = api_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _holds_nul(scope) and not self._exempt(scope):
            await self._refuse(scope)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _exempt(self, scope: Scope) -> bool:
        return str(scope["path"]).startswith(self.exempt_prefixes)

    def _refuse(self, scope: Scope) -> Response:
        if str(scope["path"]).startswith(self.api_prefix):
            return JSONResponse({"error": MESSAGE}, 400)
        return PlainTextResponse(MESSAGE, 400)


def _holds_nul(scope: Scope) -> bool:
    """A NUL in the decoded path, or in the query string, raw or %-encoded."""
    query = bytes(scope.get("query_string", b""))
    return "\x00" in scope["path"] or b"%00" in query or b"\x00" in query
