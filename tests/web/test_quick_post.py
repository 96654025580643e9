"""The trial POST's quick route (mastok/web/quick_post.py) answers as the route it replaced:
the same status, headers in the same order, and body, for answers and errors, with and
without an Origin; a preflight and a plain OPTIONS too."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.testclient import TestClient

from mastok.lightmill.errors import LightMillError, UnknownElement
from mastok.web.lightmill_api import _client_route, _quick_post_route, lightmill_error


class Unhandled(Exception):
    pass


async def handler(request: Request) -> Any:
    what = request.path_params["what"]
    if what == "unknown":
        raise UnknownElement("there is no such trial")
    if what == "bug":
        raise Unhandled("a bug")
    return {"echo": (await request.body()).decode(), "n": 1, "ok": True, "none": None}


@pytest.fixture
def client() -> TestClient:
    app = Starlette(
        routes=[
            _client_route("/before/{what}", handler, "POST"),
            _quick_post_route("/now/{what}", handler),
        ],
        exception_handlers={LightMillError: lightmill_error},
    )
    return TestClient(app, raise_server_exceptions=False)


ORIGIN = {"Origin": "https://experiments.example.org"}
PREFLIGHT = {**ORIGIN, "Access-Control-Request-Method": "POST"}


@pytest.mark.parametrize("what", ["trial", "unknown", "bug"])
@pytest.mark.parametrize("headers", [ORIGIN, {}], ids=["origin", "no origin"])
def test_posts_are_answered_as_before(
    client: TestClient, what: str, headers: dict[str, str]
) -> None:
    before = client.post(f"/before/{what}", content=b"{}", headers=headers)
    now = client.post(f"/now/{what}", content=b"{}", headers=headers)
    assert now.status_code == before.status_code
    assert now.headers.raw == before.headers.raw
    assert now.content == before.content
    if what == "trial":
        assert now.status_code == 200
        assert (b"vary", b"Origin") in now.headers.raw


@pytest.mark.parametrize("headers", [PREFLIGHT, {}], ids=["preflight", "plain"])
def test_options_are_answered_as_before(client: TestClient, headers: dict[str, str]) -> None:
    before = client.options("/before/trial", headers=headers)
    now = client.options("/now/trial", headers=headers)
    assert (now.status_code, now.headers.raw, now.content) == (
        before.status_code,
        before.headers.raw,
        before.content,
    )
