"""Two edits of one campaign at once (`CampaignService.update`), each valid alone, are checked
one after the other: together they must not break a rule. On PostgreSQL the two come through
two processes (a leader and a standby, each its own service), so only the database's row lock
keeps them apart; on SQLite (one process a file) through one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import update

from mastok.campaigns import store
from mastok.campaigns.rules import InvalidCampaign
from mastok.campaigns.service import CampaignService
from mastok.db import Database, async_url
from mastok.db.tables import Campaign
from mastok.otree import OTreeClient
from tests.campaigns.factories import campaign_input

# How long the first edit, having read the campaign, waits for the second to read it too:
# the second can only read it this early if edits are not kept apart (the fix makes it wait
# for the first's commit, and the wait runs out).
OVERLAP_WAIT = 1.0


@pytest.fixture
async def services(database_url: str) -> AsyncIterator[tuple[CampaignService, CampaignService]]:
    databases = [Database(async_url(database_url))]
    if not databases[0].is_sqlite:
        databases.append(Database(async_url(database_url)))
    otree = OTreeClient("", "k")  # not asked: the campaign is stored directly
    made = [CampaignService(db, otree, "http://mastok.test/join/") for db in databases]
    try:
        yield made[0], made[-1]
    finally:
        for db in databases:
            await db.close()


async def a_paused_campaign_with_one_session_left(db: Database) -> None:
    values = {**campaign_input("study_r"), "max_sessions": 3}
    async with db.session() as session:
        await store.insert_campaign(session, values)
    async with db.session() as session:
        await session.execute(update(Campaign).values(started_sessions=2))
        await session.commit()


async def test_two_edits_valid_alone_cannot_together_run_a_campaign_with_no_session_left(
    services: tuple[CampaignService, CampaignService], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = services
    await a_paused_campaign_with_one_session_left(first.db)
    read_once, read_by_both = asyncio.Event(), asyncio.Event()
    reads = 0
    real_get, real_update = store.get_campaign, store.update_campaign

    async def get_campaign(*args: Any, **kwargs: Any) -> Campaign | None:
        nonlocal reads
        campaign = await real_get(*args, **kwargs)
        reads += 1
        (read_once if reads == 1 else read_by_both).set()
        return campaign

    async def update_campaign(*args: Any, **kwargs: Any) -> Campaign:
        if reads == 1:  # the first edit, read, not yet written: let the second read too
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(read_by_both.wait(), OVERLAP_WAIT)
        return await real_update(*args, **kwargs)

    monkeypatch.setattr(store, "get_campaign", get_campaign)
    monkeypatch.setattr(store, "update_campaign", update_campaign)
    running = asyncio.create_task(first.update("study_r", {"state": "Running"}))
    await read_once.wait()
    lowered = asyncio.create_task(second.update("study_r", {"max_sessions": 2}))
    ran, refused = await asyncio.gather(running, lowered, return_exceptions=True)

    assert not isinstance(ran, BaseException)
    assert ran.after["state"] == "Running"
    assert isinstance(refused, InvalidCampaign)
    assert refused.errors == {
        "max_sessions": "max_sessions is 2 and 2 are started: raise it to run the campaign"
    }
    stored = await first.get("study_r")
    assert (stored.state, stored.max_sessions) == ("Running", 3)


async def test_an_edit_reports_the_fields_it_found_and_left(
    services: tuple[CampaignService, CampaignService],
) -> None:
    first, _ = services
    await a_paused_campaign_with_one_session_left(first.db)
    edit = await first.update("study_r", {"max_sessions": 5})
    assert (edit.before["max_sessions"], edit.after["max_sessions"]) == (3, 5)
    assert edit.campaign.max_sessions == 5
