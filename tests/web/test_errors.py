"""Domain errors answered for any route: JSON under /api/, a page elsewhere, under any prefix."""

from __future__ import annotations

import asyncio
import logging

import pytest
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from mastok.campaigns.rules import InvalidCampaign
from mastok.campaigns.service import CampaignNotFound
from mastok.config import load_settings
from mastok.otree import OTreeTimeout
from mastok.web.errors import BadRequest, client_gone, handlers

RAISED = {
    "missing": CampaignNotFound("ghost"),
    "invalid": InvalidCampaign({"slug": "is already used by another campaign"}),
    "otree": OTreeTimeout("oTree did not answer in time (GET /api/otree_version)"),
    "unreadable": BadRequest(415, "send the body as JSON with Content-Type: application/json"),
}
# What each error answers: status, JSON body, words on the page.
ANSWERS = {
    "missing": (404, {"error": "no campaign named 'ghost'"}, "No campaign named &#39;ghost&#39;."),
    "invalid": (
        422,
        {"errors": {"slug": "is already used by another campaign"}},
        "slug: is already used by another campaign",
    ),
    "otree": (
        502,
        {"error": "oTree: oTree did not answer in time (GET /api/otree_version)"},
        "oTree: oTree did not answer in time",
    ),
    "unreadable": (
        415,
        {"error": "send the body as JSON with Content-Type: application/json"},
        "send the body as JSON",
    ),
}


async def raising(request: Request) -> Response:
    raise RAISED[request.path_params["error"]]


def client(prefix: str) -> TestClient:
    routes = [Route("/api/{error}", raising), Route("/pages/{error}", raising)]
    mounted = [Mount(prefix, routes=routes)] if prefix else routes
    app = Starlette(routes=mounted, exception_handlers=handlers)
    app.state.settings = load_settings(environ={"MASTOK_WEB_PREFIX": prefix})
    return TestClient(app)


@pytest.mark.parametrize("prefix", ["", "/mastok"])
@pytest.mark.parametrize("error", list(RAISED))
def test_the_api_answers_json(prefix: str, error: str) -> None:
    status, body, _ = ANSWERS[error]

    response = client(prefix).get(f"{prefix}/api/{error}")

    assert (response.status_code, response.json()) == (status, body)


@pytest.mark.parametrize("prefix", ["", "/mastok"])
@pytest.mark.parametrize("error", list(RAISED))
def test_pages_answer_a_page(prefix: str, error: str) -> None:
    status, _, words = ANSWERS[error]

    response = client(prefix).get(f"{prefix}/pages/{error}")

    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    assert words in response.text


def test_a_strangers_path_is_one_short_line_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    """A client gone mid-request is logged with its path, which the stranger chose: its
    %-encoded control characters (a terminal's escape sequences) and its tens of KiB stay out
    of the log, as uvicorn's own lines keep the path %-encoded."""
    forged = "x\x1b[2J\x1b[31mERROR forged" + "y" * 60_000
    app = Starlette(routes=[], exception_handlers=handlers)
    scope = {"type": "http", "method": "POST", "path": f"/api/trial/{forged}/S0/0/0"}
    scope |= {"headers": [], "query_string": b"", "client": ("10.0.0.1", 1), "app": app}
    caplog.set_level(logging.INFO, "mastok.web")

    asyncio.run(client_gone(Request(scope), ClientDisconnect()))

    [line] = [record.getMessage() for record in caplog.records]
    assert line.isprintable()
    assert len(line) < 1000
    assert line.startswith("POST /api/trial/x%1B%5B2J%1B%5B31mERROR%20forgedyyy")
    assert line.endswith(" from 10.0.0.1: the client went away mid-request")
