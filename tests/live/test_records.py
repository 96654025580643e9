"""The room's writes as statements: an Agree's consent and move are one UPDATE of its row."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, select, text

from mastok.db import Database
from mastok.db.tables import Base, Participant
from mastok.live.events import AddParticipant, Consented, Move
from mastok.live.records import Records
from mastok.states import Step

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    database = Database("sqlite+aiosqlite:///:memory:")
    async with database.engine.begin() as connection:
        await connection.execute(text("PRAGMA foreign_keys = OFF"))  # no campaign row needed
        await connection.run_sync(Base.metadata.create_all)
    yield database
    await database.engine.dispose()


def count_updates(db: Database) -> list[str]:
    seen: list[str] = []

    def note(*args: Any) -> None:
        statement = args[2]
        if statement.lstrip().upper().startswith("UPDATE"):
            seen.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", note)
    return seen


async def test_a_consent_and_the_move_that_follows_are_one_update(db: Database) -> None:
    records = Records(db)
    await records.persist(1, [AddParticipant("t1", "fp", None, ())], NOW)
    updates = count_updates(db)
    writes = [Consented("t1", "hash"), Move(("t1",), Step.JOINING, "default", NOW)]
    await records.persist(1, writes, NOW)
    assert len(updates) == 1
    async with db.engine.connect() as connection:
        row = (await connection.execute(select(Participant))).one()
    assert (row.consent_hash, row.step, row.group_label) == ("hash", Step.JOINING, "default")
    assert row.consented_at is not None and row.queued_at is not None


async def test_a_consent_and_a_move_of_others_stay_apart(db: Database) -> None:
    records = Records(db)
    await records.persist(1, [AddParticipant(t, "fp", None, ()) for t in ("t1", "t2")], NOW)
    updates = count_updates(db)
    writes = [Consented("t1", "hash"), Move(("t2",), Step.PENDING, "default", NOW)]
    await records.persist(1, writes, NOW)
    assert len(updates) == 2
    async with db.engine.connect() as connection:
        rows = {r.token: r for r in await connection.execute(select(Participant))}
    assert (rows["t1"].consent_hash, rows["t1"].step) == ("hash", Step.LANDED)
    assert (rows["t2"].consent_hash, rows["t2"].step) == (None, Step.PENDING)


async def test_a_move_of_many_moves_each(db: Database) -> None:
    records = Records(db)
    await records.persist(1, [AddParticipant(t, "fp", None, ()) for t in ("t1", "t2", "t3")], NOW)
    await records.persist(1, [Move(("t1", "t3"), Step.PENDING, "default", NOW)], NOW)
    async with db.engine.connect() as connection:
        steps = {r.token: r.step for r in await connection.execute(select(Participant))}
    assert steps == {"t1": Step.PENDING, "t2": Step.LANDED, "t3": Step.PENDING}
