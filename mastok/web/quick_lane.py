"""A LightMill trial POST answered ahead of the app's middleware and router when it succeeds.

A client posts thousands of trials a second, and each went through the whole stack: Starlette's
error middleware, the security headers, the body limit, the login check and the form
sessions (three of them let a public path through untouched), the exception middleware, the
router trying the trial's pattern, and four `send` wrappers. That was about a tenth of the
server's time on a trial (py-spy `--gil`, bench scenario 6, PostgreSQL). Here the trial's route
is matched and its handler run at once, and the answer gets the headers the stack would have
given it: the CORS middleware's (quick_post.py) and the security headers.

A POST that fails goes through the whole stack after all, as before: the error is put in the
scope (`quick_post.FAILED`) and the route raises it again from inside every middleware, which
answer it as any other error. A path the route does not match (a trial number that is not a
number) goes through the stack too. Sockets and every other request are untouched.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from mastok.web.headers import with_security_headers
from mastok.web.quick_post import FAILED, QuickPost, send_answer


class QuickLane:
    """`route`: the trial POST's (a QuickPost), served under `prefix` (the web prefix)."""

    def __init__(self, route: Route, prefix: str) -> None:
        assert isinstance(route.app, QuickPost), "the route must be a quick POST's"
        self.route = route
        self.quick: QuickPost = route.app
        self.prefix = prefix
        # Where the route's pattern starts to vary: "/api/trial/{xp}/..." -> "/api/trial/".
        self.start = prefix + route.path[: route.path.index("{")]

    def takes(self, scope: Scope) -> bool:
        return scope["method"] == "POST" and scope["path"].startswith(self.start)

    async def __call__(self, scope: Scope, receive: Receive, send: Send, stack: ASGIApp) -> None:
        """Answer the POST, or hand it to the app's middleware `stack` (module docstring)."""
        inner = {**scope, "root_path": scope.get("root_path", "") + self.prefix}
        match, child = self.route.matches(inner)
        if match is not Match.FULL:
            await stack(scope, receive, send)
            return
        inner.update(child)
        try:
            response = await self.quick.respond(Request(inner, receive))
        except Exception as error:
            scope[FAILED] = error
            await stack(scope, receive, send)
            return
        await send_answer(inner, response, send, with_security_headers)
