"""What the progress poller keeps of each participant's page (mastok/live/pages.py), on both
databases: a participant seen for the first time is kept from then; a page index that changes
restarts its idle time (a finish is a page past the last), a page count that changes alone
does not; what did not change is not written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mastok.db import Database, async_url
from mastok.db.tables import OTreeSession, SessionPage
from mastok.live import pages
from mastok.live.records import Records
from mastok.otree import Progress
from tests.live.test_records import a_campaign

NOW = datetime(2026, 1, 1, tzinfo=UTC)


async def a_session(db: Database) -> int:
    campaign_id = await a_campaign(db)
    async with db.engine.begin() as connection:
        row = {
            "campaign_id": campaign_id,
            "number": 1,
            "mastok_id": "mk:c:1",
            "otree_code": "s1",
            "admin_url": "http://otree/SessionStartLinks/s1",
            "size": 3,
            "created_at": NOW,
        }
        return int(
            (
                await connection.execute(insert(OTreeSession).returning(OTreeSession.id), row)
            ).scalar_one()
        )


async def record(records: Records, session_id: int, seen: list[Progress], now: datetime) -> None:
    """As the poller writes them: in the rooms' own group commit."""

    async def work(connection: AsyncConnection) -> None:
        await pages.record(connection, session_id, seen, now)

    await records.commit(work)


async def kept(db: Database, session_id: int) -> dict[str, tuple[int, int, bool, datetime]]:
    async with db.engine.connect() as connection:
        rows = await connection.execute(
            select(
                SessionPage.otree_code,
                SessionPage.page_index,
                SessionPage.page_count,
                SessionPage.finished,
                SessionPage.changed_at,
            ).where(SessionPage.session_id == session_id)
        )
        return {code: (i, n, done, at.replace(tzinfo=UTC)) for code, i, n, done, at in rows}


async def test_a_page_changed_restarts_the_idle_time_and_nothing_unchanged_is_written(
    database_url: str,
) -> None:
    db = Database(async_url(database_url))
    records = Records(db)
    try:
        session_id = await a_session(db)
        first = [Progress("a", 1, 4), Progress("b", 1, 4)]
        await record(records, session_id, first, NOW)
        assert await kept(db, session_id) == {
            "a": (1, 4, False, NOW),
            "b": (1, 4, False, NOW),
        }

        later = NOW + timedelta(seconds=90)
        async with db.engine.begin() as connection:  # to see what a read leaves unwritten
            await connection.execute(update(SessionPage).values(changed_at=NOW - timedelta(days=1)))
        moved = [
            Progress("a", 2, 4),  # a new page: idle from `later`
            Progress("b", 1, 5),  # the same page, a count that grew: idle as it was
            Progress("c", 0, 5),  # seen for the first time
        ]
        await record(records, session_id, moved, later)
        await record(records, session_id, moved, later + timedelta(seconds=5))  # no change
        assert await kept(db, session_id) == {
            "a": (2, 4, False, later),
            "b": (1, 5, False, NOW - timedelta(days=1)),
            "c": (0, 5, False, later),
        }

        done = [Progress("a", 5, 4), Progress("b", 1, 6)]  # a finished: past the last page
        await record(records, session_id, done, later + timedelta(seconds=10))
        found = await kept(db, session_id)
        assert found["a"] == (5, 4, True, later + timedelta(seconds=10))
        assert found["b"] == (1, 6, False, NOW - timedelta(days=1))
        assert [s.code for s in await pages.sessions_numbered(db, 1, [1, 2])] == ["s1"]
    finally:
        await db.close()
