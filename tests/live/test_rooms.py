"""All campaigns' runners (mastok/live/rooms.py) with no network: the database and oTree are
stand-ins. What they check: rooms rebuilt when a process starts leading are found by their slug
in memory, so the pages of a dead leader, all coming back at once, cost no database read each;
and a campaign whose room is not built is read once for all the sockets asking for it at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest

from mastok.clock import ManualClock
from mastok.db.tables import Campaign
from mastok.live.events import Rules
from mastok.live.rooms import Rooms, RoomsClosed
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

    async def ended(self, campaign_id: int, since: datetime) -> list[object]:
        return []


def rooms_of(campaigns: Campaigns, tasks: TaskScope, records: Records | None = None) -> Rooms:
    """The rooms over these stand-ins (`records`: by default, a database nobody waits in)."""
    return Rooms(
        campaigns,  # type: ignore[arg-type]
        records or Records(),  # type: ignore[arg-type]
        InstantStarter(),  # type: ignore[arg-type]
        Rules(timedelta(seconds=30), True),
        ManualClock(),
        tasks,
    )


@pytest.fixture
async def tasks() -> AsyncIterator[TaskScope]:
    async with task_scope() as scope:
        yield scope


async def test_rooms_rebuilt_at_the_start_of_a_term_are_found_by_slug_without_a_read(
    tasks: TaskScope,
) -> None:
    campaigns = Campaigns(campaign())
    rooms = rooms_of(campaigns, tasks, Records(1))
    await rooms.start()
    [rebuilt] = rooms.runners()

    found = await asyncio.gather(*(rooms.runner_for_slug("ns") for _ in range(25)))

    assert all(runner is rebuilt for runner in found)
    assert campaigns.slug_reads == 0
    assert await rooms.runner_for_slug("elsewhere") is None  # unknown slugs are still read
    assert campaigns.slug_reads == 1


async def test_a_campaigns_first_sockets_all_at_once_read_it_once(tasks: TaskScope) -> None:
    campaigns = Campaigns(campaign())
    rooms = rooms_of(campaigns, tasks)

    found = await asyncio.gather(*(rooms.runner_for_slug("ns") for _ in range(25)))

    [built] = rooms.runners()
    assert all(runner is built for runner in found)
    assert campaigns.slug_reads == 1
    assert await rooms.runner_for_slug("ns") is built
    assert campaigns.slug_reads == 1  # built: found in memory


async def test_unknown_slugs_asked_at_once_are_read_once_and_again_later(
    tasks: TaskScope,
) -> None:
    campaigns = Campaigns(campaign())
    rooms = rooms_of(campaigns, tasks)

    found = await asyncio.gather(*(rooms.runner_for_slug("elsewhere") for _ in range(10)))

    assert found == [None] * 10
    assert campaigns.slug_reads == 1
    assert await rooms.runner_for_slug("elsewhere") is None  # it may be created meanwhile
    assert campaigns.slug_reads == 2


class FailingCampaigns(Campaigns):
    """A database that cannot be read once, then can."""

    def __init__(self, *campaigns: Campaign) -> None:
        super().__init__(*campaigns)
        self.failures = 1

    async def get_by_slug(self, slug: str) -> Campaign | None:
        found = await super().get_by_slug(slug)
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the database is away")
        return found


async def test_a_failed_read_reaches_every_socket_waiting_for_it(tasks: TaskScope) -> None:
    campaigns = FailingCampaigns(campaign())
    rooms = rooms_of(campaigns, tasks)

    found = await asyncio.gather(
        *(rooms.runner_for_slug("ns") for _ in range(5)), return_exceptions=True
    )

    assert [type(error) for error in found] == [ConnectionError] * 5
    assert rooms.runners() == []
    runner = await rooms.runner_for_slug("ns")  # read again
    assert runner is not None and rooms.runners() == [runner]
    assert campaigns.slug_reads == 2


async def test_a_socket_gone_while_waiting_leaves_the_read_to_the_others(
    tasks: TaskScope,
) -> None:
    campaigns = Campaigns(campaign())
    rooms = rooms_of(campaigns, tasks)
    first = asyncio.create_task(rooms.runner_for_slug("ns"))
    second = asyncio.create_task(rooms.runner_for_slug("ns"))
    await asyncio.sleep(0)  # both wait for the read

    first.cancel()

    assert await second is not None
    assert first.cancelled()
    assert campaigns.slug_reads == 1


class HeldCampaigns(Campaigns):
    """A database whose reads by slug wait until the test lets them through."""

    def __init__(self, *campaigns: Campaign) -> None:
        super().__init__(*campaigns)
        self.through = asyncio.Event()

    async def get_by_slug(self, slug: str) -> Campaign | None:
        await self.through.wait()
        return await super().get_by_slug(slug)


@pytest.mark.parametrize("read_begun", [True, False])
async def test_sockets_waiting_for_a_read_when_the_term_ends_are_told_so(
    read_begun: bool,
) -> None:
    campaigns = HeldCampaigns(campaign())
    async with task_scope() as scope:
        rooms = rooms_of(campaigns, scope)
        waiting = [asyncio.create_task(rooms.runner_for_slug("ns")) for _ in range(3)]
        await asyncio.sleep(0)  # all three wait; the read's task is made, not begun
        if read_begun:
            await asyncio.sleep(0)
            assert campaigns.slug_reads == 0  # held before it counts
    # Leaving the scope cancelled the read, begun or not.

    found = await asyncio.gather(*waiting, return_exceptions=True)

    assert [type(error) for error in found] == [RoomsClosed] * 3
    for _ in range(2):  # the scope is closed: each asks again, and is refused at once
        with pytest.raises(RuntimeError):
            await rooms.runner_for_slug("ns")
