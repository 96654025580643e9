"""Admin login throttling: wrong credentials from one client address slowed, then refused (an
IPv6 address is counted with its /64: `mastok.web.clients`).

Each wrong attempt from an address (a request that carried credentials that do not match; a
request without an Authorization header is not an attempt) adds a small delay to its own 401
that grows with the address's recent failures, past the first few (mistyped passwords cost
nothing). `max_failures` wrong attempts within `WINDOW` lock the address out for `LOCKOUT`:
every admin request from it is refused with 429 and `Retry-After`, and the lockout is logged
once. The delay is awaited (`sleep`, asyncio's by default) and the time read from `clock`, so
the event loop is never blocked and tests move time by hand. At most `max_addresses` addresses
are remembered (the least recently seen is forgotten first), each with at most `max_failures`
times: memory stays bounded whatever the number of addresses trying.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from mastok.clock import Clock
from mastok.web.clients import counted_as

log = logging.getLogger("mastok.auth")

Sleep = Callable[[float], Awaitable[None]]

WINDOW = timedelta(minutes=5)
LOCKOUT = timedelta(minutes=5)
FREE_FAILURES = 5  # wrong attempts in a window answered at once
DELAY_STEP = 0.25  # seconds added by each further wrong attempt...
MAX_DELAY = 2.0  # ...up to this
MAX_ADDRESSES = 10_000


@dataclass
class _Address:
    failures: deque[datetime]
    locked_until: datetime | None = None


@dataclass
class LoginThrottle:
    """Failed admin logins per client address (one per app)."""

    clock: Clock
    max_failures: int = 30
    sleep: Sleep = asyncio.sleep
    max_addresses: int = MAX_ADDRESSES
    _addresses: OrderedDict[str, _Address] = field(default_factory=OrderedDict, repr=False)

    def retry_after(self, address: str) -> int | None:
        """Seconds until `address` may try again, or None when it is not locked out."""
        entry = self._addresses.get(counted_as(address))
        if entry is None or entry.locked_until is None:
            return None
        left = (entry.locked_until - self.clock.now()).total_seconds()
        if left <= 0:
            entry.locked_until = None
            entry.failures.clear()
            return None
        return max(1, math.ceil(left))

    async def failed(self, address: str) -> int | None:
        """Count a wrong attempt from `address`, then wait the delay it earned. Returns the
        seconds of the lockout this attempt started (None when it did not)."""
        now = self.clock.now()
        entry = self._entry(address)
        entry.failures.append(now)
        while entry.failures and now - entry.failures[0] > WINDOW:
            entry.failures.popleft()
        recent = len(entry.failures)
        if recent >= self.max_failures:
            entry.locked_until = now + LOCKOUT
            log.warning(
                "admin login: %d wrong credentials from %s within %d minutes; its admin "
                "requests are refused for %d minutes",
                recent,
                address,
                WINDOW.total_seconds() // 60,
                LOCKOUT.total_seconds() // 60,
            )
            return math.ceil(LOCKOUT.total_seconds())
        delay = delay_after(recent)
        if delay:
            await self.sleep(delay)
        return None

    def succeeded(self, address: str) -> None:
        """Right credentials: the address's past failures are forgotten."""
        self._addresses.pop(counted_as(address), None)

    def _entry(self, address: str) -> _Address:
        """The failures of `address`'s client (an IPv6 address's /64: `counted_as`)."""
        address = counted_as(address)
        entry = self._addresses.get(address)
        if entry is None:
            entry = _Address(deque(maxlen=max(1, self.max_failures)))
            self._addresses[address] = entry
            while len(self._addresses) > self.max_addresses:
                self._addresses.popitem(last=False)
        else:
            self._addresses.move_to_end(address)
        return entry

    def __len__(self) -> int:
        return len(self._addresses)


def delay_after(failures: int) -> float:
    """The delay, in seconds, before answering the `failures`th wrong attempt of a window."""
    extra = failures - FREE_FAILURES
    return 0.0 if extra <= 0 else min(MAX_DELAY, DELAY_STEP * extra)
