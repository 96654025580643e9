"""One campaign's actor: its events, one at a time, into its room; the room's effects out.

Each campaign has a mailbox and one task (`run`) that takes events from it one at a time, so
the room needs no lock. For each event the room (`room.py`) returns effects; the runner writes
every `Persist` effect in one transaction, and only then sends frames, closes sockets and
starts session creations: "written before anyone is told" lives here, in `_turn`. If the
writes fail, the room is rolled back to where it was before the event: a participant is told
to retry, anything else is tried again at the next tick.

A turn takes the events queued behind its first, up to `TURN_EVENTS`, each handled in order,
and writes their changes in one transaction: a busy campaign's events waited one commit each
(in a closed loop of join flows nearly every mailbox held 10 letters or more at each turn, and
mastok committed 0.93 times a participant where the work-equivalent app committed 0.1 times:
bench/README.md, scenario 2). If that transaction fails, each event is handled again alone,
so that only the one at fault fails.

oTree is never awaited in a turn: a session is created by a child task that posts its outcome
back, ahead of the events queued meanwhile (its pool has waited for oTree, not for the queue).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast

from mastok.clock import Clock
from mastok.db.leader_term import TermPassed
from mastok.db.tables import Campaign
from mastok.live import events as ev
from mastok.live.connection import Connection
from mastok.live.leadership import SERVICE_RESTART
from mastok.live.protocol import Frame, Kind, encode
from mastok.live.records import Records
from mastok.live.room import Room
from mastok.live.starter import SessionStarter, StartFailed, StartSpec
from mastok.live.watchers import Watchers
from mastok.metrics import Metrics
from mastok.tasks import TaskScope

log = logging.getLogger("mastok.live")
RETRY_PROBE_SECONDS = 1.0
WAITED = "mastok_waited_seconds"  # an entrant's wait in the pools, as oTree is told it

T = TypeVar("T")
Chore = Callable[[], Awaitable[None]]  # driver work done in a turn of its own
TURN_EVENTS = 64  # the most events one turn handles, their writes one transaction


@dataclass(slots=True)
class _Letter:
    """An event (or a chore) in the mailbox; `done` is set once it is handled."""

    work: ev.Event | Chore
    done: asyncio.Future[None] | None = None


class RoomHalted(RuntimeError):
    """The room no longer runs here: this process lost the leader lock."""


class Mailbox:
    """Events in arrival order, but what must go first (a session's outcome) goes first."""

    def __init__(self) -> None:
        self._letters: deque[_Letter] = deque()
        self._waiting: asyncio.Future[None] | None = None
        self.closed = False

    def put(self, letter: _Letter, first: bool = False) -> None:
        if self.closed:  # a halted room: nothing is handled, nobody is kept waiting
            _done(letter)
            return
        if first:
            self._letters.appendleft(letter)
        else:
            self._letters.append(letter)
        if self._waiting is not None and not self._waiting.done():
            self._waiting.set_result(None)

    async def get(self) -> _Letter:
        while not self._letters:
            self._waiting = asyncio.get_running_loop().create_future()
            await self._waiting
        return self._letters.popleft()

    def take_event(self) -> _Letter | None:
        """The next letter if it holds an event (not a chore), at once; else None."""
        if self._letters and isinstance(self._letters[0].work, ev.Event):
            return self._letters.popleft()
        return None

    def close(self) -> None:
        """Take no more letters; those waiting are dropped, and whoever waits on them freed."""
        self.closed = True
        while self._letters:
            _done(self._letters.popleft())

    def __len__(self) -> int:
        return len(self._letters)


def _name(work: ev.Event | Chore) -> str:
    """The event's name, not its values (a Land carries a browser id)."""
    return type(work).__name__


def _records_session(effects: list[ev.Effect] | None) -> bool:
    return any(isinstance(effect, ev.RecordSession) for effect in effects or ())


def _done(letter: _Letter) -> None:
    if letter.done is not None and not letter.done.done():
        letter.done.set_result(None)


class Runner:
    def __init__(
        self,
        campaign: Campaign,
        room: Room,
        records: Records,
        starter: SessionStarter,
        clock: Clock,
        tasks: TaskScope,
        metrics: Metrics | None = None,
    ) -> None:
        self.campaign = campaign  # kept current by every edit (the slug finds the runner)
        self.room = room
        self.records = records
        self.starter = starter
        self.clock = clock
        self.tasks = tasks
        self.watchers = Watchers(tasks, campaign.namespace)
        self.mailbox = Mailbox()
        self.connections: dict[ev.Conn, Connection] = {}
        # The query of each socket whose Opened is not written yet: a room halted before then
        # drops it, and the room rebuilt needs it (the platform id) to take the socket in.
        self._arriving: dict[ev.Conn, ev.Params] = {}
        self._next_conn = 0
        self._creations: set[asyncio.Task[Any]] = set()
        self._probe: asyncio.Task[Any] | None = None
        self._to_retry: list[ev.Event] = []  # events whose writes failed, tried again at a tick
        self._tick_queued = False
        self.metrics = metrics or Metrics()
        self._waits: dict[int, list[float]] = {}  # a session being created: its members' waits
        # Halted, its sockets handed to the runner of the room rebuilt (`adopt`): their events
        # go there.
        self.successor: Runner | None = None

    @property
    def campaign_id(self) -> int:
        return self.campaign.id

    # -- what sockets and the clock call -----------------------------------------------------

    @property
    def current(self) -> Runner:
        """The runner this one's sockets now belong to: itself, or the one that adopted them."""
        runner = self
        while runner.successor is not None:
            runner = runner.successor
        return runner

    def post(self, event: ev.Event | Chore, first: bool = False) -> None:
        self.current.mailbox.put(_Letter(event), first)

    async def ask(self, event: ev.Event | Chore) -> None:
        """Post and wait until it is handled."""
        done = asyncio.get_running_loop().create_future()
        self.current.mailbox.put(_Letter(event, done))
        await done

    async def participant_arrives(self, connection: Connection, query: ev.Params = ()) -> ev.Conn:
        """A participant socket, with its URL's query parameters."""
        if self.successor is not None:  # found just before this room was halted and adopted
            return await self.current.participant_arrives(connection, query)
        self._next_conn += 1
        conn = self._next_conn
        self.connections[conn] = connection
        self._arriving[conn] = query
        await self.ask(ev.Opened(conn, query))
        return conn

    async def participant_frame(self, conn: ev.Conn, frame: Frame) -> None:
        await self.ask(ev.Received(conn, frame.kind, frame.payload))

    def participant_leaves(self, conn: ev.Conn, code: int | None = None) -> None:
        """The socket closed, with the close code its peer sent (None: mastok closed it)."""
        runner = self.current
        # Forgotten at once, not when its Closed is handled: a room halted before then drops
        # the Closed, and the room rebuilt must not adopt a dead socket as someone present.
        runner.connections.pop(conn, None)
        runner._arriving.pop(conn, None)
        if not runner.mailbox.closed:  # halted: no room hears it
            runner.post(ev.Closed(conn, code))

    async def supervisor_arrives(self, connection: Connection) -> None:
        if self.successor is not None:
            await self.current.supervisor_arrives(connection)
            return

        async def arrive() -> None:
            self.watchers.add(connection, self.room.view(self.clock.now()))

        await self.ask(arrive)
        if connection not in self.watchers.connections:
            # Halted first, its arrival dropped: no room would ever tell it anything, and the
            # room rebuilt closes only the watchers it adopts. Its page comes back.
            connection.close(SERVICE_RESTART, "service restart")

    async def look(self, read: Callable[[Room, datetime], T]) -> T:
        """`read(room, now)` between turns, never in the middle of one (what supervisors see
        is what is written). Raises RoomHalted if the room stopped first."""
        if self.successor is not None:
            return await self.current.look(read)
        seen: list[T] = []

        async def look() -> None:
            seen.append(read(self.room, self.clock.now()))

        await self.ask(look)
        if not seen:
            raise RoomHalted(self.campaign.namespace)
        return seen[0]

    def supervisor_leaves(self, connection: Connection) -> None:
        self.current.watchers.remove(connection)

    def campaign_changed(self, campaign: Campaign) -> None:
        async def edit() -> None:
            # In its turn: a session set aside before it is created as the room had it then.
            self.campaign = campaign
            await self._turn(ev.Edited(ev.RoomCampaign.of(campaign)))

        self.post(edit)

    def tick(self) -> None:
        for event in self._to_retry:
            self.post(event)
        self._to_retry = []
        if not self._tick_queued:  # a runner stuck on its database gets one tick, not a pile
            self._tick_queued = True
            self.post(ev.Tick())

    def halt(self) -> None:
        """Handle no more events, at once (this process no longer holds the leader lock): the
        events queued are dropped, those posted later too; the sockets stay open."""
        self.mailbox.close()

    def adopt(self, halted: Runner) -> None:
        """The participant sockets of the same campaign's halted runner (this process took the
        leader lock back): each comes into this room, rebuilt from the database, in the place
        the halted room knew it in; their events come here from now on. Supervisors' sockets
        are closed with `SERVICE_RESTART`: their pages reconnect to this room's view."""
        halted.successor = self
        for conn, connection in halted.connections.items():
            self.connections[conn] = connection
            self.post(halted.kept(conn))
        self._next_conn = max(self._next_conn, halted._next_conn)
        halted.connections, halted._arriving = {}, {}
        for connection in list(halted.watchers.connections):
            connection.close(SERVICE_RESTART, "service restart")

    def kept(self, conn: ev.Conn) -> ev.Kept:
        """What this halted runner's room knew of a socket; a socket whose Opened it never
        wrote comes as just opened, with its query."""
        if conn in self._arriving:
            return ev.Kept(conn, self._arriving[conn])
        return self.room.kept(conn)

    def close_sockets(self, code: int, reason: str = "service restart") -> None:
        """Close every participant's and supervisor's socket (after `halt`): pages come back,
        wherever the rooms now run, with their tokens."""
        for connection in [*self.connections.values(), *self.watchers.connections]:
            connection.close(code, reason)

    async def drain(self) -> None:
        """Wait for the session creations in flight and their outcome (at shutdown)."""
        while self._creations:
            await asyncio.wait(list(self._creations))

        async def nothing() -> None:
            return None

        await self.ask(nothing)

    # -- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            letter = await self.mailbox.get()
            letters = [letter]  # and the events the turn takes after it
            try:
                if isinstance(letter.work, ev.Event):
                    await self._turn(letter.work, letters)
                else:
                    await letter.work()
            except Exception:  # a bug must not stop the campaign: the database is the truth
                log.exception("%s: %s failed", self.campaign.namespace, _name(letter.work))
            finally:
                for each in letters:
                    _done(each)

    async def _turn(self, event: ev.Event, taken: list[_Letter] | None = None) -> None:
        """Handle `event` and, given `taken`, the events queued behind it (`_handle_queued`);
        write all their changes in one transaction, then carry out their effects in order."""
        now = self.clock.now()
        turn = self._handle_queued(event, now, taken)
        if not turn:
            return
        writes = [e for _, effects in turn for e in effects if isinstance(e, ev.PERSIST)]
        recorded = None
        if writes:
            try:
                recorded = await self.records.persist(self.campaign_id, writes, now)
            except asyncio.CancelledError:
                # The term ended (the lock lost) with its writes in flight: written or not, the
                # room rebuilt from the database knows, and takes this room's sockets as it
                # knew them before the turn (a pool being started keeps its members' tokens).
                self.room.rollback()
                raise
            except TermPassed:
                # Another process leads: nothing of the turn was written, and nobody is told.
                # The leader halts every room (its sockets go where the rooms now run).
                self.room.rollback()
                self.halt()
                return
            except Exception as error:
                self.room.rollback()
                if len(turn) == 1:
                    await self._writes_failed(turn[0][0], error)
                else:  # each again on its own: only the one at fault fails
                    for event, _ in turn:
                        await self._turn(event)
                return
        self.room.commit()
        self._count(writes)
        for event, effects in turn:
            try:
                for effect in effects:
                    self._carry_out(effect)
            except Exception:  # a bug: the turn's other events are still carried out
                log.exception("%s: %s failed", self.campaign.namespace, _name(event))
            if isinstance(event, ev.Closed):
                self.connections.pop(event.conn, None)
            elif isinstance(event, ev.Opened):
                self._arriving.pop(event.conn, None)
        if self.watchers.watched:  # else nobody reads the view and notes: none is made
            notes = [
                self._with_ids(effect, recorded)
                for _, effects in turn
                for effect in effects
                if isinstance(effect, ev.Notify)
            ]
            self.watchers.turn_ended(self.room.view(now), notes)

    def _handle_queued(
        self, event: ev.Event, now: datetime, taken: list[_Letter] | None
    ) -> list[tuple[ev.Event, list[ev.Effect]]]:
        """Each event handled and its effects: `event`, then, given `taken`, the events queued
        behind it (their letters added to `taken`), up to `TURN_EVENTS`, and none after one
        that records a session (whose id its note needs). An event the rules failed on is
        left out."""
        turn: list[tuple[ev.Event, list[ev.Effect]]] = []
        while True:
            effects = self._handle(event, now)
            if effects is not None:
                turn.append((event, effects))
            if taken is None or len(taken) >= TURN_EVENTS or _records_session(effects):
                return turn
            letter = self.mailbox.take_event()
            if letter is None:
                return turn
            taken.append(letter)
            event = cast(ev.Event, letter.work)

    def _handle(self, event: ev.Event, now: datetime) -> list[ev.Effect] | None:
        """The event's effects; None if the rules failed on it (a bug: logged, and the room
        as it was before the event)."""
        if isinstance(event, ev.Tick):
            self._tick_queued = False
        mark = self.room.mark()
        try:
            return self.room.handle(event, now)
        except Exception:
            self.room.rollback(to=mark)
            log.exception("%s: %s failed", self.campaign.namespace, _name(event))
            return None

    def _count(self, writes: list[ev.Persist]) -> None:
        """The visits ended and the sessions started in what was just written."""
        self.metrics.room_written(self.campaign.namespace, writes)
        for write in writes:
            if isinstance(write, ev.RecordSession):
                self.metrics.waited(self._waits.pop(write.number, ()))

    async def _writes_failed(self, event: ev.Event, error: Exception) -> None:
        """Nothing of the event happened: say so, and try again where that makes sense."""
        namespace = self.campaign.namespace
        log.error("%s: writing %s failed: %s", namespace, type(event).__name__, error)
        if isinstance(event, ev.Received):
            connection = self.connections.get(event.conn)
            if connection is not None:
                connection.send(Kind.ERROR, "mastok could not handle that: please retry")
        elif isinstance(event, ev.SessionCreated):
            # Not recorded: its retry claims the session by its label instead of a second one.
            message = f"could not record session {event.session.code}: {error}"
            await self._turn(ev.SessionFailed(event.number, message, "mastok"))
        elif not isinstance(event, ev.Tick):
            self._to_retry.append(event)

    def _carry_out(self, effect: ev.Effect) -> None:
        match effect:
            case ev.Send(conn, kind, payload):
                if (connection := self.connections.get(conn)) is not None:
                    connection.send(kind, payload)
            case ev.SendAll(conns, kind, payload):
                text = encode(kind, payload)
                for conn in conns:
                    if (connection := self.connections.get(conn)) is not None:
                        connection.send_text(text)
            case ev.Disconnect(conn, reason):
                if (connection := self.connections.get(conn)) is not None:
                    connection.disconnect(reason)
            case ev.Notify(kind, payload):
                self._log_note(kind, payload)
            case ev.CreateSession(number, look_up, entrants):
                self._create(number, look_up, entrants)

    def _with_ids(self, note: ev.Notify, session_id: int | None) -> ev.Notify:
        """SessionStart with the database's ids of its session and campaign (Go Mastok's `ID`
        and `CampaignID`), which the room cannot know."""
        if note.kind != Kind.SESSION_START:
            return note
        return ev.Notify(
            note.kind, {**note.payload, "ID": session_id, "CampaignID": self.campaign_id}
        )

    def _log_note(self, kind: Kind, payload: Any) -> None:
        namespace = self.campaign.namespace
        if kind == Kind.SESSION_START:
            log.info("%s: started oTree session %s", namespace, payload["code"])
        elif kind == Kind.ERROR:
            log.warning("%s: %s", namespace, payload)

    # -- oTree -------------------------------------------------------------------------------

    def _create(self, number: int, look_up: bool, entrants: tuple[ev.Entrant, ...]) -> None:
        spec = StartSpec.of(self.campaign)
        self._waits[number] = [dict(e.vars).get(WAITED, 0) for e in entrants]
        task = self.tasks.spawn(
            self._create_session(spec, number, look_up, entrants),
            f"mastok start {spec.namespace} {number}",
        )
        self._creations.add(task)
        task.add_done_callback(self._creations.discard)

    async def _create_session(
        self, spec: StartSpec, number: int, look_up: bool, entrants: tuple[ev.Entrant, ...]
    ) -> None:
        outcome: ev.Event
        try:
            session = await self.starter.start(spec, number, look_up, entrants)
            outcome = ev.SessionCreated(number, session)
        except StartFailed as failure:
            outcome = ev.SessionFailed(number, failure.message)
            if failure.unreachable:
                self._probe_otree()
        except BaseException as error:  # a bug (or shutdown) must not strand the pool
            outcome = ev.SessionFailed(number, f"unexpected error: {error!r}")
            self.post(outcome, first=True)
            raise
        self.post(outcome, first=True)

    def _probe_otree(self) -> None:
        """While a creation that could not reach oTree waits for its retry, ask oTree for its
        version every second: the retry comes as soon as oTree answers, not at the end of the
        backoff (up to 60 s)."""
        if self._probe is None or self._probe.done():
            name = f"mastok probe {self.campaign.namespace}"
            self._probe = self.tasks.spawn(self._probe_until_answered(), name)

    async def _probe_until_answered(self) -> None:
        while True:
            await asyncio.sleep(RETRY_PROBE_SECONDS)
            if self.room.retry is None:
                return
            if await self.starter.otree_answers():
                self.post(ev.OTreeAnswers())
                return
