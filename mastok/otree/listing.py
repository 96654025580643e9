"""oTree's sessions listed once for every look-up waiting at the time.

Listing costs as much as oTree has sessions (every study's, for ever: 1.5 s and 374 kB with
1,500 of them), and oTree serves listings one at a time. So look-ups queue, and one listing
answers all those queued when it began; those that come while it runs share the next one (a
look-up needs a listing that began after it was asked: a session created just before must be
in it).
"""

from __future__ import annotations

import asyncio
from typing import Any

from mastok.futures import settle
from mastok.otree.client import OTreeClient, SessionSummary
from mastok.tasks import Spawn, create_task


class SharedListing:
    def __init__(self, otree: OTreeClient, spawn: Spawn | None = None) -> None:
        self.otree = otree
        self._spawn = spawn or create_task
        self._waiting: list[asyncio.Future[list[SessionSummary]]] = []
        self._lister: asyncio.Task[Any] | None = None

    async def find(self, label: str) -> SessionSummary | None:
        """The session labelled `label`, from a listing that began after this call."""
        sessions = await self.sessions()
        return next((session for session in sessions if session.label == label), None)

    async def sessions(self) -> list[SessionSummary]:
        done: asyncio.Future[list[SessionSummary]] = asyncio.get_running_loop().create_future()
        self._waiting.append(done)
        if self._lister is None or self._lister.done():
            self._lister = self._spawn(self._list(), "mastok oTree listing")
        return await done

    async def _list(self) -> None:
        waiting: list[asyncio.Future[list[SessionSummary]]] = []
        try:
            while self._waiting:
                waiting, self._waiting = self._waiting, []
                try:
                    found = await self.otree.list_sessions()
                except Exception as error:
                    for done in waiting:
                        settle(done, error=error)
                else:
                    for done in waiting:
                        settle(done, found)
                waiting = []
        finally:  # cancelled (mastok is stopping): nobody waits for ever
            for done in waiting + self._waiting:
                done.cancel()
            self._waiting = []
