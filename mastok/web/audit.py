"""The audit log for admins: who did what from where (`/audit`, `GET /api/audit`), and the
one call every state-changing admin route makes once its change is done."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mastok.audit import Actor, changes
from mastok.db.tables import Campaign
from mastok.services import services, settings
from mastok.web.paging import bounded_int
from mastok.web.templating import render

PAGE = 100


def actor(connection: HTTPConnection) -> Actor:
    """The admin behind a request (one login; the auth middleware let it through)."""
    address = connection.client.host if connection.client else ""
    return Actor(settings(connection).login, address)


async def audited(
    connection: HTTPConnection, action: str, target: str, details: Mapping[str, Any] | None = None
) -> None:
    await services(connection).audit.record(actor(connection), action, target, details)


async def audited_edit(
    connection: HTTPConnection, namespace: str, before: Mapping[str, Any], after: Mapping[str, Any]
) -> None:
    """A campaign edit: its state change, if any, and its other changes, if any."""
    changed = changes(before, after)
    state = changed.pop("state", None)
    if state is not None:
        await audited(connection, "campaign.state", namespace, {"state": state})
    if changed:
        await audited(connection, "campaign.edited", namespace, changed)


def created(campaign: Campaign) -> dict[str, Any]:
    return {"slug": campaign.slug, "otree_config_name": campaign.otree_config_name}


async def _entries(request: Request) -> dict[str, Any]:
    limit = bounded_int(request, "limit", PAGE, 1, 1000)
    before = bounded_int(request, "before", None, 1, 2**63 - 1)
    assert limit is not None
    entries = await services(request).audit.page(limit, before)
    following = None
    if len(entries) == limit:
        following = str(request.url.include_query_params(before=entries[-1]["id"]))
    return {"entries": entries, "next": following}


async def audit_page(request: Request) -> Response:
    return render(request, "audit.html", await _entries(request))


async def api_audit(request: Request) -> Response:
    return JSONResponse(await _entries(request))


page_routes = [Route("/audit", audit_page)]
api_routes = [Route("/audit", api_audit, methods=["GET"])]
