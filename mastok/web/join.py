"""The public join page: where a campaign's share URL leads."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from mastok.services import services, settings
from mastok.web.templating import render

# The join page runs mastok's own script and style only: a campaign's HTML (sanitised) cannot
# bring scripts, and its images may come from the researcher's site (https). The socket is
# same-origin; framing is refused here too (a route's own CSP replaces the default one).
JOIN_PAGE_CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' https: data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)


async def join_page(request: Request) -> Response:
    slug = request.path_params["slug"]
    campaign = await services(request).campaigns.get_by_slug(slug)
    if campaign is not None and campaign.slug != slug:
        # An old slug of a renamed campaign: to its share URL, with the platform's parameters
        # (not for good: a slug may come back to its campaign).
        query = request.url.query
        url = f"{settings(request).web_prefix}/join/{campaign.slug}"
        return RedirectResponse(f"{url}?{query}" if query else url, 307)
    if campaign is None:
        response = render(request, "join_not_found.html", {"slug": slug}, 404)
    else:
        context = {
            "slug": slug,
            "show_count": campaign.show_nb_participants,
            # How long the page keeps reconnecting after its connection dropped: as long as
            # mastok keeps its place.
            "resume_grace": f"{settings(request).resume_grace:g}",
            "heartbeat": f"{settings(request).page_heartbeat:g}",
        }
        response = render(request, "join.html", context)
    response.headers["Content-Security-Policy"] = JOIN_PAGE_CSP
    return response


routes = [Route("/join/{slug}", join_page)]
