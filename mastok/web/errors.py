"""The answers to domain errors, whichever route raised them: JSON under /api/, a page elsewhere.

Views raise `CampaignNotFound`, `InvalidCampaign`, `OTreeError` or `BadRequest` and leave the
answer to `handlers`, which the app gives Starlette as its `exception_handlers`. A client that
went away before its request was read (Starlette's `ClientDisconnect`) is one line in the log.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from starlette.requests import ClientDisconnect, HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ExceptionHandler

from mastok.campaigns.rules import InvalidCampaign
from mastok.campaigns.service import CampaignNotFound
from mastok.otree import OTreeError
from mastok.services import settings
from mastok.web.templating import render

log = logging.getLogger("mastok.web")
LOGGED_PATH = 200  # characters of a path a log line keeps: a stranger's may be 64 KiB


class BadRequest(Exception):
    """A request mastok cannot read: its body, or its Content-Type."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def media_type(request: Request) -> str:
    """The request's Content-Type without its parameters, in lower case ("" when none)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def wants_json(connection: HTTPConnection) -> bool:
    return connection.url.path.startswith(settings(connection).web_prefix + "/api/")


def message_page(request: Request, title: str, message: str, status: int) -> Response:
    return render(request, "message.html", {"title": title, "message": message}, status)


def _answer(
    request: Request, status: int, body: dict[str, Any], title: str, message: str
) -> Response:
    if wants_json(request):
        return JSONResponse(body, status)
    return message_page(request, title, message, status)


def not_found(request: Request, message: str) -> Response:
    """404: `{"error": message}` under /api/, a page elsewhere."""
    return _answer(request, 404, {"error": message}, "Not found", message)


async def campaign_not_found(request: Request, error: Exception) -> Response:
    namespace = error.args[0] if error.args else ""
    named = f"campaign named {namespace!r}"
    return _answer(request, 404, {"error": f"no {named}"}, "Not found", f"No {named}.")


async def invalid_campaign(request: Request, error: Exception) -> Response:
    assert isinstance(error, InvalidCampaign)
    listed = "; ".join(f"{field}: {message}" for field, message in error.errors.items())
    return _answer(request, 422, {"errors": error.errors}, "Campaign refused", listed)


async def otree_failed(request: Request, error: Exception) -> Response:
    assert isinstance(error, OTreeError)
    message = f"oTree: {error.message}"
    return _answer(request, 502, {"error": message}, "oTree failed", message)


async def bad_request(request: Request, error: Exception) -> Response:
    assert isinstance(error, BadRequest)
    return _answer(request, error.status, {"error": error.message}, "Bad request", error.message)


async def client_gone(request: Request, error: Exception) -> Response:
    """The client closed its connection mid-request: one line (the path without its query,
    which may hold a token), and an answer nobody reads."""
    client = request.client.host if request.client else "unknown"
    log.info(
        "%s %s from %s: the client went away mid-request",
        request.method,
        loggable_path(request.url.path),
        client,
    )
    return Response(status_code=400)


def loggable_path(path: str) -> str:
    """`path` as a log line may hold it: %-encoded as uvicorn logs it (a stranger's control
    characters, a terminal's escape sequences, stay text) and cut short."""
    quoted = quote(path, safe="/:@!$&'()*+,;=~")
    return quoted if len(quoted) <= LOGGED_PATH else quoted[:LOGGED_PATH] + "..."


handlers: dict[Any, ExceptionHandler] = {
    ClientDisconnect: client_gone,
    CampaignNotFound: campaign_not_found,
    InvalidCampaign: invalid_campaign,
    OTreeError: otree_failed,
    BadRequest: bad_request,
}
