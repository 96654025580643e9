"""oTree's progress of the live sessions: read every few seconds, kept, and the sessions whose
participants have all finished told to their room.

One task of the app's task scope (`run`) reads oTree's wide export of each session its room
counts as live (and only those), one after the other, at most every `POLL_SECONDS` and at most
`READS_PER_SECOND` in all: with many live sessions each is read less often, and oTree (which
serves every participant's pages from one process) never spends more than a small share of its
time on these reads. oTree is
never called from a room's turn: the poller posts `SessionsFinished` to the room's mailbox,
which handles it like any other event. When oTree cannot be read, nothing is posted and the
session stays live until `session_duration`, the upper bound.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from mastok.clock import Clock
from mastok.db import Database
from mastok.live import pages
from mastok.live.events import SessionsFinished
from mastok.live.runner import Runner
from mastok.otree import OTreeError, Progress

log = logging.getLogger("mastok.live")
POLL_SECONDS = 3.0
# oTree's wide export of one session takes it about 7.5 ms (bench/README.md, scenario 5): 10 a
# second is under a tenth of its time. 100 live sessions are then each read every 13 s.
READS_PER_SECOND = 10.0


T = TypeVar("T")


class ProgressSource(Protocol):
    async def session_progress(self, code: str) -> list[Progress]: ...


class RunnerSource(Protocol):
    def runners(self) -> list[Runner]: ...


class PageWrites(Protocol):
    """Where the pages are written: the rooms' own writer (`Records.commit`), so that on
    SQLite no room's commit waits behind them in SQLite's busy handler."""

    async def commit(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T: ...


class ProgressPoller:
    def __init__(
        self,
        rooms: RunnerSource,
        otree: ProgressSource,
        db: Database,
        writes: PageWrites,
        clock: Clock,
        interval: float = POLL_SECONDS,
        reads_per_second: float = READS_PER_SECOND,
    ) -> None:
        self.rooms = rooms
        self.otree = otree
        self.db = db
        self.writes = writes
        self.clock = clock
        self.interval = interval
        self.spacing = 1.0 / reads_per_second
        self._failing: set[str] = set()  # sessions whose last read failed (logged once)

    async def run(self) -> None:
        failing = False  # the last poll failed (logged once)
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.poll()
            except Exception as error:  # the database away: the next poll tries again
                if not failing:
                    log.error("cannot poll the live sessions' progress: %s", error)
                failing = True
            else:
                failing = False

    async def poll(self) -> None:
        """Read every live session once; tell each room which of its sessions finished."""
        for runner in self.rooms.runners():
            # Read between turns or inside one: at worst a session is read once more or a
            # poll later, which only costs a read.
            numbers = sorted(runner.room.live_sessions)
            if not numbers:
                continue
            finished = []
            for session in await pages.sessions_numbered(self.db, runner.campaign_id, numbers):
                if await self._read(session):
                    finished.append(session.number)
                await asyncio.sleep(self.spacing)
            if finished:
                runner.post(SessionsFinished(tuple(finished)))

    async def _read(self, session: pages.LiveSession) -> bool:
        """Keep what oTree shows of the session; whether all its participants finished."""
        try:
            seen = await self.otree.session_progress(session.code)
        except OTreeError as error:
            if session.code not in self._failing:
                self._failing.add(session.code)
                log.warning("cannot read the progress of oTree session %s: %s", session.code, error)
            return False
        self._failing.discard(session.code)
        now = self.clock.now()

        async def record(connection: AsyncConnection) -> None:
            await pages.record(connection, session.id, seen, now)

        await self.writes.commit(record)
        return bool(seen) and all(progress.finished for progress in seen)
