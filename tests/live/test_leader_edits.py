"""Campaign edits NOTIFYed to the leader (`mastok.live.leader`) reach its rooms: the driver run
with a lock and rooms of the test's own, no database, no clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from mastok.live import leader as leader_module
from mastok.live.leader import Leader
from mastok.tasks import TaskScope, task_scope


class HeldLock:
    term = None  # no term to check (as SQLite's)

    async def try_acquire(self, queue: bool = False) -> bool:
        return True

    async def check(self) -> None:
        return None

    async def close(self) -> None:
        return None


class FakeRooms:
    """Rooms whose start waits for the test, and that note each campaign re-read."""

    def __init__(self) -> None:
        self.may_start = asyncio.Event()
        self.starting = asyncio.Event()
        self.reread_ids: list[int] = []
        self.reread_seen = asyncio.Event()
        self.failures = 0  # re-reads to fail, as with the database away

    async def start(self, halted: Any = None) -> None:
        self.starting.set()
        await self.may_start.wait()

    async def reread(self, campaign_id: int) -> None:
        if self.failures:
            self.failures -= 1
            raise OperationalError("SELECT", {}, ConnectionRefusedError("database away"))
        self.reread_ids.append(campaign_id)
        self.reread_seen.set()

    async def stop(self) -> None:
        return None

    def halt(self) -> None:
        return None


@pytest.fixture
async def scope() -> AsyncIterator[TaskScope]:
    async with task_scope() as tasks:
        yield tasks


def driver(rooms: FakeRooms, tasks: TaskScope) -> Leader:
    return Leader(
        None,  # type: ignore[arg-type]  # not read: the lock is given
        lambda _term_tasks: rooms,  # type: ignore[arg-type,return-value]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        tasks,
        lock=HeldLock(),
    )


async def reread(rooms: FakeRooms, campaign_id: int) -> None:
    """Wait until the rooms re-read `campaign_id` (edits are taken in the order they came)."""
    async with asyncio.timeout(5):
        while campaign_id not in rooms.reread_ids:
            rooms.reread_seen.clear()
            await rooms.reread_seen.wait()


async def test_an_edit_notified_while_the_rooms_are_rebuilt_reaches_them(
    scope: TaskScope,
) -> None:
    rooms = FakeRooms()
    leader = driver(rooms, scope)
    starting = asyncio.create_task(leader.start())
    await rooms.starting.wait()  # the lock is held (and LISTENed on), the rooms being built
    leader.notified(7)  # the campaign was read before this edit was committed
    rooms.may_start.set()
    await starting
    leader.notified(8)
    await reread(rooms, 8)
    assert rooms.reread_ids == [7, 8]
    await leader.stop()


async def test_an_edit_that_could_not_be_read_is_read_again_and_later_ones_too(
    scope: TaskScope, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(leader_module, "ATTEMPT_SECONDS", 0.0)
    rooms = FakeRooms()
    rooms.may_start.set()
    leader = driver(rooms, scope)
    await leader.start()
    rooms.failures = 1
    leader.notified(7)  # a pause made through a standby, the database away a moment
    leader.notified(8)
    await reread(rooms, 8)
    assert rooms.reread_ids == [7, 8]
    await leader.stop()
