"""All campaigns' runners (mastok/live/rooms.py) with no network: the database and oTree are
stand-ins. What they check: rooms rebuilt when a process starts leading are found by their slug
in memory, so the pages of a dead leader, all coming back at once, cost no database read each.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest

from mastok.clock import ManualClock
from mastok.db.tables import Campaign
from mastok.live.events import Rules
from mastok.live.rooms import Rooms
from mastok.tasks import TaskScope, task_scope
from tests.live.test_runner_failures import FlakyRecords, InstantStarter, campaign


class Campaigns:
    """The campaigns as the database has them, counting reads by slug."""

    def __init__(self, *campaigns: Campaign) -> None:
        self.by_id = {c.id: c for c in campaigns}
        self.slug_reads = 0

    async def get_by_id(self, campaign_id: int) -> Campaign | None:
        return self.by_id.get(campaign_id)

    async def get_by_slug(self, slug: str) -> Campaign | None:
        self.slug_reads += 1
        await asyncio.sleep(0)  # a read suspends, as the database's does: others arrive meanwhile
        return next((c for c in self.by_id.values() if c.slug == slug), None)


class Records(FlakyRecords):
    """A database where every campaign has people waiting (none here: the room is rebuilt
    all the same) and no session."""

    def __init__(self, *campaign_ids: int) -> None:
        super().__init__()
        self.campaign_ids = list(campaign_ids)

    async def campaigns_with_waiting(self) -> list[int]:
        return self.campaign_ids

    async def waiting(self, campaign_id: int) -> list[object]:
        return []

    async def started(self, campaign_id: int) -> list[object]:
        return []

    async def live_sessions(self, campaign_id: int, since: datetime) -> dict[int, datetime]:
        return {}


@pytest.fixture
async def tasks() -> AsyncIterator[TaskScope]:
    async with task_scope() as scope:
        yield scope


async def test_rooms_rebuilt_at_the_start_of_a_term_are_found_by_slug_without_a_read(
    tasks: TaskScope,
) -> None:
    campaigns = Campaigns(campaign())
    rooms = Rooms(
        campaigns,  # type: ignore[arg-type]
        Records(1),  # type: ignore[arg-type]
        InstantStarter(),  # type: ignore[arg-type]
        Rules(timedelta(seconds=30), True),
        ManualClock(),
        tasks,
    )
    await rooms.start()
    [rebuilt] = rooms.runners()

    found = await asyncio.gather(*(rooms.runner_for_slug("ns") for _ in range(25)))

    assert all(runner is rebuilt for runner in found)
    assert campaigns.slug_reads == 0
    assert await rooms.runner_for_slug("elsewhere") is None  # unknown slugs are still read
    assert campaigns.slug_reads == 1
