"""Participants' records: every visit to a campaign's room, read back for admins and files.

A visit is a row of the participants table (one participant from Land on, or a socket turned
away at once). Its record says who came (browser id, platform identity, captured parameters:
admins only, never logged), when (landed, consented, joined the pools, ready, ended; UTC,
ISO 8601), how it ended (its outcome), how long it waited in the pools, and where it went.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Any, Literal

from sqlalchemy import Select, exists, select, update

from mastok.clock import aware, iso
from mastok.db import Database
from mastok.db.tables import Campaign, OTreeSession, Participant
from mastok.otree.urls import LABEL, unlabelled
from mastok.spreadsheet import inert
from mastok.states import WAITING_STEPS, CampaignState

Format = Literal["csv", "json"]
SUFFIXES = {"csv": "csv", "json": "jsonl"}
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/x-ndjson"}
PAGE_DEFAULT = 100
PAGE_MAX = 1000
CHUNK = 1000  # rows read at once for a file
COLUMNS = (
    "visit",
    "campaign",
    "browser_id",
    "identity",
    "group",
    "landed",
    "consented",
    "joined",
    "ready",
    "ended",
    "outcome",
    "waited_seconds",
    "session_number",
    "otree_session",
    "otree_participant",
    "consent_hash",
)


def _query(campaign: Campaign) -> Select[Participant, int, str]:
    return (
        select(Participant, OTreeSession.number, OTreeSession.otree_code)
        .outerjoin(OTreeSession, Participant.session_id == OTreeSession.id)
        .where(Participant.campaign_id == campaign.id)
        .order_by(Participant.id.desc())
    )


def record(
    campaign: Campaign, row: Participant, number: int | None, code: str | None
) -> dict[str, Any]:
    """One visit as the API and the files give it."""
    waited = None
    if row.queued_at is not None and row.ended_at is not None:
        waited = round((aware(row.ended_at) - aware(row.queued_at)).total_seconds(), 3)
    return {
        "visit": row.id,
        "campaign": campaign.namespace,
        "browser_id": row.browser_id,
        "identity": row.identity,
        "params": dict(row.params or {}),
        "group": row.group_label,
        "landed": iso(row.created_at),
        "consented": iso(row.consented_at),
        "joined": iso(row.queued_at),
        "ready": iso(row.ready_at),
        "ended": iso(row.ended_at),
        "outcome": row.outcome,
        "waited_seconds": waited,
        "session_number": number,
        "otree_session": code,
        "otree_participant": row.otree_code,
        "consent_hash": row.consent_hash,
    }


async def page(
    db: Database, campaign: Campaign, limit: int = PAGE_DEFAULT, before: int | None = None
) -> list[dict[str, Any]]:
    """The campaign's visits, newest first, `limit` at most, older than visit `before`."""
    query = _query(campaign).limit(limit)
    if before is not None:
        query = query.where(Participant.id < before)
    async with db.session() as session:
        rows = (await session.execute(query)).all()
    return [record(campaign, row, number, code) for row, number, code in rows]


async def iter_records(db: Database, campaign: Campaign) -> AsyncIterator[dict[str, Any]]:
    """Every visit, newest first, read `CHUNK` at a time."""
    before: int | None = None
    while True:
        chunk = await page(db, campaign, CHUNK, before)
        for item in chunk:
            yield item
        if len(chunk) < CHUNK:
            return
        before = chunk[-1]["visit"]


def param_names(campaign: Campaign) -> list[str]:
    """The CSV's columns for captured parameters: the campaign's identity's and captured."""
    names = [campaign.identity_param, *(campaign.capture_params or [])]
    return list(dict.fromkeys(name for name in names if name))


async def stream(db: Database, campaign: Campaign, format: Format) -> AsyncIterator[str]:
    """The campaign's participants file: CSV (one column per declared parameter, cells a
    spreadsheet would run made inert) or JSON Lines (every key of the API)."""
    params = param_names(campaign)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if format == "csv":
        writer.writerow([inert(name) for name in (*COLUMNS, *params)])
    async for item in iter_records(db, campaign):
        if format == "csv":
            captured = item["params"]
            cells = [item[c] for c in COLUMNS] + [captured.get(name) for name in params]
            writer.writerow([inert(cell) for cell in cells])
        else:
            buffer.write(json.dumps(item, ensure_ascii=False) + "\n")
        if buffer.tell() > 1 << 16:
            yield _take(buffer)
    yield _take(buffer)


def file_name(campaign: Campaign, format: Format) -> str:
    return f"{campaign.namespace}-participants.{SUFFIXES[format]}"


class CampaignRunning(Exception):
    """The campaign is Running: its room takes people, and their identities, still."""


class StillInRoom(Exception):
    """Someone is still in the campaign's room: a pause waits for the session being created,
    whose start links, labelled with the identities, are written once oTree answers."""


async def erase_identities(db: Database, campaign: Campaign) -> int:
    """Forget the campaign's platform identities and captured parameters (the rest of each
    record stays), the participant label of its oTree start links included; how many visits
    had some. Raises CampaignRunning while it is Running, StillInRoom while anyone is in its
    room. The campaign's count of erasures grows with it: its room, told of the campaign's
    change, forgets them too."""
    async with db.session() as session:
        # Counted first, if it is not Running: the write takes the lock its state changes take
        # (its row on PostgreSQL, the file's on SQLite) and reads the state as the last one
        # left it. A resume under way comes first (the erasure refused), or waits for its end.
        counted = await session.scalar(
            update(Campaign)
            .where(Campaign.id == campaign.id, Campaign.state != CampaignState.RUNNING)
            .values(identity_erasures=Campaign.identity_erasures + 1)
            .returning(Campaign.id)
        )
        if counted is None:
            raise CampaignRunning(campaign.namespace)
        in_room = exists().where(
            (Participant.campaign_id == campaign.id) & Participant.step.in_(WAITING_STEPS)
        )
        if await session.scalar(select(in_room)):
            raise StillInRoom(campaign.namespace)
        labelled = await session.execute(
            select(Participant.id, Participant.start_url)
            .where(Participant.campaign_id == campaign.id)
            .where(Participant.start_url.contains(LABEL + "="))
        )
        for visit, url in labelled.all():
            await session.execute(
                update(Participant)
                .where(Participant.id == visit)
                .values(start_url=unlabelled(url or ""))
            )
        result = await session.execute(
            update(Participant)
            .where(Participant.campaign_id == campaign.id)
            .where((Participant.identity.is_not(None)) | (Participant.params.is_not(None)))
            .values(identity=None, params=None)
        )
        await session.commit()
    return int(getattr(result, "rowcount", 0) or 0)


def _take(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text
