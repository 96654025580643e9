"""importing.py on PostgreSQL: an import leaves the planner statistics of what it stored, and
the design stays stored if taking them fails."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from mastok.db import Database, async_url
from mastok.lightmill import store as store_module
from mastok.lightmill.design import parse_design
from mastok.lightmill.importing import IMPORTED
from mastok.lightmill.store import LightMillStore
from tests.lightmill.helpers import design

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


async def _estimated_and_counted(db: Database) -> dict[str, tuple[float, int]]:
    """Each imported table's row estimate in pg_class (-1: never analyzed) and its rows."""
    found = {}
    async with db.engine.connect() as connection:
        for table in IMPORTED:
            name = table.__tablename__
            estimate = await connection.scalar(
                text("SELECT reltuples FROM pg_class WHERE relname = :name"), {"name": name}
            )
            rows = await connection.scalar(select(func.count()).select_from(table))
            found[name] = (estimate, rows)
    return found


async def test_an_import_leaves_the_planner_the_rows_it_stored(database_url: str) -> None:
    db = Database(async_url(database_url))
    try:
        before = await _estimated_and_counted(db)
        assert all(estimate == -1 for estimate, _ in before.values()), before
        await LightMillStore(db).import_design(parse_design(design()))
        after = await _estimated_and_counted(db)
    finally:
        await db.close()
    assert after["lm_trials"][1] > 0 and after["lm_runs"][1] > 0
    assert {name: estimate for name, (estimate, _) in after.items()} == {
        name: rows for name, (_, rows) in after.items()
    }


async def test_a_failed_analyze_leaves_the_design_stored_and_says_so(
    database_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The connection lost after the import's commit, say: a stub, as a real server fails
    that way only by chance."""

    async def lost(connection: AsyncConnection) -> None:
        raise OperationalError("ANALYZE", {}, ConnectionResetError("connection lost"))

    monkeypatch.setattr(store_module, "analyze_imported", lost)
    db = Database(async_url(database_url))
    try:
        store = LightMillStore(db)
        with caplog.at_level(logging.WARNING, "mastok.lightmill"):
            await store.import_design(parse_design(design()))
        assert await store.has_experiment("pointing")
        assert (await store.experiment("pointing")).runs
    finally:
        await db.close()
    assert "imported tables not analyzed" in caplog.text
    assert "connection lost" in caplog.text
