"""The driver of `leadership.py`: tries the leader lock, watches it, runs the rooms while leading.

Every second it either tries the lock (a leader adrift), waits for it in the database's queue (a
standby, until it is freed) or checks the lock's connection (a leader), tells the machine what came
of it and carries out its effects. Each stretch of leadership (a term) has its rooms in a task scope
of its own: ending the term cancels every runner, clock tick and session creation of it. A term's
rooms halted by a lost lock keep their sockets open until the lock is taken back (the next term's
rooms adopt them) or is found taken (they are closed). Campaign edits reach the rooms from this
process directly, and from other processes through PostgreSQL's NOTIFY (the campaign's id on
`CAMPAIGNS_CHANNEL`, heard on the lock's connection), each re-read from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from sqlalchemy import text

from mastok.clock import Clock
from mastok.db import Database
from mastok.db.leader_lock import (
    CAMPAIGNS_CHANNEL,
    EmbeddedLock,
    LeaderLock,
    LockDropped,
    LockUnreachable,
    PostgresLock,
    describe_error,
)
from mastok.db.leader_term import Fence
from mastok.db.tables import Campaign
from mastok.live import leadership as lead
from mastok.live.events import Rules, View
from mastok.live.records import Records
from mastok.live.room import Room
from mastok.live.rooms import Rooms, restore_room
from mastok.live.runner import RoomHalted, Runner
from mastok.tasks import TaskScope, task_scope

T = TypeVar("T")
log = logging.getLogger("mastok.leader")
ATTEMPT_SECONDS = 1.0

RoomsFactory = Callable[[TaskScope], Rooms]


@dataclass(eq=False)
class Term:
    """One stretch of leadership: its rooms, and what ends it."""

    rooms: Rooms
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    drain: bool = False  # let session creations in flight be recorded first (shutdown)
    edits: asyncio.Queue[int] = field(default_factory=asyncio.Queue)  # ids NOTIFYed


class Leader:
    def __init__(
        self,
        db: Database,
        make_rooms: RoomsFactory,
        records: Records,
        rules: Rules,
        clock: Clock,
        tasks: TaskScope,
        lock: LeaderLock | None = None,
    ) -> None:
        """`lock`: the database's own (SQLite's or PostgreSQL's) unless given."""
        self.db = db
        self.lock: LeaderLock = lock or (
            EmbeddedLock() if db.is_sqlite else PostgresLock.for_engine(db.engine, self.notified)
        )
        self.make_rooms = make_rooms
        self.records = records
        self.rules = rules
        self.clock = clock
        self.tasks = tasks
        self.machine = lead.Leadership()
        self.term: Term | None = None
        self._starting: Term | None = None  # a term whose rooms are being built
        self.halted: Rooms | None = None  # a term's rooms, halted with their sockets open
        self._term_task: asyncio.Task[object] | None = None
        self._loop: asyncio.Task[object] | None = None
        self._superseded: str | None = None  # why a write found this term passed
        self._wake = asyncio.Event()  # the loop's next step, before its second is up

    # -- what the app asks -----------------------------------------------------------------

    @property
    def role(self) -> lead.Role:
        return self.machine.role

    @property
    def shown_role(self) -> str:
        """`leader` once its rooms run (not while they are rebuilt), else `standby`."""
        return "leader" if self.rooms is not None else "standby"

    @property
    def rooms(self) -> Rooms | None:
        """The rooms, while this process leads (else sockets are refused)."""
        term = self.term
        return term.rooms if term is not None and self.machine.leads else None

    async def look(self, campaign: Campaign, read: Callable[[Room, datetime], T]) -> T:
        """`read(room, now)` of the campaign's live room when leading, else of the room as the
        database has it (everyone in it away)."""
        rooms = self.rooms
        if rooms is not None:
            with contextlib.suppress(RoomHalted):
                return await (await rooms.runner(campaign)).look(read)
        room = await restore_room(campaign, self.records, self.rules, self.clock)
        return read(room, self.clock.now())

    async def view(self, campaign: Campaign) -> View:
        """What supervisors see of the campaign's room."""
        return await self.look(campaign, Room.view)

    def runners(self) -> list[Runner]:
        """The rooms' runners while this process leads; none on a standby."""
        rooms = self.rooms
        return rooms.runners() if rooms is not None else []

    async def campaign_changed(self, campaign: Campaign) -> None:
        """A campaign created or edited through this process: to the rooms if they run here,
        else NOTIFYed to the leader (on SQLite this process always leads)."""
        rooms = self.rooms
        if rooms is not None:
            await rooms.campaign_changed(campaign)
        elif not self.db.is_sqlite:
            try:
                await notify_campaign(self.db, campaign.id)
            except Exception as error:  # the edit is written: the leader reads it at start
                log.error("could not tell the leader of %s's edit: %s", campaign.namespace, error)

    def notified(self, campaign_id: int) -> None:
        """A campaign edited through another process (from the lock's connection). One
        NOTIFYed while the rooms are built is read once they are: its room may have read the
        campaign before the edit."""
        term = self.term or self._starting
        if term is not None:
            term.edits.put_nowait(campaign_id)

    # -- the loop --------------------------------------------------------------------------

    async def start(self) -> None:
        """Try the lock once without waiting (a process alone on its database leads before it
        serves), then loop."""
        await self._step(queue=False)
        self._loop = self.tasks.spawn(self._run(), "mastok leadership")

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        await self._apply(self.machine.handle(lead.Stopping()))
        await self.lock.close()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), ATTEMPT_SECONDS)
            self._wake.clear()
            try:
                await self._step()
            except Exception:  # a bug: the loop must go on, or a lost lock goes unseen
                log.exception("the leadership step failed; trying again in a second")

    async def _step(self, queue: bool = True) -> None:
        event = await self._attempt(queue and self.machine.queues)
        if event is not None:
            await self._apply(self.machine.handle(event))

    async def _attempt(self, queue: bool) -> lead.Event | None:
        """What came of trying the lock (a standby, or adrift; `queue`: waiting for it) or of
        checking it (leading). An error the lock does not name is a lock that cannot be
        vouched for: leading, it counts as dropped (the rooms halt, the lock's connection is
        closed, which frees it)."""
        if self.machine.wants_lock:
            try:
                got = await self.lock.try_acquire(queue)
                return lead.Acquired() if got else lead.Refused()
            except LockUnreachable as error:
                return lead.Unreachable(str(error))
            except Exception as error:
                log.exception("trying the leader lock failed")
                await self.lock.close()
                return lead.Unreachable(describe_error(error))
        if self._superseded is not None:  # the lock is another's: ours is gone, or going
            why, self._superseded = self._superseded, None
            await self.lock.close()
            return lead.Dropped(why)
        try:
            await self.lock.check()
            return None
        except LockDropped as error:
            return lead.Dropped(str(error))
        except Exception as error:
            log.exception("checking the leader lock failed")
            await self.lock.close()
            return lead.Dropped(describe_error(error))

    async def _apply(self, effects: list[lead.Effect]) -> None:
        for effect in effects:
            match effect:
                case lead.StartRooms(keep_sockets):
                    self._fence_writes()
                    if not await self._start_term(self.halted if keep_sockets else None):
                        await self.lock.close()  # free for another process while we retry
                        await self._apply(self.machine.handle(lead.Dropped("no rooms")))
                        return
                    self.halted = None
                case lead.HaltRooms():
                    if self.term is not None:
                        self.term.rooms.halt()
                        await self._end_term()
                        self.halted, self.term = self.term.rooms, None
                case lead.CloseRooms(code):
                    if self.halted is not None:
                        self.halted.close_sockets(code)
                    self.halted = None
                case lead.DrainRooms():
                    if self.term is not None:
                        self.term.drain = True
                        await self._end_term()
                    self.term = None
                case lead.Announce(role, why):
                    announce(role, why)

    # -- terms -----------------------------------------------------------------------------

    def _fence_writes(self) -> None:
        """The rooms about to start write in the lock's term (none on SQLite)."""
        self._superseded = None
        term = self.lock.term
        if term is not None:
            self.records.fence = Fence(term, self._term_passed)

    def _term_passed(self, term: int, why: str) -> None:
        """A write of the rooms found that another process leads (`mastok.db.leader_term`):
        the next step drops the lock and halts the rooms, now rather than at its second. A
        straggling write of an earlier term of this process says nothing of this one."""
        if term == self.lock.term and self.machine.leads:
            self._superseded = why
            self._wake.set()

    async def _start_term(self, halted: Rooms | None) -> bool:
        """Build the rooms from the database (adopting `halted`'s sockets) and start their
        clock; False if that failed."""
        started: asyncio.Future[Term] = asyncio.get_running_loop().create_future()
        task = self.tasks.spawn(self._serve_term(started, halted), "mastok term")
        try:
            self.term = await started
        except Exception as error:
            log.error("could not rebuild the rooms from the database: %s", error)
            await task
            return False
        self._term_task = task
        return True

    async def _serve_term(self, started: asyncio.Future[Term], halted: Rooms | None) -> None:
        async with task_scope() as tasks:
            term = Term(self.make_rooms(tasks))
            self._starting = term
            try:
                await term.rooms.start(halted)
            except Exception as error:
                started.set_exception(error)
                return
            finally:
                self._starting = None
            tasks.spawn(self._take_edits(term), "mastok edits")
            started.set_result(term)
            await term.ended.wait()
            if term.drain:
                await term.rooms.stop()

    async def _end_term(self) -> None:
        """The term's tasks cancelled (after draining, if asked), and awaited."""
        term, task = self.term, self._term_task
        if term is None or task is None:
            return
        term.ended.set()
        self._term_task = None
        await task

    async def _take_edits(self, term: Term) -> None:
        while True:
            campaign_id = await term.edits.get()
            await _reread(term.rooms, campaign_id)


async def _reread(rooms: Rooms, campaign_id: int) -> None:
    """The room of a campaign NOTIFYed takes it from the database, read again every second
    while it cannot be (the database away): else the room would run the campaign as it was."""
    failed = False
    while True:
        try:
            await rooms.reread(campaign_id)
        except Exception as error:
            if not failed:  # once: the database may be away for minutes
                log.error("could not read campaign %d's edit, trying again: %s", campaign_id, error)
            failed = True
        else:
            if failed:
                log.info("campaign %d's edit read", campaign_id)
            return
        await asyncio.sleep(ATTEMPT_SECONDS)


async def notify_campaign(db: Database, campaign_id: int) -> None:
    """Tell the leader (PostgreSQL) that a campaign changed."""
    async with db.session() as session:
        await session.execute(
            text("SELECT pg_notify(:channel, :payload)"),
            {"channel": CAMPAIGNS_CHANNEL, "payload": str(campaign_id)},
        )
        await session.commit()


def announce(role: lead.Role, why: str) -> None:
    match role:
        case lead.Role.LEADER:
            log.info("mastok leads (%s): it runs the waiting rooms", why)
        case lead.Role.STANDBY:
            log.warning("mastok is a standby (%s): waiting rooms run elsewhere", why)
        case lead.Role.ADRIFT:
            log.error("mastok stopped its waiting rooms (%s); trying the lock again", why)
        case _:
            pass
