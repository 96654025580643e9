"""The runner (the room's driver) with no network: stand-ins for sockets, the database and oTree.

A real database or oTree cannot fail on demand at the one write or call a test is about; these
stand-ins do. What they check: an event is written in one transaction before anyone is told (the
events queued behind a turn, together; alone again if that fails), an event whose writes failed
changes nothing (and its retry succeeds), a session outcome goes ahead of the frames queued
meanwhile, a start whose record failed is claimed again rather than created twice, a pool whose
record was in flight when the leader lock was lost gets its URLs from the room rebuilt, and
supervisors end up with the current view.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from mastok.clock import ManualClock
from mastok.db.leader_term import TermPassed
from mastok.db.tables import Campaign
from mastok.live.events import (
    AddParticipant,
    CreatedSession,
    Entrant,
    Move,
    Notify,
    Persist,
    Received,
    RecordSession,
    RoomCampaign,
    Rules,
    SendAll,
    SessionFailed,
    Tick,
    View,
)
from mastok.live.leadership import SERVICE_RESTART
from mastok.live.protocol import Frame, Kind, decode
from mastok.live.room import Room, Started, Waiting
from mastok.live.runner import Mailbox, Runner, _Letter
from mastok.live.starter import StartFailed, StartSpec
from mastok.live.watchers import Watchers
from mastok.states import RoomState, Step
from mastok.tasks import TaskScope, task_scope


class FakeConnection:
    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.closing = False
        self.closed: int | None = None  # the close code mastok closed it with

    def send(self, kind: str, payload: Any = None) -> None:
        self.frames.append(Frame(kind, payload))

    def send_text(self, text: str) -> None:
        self.frames.append(decode(text))

    def send_texts(self, texts: tuple[str, ...]) -> None:
        self.frames.extend(decode(text) for text in texts)

    def disconnect(self, reason: str) -> None:
        self.send("Disconnect", reason)
        self.closing = True

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.closing, self.closed = True, code

    def writing(self) -> None:
        return None  # frames are taken at once: nothing left to write

    def kinds(self) -> list[str]:
        return [frame.kind for frame in self.frames]


class FlakyRecords:
    """The database, in memory: each event's writes in one call, failing on demand."""

    def __init__(self) -> None:
        self.transactions: list[list[Persist]] = []
        self.fail: set[type] = set()  # a transaction holding one of these fails (once each)
        self.broken: set[str] = set()  # browser ids whose rows never write: a bad row
        self.gate: asyncio.Event | None = None  # when set, writes wait for it
        self.gated: set[type] = set()  # if any, only transactions holding one of these wait
        self.held = asyncio.Event()  # a write waits at the gate
        self.term_passed = False  # another process leads: every write is refused

    async def persist(self, campaign_id: int, writes: Sequence[Persist], now: datetime) -> None:
        if self.term_passed:
            raise TermPassed("another process leads")
        await self._persist(writes)

    async def _persist(self, writes: Sequence[Persist]) -> None:
        if self.gate is not None and (
            not self.gated or any(isinstance(w, tuple(self.gated)) for w in writes)
        ):
            self.held.set()
            await self.gate.wait()
        failing = {type(w) for w in writes} & self.fail
        if any(isinstance(w, AddParticipant) and w.browser_id in self.broken for w in writes):
            raise OperationalError("INSERT INTO participants", {}, Exception("bad row"))
        if failing:
            self.fail -= failing
            raise OperationalError("UPDATE participants", {}, Exception("server closed"))
        self.transactions.append(list(writes))

    def written(self, kind: type) -> list[Any]:
        return [w for t in self.transactions for w in t if isinstance(w, kind)]


class InstantStarter:
    """oTree that creates (or finds again, by label) session 1 at once."""

    def __init__(self) -> None:
        self.starts = 0
        self.look_ups: list[bool] = []
        self.failures: list[str] = []
        self.unreachable = False

    async def start(
        self, spec: StartSpec, number: int, look_up: bool, entrants: tuple[Entrant, ...] = ()
    ) -> CreatedSession:
        self.starts += 1
        self.look_ups.append(look_up)
        if self.failures:
            raise StartFailed(self.failures.pop(0), unreachable=self.unreachable)
        return CreatedSession(
            code="sess1",
            mastok_id=f"mk:{spec.namespace}:{number}",
            admin_url="http://otree/SessionStartLinks/sess1",
            participants=tuple(
                (f"p{n}", f"http://otree/InitializeParticipant/p{n}") for n in (1, 2)
            ),
        )

    async def otree_answers(self) -> bool:
        return True


def campaign() -> Campaign:
    return Campaign(
        id=1,
        namespace="ns",
        slug="ns",
        uid="u",
        otree_config_name="guess_two",
        per_session=2,
        max_sessions=3,
        started_sessions=0,
        concurrent_sessions=2,
        session_duration=30,
        waiting_limit=5,
        grouping="",
        consent="[accept]OK[/accept]",
        instructions="Wait",
        pending="",
        paused="",
        completed="",
        show_nb_participants=True,
        join_once=False,
        state="Running",
    )


@pytest.fixture
async def tasks() -> AsyncIterator[TaskScope]:
    async with task_scope() as scope:
        yield scope


class Setup:
    def __init__(self, tasks: TaskScope) -> None:
        self.records = FlakyRecords()
        self.starter = InstantStarter()
        self.clock = ManualClock()
        self.tokens = 0
        room = Room(RoomCampaign.of(campaign()), Rules(timedelta(seconds=30), True), self.new_token)
        self.runner = Runner(
            campaign(),
            room,
            self.records,
            self.starter,
            self.clock,
            tasks,  # type: ignore[arg-type]
        )
        self.running = tasks.spawn(self.runner.run(), "runner")

    def new_token(self) -> str:
        self.tokens += 1
        return f"tok{self.tokens}"

    async def arrive(self) -> tuple[FakeConnection, int]:
        connection = FakeConnection()
        conn = await self.runner.participant_arrives(connection)  # type: ignore[arg-type]
        return connection, conn

    async def frame(self, conn: int, kind: str, payload: Any = None) -> None:
        await self.runner.participant_frame(conn, Frame(kind, payload))

    async def join(self, fingerprint: str) -> tuple[FakeConnection, int]:
        connection, conn = await self.arrive()
        await self.frame(conn, "Land", fingerprint)
        await self.frame(conn, "Agree")
        return connection, conn

    async def settle(self) -> None:
        """Wait until creations in flight are recorded."""
        await self.runner.drain()


@pytest.fixture
def setup(tasks: TaskScope) -> Setup:
    return Setup(tasks)


async def test_each_event_is_written_in_one_transaction_before_anyone_is_told(
    setup: Setup,
) -> None:
    setup.records.gate = asyncio.Event()
    connection, conn = await setup.arrive()
    landing = asyncio.create_task(setup.frame(conn, "Land", "fp"))
    await asyncio.sleep(0)  # the runner is now waiting for its write
    for _ in range(5):
        await asyncio.sleep(0)
    assert connection.kinds() == ["State"]  # not told before it is written
    setup.records.gate.set()
    await landing
    assert connection.kinds() == ["State", "Resume", "Consent"]
    assert setup.records.transactions == [[AddParticipant("tok1", "fp")]]


async def _lands_held_behind_a_write(
    setup: Setup, fingerprints: list[str]
) -> tuple[asyncio.Task[None], list[FakeConnection]]:
    """Participants arrive; the first lands while writes wait for the gate, holding the runner
    in its turn; the others land meanwhile, their Lands queued in its mailbox."""
    arrivals = [await setup.arrive() for _ in fingerprints]
    setup.records.gate = asyncio.Event()
    (_, first), *others = arrivals
    landing = asyncio.create_task(setup.frame(first, "Land", fingerprints[0]))
    await setup.records.held.wait()  # the Land handled, its write not committed
    for (_, conn), fingerprint in zip(others, fingerprints[1:], strict=True):
        setup.runner.post(Received(conn, "Land", fingerprint))
    return landing, [connection for connection, _ in arrivals]


async def _let_writes_through(setup: Setup, landing: asyncio.Task[None]) -> None:
    assert setup.records.gate is not None
    setup.records.gate.set()
    await landing
    await setup.runner.ask(Tick())  # after the Lands queued


def _rules_but(
    monkeypatch: pytest.MonkeyPatch, payload: str, instead: Callable[[Room, Received], Any]
) -> None:
    """The room's rules, but for a Land whose fingerprint is `payload`: `instead(room, event)`
    (a bug, or an effect the rules would not give)."""
    handle = Room.handle

    def rules(room: Room, event: Any, now: datetime) -> Any:
        if isinstance(event, Received) and event.payload == payload:
            return instead(room, event)
        return handle(room, event, now)

    monkeypatch.setattr(Room, "handle", rules)


async def test_the_events_queued_behind_a_turn_are_written_in_one_transaction(
    setup: Setup,
) -> None:
    landing, (_, b, c) = await _lands_held_behind_a_write(setup, ["a", "b", "c"])
    for _ in range(5):
        await asyncio.sleep(0)
    assert b.kinds() == c.kinds() == ["State"]  # queued behind the turn held
    await _let_writes_through(setup, landing)
    assert b.kinds() == c.kinds() == ["State", "Resume", "Consent"]
    assert setup.records.transactions == [
        [AddParticipant("tok1", "a")],
        [AddParticipant("tok2", "b"), AddParticipant("tok3", "c")],
    ]


async def test_a_turn_whose_transaction_failed_handles_each_event_again_alone(
    setup: Setup,
) -> None:
    landing, (_, b, c) = await _lands_held_behind_a_write(setup, ["a", "b", "c"])
    setup.records.broken = {"b"}
    await _let_writes_through(setup, landing)
    assert b.frames[-1] == Frame("Error", "mastok could not handle that: please retry")
    assert c.kinds() == ["State", "Resume", "Consent"]  # only the one at fault failed
    written = setup.records.written(AddParticipant)
    assert [w.browser_id for w in written] == ["a", "c"]
    assert sorted(m.browser_id for m in setup.runner.room.members.values()) == ["a", "c"]


async def test_an_event_the_rules_fail_on_is_undone_alone_in_its_turn(
    setup: Setup, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def fault(room: Room, event: Received) -> Any:
        room.journal.set(room, "next_order", 99)  # a change, then the fault
        raise RuntimeError("a bug in the rules")

    _rules_but(monkeypatch, "bug", fault)
    landing, (_, c, bug, d) = await _lands_held_behind_a_write(setup, ["a", "c", "bug", "d"])
    await _let_writes_through(setup, landing)
    assert bug.kinds() == ["State"]
    assert c.kinds() == d.kinds() == ["State", "Resume", "Consent"]
    assert setup.runner.room.next_order != 99
    assert [w.browser_id for w in setup.records.written(AddParticipant)] == ["a", "c", "d"]
    assert sorted(m.browser_id for m in setup.runner.room.members.values()) == ["a", "c", "d"]
    assert "ns: Received failed" in caplog.text


async def test_a_bug_carrying_out_one_event_leaves_the_others_of_its_turn_told(
    setup: Setup, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def unsendable(room: Room, event: Received) -> Any:
        return [SendAll((event.conn,), "Oops", object())]  # not JSON: encoding raises

    _rules_but(monkeypatch, "bug", unsendable)
    landing, (_, bug, c) = await _lands_held_behind_a_write(setup, ["a", "bug", "c"])
    await _let_writes_through(setup, landing)
    assert bug.kinds() == ["State"]
    assert c.kinds() == ["State", "Resume", "Consent"]
    assert "ns: Received failed" in caplog.text


async def test_a_turn_takes_no_event_after_one_that_records_a_session(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = CreatedSession("sess9", "mk:ns:9", "http://otree/sess9", ())
    recorded = RecordSession(9, session, (), False)
    _rules_but(monkeypatch, "record", lambda room, event: [recorded])
    landing, _ = await _lands_held_behind_a_write(setup, ["a", "b", "record", "c"])
    await _let_writes_through(setup, landing)
    assert setup.records.transactions == [
        [AddParticipant("tok1", "a")],
        [AddParticipant("tok2", "b"), recorded],
        [AddParticipant("tok3", "c")],
    ]


async def test_a_failed_write_changes_nothing_and_the_retry_succeeds(setup: Setup) -> None:
    connection, conn = await setup.arrive()
    setup.records.fail = {AddParticipant}
    await setup.frame(conn, "Land", "fp")
    assert connection.frames[-1] == Frame("Error", "mastok could not handle that: please retry")
    assert setup.runner.room.members == {} and not connection.closing
    await setup.frame(conn, "Land", "fp")
    assert connection.kinds()[-2:] == ["Resume", "Consent"]
    # The fault the old runner had: its memory moved on before a failed write, and the
    # retried Agree was refused as out of order.
    setup.records.fail = {Move}
    await setup.frame(conn, "Agree")
    assert connection.frames[-1].kind == "Error"
    await setup.frame(conn, "Agree")
    assert connection.kinds()[-3:] == ["Instructions", "JoiningSize", "Waiting"]
    assert [m.step for m in setup.runner.room.members.values()] == ["joining"]


async def test_a_write_refused_as_another_process_leads_halts_the_room_telling_nobody(
    setup: Setup,
) -> None:
    first, _ = await setup.join("a")
    second, conn = await setup.arrive()
    await setup.frame(conn, "Land", "b")
    told = (list(first.frames), list(second.frames))
    written = list(setup.records.transactions)
    setup.records.term_passed = True
    await setup.frame(conn, "Agree")  # it fills the pool: the session's number to write
    assert (first.frames, second.frames) == told  # no Error, no Instructions, no Starting
    assert setup.records.transactions == written and setup.starter.starts == 0
    steps = {m.browser_id: m.step for m in setup.runner.room.members.values()}
    assert steps == {"a": Step.JOINING, "b": Step.LANDED}  # the room as before the turn
    assert setup.runner.mailbox.closed  # halted: its sockets wait for where the rooms run
    assert not first.closing and not second.closing


async def test_a_lost_database_while_recording_a_session_is_retried_without_a_second_one(
    setup: Setup,
) -> None:
    supervisor = FakeConnection()
    await setup.runner.supervisor_arrives(supervisor)  # type: ignore[arg-type]
    setup.records.fail = {RecordSession}
    first, _ = await setup.join("a")
    second, _ = await setup.join("b")
    await setup.settle()
    await until(lambda: any(f.kind == "Error" for f in supervisor.frames))

    errors = [f.payload for f in supervisor.frames if f.kind == "Error"]
    assert len(errors) == 1
    assert errors[0].startswith("mastok session creation failed: could not record session sess1")
    assert "server closed" in errors[0]
    assert Frame("State", "Unavailable") in supervisor.frames
    assert "Starting" not in first.kinds() + second.kinds()
    assert setup.runner.room.retry is not None

    setup.clock.advance(seconds=1)  # the backoff is over
    setup.runner.tick()
    await setup.runner.ask(Tick())
    await setup.settle()
    assert setup.starter.look_ups == [False, True]  # claimed by its label, not made twice
    assert first.frames[-2:] == [
        Frame("Starting", "http://otree/InitializeParticipant/p1"),
        Frame("Disconnect", "Start"),
    ]
    assert second.frames[-2] == Frame("Starting", "http://otree/InitializeParticipant/p2")
    assert len(setup.records.written(RecordSession)) == 1
    assert setup.runner.room.campaign.started_sessions == 1
    assert setup.runner.room.members == {}


async def test_a_failed_start_retries_with_backoff(setup: Setup) -> None:
    setup.starter.failures = ["down", "down", "down"]
    await setup.join("a")
    await setup.join("b")
    await setup.settle()
    delays = []
    for _ in range(3):
        retry = setup.runner.room.retry
        assert retry is not None
        delays.append((retry.at - setup.clock.now()).total_seconds())
        await setup.runner.ask(Tick())
        assert setup.starter.starts == len(delays)  # not due yet: no new attempt
        setup.clock.advance(seconds=delays[-1])
        await setup.runner.ask(Tick())
        await setup.settle()
    assert delays == [1.0, 2.0, 4.0]
    assert setup.starter.starts == 4
    assert setup.runner.room.retry is None


async def test_paused_during_a_retry_creates_nothing(setup: Setup) -> None:
    setup.starter.failures = ["down"]
    first, _ = await setup.join("a")
    await setup.join("b")
    await setup.settle()
    assert setup.runner.room.retry is not None
    paused = campaign()
    paused.state = "Paused"
    setup.runner.campaign_changed(paused)
    setup.clock.advance(minutes=5)  # any retry would be due
    await setup.runner.ask(Tick())  # after the edit: the mailbox is first come, first served
    await setup.settle()
    assert setup.starter.starts == 1
    assert first.frames[-2:] == [Frame("Paused", ""), Frame("Disconnect", "Paused")]
    assert setup.records.written(RecordSession) == []


async def test_an_unreachable_otree_is_retried_as_soon_as_it_answers(setup: Setup) -> None:
    setup.starter.failures, setup.starter.unreachable = ["refused"], True
    first, _ = await setup.join("a")
    await setup.join("b")
    await setup.settle()
    assert setup.runner.room.retry is not None  # due in a second of a clock that stands still
    for _ in range(100):  # the probe asks oTree every second
        if setup.starter.starts == 2:
            break
        await asyncio.sleep(0.05)
    await setup.settle()
    assert setup.starter.look_ups == [False, True]
    assert first.frames[-2].kind == "Starting"


async def test_a_turn_takes_the_events_queued_but_not_a_chore() -> None:
    mailbox = Mailbox()

    async def chore() -> None:
        return None

    mailbox.put(_Letter(Tick()))
    mailbox.put(_Letter(chore))
    mailbox.put(_Letter(Tick()))
    assert mailbox.take_event() is not None
    assert mailbox.take_event() is None  # the chore goes in a turn of its own, in its place
    assert len(mailbox) == 2


async def test_a_session_outcome_goes_ahead_of_queued_frames() -> None:
    mailbox = Mailbox()
    for _ in range(3):
        mailbox.put(_Letter(Tick()))
    outcome = SessionFailed(1, "x")
    mailbox.put(_Letter(outcome), first=True)
    assert (await mailbox.get()).work is outcome
    assert len(mailbox) == 3


async def test_supervisors_get_the_latest_view_at_most_every_period(tasks: TaskScope) -> None:
    watchers = Watchers(tasks, "ns")
    supervisor = FakeConnection()
    watchers.add(supervisor, View(RoomState.RUNNING, "0/2", "0/8"))
    assert supervisor.frames == [
        Frame("State", "Running"),
        Frame("JoiningSize", "0/2"),
        Frame("PendingSize", "0/8"),
    ]
    for n in range(1, 50):
        watchers.turn_ended(View(RoomState.RUNNING, f"{n % 2}/2", f"{n}/8"), [])
    assert len(supervisor.frames) == 3  # told by a task of its own, not in the room's turn
    await until(lambda: len(supervisor.frames) >= 5)
    # The 49 changes as one: the view as it was when the supervisors were told.
    assert supervisor.frames[3:] == [Frame("JoiningSize", "1/2"), Frame("PendingSize", "49/8")]
    # A note goes out with the state it explains, just after it.
    watchers.turn_ended(
        View(RoomState.UNAVAILABLE, "1/2", "49/8"), [Notify(Kind.ERROR, "oTree failed")]
    )
    await until(lambda: len(supervisor.frames) >= 7)
    assert supervisor.frames[5:] == [Frame("State", "Unavailable"), Frame("Error", "oTree failed")]


async def test_a_supervisor_who_arrives_is_not_told_again_what_it_was_told(
    tasks: TaskScope,
) -> None:
    watchers = Watchers(tasks, "ns")
    first, second = FakeConnection(), FakeConnection()
    watchers.add(first, View(RoomState.RUNNING, "0/2", "0/8"))
    watchers.turn_ended(View(RoomState.RUNNING, "1/2", "0/8"), [])
    watchers.add(second, View(RoomState.RUNNING, "1/2", "0/8"))
    await until(lambda: len(first.frames) >= 4)
    assert first.frames[3:] == [Frame("JoiningSize", "1/2")]
    assert second.frames == [
        Frame("State", "Running"),
        Frame("JoiningSize", "1/2"),
        Frame("PendingSize", "0/8"),
    ]


async def test_a_room_nobody_watches_makes_no_view_and_a_supervisor_gets_it_whole(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    views = 0
    view = Room.view

    def counted(room: Room, now: datetime) -> View:
        nonlocal views
        views += 1
        return view(room, now)

    monkeypatch.setattr(Room, "view", counted)
    supervisor = FakeConnection()
    await setup.runner.supervisor_arrives(supervisor)  # type: ignore[arg-type]
    await setup.join("a")
    assert views > 1  # on arrival, then after each turn
    await until(lambda: Frame("JoiningSize", "1/2") in supervisor.frames)
    setup.runner.supervisor_leaves(supervisor)  # type: ignore[arg-type]
    views = 0
    await setup.join("b")  # the pool's session started: nobody watching
    await setup.settle()
    assert views == 0

    again = FakeConnection()
    await setup.runner.supervisor_arrives(again)  # type: ignore[arg-type]
    assert again.frames == [
        Frame("State", "Running"),
        Frame("JoiningSize", "0/2"),
        Frame("PendingSize", "0/6"),
    ]
    await setup.join("c")
    await until(lambda: len(again.frames) >= 4)
    assert again.frames[3:] == [Frame("JoiningSize", "1/2")]


async def until(done: Callable[[], bool]) -> None:
    """Wait for `done()`, a few coalescing periods at most."""
    for _ in range(200):
        if done():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("it did not happen")


async def test_a_socket_closed_as_its_room_halted_is_away_in_the_room_rebuilt(
    setup: Setup, tasks: TaskScope
) -> None:
    queued_at = setup.clock.now()
    _, gone = await setup.join("a")
    setup.runner.participant_leaves(gone, 1006)  # its Closed still in the mailbox
    setup.runner.halt()  # the leader lock lost: the mailbox's letters dropped

    waiting = [Waiting("tok1", "a", Step.JOINING, "default", queued_at)]
    room = Room.restore(
        RoomCampaign.of(campaign()),
        Rules(timedelta(seconds=30), True),
        setup.new_token,
        waiting,
        [],
        {},
        setup.clock.now(),
    )
    rebuilt = Runner(campaign(), room, setup.records, setup.starter, setup.clock, tasks)  # type: ignore[arg-type]
    tasks.spawn(rebuilt.run(), "rebuilt runner")
    rebuilt.adopt(setup.runner)  # the lock taken back
    await rebuilt.ask(Tick())

    assert room.members["tok1"].conn is None  # away: its socket is closed
    await setup.join("b")
    await rebuilt.drain()
    assert setup.starter.starts == 0  # no session for a pool with someone gone


async def test_a_socket_whose_arrival_its_halted_room_dropped_keeps_its_parameters(
    setup: Setup, tasks: TaskScope
) -> None:
    prolific = campaign()
    prolific.identity_param, prolific.require_identity = "PROLIFIC_PID", True
    setup.runner.campaign, setup.runner.room.campaign = prolific, RoomCampaign.of(prolific)
    first = await setup.runner.participant_arrives(
        FakeConnection(),  # type: ignore[arg-type]
        (("PROLIFIC_PID", "p0"),),
    )
    setup.records.gate = asyncio.Event()
    landing = asyncio.create_task(setup.frame(first, "Land", "a"))
    await setup.records.held.wait()  # the runner is stuck on its database...
    connection = FakeConnection()
    arriving = asyncio.create_task(
        setup.runner.participant_arrives(connection, (("PROLIFIC_PID", "p1"),))  # type: ignore[arg-type]
    )
    await asyncio.sleep(0)  # ... its Opened queued
    setup.runner.halt()  # the leader lock lost: the mailbox's letters dropped
    await arriving

    room = Room.restore(
        RoomCampaign.of(prolific),
        Rules(timedelta(seconds=30), True),
        setup.new_token,
        [],
        [],
        {},
        setup.clock.now(),
    )
    records = FlakyRecords()  # the database back
    rebuilt = Runner(prolific, room, records, setup.starter, setup.clock, tasks)  # type: ignore[arg-type]
    tasks.spawn(rebuilt.run(), "rebuilt runner")
    rebuilt.adopt(setup.runner)  # the lock taken back
    await rebuilt.ask(Tick())
    assert connection.frames == [Frame("State", "Running")]  # not turned away: MissingId
    setup.records.gate.set()
    await landing


async def test_a_supervisor_whose_arrival_its_halted_room_dropped_is_sent_to_the_room_rebuilt(
    setup: Setup, tasks: TaskScope
) -> None:
    _, conn = await setup.arrive()
    setup.records.gate = asyncio.Event()
    landing = asyncio.create_task(setup.frame(conn, "Land", "a"))
    await setup.records.held.wait()  # the runner is stuck on its database...
    supervisor = FakeConnection()
    arriving = asyncio.create_task(setup.runner.supervisor_arrives(supervisor))  # type: ignore[arg-type]
    await asyncio.sleep(0)  # ... its arrival queued
    setup.runner.halt()  # the leader lock lost: the mailbox's letters dropped
    await arriving

    room = Room(RoomCampaign.of(campaign()), Rules(timedelta(seconds=30), True), setup.new_token)
    rebuilt = Runner(campaign(), room, FlakyRecords(), setup.starter, setup.clock, tasks)  # type: ignore[arg-type]
    tasks.spawn(rebuilt.run(), "rebuilt runner")
    rebuilt.adopt(setup.runner)  # the lock taken back
    await rebuilt.ask(Tick())
    # Never told the view, nor ever after: its page must reconnect to the room rebuilt.
    assert supervisor.closed == SERVICE_RESTART
    setup.records.gate.set()
    await landing


async def test_a_pool_recorded_as_the_lock_was_lost_gets_its_urls_from_the_room_rebuilt(
    setup: Setup, tasks: TaskScope
) -> None:
    setup.records.gate, setup.records.gated = asyncio.Event(), {RecordSession}
    first, _ = await setup.join("a")
    second, _ = await setup.join("b")
    await setup.records.held.wait()  # session 1 created, its record being committed
    setup.runner.halt()  # the leader lock lost: the term's tasks cancelled, the runner's too
    setup.running.cancel()
    await asyncio.wait([setup.running])
    assert "Starting" not in first.kinds() + second.kinds()

    # The record committed all the same (the writers are the app's, not the term's).
    now = setup.clock.now()
    urls = [f"http://otree/InitializeParticipant/p{n}" for n in (1, 2)]
    started = [
        Started(f"tok{n}", f"browser:{fp}", urls[n - 1], now) for n, fp in ((1, "a"), (2, "b"))
    ]
    recorded = campaign()
    recorded.started_sessions = 1
    room = Room.restore(
        RoomCampaign.of(recorded),
        Rules(timedelta(seconds=30), False),  # no live redirect: only the URL stops a rejoin
        setup.new_token,
        [],
        started,
        {1: now},
        now,
    )
    rebuilt = Runner(recorded, room, FlakyRecords(), setup.starter, setup.clock, tasks)  # type: ignore[arg-type]
    tasks.spawn(rebuilt.run(), "rebuilt runner")
    rebuilt.adopt(setup.runner)  # the lock taken back
    await rebuilt.ask(Tick())

    # As if the pool had been told: each its own URL, and dropped.
    for connection, url in ((first, urls[0]), (second, urls[1])):
        assert connection.frames[-2:] == [Frame("Starting", url), Frame("Disconnect", "Start")]
    assert room.members == {} and room.sockets == {}
    back = FakeConnection()
    conn = await rebuilt.participant_arrives(back)  # type: ignore[arg-type]
    await rebuilt.participant_frame(conn, Frame("Resume", "tok1"))
    assert back.frames[-2:] == [Frame("Starting", urls[0]), Frame("Disconnect", "Start")]
    assert setup.starter.starts == 1
