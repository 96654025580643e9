"""The data behind each admin page, shared by the page and its JSON twin under /api."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

from mastok.campaigns.stats import campaign_stats, campaign_summary, sparkline
from mastok.clock import iso
from mastok.live.events import View
from mastok.live.pages import Page, pages_of
from mastok.live.room import Room
from mastok.otree import OTreeError, SessionSummary
from mastok.otree.labels import mastok_id_of
from mastok.otree.urls import http_url, public_otree_url
from mastok.services import services
from mastok.states import CampaignState

LATEST_SESSIONS = 25


async def campaigns(request: Request) -> dict[str, Any]:
    service = services(request).campaigns
    items = [service.to_json(campaign) for campaign in await service.all()]
    return {"campaigns": items}


async def dashboard(request: Request) -> dict[str, Any]:
    app_services = services(request)
    found = await app_services.campaigns.all()
    states = {state.value: 0 for state in CampaignState}
    for campaign in found:
        states[campaign.state] = states.get(campaign.state, 0) + 1
    now = request.app.state.clock.now()
    items = []
    for campaign in found:
        summary = await campaign_summary(app_services.db, campaign.id, now)
        counts = [n for _, n in summary["arrivals_per_minute"]]
        items.append(
            {
                "namespace": campaign.namespace,
                "state": campaign.state,
                **summary,
                "sparkline": sparkline(counts),
            }
        )
    return {
        "campaigns": {"total": len(found), "by_state": states, "items": items},
        "otree": await otree(request),
    }


async def otree(request: Request) -> dict[str, Any]:
    app_services = services(request)
    status: dict[str, Any] = {
        "api_url": app_services.settings.otree_api_url,
        "public_url": app_services.settings.otree_public_url,
        "reachable": False,
        "version": None,
        "problem": None,
    }
    try:
        status["version"] = await app_services.otree.version()
        status["reachable"] = True
    except OTreeError as error:
        status["problem"] = error.message
    return status


async def sessions(request: Request) -> dict[str, Any]:
    """oTree's latest sessions, newest first, with the mastok id they were created under."""
    app_services = services(request)
    try:
        found = await app_services.otree.list_sessions()
    except OTreeError as error:
        return {"sessions": [], "otree_problem": error.message}
    found.sort(key=lambda s: s.created_at or datetime.min.replace(tzinfo=UTC), reverse=True)
    public = app_services.settings.otree_public_url
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


async def supervise(request: Request, namespace: str) -> dict[str, Any]:
    """A campaign, its live room (on a standby: as the database has it) and the sessions
    mastok started for it, each with its participants' progress as last read from oTree
    (`mastok.live.progress`).

    Raises CampaignNotFound.
    """
    app_services = services(request)
    campaign = await app_services.campaigns.get(namespace)
    view, live = await app_services.leader.look(campaign, _view_and_live)
    now = request.app.state.clock.now()
    records = await app_services.records.sessions(campaign.id)
    seen = await pages_of(app_services.db, campaign.id)
    codes_of = await app_services.records.participant_codes(campaign.id)
    sessions = []
    for record in records:
        codes = codes_of.get(record.id, [])
        sessions.append(
            {
                "code": record.otree_code,
                "number": record.number,
                "mastok_id": record.mastok_id,
                "size": record.size,
                "admin_url": http_url(record.admin_url),
                "participant_codes": codes,
                "created_at": iso(record.created_at),
                "finished_at": iso(record.finished_at),
                "live": record.number in live,
                "participants": _progress(
                    codes, seen.get(record.id, []), now, campaign.idle_flag_seconds
                ),
            }
        )
    return {
        "campaign": app_services.campaigns.to_json(campaign),
        "live": {"state": view.state, "joining": view.joining, "pending": view.pending},
        "sessions": sessions,
    }


def _view_and_live(room: Room, now: datetime) -> tuple[View, set[int]]:
    return room.view(now), set(room.live_sessions)


def _state_and_presence(room: Room, now: datetime) -> tuple[str, dict[str, bool]]:
    return room.view(now).state, room.presence()


def _progress(
    codes: list[str], seen: list[Page], now: datetime, idle_flag_seconds: int
) -> list[dict[str, Any]]:
    """Each participant's page out of the session's, finished or not, seconds since mastok saw
    its page change, and `idle` past the campaign's threshold; unknown (None) until oTree is
    read."""
    by_code = {page.code: page for page in seen}
    found: list[dict[str, Any]] = []
    for code in [*codes, *(c for c in by_code if c not in codes)]:
        page = by_code.get(code)
        if page is None:
            found.append(
                {
                    "code": code,
                    "page_index": None,
                    "page_count": None,
                    "finished": None,
                    "idle_seconds": None,
                    "idle": False,
                }
            )
            continue
        idle = max(int((now - page.changed_at).total_seconds()), 0)
        found.append(
            {
                "code": code,
                "page_index": page.page_index,
                "page_count": page.page_count,
                "finished": page.finished,
                "idle_seconds": idle,
                "idle": not page.finished and 0 < idle_flag_seconds <= idle,
            }
        )
    return found


async def stats(request: Request, namespace: str, identities: bool = False) -> dict[str, Any]:
    """The campaign's figures (mastok.campaigns.stats), with who waits connected or away, and
    their platform identities only if asked.

    Raises CampaignNotFound.
    """
    app_services = services(request)
    campaign = await app_services.campaigns.get(namespace)
    state, presence = await app_services.leader.look(campaign, _state_and_presence)
    now = request.app.state.clock.now()
    figures = await campaign_stats(app_services.db, campaign.id, now)
    for person in figures["waiting"]:
        person["present"] = presence.get(person.pop("token"), False)
        identity = person.pop("identity")
        if identities:
            person["identity"] = identity
    return {"namespace": campaign.namespace, "state": state, **figures}
