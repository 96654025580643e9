"""Participant sockets per client address: how many may be open at once, how fast they land.

A stranger can open join sockets and land made-up browser ids without logging in; each open
socket holds memory and each landing may end up in a pool. Per client address (uvicorn's, from
a forwarded header only when the proxy is trusted; an IPv6 address's /64: `mastok.web.clients`),
at most `max_open` participant sockets are open at once (a lab of 100 behind one address gets
through), and landings draw from a bucket of `per_minute` tokens refilled evenly over a minute
(a lab of 60 landing at once gets through; a script's burst of made-up ids is refused, with
`Disconnect "LandingFailed"`). At most `max_addresses` addresses are remembered, the least
recently seen forgotten first. Refusals are counted so that an address's flood of refused
sockets costs at most a log line a minute.

An address may also open at most `opens_per_minute` join sockets a minute (a bucket as the
landings'): a script that opens and drops sockets in a loop (sending a 16 MiB frame, say) cost
everyone else a whole handshake and join each time. Both are checked by the HTTP protocol
itself, before the WebSocket handshake and the app (`JoinGate`, `mastok.web.http_protocol`):
a flood of refusals costs microseconds each (issue 13).
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from mastok.clock import Clock
from mastok.web.clients import counted_as

log = logging.getLogger("mastok.live")

MAX_ADDRESSES = 10_000
FORGET_SCAN = 64
# A socket let through by the gate reaches the app within milliseconds; one that has not after
# this long never will (its client went during the handshake) and stops being counted.
ARRIVING_FOR = timedelta(seconds=10)
PAST_OPEN_SOCKETS = "past the open sockets an address may hold"
PAST_OPENINGS = "past the sockets an address may open a minute"
REFUSALS_LOGGED_EVERY = timedelta(minutes=1)


@dataclass
class _Bucket:
    """`per_minute` tokens, refilled evenly over a minute; full when first used."""

    tokens: float = 0.0
    filled_at: datetime | None = None

    def take(self, now: datetime, per_minute: int) -> bool:
        if self.filled_at is None:
            self.tokens = float(per_minute)
        else:
            refill = (now - self.filled_at).total_seconds() * per_minute / 60
            self.tokens = min(float(per_minute), self.tokens + refill)
        self.filled_at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass
class _Address:
    open: int = 0
    arriving: deque[datetime] = field(default_factory=deque)  # let through by the gate
    landings: _Bucket = field(default_factory=_Bucket)
    openings: _Bucket = field(default_factory=_Bucket)
    refused: int = 0  # since the last line logged
    refusal_logged_at: datetime | None = None


@dataclass
class ParticipantLimits:
    clock: Clock
    max_open: int = 200
    per_minute: int = 120
    opens_per_minute: int = 600
    max_addresses: int = MAX_ADDRESSES
    _addresses: OrderedDict[str, _Address] = field(default_factory=OrderedDict, repr=False)

    def turned_away(self, address: str) -> None:
        """A socket the gate let through was refused before `opened` (its origin, say): no
        longer counted as arriving."""
        entry = self._addresses.get(counted_as(address))
        if entry is not None and entry.arriving:
            entry.arriving.popleft()

    def opened(self, address: str) -> str | None:
        """Why a socket from `address` may not open (not counted), or None: it opens, counted
        until `closed`. One the gate let through (`arrives`) took its opening token there; one
        that came another way (through a trusted proxy) takes it here."""
        entry = self._entry(address)
        through_gate = bool(entry.arriving)
        if through_gate:
            entry.arriving.popleft()
        if entry.open >= self.max_open:
            return PAST_OPEN_SOCKETS
        if not through_gate and not self.may_open(address):
            return PAST_OPENINGS
        entry.open += 1
        return None

    def full(self, address: str) -> bool:
        """Whether `address` holds, or is about to hold, all the sockets it may (an address
        never seen does not)."""
        entry = self._addresses.get(counted_as(address))
        if entry is None:
            return False
        horizon = self.clock.now() - ARRIVING_FOR
        while entry.arriving and entry.arriving[0] < horizon:  # it never reached the app
            entry.arriving.popleft()
        return entry.open + len(entry.arriving) >= self.max_open

    def arrives(self, address: str) -> None:
        """A socket from `address` is on its way to `opened` (its handshake under way): a
        burst of handshakes is counted before the first of them is opened."""
        self._entry(address).arriving.append(self.clock.now())

    def closed(self, address: str) -> None:
        entry = self._addresses.get(counted_as(address))
        if entry is not None and entry.open > 0:
            entry.open -= 1

    def may_land(self, address: str) -> bool:
        """Take a landing token for `address`, if one is left."""
        return self._entry(address).landings.take(self.clock.now(), self.per_minute)

    def may_open(self, address: str) -> bool:
        """Take a token to open a socket for `address`, if one is left."""
        return self._entry(address).openings.take(self.clock.now(), self.opens_per_minute)

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

    def note_refused(self, address: str, why: str) -> None:
        """Count a refusal; logged at once, then at most a line a minute an address."""
        count = self.refused(address)
        if count:
            log.warning("participant sockets refused to %s: %d, the last %s", address, count, why)

    def _entry(self, address: str) -> _Address:
        """The counts of `address`'s client (an IPv6 address's /64: `counted_as`)."""
        address = counted_as(address)
        entry = self._addresses.get(address)
        if entry is None:
            entry = self._addresses[address] = _Address()
            while len(self._addresses) > self.max_addresses:
                self._forget_one()
        else:
            self._addresses.move_to_end(address)
        return entry

    def _forget_one(self) -> None:
        """The least recently seen address without an open socket (their counts must stay),
        among the `FORGET_SCAN` least recently seen; else the least recently seen of all: a
        spray of addresses each holding sockets must not make every new one scan them all."""
        for address, entry in itertools.islice(self._addresses.items(), FORGET_SCAN):
            if entry.open == 0 and not entry.arriving:
                del self._addresses[address]
                return
        self._addresses.popitem(last=False)


JOIN_GATE = "mastok.join_gate"  # its key in the lifespan state, which uvicorn gives protocols


@dataclass(frozen=True)
class Refusal:
    status: int
    reason: str
    text: str


TOO_MANY_OPEN = Refusal(403, "Forbidden", "too many open participant sockets from this address")
TOO_MANY_OPENED = Refusal(
    429, "Too Many Requests", "too many participant sockets opened from this address"
)


@dataclass(frozen=True)
class JoinGate:
    """What the HTTP protocol asks before a join socket's handshake: refuse it now?"""

    limits: ParticipantLimits
    path: str  # the join socket's, with the web prefix

    @functools.cached_property
    def request_start(self) -> bytes:
        """How a request for a join socket begins, up to its path's end."""
        return b"GET " + self.path.encode("latin-1")

    def refusal(self, path: str, address: str) -> Refusal | None:
        """How a socket to `path` from `address` is refused (counted as such), if it is."""
        if path != self.path:
            return None
        if (refused := self.refusal_if_full(address)) is not None:
            return refused
        if not self.limits.may_open(address):
            self.limits.note_refused(address, PAST_OPENINGS)
            return TOO_MANY_OPENED
        self.limits.arrives(address)
        return None

    def refusal_if_full(self, address: str) -> Refusal | None:
        """The refusal (counted) of a join socket from `address` if it holds all it may."""
        if not self.limits.full(address):
            return None
        self.limits.note_refused(address, PAST_OPEN_SOCKETS)
        return TOO_MANY_OPEN
