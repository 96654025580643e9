"""The data behind each admin page, shared by the page and its JSON twin under /api."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from starlette.requests import Request

from mastok.clock import iso
from mastok.otree import OTreeError, SessionSummary

LATEST_SESSIONS = 25


async def campaigns(request: Request) -> dict[str, Any]:
    service = request.app.state.services.campaigns
    items = [service.to_json(campaign) for campaign in await service.all()]
    return {"campaigns": items}


async def dashboard(request: Request) -> dict[str, Any]:
    services = request.app.state.services
    found = await services.campaigns.all()
    states = {state: 0 for state in ("Running", "Paused", "Completed")}
    for campaign in found:
        states[campaign.state] = states.get(campaign.state, 0) + 1
    return {"campaigns": {"total": len(found), "by_state": states}, "otree": await otree(request)}


async def otree(request: Request) -> dict[str, Any]:
    services = request.app.state.services
    status: dict[str, Any] = {
        "api_url": services.settings.otree_api_url,
        "public_url": services.settings.otree_public_url,
        "reachable": False,
        "version": None,
        "problem": None,
    }
    try:
        status["version"] = await services.otree.version()
        status["reachable"] = True
    except OTreeError as error:
        status["problem"] = error.message
    return status


async def sessions(request: Request) -> dict[str, Any]:
    """oTree's latest sessions, newest first, with the mastok id they were created under."""
    services = request.app.state.services
    try:
        found = await services.otree.list_sessions()
    except OTreeError as error:
        return {"sessions": [], "otree_problem": error.message}
    found.sort(key=lambda s: s.created_at or datetime.min.replace(tzinfo=UTC), reverse=True)
    public = services.settings.otree_public_url
    items = [_session_json(s, public) for s in found[:LATEST_SESSIONS]]
    return {"sessions": items, "otree_problem": None}


def _session_json(summary: SessionSummary, public_url: str) -> dict[str, Any]:
    return {
        "code": summary.code,
        "mastok_id": mastok_id_of(summary.label),
        "label": summary.label,
        "config_name": summary.config_name,
        "num_participants": summary.num_participants,
        "created_at": summary.created_at.isoformat() if summary.created_at else None,
        "admin_url": public_otree_url(summary.admin_url, public_url),
    }


def mastok_id_of(label: str) -> str | None:
    """`mk:{namespace}:{n}` from a label `mk:{namespace}:{n}:{uid}` mastok gave a session."""
    parts = label.split(":")
    return ":".join(parts[:3]) if parts[0] == "mk" and len(parts) >= 3 else None


def public_otree_url(url: str, public_url: str) -> str:
    """oTree builds its URLs from the Host mastok called it by: show people the public one."""
    if not url or not public_url:
        return url
    public = urlsplit(public_url)
    parts = urlsplit(url)
    path = public.path.rstrip("/") + parts.path
    return urlunsplit((public.scheme, public.netloc, path, parts.query, parts.fragment))


async def supervise(request: Request, namespace: str) -> dict[str, Any]:
    """A campaign, its live room and the sessions mastok started for it.

    Raises CampaignNotFound.
    """
    services = request.app.state.services
    campaign = await services.campaigns.get(namespace)
    runner = await services.rooms.runner(campaign)
    sessions = []
    for record in await services.records.sessions(campaign.id):
        sessions.append(
            {
                "code": record.otree_code,
                "mastok_id": record.mastok_id,
                "size": record.size,
                "admin_url": record.admin_url,
                "participant_codes": await services.records.participant_codes(record.id),
                "created_at": iso(record.created_at),
            }
        )
    return {
        "campaign": services.campaigns.to_json(runner.campaign),
        "live": {
            "state": runner.supervisor_state(),
            "joining": runner.joining_size(),
            "pending": runner.pending_size(),
        },
        "sessions": sessions,
    }
