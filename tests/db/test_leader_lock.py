"""The leader lock's queue on real PostgreSQL: a standby waiting for the lock takes it the moment
the leader's session ends, ahead of a process that asks after it (the dead leader's, restarted);
a wait the server cuts short is a refusal, and the next wait queues again; a standby stopped
while it waits leaves the queue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from mastok.db import Database, async_url
from mastok.db.leader_lock import LEADER_KEY, PostgresLock

WITHIN = 10.0
QUEUED_SQL = """
SELECT pid FROM pg_locks
WHERE locktype = 'advisory' AND NOT granted AND classid = $1 AND objid = $2 AND objsubid = 1
"""
QUEUE_IDS = ((LEADER_KEY >> 32) & 0xFFFF_FFFF, LEADER_KEY & 0xFFFF_FFFF)


class Locks:
    """Leader locks of as many processes as asked for, on one database, and a connection to
    look at its queue."""

    def __init__(self, url: str, admin: asyncpg.Connection) -> None:
        self.url = url
        self.admin = admin
        self.made: list[tuple[Database, PostgresLock]] = []

    def new(self) -> PostgresLock:
        db = Database(async_url(self.url))
        lock = PostgresLock.for_engine(db.engine, lambda _campaign_id: None)
        self.made.append((db, lock))
        return lock

    async def queued(self) -> list[int]:
        """The server pids of the sessions waiting for the lock."""
        return [row["pid"] for row in await self.admin.fetch(QUEUED_SQL, *QUEUE_IDS)]

    async def waits_alone(self, lock: PostgresLock) -> bool:
        """`lock`'s session, connected, is the one waiting in the lock's queue."""
        connection = lock._connection
        return connection is not None and await self.queued() == [connection.get_server_pid()]


@pytest.fixture
async def locks(postgres_database_url: str) -> AsyncIterator[Locks]:
    admin = await asyncpg.connect(postgres_database_url)
    made = Locks(postgres_database_url, admin)
    try:
        yield made
    finally:
        for db, lock in made.made:
            await lock.close()
            await db.close()
        await admin.close()


async def until(condition: Callable[[], Awaitable[bool]]) -> None:
    deadline = time.monotonic() + WITHIN
    while not await condition():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.01)


def server_pid(lock: PostgresLock) -> int:
    connection = lock._connection
    assert connection is not None
    return connection.get_server_pid()


async def dies(lock: PostgresLock) -> None:
    """The process holding `lock` killed: its socket closes with no goodbye."""
    connection = lock._connection
    assert connection is not None
    connection.terminate()


async def test_a_waiting_standby_takes_the_lock_the_moment_it_is_freed_ahead_of_a_later_one(
    locks: Locks,
) -> None:
    leader, standby = locks.new(), locks.new()
    assert await leader.try_acquire()
    assert not await standby.try_acquire()  # not waiting: refused at once
    waiting = asyncio.create_task(standby.try_acquire(queue=True))
    await until(lambda: locks.waits_alone(standby))
    assert not waiting.done()

    await dies(leader)
    assert await asyncio.wait_for(waiting, WITHIN)
    # The dead leader's process, restarted, asks after: the lock is already the standby's.
    restarted = locks.new()
    assert not await restarted.try_acquire()
    assert leader.term is not None and standby.term == leader.term + 1


async def test_a_wait_cut_short_by_the_server_is_a_refusal_and_the_next_wait_queues_again(
    locks: Locks,
) -> None:
    leader, standby = locks.new(), locks.new()
    assert await leader.try_acquire()
    waiting = asyncio.create_task(standby.try_acquire(queue=True))
    await until(lambda: locks.waits_alone(standby))

    await locks.admin.execute("SELECT pg_cancel_backend($1)", server_pid(standby))
    assert await asyncio.wait_for(waiting, WITHIN) is False

    waiting = asyncio.create_task(standby.try_acquire(queue=True))
    await until(lambda: locks.waits_alone(standby))
    await leader.close()  # a leader shutting down frees the lock: the standby has it
    assert await asyncio.wait_for(waiting, WITHIN)


async def test_a_standby_stopped_while_it_waits_leaves_the_queue(locks: Locks) -> None:
    leader, standby = locks.new(), locks.new()
    assert await leader.try_acquire()
    waiting = asyncio.create_task(standby.try_acquire(queue=True))
    await until(lambda: locks.waits_alone(standby))

    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await standby.close()
    await until(lambda: _no_one_waits(locks))
    await leader.close()
    assert await locks.new().try_acquire()  # free, not handed to the stopped standby


async def _no_one_waits(locks: Locks) -> bool:
    return await locks.queued() == []
