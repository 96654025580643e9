"""Health checks: `/healthz` (the process is up) and `/readyz` (it leads, its database answers).

Both are public and say nothing secret. `/readyz` is quick: the database is asked `SELECT 1`
with a short timeout; oTree's state comes from the background probe (`mastok.otree.probe`),
never from a call made while the check waits. A proxy sends sockets and admin pages to the
instance whose `/readyz` answers 200, and LightMill's clients to any whose `/healthz` does.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mastok.services import services

log = logging.getLogger("mastok.web")
DATABASE_TIMEOUT = 2.0


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    app_services = services(request)
    report: dict[str, Any] = {
        "role": app_services.leader.shown_role,
        "database": await _database(request),
        "otree": app_services.otree_probe.state,
    }
    ready = report["role"] == "leader" and report["database"] == "ok"
    return JSONResponse(report, status_code=200 if ready else 503)


async def _database(request: Request) -> str:
    try:
        async with asyncio.timeout(DATABASE_TIMEOUT):
            async with services(request).db.session() as session:
                await session.execute(text("SELECT 1"))
    except Exception as error:  # whatever it is, the database does not answer
        log.debug("readyz: the database does not answer: %r", error)
        return "unreachable"
    return "ok"


routes = [Route("/healthz", healthz), Route("/readyz", readyz)]
