"""When a run's lock is held: while its client's last sign of life is no older than the timeout.

One rule, for the store (who may take a run, whose token still counts) and the monitoring pages
(what a run's lock shows, how many are held), in Python and in SQL alike: a lock with a token
is live at `now` until its heartbeat plus the timeout, that moment included; after it, it has
`expired` (its holder's token still works until another client takes the run).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import ColumnElement, and_, or_

from mastok.clock import aware
from mastok.lightmill.tables import LMRun


class LockState(StrEnum):
    LOCKED = "locked"  # its client is alive
    EXPIRED = "expired"  # its client has been silent for longer than the timeout
    UNLOCKED = "unlocked"  # nobody holds it


@dataclass(frozen=True)
class LockPolicy:
    """`timeout`: seconds of silence after which a lock counts as released; `unprotected`: any
    client may take a locked run over."""

    timeout: float
    unprotected: bool = False

    @property
    def lifetime(self) -> timedelta:
        return timedelta(seconds=self.timeout)

    def expires_at(self, heartbeat: datetime | None) -> datetime | None:
        """The last moment a lock last heard from at `heartbeat` is live (None: no heartbeat)."""
        return None if heartbeat is None else aware(heartbeat) + self.lifetime

    def state(self, token: str | None, heartbeat: datetime | None, now: datetime) -> LockState:
        if token is None:
            return LockState.UNLOCKED
        expires = self.expires_at(heartbeat)
        return LockState.LOCKED if expires is not None and now <= expires else LockState.EXPIRED

    def is_live(self, token: str | None, heartbeat: datetime | None, now: datetime) -> bool:
        return self.state(token, heartbeat, now) is LockState.LOCKED

    def live(self, now: datetime) -> ColumnElement[bool]:
        """`is_live` of a run's row, in SQL."""
        return and_(LMRun.lock_token.is_not(None), LMRun.heartbeat_at >= self._oldest(now))

    def released(self, now: datetime) -> ColumnElement[bool]:
        """`not is_live` of a run's row, in SQL (spelt out: NOT of a NULL comparison is NULL)."""
        return or_(
            LMRun.lock_token.is_(None),
            LMRun.heartbeat_at.is_(None),
            LMRun.heartbeat_at < self._oldest(now),
        )

    def _oldest(self, now: datetime) -> datetime:
        """The oldest heartbeat of a live lock: `heartbeat + lifetime >= now`, solved for the
        column so its comparison needs no arithmetic in SQL."""
        return now - self.lifetime
