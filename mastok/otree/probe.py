"""oTree's state as a background probe sees it, for `/readyz` (which never waits on oTree)."""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from mastok.otree.client import OTreeClient, OTreeError

log = logging.getLogger("mastok.otree")
PROBE_SECONDS = 5.0

State = Literal["ok", "unreachable", "unknown"]


class OTreeProbe:
    """Asks oTree its version every `PROBE_SECONDS` (each call bounded by the client's timeout)
    and keeps the answer: `state` is "unknown" until the first one."""

    def __init__(self, otree: OTreeClient, every: float = PROBE_SECONDS) -> None:
        self.otree = otree
        self.every = every
        self.state: State = "unknown"

    async def probe(self) -> State:
        try:
            await self.otree.version()
            state: State = "ok"
        except OTreeError as error:
            state = "unreachable"
            if self.state != "unreachable":
                log.warning("oTree cannot be reached: %s", error.message)
        if state == "ok" and self.state == "unreachable":
            log.info("oTree answers again")
        self.state = state
        return state

    async def run(self) -> None:
        while True:
            await self.probe()
            await asyncio.sleep(self.every)
