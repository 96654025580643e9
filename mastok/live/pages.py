"""What mastok saw of each oTree participant's page: written by the progress poller, read
by the supervise page. oTree's export has no page times, so a participant's idle time is the
time since mastok saw its page index change (`changed_at`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from mastok.clock import aware
from mastok.db import Database
from mastok.db.tables import OTreeSession, SessionPage
from mastok.otree import Progress


@dataclass(frozen=True)
class LiveSession:
    """A session to read from oTree: its row, number and oTree code."""

    id: int
    number: int
    code: str


@dataclass(frozen=True)
class Page:
    """A participant's page as last seen, and since when it has not changed."""

    code: str
    page_index: int
    page_count: int
    finished: bool
    changed_at: datetime


async def sessions_numbered(
    db: Database, campaign_id: int, numbers: Sequence[int]
) -> list[LiveSession]:
    async with db.session() as session:
        rows = await session.execute(
            select(OTreeSession.id, OTreeSession.number, OTreeSession.otree_code)
            .where(OTreeSession.campaign_id == campaign_id)
            .where(OTreeSession.number.in_(list(numbers)))
            .order_by(OTreeSession.number)
        )
        return [LiveSession(id_, number, code) for id_, number, code in rows]


async def record(db: Database, session_id: int, seen: Sequence[Progress], now: datetime) -> None:
    """Keep what oTree shows of the session's participants at `now`: a page index that
    changed (or a participant seen for the first time) restarts its idle time. Rows that did
    not change are not written (the poll reads every live session every few seconds)."""
    async with db.session() as session:
        known = {
            row.otree_code: row
            for row in await session.scalars(
                select(SessionPage).where(SessionPage.session_id == session_id)
            )
        }
        for progress in seen:
            row = known.get(progress.code)
            if row is None:
                session.add(
                    SessionPage(
                        session_id=session_id,
                        otree_code=progress.code,
                        page_index=progress.index,
                        page_count=progress.page_count,
                        finished=progress.finished,
                        changed_at=now,
                    )
                )
                continue
            if row.page_index != progress.index:
                row.page_index, row.changed_at = progress.index, now
            row.page_count, row.finished = progress.page_count, progress.finished
        await session.commit()


async def pages_of(db: Database, campaign_id: int) -> dict[int, list[Page]]:
    """Each of the campaign's sessions' participants as last seen (by session id), in
    participant code order."""
    found: dict[int, list[Page]] = {}
    async with db.session() as session:
        rows = await session.scalars(
            select(SessionPage)
            .join(OTreeSession, OTreeSession.id == SessionPage.session_id)
            .where(OTreeSession.campaign_id == campaign_id)
            .order_by(SessionPage.session_id, SessionPage.otree_code)
        )
        for row in rows:
            found.setdefault(row.session_id, []).append(
                Page(
                    row.otree_code,
                    row.page_index,
                    row.page_count,
                    row.finished,
                    aware(row.changed_at),
                )
            )
    return found
