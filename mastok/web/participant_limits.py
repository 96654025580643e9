"""Participant sockets per client address: how many may be open at once, how fast they land.

A stranger can open join sockets and land made-up browser ids without logging in; each open
socket holds memory and each landing may end up in a pool. Per client address (uvicorn's, from
a forwarded header only when the proxy is trusted), at most `max_open` participant sockets are
open at once (a lab of 100 behind one address gets through), and landings draw from a bucket
of `per_minute` tokens refilled evenly over a minute (a lab of 60 landing at once gets
through; a script's burst of made-up ids is refused, with `Disconnect "LandingFailed"`). At most
`max_addresses` addresses are remembered, the least recently seen forgotten first. Refusals are
counted so that an address's flood of refused sockets costs at most a log line a minute.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from mastok.clock import Clock

MAX_ADDRESSES = 10_000
REFUSALS_LOGGED_EVERY = timedelta(minutes=1)


@dataclass
class _Address:
    open: int = 0
    tokens: float = 0.0
    filled_at: datetime | None = None
    refused: int = 0  # since the last line logged
    refusal_logged_at: datetime | None = None


@dataclass
class ParticipantLimits:
    clock: Clock
    max_open: int = 200
    per_minute: int = 120
    max_addresses: int = MAX_ADDRESSES
    _addresses: OrderedDict[str, _Address] = field(default_factory=OrderedDict, repr=False)

    def opened(self, address: str) -> bool:
        """A socket from `address` may open (counted until `closed`), or not (not counted)."""
        entry = self._entry(address)
        if entry.open >= self.max_open:
            return False
        entry.open += 1
        return True

    def closed(self, address: str) -> None:
        entry = self._addresses.get(address)
        if entry is not None and entry.open > 0:
            entry.open -= 1

    def may_land(self, address: str) -> bool:
        """Take a landing token for `address`, if one is left."""
        entry = self._entry(address)
        now = self.clock.now()
        if entry.filled_at is None:
            entry.tokens = float(self.per_minute)
        else:
            refill = (now - entry.filled_at).total_seconds() * self.per_minute / 60
            entry.tokens = min(float(self.per_minute), entry.tokens + refill)
        entry.filled_at = now
        if entry.tokens < 1:
            return False
        entry.tokens -= 1
        return True

    def refused(self, address: str) -> int:
        """Count a socket refused to `address`; how many refusals to log now (0: not yet; the
        first at once, then at most one line a minute)."""
        entry = self._entry(address)
        entry.refused += 1
        now = self.clock.now()
        logged_at = entry.refusal_logged_at
        if logged_at is not None and now - logged_at < REFUSALS_LOGGED_EVERY:
            return 0
        reported, entry.refused, entry.refusal_logged_at = entry.refused, 0, now
        return reported

    def _entry(self, address: str) -> _Address:
        entry = self._addresses.get(address)
        if entry is None:
            entry = self._addresses[address] = _Address()
            while len(self._addresses) > self.max_addresses:
                self._forget_one()
        else:
            self._addresses.move_to_end(address)
        return entry

    def _forget_one(self) -> None:
        """The least recently seen address without an open socket (their counts must stay)."""
        for address, entry in self._addresses.items():
            if entry.open == 0:
                del self._addresses[address]
                return
        self._addresses.popitem(last=False)
