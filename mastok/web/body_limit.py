"""Request bodies bounded before anyone reads them: 1 MiB for every route but those that bound
their own (LightMill's client routes: 16 MiB of trials) and those given a bound of their own (the
design upload form: MASTOK_MAX_DESIGN_MIB and its fields).

A declared `Content-Length` over the bound is answered 413 at once; a body sent without one
(chunked) is counted as it arrives and cut off at the bound with the same answer. The answer
has the route's error shape: JSON under /api/, a short text page elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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
        api_prefix: str,
        limit: int = DEFAULT_LIMIT,
        path_limits: Mapping[str, int] | None = None,
    ) -> None:
        """`exempt_prefixes`: where routes bound their bodies themselves; `path_limits`: the
        paths bounded otherwise than by `limit`."""
        self.app = app
        self.exempt_prefixes = tuple(exempt_prefixes)
        self.api_prefix = api_prefix
        self.limit = limit
        self.path_limits = dict(path_limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt_prefixes):
            await self.app(scope, receive, send)
            return
        limit = self.path_limits.get(scope["path"], self.limit)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, limit)(scope, receive, send)
            return
        received = 0
        started = False

        async def counting() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
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
                await self._refuse(scope, limit)(scope, receive, send)

    def _refuse(self, scope: Scope, limit: int) -> Response:
        message = f"the request body is larger than {limit // MIB} MiB"
        if scope["path"].startswith(self.api_prefix):
            return JSONResponse({"error": message}, 413)
        return PlainTextResponse(message, 413)
