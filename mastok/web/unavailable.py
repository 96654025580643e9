"""The database away: 503 with `Retry-After`, in each route's error shape, instead of a 500.

While the database cannot be reached (refused, reset, restarting, out of connections, its file
unreadable), whatever a route was doing raises the driver's or SQLAlchemy's connection error;
`database_away`, one of the app's exception handlers, answers it with LightMill's
`{"message", "type"}` on LightMill's client routes, `{"error": ...}` under `/api/`, a page
elsewhere. Nothing else is kept: the engine's pool checks its connections before use, so the
first request after the database is back gets through without a restart. Other database errors
(a real bug) stay 500s with their traceback.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

import asyncpg
from sqlalchemy import exc
from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ExceptionHandler

from mastok.web import lightmill_api
from mastok.web.errors import message_page, wants_json

log = logging.getLogger("mastok.web")

RETRY_AFTER = 5  # seconds
LOG_EVERY = 10.0  # seconds: one line while the database stays away, not one per request
MESSAGE = "the database cannot be reached for now: try again in a few seconds"

# What the database being away raises: SQLAlchemy's wrapping of the driver's errors, and the
# driver's own when connecting (SQLAlchemy does not wrap those).
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    exc.OperationalError,  # sqlite3's "unable to open database file", "database is locked"...
    exc.InterfaceError,
    exc.TimeoutError,  # no pooled connection freed in time
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # shutting down, starting up
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections
    asyncpg.InterfaceError,
    ConnectionError,
    socket.gaierror,
)
HANDLED: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, exc.DBAPIError)


def is_database_away(error: BaseException) -> bool:
    """Whether the error says the database cannot be reached (rather than a bug)."""
    if isinstance(error, CONNECTION_ERRORS):
        return True
    if isinstance(error, exc.DBAPIError):
        return error.connection_invalidated or isinstance(error.orig, CONNECTION_ERRORS)
    return False


async def database_away(request: Request, error: Exception) -> Response:
    if not is_database_away(error):
        raise error
    note_away(request.app.state, error)
    headers = {"Retry-After": str(RETRY_AFTER)}
    if lightmill_api.is_client_route(request):
        body = {"message": MESSAGE, "type": "DatabaseUnavailable"}
        return JSONResponse(body, 503, headers=headers)
    if wants_json(request):
        return JSONResponse({"error": MESSAGE}, 503, headers=headers)
    response = message_page(request, "Unavailable", MESSAGE[0].upper() + MESSAGE[1:] + ".", 503)
    response.headers.update(headers)
    return response


def note_away(state: State, error: BaseException) -> None:
    """Log that the database is away, once every LOG_EVERY seconds while it stays away (the
    app's state keeps when it last said so)."""
    now = time.monotonic()
    if now - getattr(state, "database_away_logged", -LOG_EVERY) >= LOG_EVERY:
        state.database_away_logged = now
        log.warning("database unavailable, answering 503: %s", _summary(error))


def _summary(error: BaseException) -> str:
    reason: Any = getattr(error, "orig", None) or error
    first = str(reason).strip().splitlines()
    return f"{type(reason).__name__}: {first[0] if first else ''}"


handlers: dict[Any, ExceptionHandler] = {kind: database_away for kind in HANDLED}
