"""The campaign's figures are read through indexes: EXPLAIN of each of their queries, on both
databases, searches an index and never scans a table.

PostgreSQL's planner prefers a sequential scan on a table this small, so the test turns
sequential scans off for its transaction: a plan that still has one has no index to use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from mastok.campaigns.stats import AnySelect, queries
from mastok.db import Database, async_url
from mastok.db.tables import Campaign, OTreeSession, Participant

NOW = datetime(2026, 11, 30, 13, 0, tzinfo=UTC)
CAMPAIGN = {
    "otree_config_name": "guess_two",
    "per_session": 2,
    "max_sessions": 10,
    "concurrent_sessions": 1,
    "session_duration": 30,
    "waiting_limit": 5,
    "consent": "I agree.",
}
NAMES = ("funnel", "recent", "waits", "arrivals", "fills", "waiting")


async def explain(connection: AsyncConnection, statement: AnySelect) -> list[str]:
    compiled = statement.compile(
        dialect=connection.dialect, compile_kwargs={"render_postcompile": True}
    )
    names = compiled.positiontup or []
    arguments = tuple(compiled.params[name] for name in names)
    if connection.dialect.name == "sqlite":
        result = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", arguments)
        return [str(row[-1]) for row in result]
    result = await connection.exec_driver_sql(f"EXPLAIN {compiled}", arguments)
    return [str(row[0]) for row in result]


@pytest.mark.parametrize("name", NAMES)
async def test_each_figure_is_read_through_an_index(database_url: str, name: str) -> None:
    db = Database(async_url(database_url))
    try:
        async with db.engine.connect() as connection:
            dialect = connection.dialect.name
            if dialect != "sqlite":
                await connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
            statement = queries(7, NOW, dialect).all()[name]
            plan = await explain(connection, statement)
    finally:
        await db.close()
    text = "\n".join(plan)
    if dialect == "sqlite":
        tables = [line for line in plan if "participants" in line or "sessions" in line]
        assert tables, text
        for line in tables:  # SEARCH t USING [COVERING] INDEX ix (campaign_id=?...)
            assert line.startswith("SEARCH") and "INDEX" in line, text
    else:
        assert "Seq Scan" not in text, text
        assert "Index" in text, text


async def test_who_waits_is_found_by_step_not_by_reading_every_visit(database_url: str) -> None:
    """The few people in the pools are found through the step's index: a plan that reads all
    the campaign's visits in queued_at order (to spare a sort) reads 100,000 rows at 100,000
    visits. PostgreSQL chooses from its statistics: the table gets visits of two campaigns,
    nearly all ended, and is ANALYZEd (as autovacuum would); SQLite has none (mastok never
    runs ANALYZE) and is asked as it is."""
    db = Database(async_url(database_url))
    try:
        campaign_id = await _visits(db, per_campaign=2000, waiting=3)
        async with db.engine.connect() as connection:
            dialect = connection.dialect.name
            if dialect != "sqlite":
                await connection.exec_driver_sql("ANALYZE participants")
            plan = await explain(connection, queries(campaign_id, NOW, dialect).waiting)
    finally:
        await db.close()
    text = "\n".join(plan)
    if dialect == "sqlite":
        assert plan == [
            "SEARCH participants USING INDEX ix_participants_campaign_step (campaign_id=? AND "
            "step=?)"
        ], text
    else:
        assert "ix_participants_campaign_step" in text, text
        assert "Index Cond: ((campaign_id = " in text and "step)::text = ANY" in text, text


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_fills_read_the_campaigns_visits_not_the_whole_table(database_url: str) -> None:
    """Among ten campaigns' visits, ANALYZEd: the fills (sessions joined to their members)
    read the campaign's participants through an index on it, never every visit of every
    campaign (the table, or the whole session_id index as a merge join would)."""
    db = Database(async_url(database_url))
    try:
        campaign_id = await _visits(db, per_campaign=2000, waiting=3, campaigns=10)
        async with db.engine.connect() as connection:
            await connection.exec_driver_sql("ANALYZE")
            plan = await explain(connection, queries(campaign_id, NOW, "postgresql").fills)
    finally:
        await db.close()
    text = "\n".join(plan)
    reads = [i for i, line in enumerate(plan) if " on participants" in line]
    assert reads, text
    for i in reads:  # each read of the participants is on the campaign's condition
        assert "Seq Scan" not in plan[i], text
        assert f"Cond: (campaign_id = {campaign_id})" in plan[i + 1], text


async def _visits(db: Database, per_campaign: int, waiting: int, campaigns: int = 2) -> int:
    """Campaigns' ended visits, two thirds of them started in sessions of 2 (sessions of their
    own); `waiting` of the last campaign's in the joining pool: its id."""
    async with db.session() as session:
        ids = []
        for n in range(campaigns):
            campaign = Campaign(**CAMPAIGN, namespace=f"plans{n}", slug=f"plans{n}_join")
            session.add(campaign)
            await session.flush()
            ids.append(campaign.id)
        await session.commit()
    sessions = [
        {
            "id": campaign_id * per_campaign + number,
            "campaign_id": campaign_id,
            "number": number,
            "mastok_id": f"mk:plans:{campaign_id}:{number}",
            "otree_code": f"s{number}",
            "admin_url": "",
            "size": 2,
            "created_at": NOW,
        }
        for campaign_id in ids
        for number in range(1, per_campaign // 3 + 2)
    ]
    rows = [
        {
            "campaign_id": campaign_id,
            "token": f"t{campaign_id}x{n}",
            "step": "joining" if n < waiting else ("started", "started", "left")[n % 3],
            "outcome": None if n < waiting else ("started", "started", "timeout")[n % 3],
            "queued_at": NOW - timedelta(seconds=n),
            "created_at": NOW - timedelta(seconds=n + 30),
            "session_id": (
                campaign_id * per_campaign + n // 3 + 1 if n >= waiting and n % 3 < 2 else None
            ),
        }
        for campaign_id in ids
        for n in range(per_campaign)
    ]
    async with db.engine.begin() as connection:
        await connection.execute(insert(OTreeSession), sessions)
        await connection.execute(insert(Participant), rows)
    return ids[-1]
