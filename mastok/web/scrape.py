"""`GET /metrics`: the app's metrics in Prometheus' text format (behind the admin credentials)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from mastok.metrics import CONTENT_TYPE, Metrics


async def metrics(request: Request) -> Response:
    found: Metrics = request.app.state.metrics
    return Response(found.exposition(), media_type=CONTENT_TYPE)
