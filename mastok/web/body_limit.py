"""Request bodies bounded before anyone reads them: 1 MiB for every route but those that bound
their own (LightMill's client routes: 16 MiB of trials; design imports: MASTOK_MAX_DESIGN_MIB).

A declared `Content-Length` over the bound is answered 413 at once; a body sent without one
(chunked) is counted as it arrives and cut off at the bound with the same answer. The answer
has the route's error shape: JSON under /api/, a short text page elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MIB = 1 << 20
DEFAULT_LIMIT = 1 * MIB


class _TooLarge(Exception):
    pass


class BodyLimit:
    def __init__(
        self,
        app: ASGIApp,
        exempt_prefixes: Sequence[str],
        exempt_paths: Sequence[str],
        api_prefix: str,
        limit: int = DEFAULT_LIMIT,
    ) -> None:
        """`exempt_prefixes` and `exempt_paths`: where routes bound their bodies themselves."""
        self.app = app
        self.exempt_prefixes = tuple(exempt_prefixes)
        self.exempt_paths = frozenset(exempt_paths)
        self.api_prefix = api_prefix
        self.limit = limit

    def _exempt(self, scope: Scope) -> bool:
        path = scope["path"]
        return path in self.exempt_paths or path.startswith(self.exempt_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._exempt(scope):
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope)(scope, receive, send)
            return
        received = 0
        started = False

        async def counting() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _TooLarge
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting, sending)
        except _TooLarge:
            if not started:
                await self._refuse(scope)(scope, receive, send)

    def _refuse(self, scope: Scope) -> Response:
        message = f"the request body is larger than {self.limit // MIB} MiB"
        if scope["path"].startswith(self.api_prefix):
            return JSONResponse({"error": message}, 413)
        return PlainTextResponse(message, 413)
