"""All campaigns' runners while this process leads: built on demand, rebuilt from the database
when it starts leading, ticked by one clock task, all of them tasks of the term's task scope."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import Counter
from dataclasses import dataclass, field

from mastok.campaigns.service import CampaignService
from mastok.clock import Clock
from mastok.db.tables import Campaign
from mastok.futures import settle
from mastok.live.events import Rebuilt, RoomCampaign, Rules
from mastok.live.leadership import SERVICE_RESTART
from mastok.live.records import Records
from mastok.live.room import Room
from mastok.live.runner import Runner
from mastok.live.starter import SessionStarter
from mastok.metrics import Metrics
from mastok.tasks import TaskScope

log = logging.getLogger("mastok.live")
TICK_SECONDS = 0.5
DRAIN_SECONDS = 60.0


class RoomsClosed(Exception):
    """This process stopped leading (or is stopping) while a socket waited for its room."""


def _retrieved(finding: asyncio.Future[Runner | None]) -> None:
    """What a read raised is each waiter's to handle: none left is no error of the loop's."""
    if not finding.cancelled():
        finding.exception()


def new_token() -> str:
    return secrets.token_urlsafe(24)


async def restore_room(campaign: Campaign, records: Records, rules: Rules, clock: Clock) -> Room:
    """The campaign's room as the database has it (its members away until they come back,
    visits ended within the grace told to their pages if they do)."""
    now = clock.now()
    room_campaign = RoomCampaign.of(campaign)
    return Room.restore(
        room_campaign,
        rules,
        new_token,
        waiting=await records.waiting(campaign.id),
        started=await records.started(campaign.id),
        live_sessions=await records.live_sessions(
            campaign.id, now - room_campaign.session_duration
        ),
        now=now,
        asked=campaign.session_asked,
        ended=await records.ended(campaign.id, now - rules.grace),
    )


@dataclass(eq=False)
class Rooms:
    """One runner per campaign, for as long as this process leads (a second runner for the
    same campaign could start the same people twice, so runners are never dropped: the rooms
    end together, when leadership does, see `mastok.live.leader`)."""

    campaigns: CampaignService
    records: Records
    starter: SessionStarter
    rules: Rules
    clock: Clock
    tasks: TaskScope
    metrics: Metrics | None = None
    _runners: dict[int, Runner] = field(default_factory=dict)
    _slugs: dict[str, int] = field(default_factory=dict)  # slug -> id, for the runners there
    # slug -> its runner (None: no campaign there), while its campaign is read for the first
    # socket that asked: the others asking meanwhile wait for the same read.
    _finding: dict[str, asyncio.Future[Runner | None]] = field(default_factory=dict)
    _building: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def start(self, halted: Rooms | None = None) -> None:
        """Rebuild the rooms people were waiting in, then start the clock. `halted`: this
        process's rooms before it lost the leader lock and took it back: their participant
        sockets come into the rooms rebuilt (`Runner.adopt`)."""
        for campaign_id in await self.records.campaigns_with_waiting():
            campaign = await self.campaigns.get_by_id(campaign_id)
            if campaign is not None:
                runner = await self.runner(campaign)
                log.info("%s: restored %d waiting", campaign.namespace, len(runner.room.members))
        adopting: list[tuple[Runner, Runner]] = []
        for old in halted.runners() if halted is not None else []:
            campaign = await self.campaigns.get_by_id(old.campaign_id)
            if campaign is None:  # deleted meanwhile
                old.close_sockets(SERVICE_RESTART)
            else:
                adopting.append((await self.runner(campaign), old))
        # Only once every room is built: if one could not be, the halted rooms keep their
        # sockets for the next attempt.
        for runner, old in adopting:
            runner.adopt(old)
            log.info("%s: kept %d sockets", runner.campaign.namespace, len(runner.connections))
        self.tasks.spawn(self._run_clock(), "mastok clock")

    async def stop(self) -> None:
        """Sessions being created are recorded before mastok stops (oTree's calls are bounded
        by its timeout, the wait by `DRAIN_SECONDS`); the task scope then cancels every runner."""
        drains = asyncio.gather(*(runner.drain() for runner in self._runners.values()))
        try:
            await asyncio.wait_for(drains, DRAIN_SECONDS)
        except TimeoutError:
            log.error("stopping without recording the sessions still being created")

    def runners(self) -> list[Runner]:
        return list(self._runners.values())

    async def runner(self, campaign: Campaign) -> Runner:
        runner = self._runners.get(campaign.id)
        if runner is not None:
            return runner
        async with self._building:
            if campaign.id not in self._runners:
                self._runners[campaign.id] = await self._build(campaign)
                # Found in memory by its slug from now on: the rooms rebuilt when a term starts
                # are then asked by every page of the leader that died, all at once.
                self._slugs[campaign.slug] = campaign.id
            return self._runners[campaign.id]

    async def _build(self, campaign: Campaign) -> Runner:
        """The room as the database has it, with its runner's task; its first event checks
        its people against the campaign (edited through a standby while no room ran, say)."""
        room = await restore_room(campaign, self.records, self.rules, self.clock)
        runner = Runner(
            campaign, room, self.records, self.starter, self.clock, self.tasks, self.metrics
        )
        runner.post(Rebuilt())
        self.tasks.spawn(runner.run(), f"mastok room {campaign.namespace}")
        return runner

    def waiting_counts(self) -> dict[tuple[str, str], int]:
        """(campaign, step) -> people in its room at that step, for the metrics."""
        counts: Counter[tuple[str, str]] = Counter()
        for runner in list(self._runners.values()):
            namespace = runner.campaign.namespace
            counts.update((namespace, m.step.value) for m in runner.room.members.values())
        return dict(counts)

    async def runner_for_slug(self, slug: str) -> Runner | None:
        """The runner of the campaign at `slug`, None if there is none.

        Every participant socket asks this, so a runner that exists is found in memory: its
        campaign is kept current by every edit (`campaign_changed`), slug included. Otherwise
        the campaign is read from the database, once for all the sockets that ask meanwhile (a
        campaign's first burst of people read it once each before its room was built: 22
        reads a campaign in bench scenario 2's closed loop).
        """
        campaign_id = self._slugs.get(slug)
        runner = self._runners.get(campaign_id) if campaign_id is not None else None
        if runner is not None and runner.campaign.slug == slug:
            return runner
        finding = self._finding.get(slug)
        if finding is None:
            finding = asyncio.get_running_loop().create_future()
            finding.add_done_callback(_retrieved)
            read = self.tasks.spawn(self._find(slug, finding), "mastok campaign read")
            self._finding[slug] = finding
            read.add_done_callback(lambda _: self._found(slug, finding))
        # A socket that closes while it waits leaves the read to the others.
        return await asyncio.shield(finding)

    async def _find(self, slug: str, finding: asyncio.Future[Runner | None]) -> None:
        """The runner at `slug` (or what its read raised) for those waiting on `finding`."""
        try:
            campaign = await self.campaigns.get_by_slug(slug)
            runner = None if campaign is None else await self.runner(campaign)
        except Exception as error:
            settle(finding, error=error)
        else:
            if campaign is not None:
                self._slugs[slug] = campaign.id
            settle(finding, runner)

    def _found(self, slug: str, finding: asyncio.Future[Runner | None]) -> None:
        """The read is over: the next socket reads again if it must. Ended by the term's end
        (its task cancelled, maybe before it began), it leaves nobody waiting for ever."""
        if self._finding.get(slug) is finding:
            del self._finding[slug]
        settle(finding, error=RoomsClosed(f"the rooms closed while {slug!r} was read"))

    async def campaign_changed(self, campaign: Campaign) -> None:
        """An edit made here: its room (if built) takes it."""
        async with self._building:  # a room being built has it, or gets it after
            runner = self._runners.get(campaign.id)
            if runner is not None:
                runner.campaign_changed(campaign)

    async def reread(self, campaign_id: int) -> None:
        """An edit made by another process: its room (if built) reads the campaign again.
        Read and handed over in the same turn of the lock as local edits are, so the room
        ends with the latest version whatever the order they came in."""
        async with self._building:
            runner = self._runners.get(campaign_id)
            if runner is None:
                return
            campaign = await self.campaigns.get_by_id(campaign_id)
            if campaign is not None:
                runner.campaign_changed(campaign)

    def halt(self) -> None:
        """Handle no room event any more, at once (the leader lock is lost)."""
        for runner in self._runners.values():
            runner.halt()

    def close_sockets(self, code: int) -> None:
        for runner in self._runners.values():
            runner.close_sockets(code)

    async def _run_clock(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            for runner in list(self._runners.values()):
                runner.tick()
