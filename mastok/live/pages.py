"""What mastok saw of each oTree participant's page: written by the progress poller, read
by the supervise page. oTree's export has no page times, so a participant's idle time is the
time since mastok saw its page index change (`changed_at`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

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
    async with db.engine.connect() as connection:
        rows = await connection.execute(
            select(OTreeSession.id, OTreeSession.number, OTreeSession.otree_code)
            .where(OTreeSession.campaign_id == campaign_id)
            .where(OTreeSession.number.in_(list(numbers)))
            .order_by(OTreeSession.number)
        )
        return [LiveSession(id_, number, code) for id_, number, code in rows]


# `finished` is not read back: it follows from the index and the count (`Progress.finished`).
_SEEN = select(SessionPage.otree_code, SessionPage.page_index, SessionPage.page_count).where(
    SessionPage.session_id == bindparam("session_id")
)
_OF_CODE = (SessionPage.session_id == bindparam("in_session")) & (
    SessionPage.otree_code == bindparam("code")
)
_MOVED = (
    update(SessionPage)
    .where(_OF_CODE)
    .values(
        page_index=bindparam("index"),
        page_count=bindparam("count"),
        finished=bindparam("done"),
        changed_at=bindparam("at"),
    )
)
_REFRESHED = (
    update(SessionPage)
    .where(_OF_CODE)
    .values(page_count=bindparam("count"), finished=bindparam("done"))
)


async def record(
    connection: AsyncConnection, session_id: int, seen: Sequence[Progress], now: datetime
) -> None:
    """Keep what oTree shows of the session's participants at `now`, in the transaction
    `connection` is in: a page index that changed (or a participant seen for the first time)
    restarts its idle time. Rows that did not change are not written (the poll reads every
    live session every few seconds). Plain statements, not ORM objects, whose flush was most
    of a read's Python: with the poller reading up to 10 sessions a second, a traced join
    count (`bench.instructions --join --opcodes --concurrency 100`) ran 34,550 opcodes a
    participant with them, 32,956 without."""
    known = {
        code: (index, count)
        for code, index, count in await connection.execute(_SEEN, {"session_id": session_id})
    }
    new, moved, refreshed = [], [], []
    for progress in seen:
        shown = (progress.index, progress.page_count)
        was = known.get(progress.code)
        if was == shown:
            continue
        values = {
            "in_session": session_id,
            "code": progress.code,
            "count": progress.page_count,
            "done": progress.finished,
        }
        if was is None:
            new.append(_new_page(session_id, progress, now))
        elif was[0] != progress.index:
            moved.append({**values, "index": progress.index, "at": now})
        else:
            refreshed.append(values)
    if new:
        await connection.execute(insert(SessionPage), new)
    if moved:
        await connection.execute(_MOVED, moved)
    if refreshed:
        await connection.execute(_REFRESHED, refreshed)


def _new_page(session_id: int, progress: Progress, now: datetime) -> dict[str, Any]:
    return {
        "session_id": session_id,
        "otree_code": progress.code,
        "page_index": progress.index,
        "page_count": progress.page_count,
        "finished": progress.finished,
        "changed_at": now,
    }


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
