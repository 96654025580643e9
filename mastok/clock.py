"""Time, in one place: the clock every rule reads (so tests can set it), and UTC helpers.

Everything mastok stores is UTC. SQLite hands datetimes back without a time zone, so whatever
reads a stored time passes it through `aware` first.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol, overload


def utcnow() -> datetime:
    return datetime.now(UTC)


@overload
def aware(moment: datetime) -> datetime: ...
@overload
def aware(moment: None) -> None: ...
def aware(moment: datetime | None) -> datetime | None:
    """`moment` as UTC with its time zone (a stored time read back from SQLite has none); None
    (a time not set) stays None."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


@overload
def iso(moment: datetime) -> str: ...
@overload
def iso(moment: None) -> None: ...
def iso(moment: datetime | None) -> str | None:
    """A stored time as ISO 8601 with its UTC offset, for JSON; None stays None."""
    return None if moment is None else aware(moment).isoformat()


class Clock(Protocol):
    """What time it is: the system's clock in production, a hand-set one in tests."""

    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return utcnow()


class ManualClock:
    """A clock that moves only when told to (tests): `advance(seconds=31)`."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or utcnow()

    def now(self) -> datetime:
        return self._now

    def advance(self, **delta: float) -> datetime:
        self._now += timedelta(**delta)
        return self._now

    def set(self, moment: datetime) -> None:
        self._now = aware(moment)
