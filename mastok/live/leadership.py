"""Who runs the waiting rooms, as rules with no I/O: what happened to the lock in, effects out.

One process per database leads: it holds the database's leader lock (PostgreSQL: a session-level
advisory lock on a connection of its own; SQLite: always, one process a file) and runs the rooms and
their clock. Any other process is a standby: it serves what the database backs and waits for the
lock in the database's queue, so that it leads the moment the lock is freed. Its driver
(`leader.py`) makes the attempts and watches the lock's connection, tells the machine what came of
them (`handle(event)`), and carries out the effects it returns.

A leader whose lock connection drops is `adrift`: it stops handling room events at once and tries
the lock again. Taking it back (the database restarted), it rebuilds its rooms from the database,
its participants' sockets kept, each in its place; finding another process holding it, it closes
its rooms' sockets and is a standby. Never two leaders writing: rooms run only while the lock is
held, and a leader that has not yet seen its lock taken finds out at its next write, refused
as its term has passed (`mastok.db.leader_term`: the driver then reports the lock `Dropped`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    STANDBY = "standby"
    LEADER = "leader"
    ADRIFT = "adrift"  # led, lost the lock's connection, has not yet found who holds it
    STOPPED = "stopped"


# -- events: what the driver saw -----------------------------------------------------------


@dataclass(frozen=True)
class Acquired:
    """An attempt took the lock."""


@dataclass(frozen=True)
class Refused:
    """An attempt reached the database: another process holds the lock."""


@dataclass(frozen=True)
class Unreachable:
    """An attempt could not reach the database."""

    reason: str


@dataclass(frozen=True)
class Dropped:
    """The lock's connection was lost (closed, or a check went unanswered)."""

    reason: str


@dataclass(frozen=True)
class Stopping:
    """The process is shutting down."""


Event = Acquired | Refused | Unreachable | Dropped | Stopping


# -- effects: what the driver does ---------------------------------------------------------


@dataclass(frozen=True)
class StartRooms:
    """Build the rooms from the database and start their clock: from now on this process
    takes participants' and supervisors' sockets. `keep_sockets`: the halted rooms'
    participant sockets come into the rooms rebuilt, each in its place (the lock taken back)."""

    keep_sockets: bool = False


@dataclass(frozen=True)
class HaltRooms:
    """Stop handling room events at once; sockets stay open (and refused to newcomers)."""


@dataclass(frozen=True)
class CloseRooms:
    """Close the halted rooms' sockets with `code` (pages come back with their tokens) and
    forget the rooms."""

    code: int


@dataclass(frozen=True)
class DrainRooms:
    """Shutting down while leading: let session creations in flight be recorded."""


@dataclass(frozen=True)
class Announce:
    """Say what the process now is (a log line)."""

    role: Role
    why: str


Effect = StartRooms | HaltRooms | CloseRooms | DrainRooms | Announce

SERVICE_RESTART = 1012  # WebSocket close code: "the server is restarting", come back


class Leadership:
    """The role of this process, changed only by `handle`."""

    def __init__(self) -> None:
        self.role = Role.STANDBY
        self.terms = 0  # times this process started leading

    @property
    def leads(self) -> bool:
        """Rooms run, sockets are taken."""
        return self.role == Role.LEADER

    @property
    def wants_lock(self) -> bool:
        """The driver should try the lock (or wait for it: `queues`)."""
        return self.role in (Role.STANDBY, Role.ADRIFT)

    @property
    def queues(self) -> bool:
        """An attempt waits in the lock's queue while another process holds it. Only a
        standby's: one adrift must learn soon whether another leads, to close its sockets."""
        return self.role == Role.STANDBY

    def handle(self, event: Event) -> list[Effect]:
        if self.role == Role.STOPPED:
            return []
        if isinstance(event, Stopping):
            return self._stop()
        if self.role == Role.STANDBY:
            return self._lead("took the lock") if isinstance(event, Acquired) else []
        if self.role == Role.LEADER:
            if isinstance(event, Dropped):
                self.role = Role.ADRIFT
                return [HaltRooms(), Announce(Role.ADRIFT, f"lost the lock: {event.reason}")]
            return []  # no attempts are made while leading
        # Adrift: the rooms are halted, their sockets still open.
        if isinstance(event, Acquired):
            return self._lead("took the lock back", keep_sockets=True)
        if isinstance(event, Refused):
            self.role = Role.STANDBY
            why = "another process holds the lock"
            return [CloseRooms(SERVICE_RESTART), Announce(Role.STANDBY, why)]
        return []

    def _lead(self, why: str, keep_sockets: bool = False) -> list[Effect]:
        self.role = Role.LEADER
        self.terms += 1
        return [StartRooms(keep_sockets), Announce(Role.LEADER, why)]

    def _stop(self) -> list[Effect]:
        was = self.role
        self.role = Role.STOPPED
        if was == Role.LEADER:
            return [DrainRooms()]
        if was == Role.ADRIFT:
            return [CloseRooms(SERVICE_RESTART)]
        return []
