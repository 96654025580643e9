"""The room's reads of the records go through indexes: a room rebuilt (and each view a
standby builds) reads the visits ended within the resume grace, a handful among a campaign's
100,000 ended ones, through an index on when they ended, not through all of them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from mastok.db import Database, async_url
from mastok.db.tables import Campaign, Participant
from mastok.live.records import _ENDED
from tests.campaigns.test_stats_plans import CAMPAIGN, explain

NOW = datetime(2026, 11, 30, 13, 0, tzinfo=UTC)
VISITS = 100_000
RECENT = 5


async def test_the_visits_ended_within_the_grace_are_found_by_when_they_ended(
    database_url: str,
) -> None:
    """100,000 visits of a campaign ended long ago, 5 within the grace: the plan reads the
    few through an index on (campaign_id, ended_at). PostgreSQL chooses from its statistics
    (ANALYZEd, as autovacuum would); SQLite has none (mastok never runs ANALYZE)."""
    db = Database(async_url(database_url))
    try:
        async with db.session() as session:
            campaign = Campaign(**CAMPAIGN, namespace="ended", slug="ended_join")
            session.add(campaign)
            await session.commit()
            campaign_id = campaign.id
        rows = [
            {
                "campaign_id": campaign_id,
                "token": f"t{n}",
                "step": "left",
                "outcome": ("timeout", "left", "started", "away")[n % 4],
                "created_at": NOW - timedelta(hours=2),
                "ended_at": (
                    NOW - timedelta(seconds=n) if n < RECENT else NOW - timedelta(hours=1)
                ),
            }
            for n in range(VISITS)
        ]
        async with db.engine.begin() as connection:
            await connection.execute(insert(Participant), rows)
        async with db.engine.connect() as connection:
            dialect = connection.dialect.name
            if dialect != "sqlite":
                await connection.exec_driver_sql("ANALYZE participants")
            since = NOW - timedelta(seconds=30)
            plan = await explain(connection, _ENDED.params(campaign_id=campaign_id, since=since))
    finally:
        await db.close()
    text = "\n".join(plan)
    if dialect == "sqlite":
        assert plan == [
            "SEARCH participants USING INDEX ix_participants_campaign_ended_at (campaign_id=? "
            "AND ended_at>?)"
        ], text
    else:
        assert "Seq Scan" not in text, text
        assert "Index Scan using ix_participants_campaign_ended_at" in text, text
        assert f"Index Cond: ((campaign_id = {campaign_id}) AND (ended_at > " in text, text
