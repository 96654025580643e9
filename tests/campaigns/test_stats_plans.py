"""The campaign's figures are read through indexes: EXPLAIN of each of their queries, on both
databases, searches an index and never scans a table.

PostgreSQL's planner prefers a sequential scan on a table this small, so the test turns
sequential scans off for its transaction: a plan that still has one has no index to use."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from mastok.campaigns.stats import AnySelect, queries
from mastok.db import Database, async_url

NOW = datetime(2026, 11, 30, 13, 0, tzinfo=UTC)
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
