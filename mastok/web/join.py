"""The public join page: where a campaign's share URL leads."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mastok.services import services
from mastok.web.templating import render


async def join_page(request: Request) -> Response:
    slug = request.path_params["slug"]
    campaign = await services(request).campaigns.get_by_slug(slug)
    if campaign is None:
        return render(request, "join_not_found.html", {"slug": slug}, 404)
    context = {"slug": slug, "show_count": campaign.show_nb_participants}
    return render(request, "join.html", context)


routes = [Route("/join/{slug}", join_page)]
