"""Participants' records for admins: the JSON API's pages, the files, and erasing identities.

`GET /api/campaigns/{namespace}/participants` pages the visits, newest first;
`/campaigns/{namespace}/participants.csv` (and `.jsonl`) downloads them whole;
erasing a campaign's identities and captured parameters needs the campaign not Running (its
room still knows them) and nobody left in its room.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from mastok.campaigns import visits
from mastok.db.tables import Campaign
from mastok.services import services, settings
from mastok.web.audit import audited
from mastok.web.errors import BadRequest
from mastok.web.forms import CSRFForm
from mastok.web.paging import bounded_int

STILL_IN_ROOM = (
    "people are still in its waiting room (a pause waits for the session being created): "
    "try again in a few seconds"
)


class EraseForm(CSRFForm):
    """The supervise page's button: only its CSRF token."""


async def _campaign(request: Request) -> Campaign:
    return await services(request).campaigns.get(request.path_params["namespace"])


async def api_participants(request: Request) -> Response:
    campaign = await _campaign(request)
    limit = bounded_int(request, "limit", visits.PAGE_DEFAULT, 1, visits.PAGE_MAX)
    before = bounded_int(request, "before", None, 1, 2**63 - 1)
    assert limit is not None
    found = await visits.page(services(request).campaigns.db, campaign, limit, before)
    following = None
    if len(found) == limit:
        following = str(request.url.include_query_params(before=found[-1]["visit"]))
    return JSONResponse({"participants": found, "next": following})


async def api_erase_identities(request: Request) -> Response:
    campaign = await _campaign(request)
    erased = await _erase(request, campaign)
    await audited(request, "identities.erased", campaign.namespace, {"visits": erased})
    return JSONResponse({"erased": erased})


async def download(request: Request) -> Response:
    campaign = await _campaign(request)
    fmt: visits.Format = "json" if request.url.path.endswith(".jsonl") else "csv"
    name = visits.file_name(campaign, fmt)
    return StreamingResponse(
        visits.stream(services(request).campaigns.db, campaign, fmt),
        media_type=visits.MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


async def erase_page(request: Request) -> Response:
    campaign = await _campaign(request)
    form = EraseForm.for_request(request, await request.form())
    if not form.validate():
        raise BadRequest(403, "This form expired or did not come from mastok: reload the page.")
    erased = await _erase(request, campaign)
    await audited(request, "identities.erased", campaign.namespace, {"visits": erased})
    request.session["flash"] = f"Identities of {erased} visits erased from {campaign.namespace}"
    prefix = settings(request).web_prefix
    return RedirectResponse(f"{prefix}/campaigns/supervise/{campaign.namespace}", 303)


async def _erase(request: Request, campaign: Campaign) -> int:
    try:
        return await services(request).campaigns.erase_identities(campaign)
    except visits.CampaignRunning:
        raise BadRequest(
            409, "pause the campaign first: its waiting room still knows them"
        ) from None
    except visits.StillInRoom:
        raise BadRequest(409, STILL_IN_ROOM) from None


def erase_form(request: Request) -> Any:
    """The erase button's form, for the supervise page."""
    return EraseForm.for_request(request)


page_routes = [
    Route("/campaigns/{namespace}/participants.csv", download),
    Route("/campaigns/{namespace}/participants.jsonl", download),
    Route("/campaigns/{namespace}/erase-identities", erase_page, methods=["POST"]),
]
api_routes = [
    Route("/campaigns/{namespace}/participants", api_participants, methods=["GET"]),
    Route("/campaigns/{namespace}/identities", api_erase_identities, methods=["DELETE"]),
]
