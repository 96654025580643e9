"""The rooms' writes on PostgreSQL, a batch's in one call of `mastok_room_writes`: each write
sees those before it, a failed call writes nothing, and every column a move sets is stored as
SQLite stores it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import select

from mastok.clock import aware
from mastok.db import Database, async_url
from mastok.db.engine import driver_connection
from mastok.db.leader_term import Fence, TermPassed
from mastok.db.tables import OTreeSession, Participant
from mastok.live import postgres_writes
from mastok.live.events import (
    AddParticipant,
    Consented,
    CreatedSession,
    Leave,
    Lengthened,
    MarkReady,
    Move,
    RecordSession,
    SessionsEnded,
)
from mastok.live.records import Records
from mastok.states import Outcome, Step
from tests.live.test_records import a_campaign

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def db(postgres_database_url: str) -> AsyncIterator[Database]:
    database = Database(async_url(postgres_database_url))
    yield database
    await database.close()


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of writes in each call of the function, as they are made."""
    made: list[int] = []
    run = postgres_writes.run

    async def counted(connection: Any, fence: Any, call: postgres_writes.Call) -> list[int]:
        made.append(len(call.writes))
        return await run(connection, fence, call)

    monkeypatch.setattr(postgres_writes, "run", counted)
    return made


async def rows(db: Database) -> dict[str, Any]:
    async with db.engine.connect() as connection:
        return {p.token: p for p in await connection.execute(select(Participant))}


async def test_the_turns_of_a_batch_go_in_one_call(db: Database, calls: list[int]) -> None:
    campaign_id = await a_campaign(db)
    records = Records(db)

    await asyncio.gather(
        *(records.persist(campaign_id, [AddParticipant(f"t{n}", "fp")], NOW) for n in range(8))
    )

    assert calls == [8]
    assert sorted(await rows(db)) == [f"t{n}" for n in range(8)]


async def test_each_write_of_a_call_sees_those_before_it(db: Database, calls: list[int]) -> None:
    campaign_id = await a_campaign(db)
    records = Records(db)
    later = NOW + timedelta(seconds=3)
    session = CreatedSession("S1", "c/1", "http://otree/S1", (("p1", "u1"),))

    # A row added, moved twice, then placed in a session: each in a turn of its own, one batch.
    *_, recorded = await asyncio.gather(
        records.persist(campaign_id, [AddParticipant("t1", "fp")], NOW),
        records.persist(campaign_id, [Move(("t1",), Step.JOINING)], NOW),
        records.persist(campaign_id, [Move(("t1",), Step.PENDING, "g", NOW)], NOW),
        records.persist(
            campaign_id, [RecordSession(1, session, (("t1", "p1", "u1"),), False)], later
        ),
    )

    assert calls == [4]
    person = (await rows(db))["t1"]
    assert (person.step, person.group_label, person.otree_code) == (Step.STARTED, "g", "p1")
    assert person.session_id == recorded


async def test_a_call_that_fails_writes_nothing_and_its_turns_are_written_alone(
    db: Database, calls: list[int]
) -> None:
    campaign_id = await a_campaign(db)
    records = Records(db)
    await records.persist(campaign_id, [AddParticipant("taken", "fp")], NOW)

    first, again, other = await asyncio.gather(
        records.persist(campaign_id, [AddParticipant("t1", "fp")], NOW),
        records.persist(campaign_id, [AddParticipant("taken", "fp")], NOW),
        records.persist(campaign_id, [AddParticipant("t2", "fp")], NOW),
        return_exceptions=True,
    )

    assert (first, other) == (None, None)
    assert isinstance(again, asyncpg.UniqueViolationError)  # only the one at fault fails
    assert calls == [1, 3, 1, 1, 1]
    assert sorted(await rows(db)) == ["t1", "t2", "taken"]


async def test_a_turn_asked_for_in_another_term_is_written_alone(
    db: Database, calls: list[int]
) -> None:
    campaign_id = await a_campaign(db)
    records = Records(db)
    passed: list[int] = []
    records.fence = Fence(0, lambda term, _why: passed.append(term))  # the database's term

    async def in_a_passed_term() -> None:  # queued behind the first, in the same batch
        records.fence = Fence(-1, lambda term, _why: passed.append(term))
        await records.persist(campaign_id, [AddParticipant("t2", "fp")], NOW)

    outcome = await asyncio.gather(
        records.persist(campaign_id, [AddParticipant("t1", "fp")], NOW),
        in_a_passed_term(),
        return_exceptions=True,
    )

    assert outcome[0] is None and isinstance(outcome[1], TermPassed)
    assert calls == [1, 1] and passed == [-1]
    assert sorted(await rows(db)) == ["t1"]


async def test_a_move_of_a_column_the_function_does_not_know_is_refused(db: Database) -> None:
    campaign_id = await a_campaign(db)
    await Records(db).persist(campaign_id, [AddParticipant("t1", "fp")], NOW)
    call = postgres_writes.Call()
    await postgres_writes.move(call, ("t1",), {"otree_code": "p1"}, NOW)

    async with db.engine.connect() as connection:
        with pytest.raises(asyncpg.RaiseError, match="a move of a column not known"):
            await postgres_writes.run(connection, None, call)

    assert (await rows(db))["t1"].otree_code is None


async def test_every_move_is_stored_the_same_on_both_databases(database_url: str) -> None:
    db = Database(async_url(database_url))
    try:
        campaign_id = await a_campaign(db)
        records = Records(db)
        times = [NOW + timedelta(seconds=n) for n in range(6)]
        turns = [
            [AddParticipant("t1", "fp"), AddParticipant("t2", "fp")],
            [
                Consented("t1", "hash"),
                Move(("t1",), Step.PENDING, "g", times[1], timedelta(seconds=60)),
            ],
            [MarkReady("t1")],
            [Lengthened(("t1", "t2"), timedelta(minutes=5))],
            [Leave(("t2",), Outcome.LEFT)],
            [Consented("t1", "hash2")],
        ]
        for turn, moment in zip(turns, times, strict=True):
            await records.persist(campaign_id, turn, moment)

        people = await rows(db)
        first, second = people["t1"], people["t2"]
        assert (first.step, first.group_label, first.consent_hash) == (Step.PENDING, "g", "hash2")
        assert aware(first.consented_at) == times[5] and aware(first.queued_at) == times[1]
        assert aware(first.ready_at) == times[2] and first.waiting_limit_seconds == 300
        assert aware(first.updated_at) == times[5] and first.outcome is None
        assert (second.step, second.outcome, second.waiting_limit_seconds) == (
            Step.LEFT,
            Outcome.LEFT,
            300,
        )
        assert aware(second.ended_at) == aware(second.updated_at) == times[4]
        assert second.consented_at is None and second.group_label is None
    finally:
        await db.close()


async def test_sessions_ended_are_the_same_on_both_databases(database_url: str) -> None:
    db = Database(async_url(database_url))
    try:
        campaign_id = await a_campaign(db)
        records = Records(db)
        for number in (1, 2, 3):
            created = CreatedSession(f"S{number}", f"c/{number}", "", ())
            await records.persist(campaign_id, [RecordSession(number, created, (), False)], NOW)
        later = NOW + timedelta(minutes=1)

        await records.persist(campaign_id, [SessionsEnded((1, 3))], later)

        async with db.engine.connect() as connection:
            found = await connection.execute(select(OTreeSession.number, OTreeSession.finished_at))
            finished = {number: at and aware(at) for number, at in found}
        assert finished == {1: later, 2: None, 3: later}
    finally:
        await db.close()


STORED = 20_000  # participants of other campaigns, stored after the function's plans were made


async def a_call(campaign_id: int, tokens: list[str], number: int) -> postgres_writes.Call:
    """A move of two participants, a session recorded for two others, and sessions ended."""
    call = postgres_writes.Call()
    await postgres_writes.move(call, tokens[:2], {"step": Step.PENDING}, NOW)
    session = CreatedSession(f"S{number}", f"c/{number}", "http://otree/S", (("a", "u"),) * 2)
    assignments = ((tokens[2], "a", "u"), (tokens[3], "b", "u"))
    recorded = RecordSession(number, session, assignments, False)
    await postgres_writes.record_session(call, campaign_id, recorded, NOW)
    await postgres_writes.sessions_ended(call, campaign_id, [1, 2], NOW)
    return call


async def test_each_write_finds_its_rows_by_an_index_however_small_the_table_was(
    db: Database,
) -> None:
    """A move, a session recorded and sessions ended read their rows through the tables'
    unique indexes, in the plans a connection keeps from its first calls (made when a fresh
    database held a few participants): a plan reading every participant slowed each write as
    a study went on, with nothing to replace it (an ANALYZE does, a minute or more later)."""
    campaign_id = await a_campaign(db)
    first = ["f1", "f2", "f3", "f4"]
    plans: list[str] = []
    async with db.engine.connect() as connection:
        driver = await driver_connection(connection)
        for token in first:
            await Records(db).persist(campaign_id, [AddParticipant(token, "fp")], NOW)
        await driver.execute(
            "LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0;"
            " SET auto_explain.log_nested_statements = on; SET auto_explain.log_level = notice;"
            " SET client_min_messages = notice; SET plan_cache_mode = force_generic_plan"
        )
        await postgres_writes.run(connection, None, await a_call(campaign_id, first, 1))
        await driver.execute(
            "INSERT INTO participants (campaign_id, token, step, created_at, updated_at)"
            " SELECT $1, 'p' || n, 'joining', now(), now() FROM generate_series(1, $2) AS n",
            campaign_id,
            STORED,
        )
        await driver.execute(
            "INSERT INTO sessions (campaign_id, number, mastok_id, otree_code, admin_url, size,"
            " created_at) SELECT $1, n, 'earlier/' || n, 'S' || n, 'u', 2, now()"
            " FROM generate_series(3, $2) AS n",
            campaign_id,
            STORED // 2,
        )
        driver.add_log_listener(lambda _, message: plans.append(message.message))

        tokens = ["p1", "p2", "p3", "p4"]
        await postgres_writes.run(connection, None, await a_call(campaign_id, tokens, STORED))
        await connection.commit()

    updates = [plan for plan in plans if "Update on participants" in plan]
    ended = [plan for plan in plans if "Update on sessions" in plan]
    assert len(updates) == 2 and len(ended) == 1
    assert all("uq_participants_token" in plan and "Seq Scan" not in plan for plan in updates)
    assert "uq_sessions_campaign_id" in ended[0] and "Seq Scan" not in ended[0]
    stored = await rows(db)
    assert [stored[token].step for token in tokens] == [Step.PENDING] * 2 + [Step.STARTED] * 2
