"""A CORS-open JSON POST route's answer written straight to the server, for the route a
LightMill client calls thousands of times a second (its trial POST).

As a route it would be Starlette's: its CORSMiddleware (the request's headers parsed, a send
wrapped, the answer's headers rebuilt), `request_response` (an exception handler's send
wrapped around the endpoint) and a Response object. That plumbing was a tenth of the server's
time on a trial (py-spy, bench scenario 6). Here a POST that succeeds gets the same answer, in
the same bytes, built once: the JSON, its length and type, then what the CORS middleware adds
(`Access-Control-Allow-Origin: *` when the request has an Origin, `Vary: Origin` always). A
POST that fails goes through the same machinery as before: the app's exception handler for
its error (none: the error goes up to the app's), the CORS middleware's headers on its answer.
Anything but a POST (OPTIONS: a preflight or not) is the route as it was.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from starlette._exception_handler import wrap_app_handling_exceptions
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

_VARY = (b"vary", b"Origin")
_ANY_ORIGIN = (b"access-control-allow-origin", b"*")
# The scope's key for what a POST raised ahead of the app's middleware (quick_lane.py): the
# route raises it again, inside them all, so that it is answered as any error.
FAILED = "mastok.quick_post.failed"


class QuickPost:
    """`handler(request)`: what to answer; `answer(content)`: its Response (JSON); `route`:
    the route as it was, its CORS middleware around it, whose headers are added as it adds
    them: it must allow any origin, without credentials."""

    def __init__(
        self,
        handler: Callable[[Request], Awaitable[Any]],
        answer: Callable[[Any], Response],
        route: CORSMiddleware,
    ) -> None:
        assert route.allow_all_origins and not route.allow_credentials
        assert route.simple_headers == {"Access-Control-Allow-Origin": "*"}
        self.handler = handler
        self.answer = answer
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await self.route(scope, receive, send)
            return
        request = Request(scope, receive)
        failed = scope.pop(FAILED, None)
        if failed is not None:  # met ahead of the middleware (QuickLane): answered here
            await self._failed(failed, request, send)
            return
        try:
            response = await self.respond(request)
        except Exception as error:
            await self._failed(error, request, send)
            return
        await send_answer(scope, response, send)

    async def respond(self, request: Request) -> Response:
        """The answer to a POST that succeeds; what the handler raised, for one that fails."""
        return self.answer(await self.handler(request))

    async def _failed(self, error: BaseException, request: Request, send: Send) -> None:
        """As the route answered an error: the app's handler, under the CORS headers."""

        async def failing(scope: Scope, receive: Receive, send: Send) -> None:
            raise error

        scope = request.scope
        cors_send = functools.partial(
            self.route.send, send=send, request_headers=Headers(scope=scope)
        )
        await wrap_app_handling_exceptions(failing, request)(scope, request.receive, cors_send)


async def send_answer(
    scope: Scope,
    response: Response,
    send: Send,
    around: Callable[[list[tuple[bytes, bytes]]], list[tuple[bytes, bytes]]] | None = None,
) -> None:
    """A POST's answer with the headers the CORS middleware adds (`around`: what the
    middleware outside the route would add to them)."""
    headers = response.raw_headers
    if any(name == b"origin" for name, _ in scope["headers"]):
        headers = [*headers, _ANY_ORIGIN, _VARY]
    else:
        headers = [*headers, _VARY]
    if around is not None:
        headers = around(headers)
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})
