"""The JSON API (HTTP Basic auth): the twin of every admin page, and campaign editing.

Writes require `Content-Type: application/json`: a cross-site page cannot send that without a
CORS preflight, which mastok never grants, so the API needs no CSRF token. Errors (unknown
campaigns, invalid fields, unreadable bodies, oTree's failures) are answered by
`mastok.web.errors`.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mastok.services import services, settings
from mastok.web import audit, experiments, openapi, participants, views
from mastok.web.errors import BadRequest, media_type


async def list_campaigns(request: Request) -> Response:
    return JSONResponse((await views.campaigns(request))["campaigns"])


async def create_campaign(request: Request) -> Response:
    service = services(request).campaigns
    campaign = await service.create(await _json_object(request))
    await audit.audited(request, "campaign.created", campaign.namespace, audit.created(campaign))
    headers = {"Location": f"{request.url.path}/{campaign.namespace}"}
    return JSONResponse(service.to_json(campaign), 201, headers=headers)


async def get_campaign(request: Request) -> Response:
    service = services(request).campaigns
    namespace = request.path_params["namespace"]
    return JSONResponse(service.to_json(await service.get(namespace)))


async def patch_campaign(request: Request) -> Response:
    service = services(request).campaigns
    namespace = request.path_params["namespace"]
    changes = await _json_object(request)
    edit = await service.update(namespace, changes)
    await audit.audited_edit(request, namespace, edit.before, edit.after)
    return JSONResponse(service.to_json(edit.campaign))


async def campaign_live(request: Request) -> Response:
    namespace = request.path_params["namespace"]
    return JSONResponse(await views.supervise(request, namespace))


async def campaign_stats(request: Request) -> Response:
    namespace = request.path_params["namespace"]
    identities = request.query_params.get("identities", "") in ("1", "true")
    return JSONResponse(await views.stats(request, namespace, identities))


async def dashboard(request: Request) -> Response:
    return JSONResponse(await views.dashboard(request))


async def sessions(request: Request) -> Response:
    return JSONResponse(await views.sessions(request))


async def otree_configs(request: Request) -> Response:
    configs = await services(request).otree.list_configs()
    return JSONResponse(
        [
            {"name": c.name, "display_name": c.display_name, "app_sequence": c.app_sequence}
            for c in configs
        ]
    )


async def openapi_document(request: Request) -> Response:
    return JSONResponse(openapi.document(settings(request).web_prefix))


async def _json_object(request: Request) -> dict[str, Any]:
    if media_type(request) != "application/json":
        raise BadRequest(415, "send the body as JSON with Content-Type: application/json")
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest(400, f"the body is not valid JSON: {error}") from None
    except RecursionError:
        raise BadRequest(400, "the body nests too deeply to be a campaign") from None
    if not isinstance(body, dict):
        raise BadRequest(400, "the body must be a JSON object of campaign fields")
    return body


routes = [
    Route("/campaigns", list_campaigns, methods=["GET"]),
    Route("/campaigns", create_campaign, methods=["POST"]),
    Route("/campaigns/{namespace}", get_campaign, methods=["GET"]),
    Route("/campaigns/{namespace}", patch_campaign, methods=["PATCH"]),
    Route("/campaigns/{namespace}/live", campaign_live, methods=["GET"]),
    Route("/campaigns/{namespace}/stats", campaign_stats, methods=["GET"]),
    *participants.api_routes,
    *audit.api_routes,
    Route("/dashboard", dashboard, methods=["GET"]),
    Route("/sessions", sessions, methods=["GET"]),
    Route("/otree/configs", otree_configs, methods=["GET"]),
    Route("/openapi.json", openapi_document, methods=["GET"]),
    *experiments.api_routes,  # LightMill's monitoring: /api/monitoring/...
]
