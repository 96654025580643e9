"""All campaigns' runners: found or built on demand, rebuilt from the database at start-up,
and ticked by one clock task."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from mastok.campaigns.service import CampaignService
from mastok.db.tables import Campaign
from mastok.live.records import Records
from mastok.live.runner import RoomSettings, Runner
from mastok.live.starter import SessionStarter

log = logging.getLogger("mastok.live")
TICK_SECONDS = 0.5


class Rooms:
    """One runner per campaign, for the life of the process (a second runner for the same
    campaign could start the same people twice, so runners are never dropped)."""

    def __init__(
        self,
        campaigns: CampaignService,
        records: Records,
        starter: SessionStarter,
        settings: RoomSettings,
    ) -> None:
        self.campaigns = campaigns
        self.records = records
        self.starter = starter
        self.settings = settings
        self._runners: dict[int, Runner] = {}
        self._slugs: dict[str, int] = {}  # slug -> campaign id, for the runners that exist
        self._building = asyncio.Lock()
        self._clock: asyncio.Task[None] | None = None
        campaigns.on_change(self.campaign_changed)

    async def start(self) -> None:
        """Rebuild the rooms people were waiting in, then start the clock."""
        for campaign_id in await self.records.campaigns_with_waiting():
            campaign = await self.campaigns.get_by_id(campaign_id)
            if campaign is not None:
                runner = await self.runner(campaign)
                log.info("%s: restored %d waiting", campaign.namespace, len(runner.members))
        self._clock = asyncio.create_task(self._run_clock())

    async def stop(self) -> None:
        if self._clock is not None:
            self._clock.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._clock
        # Sessions being created are recorded before mastok stops (bounded by oTree's timeout).
        await asyncio.gather(*(runner.drain() for runner in self._runners.values()))

    async def runner(self, campaign: Campaign) -> Runner:
        runner = self._runners.get(campaign.id)
        if runner is not None:
            return runner
        async with self._building:
            if campaign.id not in self._runners:
                self._runners[campaign.id] = await Runner.restore(
                    campaign, self.records, self.starter, self.settings
                )
            return self._runners[campaign.id]

    async def runner_for_slug(self, slug: str) -> Runner | None:
        """The runner of the campaign at `slug`, None if there is none.

        Every participant socket asks this, so a runner that exists is found in memory: its
        campaign is kept current by every edit (`campaign_changed`), slug included. Otherwise
        the campaign is read from the database.
        """
        campaign_id = self._slugs.get(slug)
        runner = self._runners.get(campaign_id) if campaign_id is not None else None
        if runner is not None and runner.campaign.slug == slug:
            return runner
        campaign = await self.campaigns.get_by_slug(slug)
        if campaign is None:
            return None
        runner = await self.runner(campaign)
        self._slugs[slug] = campaign.id
        return runner

    async def campaign_changed(self, campaign: Campaign) -> None:
        runner = self._runners.get(campaign.id)
        if runner is not None:
            await runner.campaign_changed(campaign)

    async def _run_clock(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            for campaign_id, runner in list(self._runners.items()):
                try:
                    await runner.tick()
                except Exception:
                    log.exception("tick failed for campaign %s", campaign_id)
