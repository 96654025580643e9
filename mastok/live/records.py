"""What the waiting room writes down: participants as they move, sessions as they start.

The room's statements run on plain connections (SQLAlchemy Core), not ORM sessions: they are
single statements on known tokens, and an ORM session's bookkeeping cost more than the
statements. The writes every participant causes are a module a database with the same
functions (`sqlite_writes`, straight to the driver; `postgres_writes`, one call of a database
function a batch), chosen once for each change.

Each event's writes are one transaction, and the transactions of all rooms are group-committed
(`mastok.db.batches`): those asked for while a batch commits go together in the next one, each
still answered only once committed, and each written alone if its batch fails, so that only the
event at fault fails. At most `WRITERS` batches commit at once and `READERS` reads run at once,
within the pool's kept connections, so a burst of participants neither drains the pool (whose
waiters are served out of order, some for as long as its 30 s timeout) nor opens and closes
overflow connections.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol, TypeVar

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from mastok.clock import aware
from mastok.db import Database
from mastok.db.batches import ALONE, Batches, GroupCommit
from mastok.db.batches import Leave as Alone
from mastok.db.leader_term import Fence
from mastok.db.tables import OTreeSession, Participant
from mastok.live import postgres_writes, sqlite_writes
from mastok.live.events import (
    AddParticipant,
    Ask,
    Consented,
    Leave,
    Lengthened,
    MarkReady,
    Move,
    Persist,
    RecordSession,
    SessionsEnded,
)
from mastok.live.room import Ending, Started, Waiting, key_of
from mastok.states import WAITING_STEPS, Outcome, Step
from mastok.tasks import Spawn

T = TypeVar("T")
W = TypeVar("W", contravariant=True)  # where a module's writes go

# Within the pool's 5 kept connections (SQLAlchemy's default), beside LightMill's writers: the
# rooms' writers, their readers, and one for the other writes (`Records.commit`).
WRITERS = 2
READERS = 2
# Turns of the loop SQLite's writer lets pass before it takes a batch (batches.py): the events
# read from sockets meanwhile go in it. Two pairs of `waiting_room` runs in turns: saturation
# 323-439 flows/s without, 499-616 with (commits a participant 0.17 to 0.09, counted), its p99 at
# 50% 32.58 and 50.29 ms against 33.16 and 30.95 at the higher rates. On PostgreSQL, whose
# writers commit two batches at once, two pairs were not better (bench scenario 2, nineteenth
# round).
SQLITE_GATHER_TURNS = 3

_STARTED = (
    select(
        Participant.token,
        Participant.identity,
        Participant.browser_id,
        Participant.start_url,
        OTreeSession.created_at,
    )
    .join(OTreeSession, Participant.session_id == OTreeSession.id)
    .where(Participant.campaign_id == bindparam("campaign_id"))
    .where(Participant.step == Step.STARTED)
)
_WAITING = (
    select(
        Participant.token,
        Participant.browser_id,
        Participant.step,
        Participant.group_label,
        Participant.queued_at,
        Participant.identity,
        Participant.params,
        Participant.waiting_limit_seconds,
    )
    .where(Participant.campaign_id == bindparam("campaign_id"))
    .where(Participant.step.in_(WAITING_STEPS))
    .order_by(Participant.queued_at, Participant.id)
)
# A handful among all the campaign's ended visits: read through ix_participants_campaign_ended_at
# (tests/live/test_records_plans.py reads the plans on both databases).
_ENDED = (
    select(Participant.token, Participant.outcome, Participant.params, Participant.ended_at)
    .where(Participant.campaign_id == bindparam("campaign_id"))
    .where(Participant.step == Step.LEFT)
    .where(Participant.outcome != Outcome.AWAY)  # nobody there to tell
    .where(Participant.ended_at > bindparam("since"))
)
_LIVE_SESSIONS = (
    select(OTreeSession.number, OTreeSession.created_at)
    .where(OTreeSession.campaign_id == bindparam("campaign_id"))
    .where(OTreeSession.created_at > bindparam("since"))
    .where(OTreeSession.finished_at.is_(None))
)


class RoomWrites(Protocol[W]):
    """The writes of every participant, one module a database (`sqlite_writes` into a
    connection's transaction, `postgres_writes` into a `Call`): the same changes, stored the
    same way."""

    async def add_participant(self, into: W, row: Mapping[str, Any]) -> None: ...

    async def move(
        self, into: W, tokens: Sequence[str], values: dict[str, Any], now: datetime
    ) -> None: ...

    async def ask(self, into: W, campaign_id: int, number: int, now: datetime) -> None: ...

    async def record_session(
        self, into: W, campaign_id: int, change: RecordSession, now: datetime
    ) -> int | None: ...

    async def sessions_ended(
        self, into: W, campaign_id: int, numbers: Sequence[int], now: datetime
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class _Turn:
    """One turn's changes to write (PostgreSQL), in the term it was asked for in."""

    campaign_id: int
    writes: Sequence[Persist]
    now: datetime
    fence: Fence | None


class Records:
    def __init__(self, db: Database, spawn: Spawn | None = None) -> None:
        """`spawn`: starts the writers' tasks (the app's task scope)."""
        self.db = db
        self._reads = asyncio.Semaphore(READERS)
        # On SQLite a transaction's statements wait, and go to aiosqlite's thread together;
        # the rooms' writes and the others (`commit`) share its one writer.
        finish = sqlite_writes.flush if db.is_sqlite else None
        gather_turns = SQLITE_GATHER_TURNS if db.is_sqlite else 0
        self._writes = GroupCommit(db, 1, spawn, finish, gather_turns=gather_turns)
        # On PostgreSQL the rooms' writes of a batch are one statement, its own transaction.
        self._room_writes: Batches[_Turn, int | None] = Batches(
            db, _run_turns, _run_turn, WRITERS, spawn, autocommit=True
        )
        # The term the rooms' writes are made in (PostgreSQL; set by the leader as its rooms
        # start): each write checks its own, taken when it is asked for.
        self.fence: Fence | None = None

    async def commit(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Another write of the rooms' tables (the progress poller's pages). On SQLite it goes
        in the rooms' own group commit: SQLite takes one writer at a time, and a writer held up
        sleeps in its busy handler (1, 2, 5 ... up to 100 ms between tries, however soon the
        lock is free): on connections of their own, the poller's writes made the rooms'
        committer sleep 295 ms of 3 s in a closed loop of join flows (strace, bench scenario
        2). The statements the rooms left waiting in the transaction run before `work`'s
        (`sqlite_writes`)."""
        if not self.db.is_sqlite:
            return await self._writes.commit(work)

        async def in_order(connection: AsyncConnection) -> T:
            await sqlite_writes.flush(connection)
            return await work(connection)

        return await self._writes.commit(in_order)

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        async with self._reads, self.db.engine.connect() as connection:
            yield connection

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[AsyncSession]:
        """An ORM session, for the reads that hand back rows as objects."""
        async with self._reads, self.db.session() as session:
            yield session

    async def persist(
        self, campaign_id: int, writes: Sequence[Persist], now: datetime
    ) -> int | None:
        """Write one event's changes in one transaction; return once they are committed, with
        the database id of the session it recorded, if it recorded one. Raises TermPassed,
        writing nothing, if another process leads since the fence's term began."""
        if not self.db.is_sqlite:
            return await self._room_writes.write(_Turn(campaign_id, writes, now, self.fence))

        async def write(connection: AsyncConnection) -> int | None:
            recorded = None
            for change in _fused(writes):
                recorded = (
                    await _write_change(sqlite_writes, connection, campaign_id, change, now)
                    or recorded
                )
            return recorded

        return await self._writes.commit(write)

    async def waiting(self, campaign_id: int) -> list[Waiting]:
        """Everyone in the room, in pool order."""
        async with self._read() as connection:
            rows = await connection.execute(_WAITING, {"campaign_id": campaign_id})
            return [
                Waiting(
                    token,
                    browser_id or "",
                    Step(step),
                    group,
                    aware(queued) if queued else None,
                    identity,
                    _params(params),
                    None if limit is None else timedelta(seconds=limit),
                )
                for token, browser_id, step, group, queued, identity, params, limit in rows
            ]

    async def started(self, campaign_id: int) -> list[Started]:
        """Everyone who started a session of this campaign."""
        async with self._read() as connection:
            rows = await connection.execute(_STARTED, {"campaign_id": campaign_id})
            return [
                Started(
                    token,
                    key_of(identity, browser_id),
                    url or "",
                    aware(created),
                    key_of(None, browser_id),
                )
                for token, identity, browser_id, url, created in rows
            ]

    async def ended(self, campaign_id: int, since: datetime) -> list[Ending]:
        """The visits that ended after `since` (but those away)."""
        async with self._read() as connection:
            rows = await connection.execute(_ENDED, {"campaign_id": campaign_id, "since": since})
            return [
                Ending(token, Outcome(outcome), _params(params), aware(ended_at))
                for token, outcome, params, ended_at in rows
                if outcome and ended_at  # both set on every row ended (typed as nullable)
            ]

    async def campaigns_with_waiting(self) -> list[int]:
        async with self._read() as connection:
            found = await connection.scalars(
                select(Participant.campaign_id)
                .where(Participant.step.in_(WAITING_STEPS))
                .distinct()
            )
            return list(found)

    async def live_sessions(self, campaign_id: int, since: datetime) -> dict[int, datetime]:
        """The sessions started after `since` and not finished: number -> started at."""
        async with self._read() as connection:
            found = await connection.execute(
                _LIVE_SESSIONS, {"campaign_id": campaign_id, "since": since}
            )
            return {number: aware(moment) for number, moment in found}

    async def sessions(self, campaign_id: int) -> list[OTreeSession]:
        async with self._session() as session:
            found = await session.scalars(
                select(OTreeSession)
                .where(OTreeSession.campaign_id == campaign_id)
                .order_by(OTreeSession.number.desc())
            )
            return list(found)

    async def participant_codes(self, campaign_id: int) -> dict[int, list[str]]:
        """The oTree participant codes of each of the campaign's sessions (by session id), in
        code order: one query, not one a session (a campaign's page lists all of them)."""
        found: dict[int, list[str]] = {}
        async with self._read() as connection:
            rows = await connection.execute(
                select(Participant.session_id, Participant.otree_code)
                .where(Participant.campaign_id == campaign_id)
                .where(Participant.session_id.is_not(None))
                .order_by(Participant.session_id, Participant.otree_code)
            )
            for session_id, code in rows:
                if session_id is not None and code:
                    found.setdefault(session_id, []).append(code)
        return found


@dataclass(frozen=True, slots=True)
class _ConsentedAndMoved:
    """A participant's consent and its move that follows, as one UPDATE of its row."""

    consented: Consented
    move: Move


def _fused(writes: Sequence[Persist]) -> list[Persist | _ConsentedAndMoved]:
    """The changes, a consent and the move of the same participant that follows it as one:
    every Agree is both, and a statement fewer saved 0.2 ms of server CPU a participant (0.35
    in the work-equivalent app: bench/README.md, scenario 2)."""
    fused: list[Persist | _ConsentedAndMoved] = []
    for change in writes:
        before = fused[-1] if fused else None
        if (
            isinstance(change, Move)
            and isinstance(before, Consented)
            and change.tokens == (before.token,)
        ):
            fused[-1] = _ConsentedAndMoved(before, change)
        else:
            fused.append(change)
    return fused


def _consent_values(consent_hash: str, now: datetime) -> dict[str, Any]:
    return {"consented_at": now, "consent_hash": consent_hash}


def _move_values(move: Move) -> dict[str, Any]:
    values: dict[str, Any] = {"step": move.step}
    if move.group is not None:
        values.update(group_label=move.group, queued_at=move.queued_at)
    if move.limit is not None:  # in the row its entry into the pools writes: no statement more
        values.update(_limit_values(move.limit))
    return values


def _limit_values(limit: timedelta) -> dict[str, Any]:
    """A waiting limit as seconds: the same for everyone an edit lengthens (one UPDATE for
    them all, where their deadlines would differ), counted from `queued_at`, which stays."""
    return {"waiting_limit_seconds": int(limit.total_seconds())}


async def _run_turns(
    connection: AsyncConnection, turns: Sequence[_Turn]
) -> list[int | Literal[Alone.ALONE] | None]:
    """The turns' writes in one call (`postgres_writes`), each answered with the id of the
    session it recorded, if any; a turn asked for in another term than the first's is left
    to be written alone."""
    fence = turns[0].fence
    call = postgres_writes.Call()
    spans: list[tuple[int, int] | None] = []  # the sessions each turn records, by index
    for turn in turns:
        if turn.fence is not fence:
            spans.append(None)
            continue
        before = call.recorded
        for change in _fused(turn.writes):
            await _write_change(postgres_writes, call, turn.campaign_id, change, turn.now)
        spans.append((before, call.recorded))
    ids = await postgres_writes.run(connection, fence, call)
    return [
        ALONE if span is None else (ids[span[1] - 1] if span[1] > span[0] else None)
        for span in spans
    ]


async def _run_turn(connection: AsyncConnection, turn: _Turn) -> int | None:
    answer = (await _run_turns(connection, [turn]))[0]
    assert answer is not ALONE  # one turn is in its own term
    return answer


async def _write_change(
    writes: RoomWrites[W],
    into: W,
    campaign_id: int,
    change: Persist | _ConsentedAndMoved,
    now: datetime,
) -> int | None:
    """Write one change; the id of the session if it records one (and knows it already)."""
    match change:
        case Ask(number):
            await writes.ask(into, campaign_id, number, now)
        case AddParticipant(token, browser_id, identity, params, outcome):
            row = {
                "campaign_id": campaign_id,
                "token": token,
                "browser_id": browser_id,
                "identity": identity,
                "params": dict(params) if params else None,
                "step": Step.LANDED if outcome is None else Step.LEFT,
                "outcome": outcome,
                "ended_at": None if outcome is None else now,
                "created_at": now,
                "updated_at": now,
            }
            await writes.add_participant(into, row)
        case Consented(token, consent_hash):
            await writes.move(into, (token,), _consent_values(consent_hash, now), now)
        case _ConsentedAndMoved(Consented(token, consent_hash), move):
            values = {**_consent_values(consent_hash, now), **_move_values(move)}
            await writes.move(into, (token,), values, now)
        case MarkReady(token):
            await writes.move(into, (token,), {"ready_at": now}, now)
        case Move(tokens):
            await writes.move(into, tokens, _move_values(change), now)
        case Lengthened(tokens, limit):
            await writes.move(into, tokens, _limit_values(limit), now)
        case Leave(tokens, outcome):
            values = {"step": Step.LEFT, "outcome": outcome, "ended_at": now}
            await writes.move(into, tokens, values, now)
        case RecordSession():
            return await writes.record_session(into, campaign_id, change, now)
        case SessionsEnded(numbers):
            await writes.sessions_ended(into, campaign_id, numbers, now)
    return None


def _params(stored: Any) -> tuple[tuple[str, str], ...]:
    return tuple((str(k), str(v)) for k, v in stored.items()) if isinstance(stored, dict) else ()
