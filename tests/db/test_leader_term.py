"""The leader's term on PostgreSQL, two processes' worth of connections on one database: a leader
whose lock another process took writes nothing more, even before it finds out; and a write in
flight as the lock changes hands is in the database before the new leader's term begins."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
from sqlalchemy import select

from mastok.db import Database, async_url
from mastok.db.leader_lock import PostgresLock
from mastok.db.leader_term import Fence, TermPassed
from mastok.db.tables import Campaign, Participant
from mastok.live import postgres_writes
from mastok.live.events import AddParticipant
from mastok.live.records import Records

NOW = datetime(2026, 1, 1, tzinfo=UTC)
WITHIN = 10.0
# A participant's row as the room adds it (`postgres_writes.add_participant`).
ROW = {
    "browser_id": None,
    "identity": None,
    "params": None,
    "step": "landed",
    "outcome": None,
    "ended_at": None,
    "created_at": NOW,
    "updated_at": NOW,
}
LOCK_SESSIONS = "SELECT pid, wait_event_type FROM pg_stat_activity WHERE application_name = $1"


class Process:
    """What one mastok process has of the database: its pool and its leader lock."""

    def __init__(self, url: str) -> None:
        self.db = Database(async_url(url))
        self.lock = PostgresLock.for_engine(self.db.engine, lambda _campaign_id: None)
        self.records = Records(self.db)
        self.passed: list[int] = []  # the terms its writes found passed

    def fence(self) -> Fence:
        assert self.lock.term is not None
        return Fence(self.lock.term, lambda term, _why: self.passed.append(term))

    async def close(self) -> None:
        await self.lock.close()
        await self.db.close()


@pytest.fixture
async def processes(postgres_database_url: str) -> AsyncIterator[tuple[Process, Process, int]]:
    """Two processes on a fresh database, and a campaign's id."""
    first, second = Process(postgres_database_url), Process(postgres_database_url)
    async with first.db.session() as session:
        campaign = Campaign(
            namespace="ns",
            slug="ns",
            otree_config_name="guess_two",
            per_session=2,
            max_sessions=3,
            concurrent_sessions=1,
            session_duration=30,
            waiting_limit=5,
            consent="[accept]OK[/accept]",
        )
        session.add(campaign)
        await session.commit()
        campaign_id = campaign.id
    try:
        yield first, second, campaign_id
    finally:
        await first.close()
        await second.close()


async def end_lock_sessions(admin: asyncpg.Connection) -> None:
    """The server ends the lock's session alone (an administrator, a connection reset): its
    process hears of it only at its next check, its other connections live on."""
    await admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        "mastok leader lock",
    )


async def take_lock(process: Process) -> None:
    """Try the lock until the session that held it is gone."""
    deadline = time.monotonic() + WITHIN
    while not await process.lock.try_acquire():
        assert time.monotonic() < deadline, "the lock was not freed"
        await asyncio.sleep(0.05)


async def tokens(db: Database) -> set[str]:
    async with db.engine.connect() as connection:
        return set((await connection.scalars(select(Participant.token))).all())


async def test_a_leader_whose_lock_another_took_writes_nothing_more(
    processes: tuple[Process, Process, int], postgres_database_url: str
) -> None:
    leader, standby, campaign_id = processes
    assert await leader.lock.try_acquire()
    leader.records.fence = leader.fence()
    await leader.records.persist(campaign_id, [AddParticipant("before", "a")], NOW)

    admin = await asyncpg.connect(postgres_database_url)
    try:
        await end_lock_sessions(admin)
    finally:
        await admin.close()
    await take_lock(standby)
    assert standby.lock.term == leader.fence().term + 1

    with pytest.raises(TermPassed):  # its lock's check has not told it yet: the write does
        await leader.records.persist(campaign_id, [AddParticipant("after", "b")], NOW)
    assert leader.passed and set(leader.passed) == {leader.fence().term}  # told the leader
    assert await tokens(standby.db) == {"before"}

    standby.records.fence = standby.fence()
    await standby.records.persist(campaign_id, [AddParticipant("new", "c")], NOW)
    assert await tokens(standby.db) == {"before", "new"}
    assert standby.passed == []


async def test_a_write_in_flight_as_the_lock_changes_hands_is_in_before_the_next_term(
    processes: tuple[Process, Process, int], postgres_database_url: str
) -> None:
    leader, standby, campaign_id = processes
    assert await leader.lock.try_acquire()
    admin = await asyncpg.connect(postgres_database_url)
    try:
        async with leader.db.engine.begin() as connection:  # the rooms' writes, in flight
            await connection.execute(select(1))  # its transaction begun: the call stays in it
            call = postgres_writes.Call()
            row = {"campaign_id": campaign_id, "token": "in-flight", "browser_id": "a"}
            await postgres_writes.add_participant(call, {**ROW, **row})
            await postgres_writes.run(connection, leader.fence(), call)

            await end_lock_sessions(admin)
            taking = asyncio.create_task(take_lock(standby))
            deadline = time.monotonic() + WITHIN
            while not any(
                waiting == "Lock"
                for _, waiting in await admin.fetch(LOCK_SESSIONS, "mastok leader lock")
            ):  # the new leader's term waits for the write's transaction
                assert time.monotonic() < deadline and not taking.done()
                await asyncio.sleep(0.02)
        await taking  # the write committed: the new term begins
    finally:
        await admin.close()
    assert standby.lock.term == leader.fence().term + 1
    assert await tokens(standby.db) == {"in-flight"}  # what its rooms are built from


async def test_a_call_of_an_earlier_term_writes_none_of_its_writes(
    processes: tuple[Process, Process, int],
) -> None:
    leader, _, campaign_id = processes
    assert await leader.lock.try_acquire()
    stale = Fence(leader.fence().term - 1, lambda term, _why: leader.passed.append(term))
    call = postgres_writes.Call()
    for token in ("a", "b"):
        await postgres_writes.add_participant(
            call, {**ROW, "campaign_id": campaign_id, "token": token}
        )
    async with leader.db.engine.connect() as connection:
        with pytest.raises(TermPassed, match="another process leads"):
            await postgres_writes.run(connection, stale, call)
    assert leader.passed == [stale.term]
    assert await tokens(leader.db) == set()
