"""The trial POST's quick lane (mastok/web/quick_lane.py) answers as the app's middleware and
router did: the same status, headers in the same order, and body, for answers and errors,
with and without an Origin, with and without a web prefix; a POST that succeeds passes no
middleware, one that fails passes them all."""

from __future__ import annotations

import pytest
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from mastok.lightmill.errors import LightMillError
from mastok.web.headers import SecurityHeaders
from mastok.web.lightmill_api import _quick_post_route, lightmill_error
from mastok.web.quick_lane import QuickLane
from mastok.web.sockets_first import SocketsFirst
from tests.web.test_quick_post import handler


class Passes:
    """A middleware that counts the requests passing it."""

    count = 0

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            Passes.count += 1
        await self.app(scope, receive, send)


def client(lane: bool, prefix: str) -> TestClient:
    route = _quick_post_route("/api/trial/{what}/{n:int}", handler)
    routes: list[BaseRoute] = [route]
    if prefix:
        routes = [Mount(prefix, routes=routes)]
    app = SocketsFirst(
        {},
        quick_lane=QuickLane(route, prefix) if lane else None,
        routes=routes,
        middleware=[Middleware(SecurityHeaders), Middleware(Passes)],
        exception_handlers={LightMillError: lightmill_error},
    )
    return TestClient(app, raise_server_exceptions=False)


ORIGIN = {"Origin": "https://experiments.example.org"}


@pytest.mark.parametrize("prefix", ["", "/mastok"], ids=["no prefix", "prefix"])
@pytest.mark.parametrize(
    "path", ["trial/1", "unknown/1", "bug/1", "trial/x", "trial"], ids=lambda path: path
)
@pytest.mark.parametrize("headers", [ORIGIN, {}], ids=["origin", "no origin"])
def test_posts_are_answered_as_through_the_middleware(
    prefix: str, path: str, headers: dict[str, str]
) -> None:
    url = f"{prefix}/api/trial/{path}"
    before = client(False, prefix).post(url, content=b'{"a": 1}', headers=headers)
    now = client(True, prefix).post(url, content=b'{"a": 1}', headers=headers)

    assert (now.status_code, now.headers.raw, now.content) == (
        before.status_code,
        before.headers.raw,
        before.content,
    )
    if path == "trial/1":
        assert now.status_code == 200
        assert now.json() == {"echo": '{"a": 1}', "n": 1, "ok": True, "none": None}
        assert now.headers["x-frame-options"] == "DENY"
    else:  # LightMill's answer to an unknown element, a bug's, and a path no route matches
        assert now.status_code == {"unknown/1": 400, "bug/1": 500}.get(path, 404)


@pytest.mark.parametrize(
    ("path", "passes"), [("trial/1", 0), ("unknown/1", 1), ("bug/1", 1), ("trial/x", 1)]
)
def test_only_a_post_that_fails_or_misses_passes_the_middleware(path: str, passes: int) -> None:
    lane = client(True, "")
    Passes.count = 0

    lane.post(f"/api/trial/{path}", content=b"{}")

    assert Passes.count == passes


def test_other_methods_and_paths_pass_the_middleware() -> None:
    lane = client(True, "")
    Passes.count = 0

    lane.options("/api/trial/trial/1", headers={**ORIGIN, "Access-Control-Request-Method": "POST"})
    lane.post("/api/other", content=b"{}")
    lane.post("/mastok/api/trial/trial/1", content=b"{}")  # not under the lane's prefix

    assert Passes.count == 3
