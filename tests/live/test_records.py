"""The room's writes as statements (an Agree's consent and move are one UPDATE of its row), and
rooms rebuilt from what they wrote."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import insert, select, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from mastok.clock import ManualClock, aware
from mastok.db import Database, async_url
from mastok.db.engine import driver_connection
from mastok.db.tables import Base, Campaign, OTreeSession, Participant
from mastok.live import sqlite_writes
from mastok.live.events import (
    PERSIST,
    AddParticipant,
    Ask,
    Consented,
    CreatedSession,
    Edited,
    Effect,
    Event,
    Leave,
    Move,
    Persist,
    Rebuilt,
    RecordSession,
    RoomCampaign,
    Rules,
)
from mastok.live.records import Records
from mastok.live.rooms import restore_room
from mastok.states import CampaignState, Outcome, Step
from tests.live.room_harness import RoomHarness

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    database = Database("sqlite+aiosqlite:///:memory:")
    async with database.engine.begin() as connection:
        await connection.execute(text("PRAGMA foreign_keys = OFF"))  # no campaign row needed
        await connection.run_sync(Base.metadata.create_all)
    yield database
    await database.engine.dispose()


async def count_updates(db: Database) -> list[str]:
    """The UPDATE statements SQLite runs from now on (its own trace: the room's moves go
    straight to the driver, past SQLAlchemy's events)."""
    seen: list[str] = []

    def note(statement: str) -> None:
        if statement.lstrip().upper().startswith("UPDATE"):
            seen.append(statement)

    async with db.engine.connect() as connection:  # in memory: the one connection there is
        raw = await connection.get_raw_connection()
        await raw.driver_connection.set_trace_callback(note)
    return seen


async def test_a_consent_and_the_move_that_follows_are_one_update(db: Database) -> None:
    records = Records(db)
    await records.persist(1, [AddParticipant("t1", "fp", None, ())], NOW)
    updates = await count_updates(db)
    limit = timedelta(minutes=5)  # its waiting limit too: a join writes no statement more
    writes = [Consented("t1", "hash"), Move(("t1",), Step.JOINING, "default", NOW, limit)]
    await records.persist(1, writes, NOW)
    assert len(updates) == 1
    async with db.engine.connect() as connection:
        row = (await connection.execute(select(Participant))).one()
    assert (row.consent_hash, row.step, row.group_label) == ("hash", Step.JOINING, "default")
    assert row.waiting_limit_seconds == 300
    assert aware(row.consented_at) == aware(row.queued_at) == NOW


async def test_a_consent_and_a_move_of_others_stay_apart(db: Database) -> None:
    records = Records(db)
    await records.persist(1, [AddParticipant(t, "fp", None, ()) for t in ("t1", "t2")], NOW)
    updates = await count_updates(db)
    writes = [Consented("t1", "hash"), Move(("t2",), Step.PENDING, "default", NOW)]
    await records.persist(1, writes, NOW)
    assert len(updates) == 2
    async with db.engine.connect() as connection:
        rows = {r.token: r for r in await connection.execute(select(Participant))}
    assert (rows["t1"].consent_hash, rows["t1"].step) == ("hash", Step.LANDED)
    assert (rows["t2"].consent_hash, rows["t2"].step) == (None, Step.PENDING)


async def test_a_move_of_many_moves_each(db: Database) -> None:
    records = Records(db)
    await records.persist(1, [AddParticipant(t, "fp", None, ()) for t in ("t1", "t2", "t3")], NOW)
    await records.persist(1, [Move(("t1", "t3"), Step.PENDING, "default", NOW)], NOW)
    async with db.engine.connect() as connection:
        steps = {r.token: r.step for r in await connection.execute(select(Participant))}
    assert steps == {"t1": Step.PENDING, "t2": Step.LANDED, "t3": Step.PENDING}


async def test_rows_written_straight_to_sqlite_are_stored_as_sqlalchemy_stores_them(
    db: Database,
) -> None:
    # Pools are ordered by queued_at in SQL: its text must compare as SQLAlchemy's does.
    async with db.engine.begin() as connection:
        reference = {"campaign_id": 1, "token": "ref", "step": Step.LANDED}
        reference.update(params={"a": 'é"x'}, created_at=NOW, updated_at=NOW)
        await connection.execute(insert(Participant), reference)  # through SQLAlchemy
    records = Records(db)
    await records.persist(1, [AddParticipant("t1", "fp", None, (("a", 'é"x'),))], NOW)
    await records.persist(1, [Move(("t1",), Step.PENDING, "default", NOW)], NOW)
    async with db.engine.connect() as connection:
        rows = {
            token: rest
            for token, *rest in await connection.exec_driver_sql(
                "SELECT token, created_at, queued_at, updated_at, params, typeof(queued_at) "
                "FROM participants"
            )
        }
    created, queued, updated, params, kind = rows["t1"]
    assert created == queued == updated == rows["ref"][0] and kind == "text"
    assert params == rows["ref"][3]


@pytest.mark.parametrize(
    "moment",
    [
        NOW,  # no microseconds: SQLAlchemy still writes six zeros
        datetime(2026, 12, 3, 19, 5, 7, 120034, tzinfo=UTC),
        datetime(2026, 12, 3, 19, 5, 7, 1),  # naive
        datetime(2026, 12, 3, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5))),
        datetime(999, 1, 2, 3, 4, 5, 6),  # a year of three digits is still written with four
    ],
)
def test_a_time_written_straight_to_sqlite_is_sqlalchemys_text_of_it(moment: datetime) -> None:
    dialect = sqlite.dialect()
    sqlalchemys = Participant.__table__.c["updated_at"].type.dialect_impl(dialect)
    assert sqlite_writes.stamp(moment) == sqlalchemys.bind_processor(dialect)(moment)


def a_row(token: str) -> dict[str, object]:
    """A participant's row as the room adds it (`sqlite_writes.add_participant`)."""
    return {
        "campaign_id": 1,
        "token": token,
        "browser_id": "fp",
        "identity": None,
        "params": None,
        "step": Step.LANDED,
        "outcome": None,
        "ended_at": None,
        "created_at": NOW,
        "updated_at": NOW,
    }


async def tokens_stored(connection: AsyncConnection) -> list[str]:
    return list((await connection.execute(select(Participant.token))).scalars())


def count_crossings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times the rooms' statements go to aiosqlite's thread from now on."""
    crossings: list[int] = []
    run_in_thread = sqlite_writes.run_in_thread

    async def counted(driver: Any, function: Any) -> Any:
        crossings.append(1)
        return await run_in_thread(driver, function)

    monkeypatch.setattr(sqlite_writes, "run_in_thread", counted)
    return crossings


async def test_the_functions_run_in_aiosqlites_thread_in_the_transaction(db: Database) -> None:
    # `run_in_thread` is the one use of aiosqlite's private API: what it must do.
    async with db.engine.begin() as connection:
        await connection.execute(insert(Participant), a_row("t1"))  # not committed
        driver = await driver_connection(connection)
        thread, in_transaction, rows = await sqlite_writes.run_in_thread(
            driver,
            lambda sqlite: (
                threading.get_ident(),
                sqlite.in_transaction,
                sqlite.execute("SELECT count(*) FROM participants").fetchone()[0],
            ),
        )
    assert thread != threading.get_ident()
    assert in_transaction and rows == 1


async def test_a_transactions_statements_wait_for_its_end(db: Database) -> None:
    async with db.engine.connect() as connection, connection.begin():
        await sqlite_writes.add_participant(connection, a_row("t1"))
        assert await tokens_stored(connection) == []
        await sqlite_writes.flush(connection)
        assert await tokens_stored(connection) == ["t1"]


async def test_the_statements_of_a_failed_transaction_never_run(db: Database) -> None:
    async with db.engine.connect() as connection:
        with pytest.raises(RuntimeError):
            async with connection.begin():
                await sqlite_writes.add_participant(connection, a_row("t1"))
                raise RuntimeError("a write failed before the end")
        async with connection.begin():
            await sqlite_writes.add_participant(connection, a_row("t2"))
            await sqlite_writes.flush(connection)
        async with connection.begin():
            await sqlite_writes.flush(connection)  # nothing left of either
        assert await tokens_stored(connection) == ["t2"]


async def test_a_batch_of_turns_goes_to_sqlite_in_one_crossing(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = Records(db)
    crossings = count_crossings(monkeypatch)
    # Asked together: one group commit takes them all.
    turns = [[AddParticipant(f"t{n}", "fp", None, ())] for n in range(8)]
    await asyncio.gather(*(records.persist(1, writes, NOW) for writes in turns))
    assert len(crossings) == 1
    async with db.engine.connect() as connection:
        assert sorted(await tokens_stored(connection)) == [f"t{n}" for n in range(8)]


async def test_a_turn_asked_for_a_few_turns_of_the_loop_later_shares_the_crossing(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer lets the loop turn before it takes a batch (records.GATHER_TURNS): a turn
    whose event was read from its socket as the batch began goes with it."""
    records = Records(db)
    await records.persist(1, [AddParticipant("t0", "fp", None, ())], NOW)  # the writer holds
    crossings = count_crossings(monkeypatch)

    async def arriving() -> None:
        for _ in range(2):
            await asyncio.sleep(0)
        await records.persist(1, [AddParticipant("t2", "fp", None, ())], NOW)

    first = records.persist(1, [AddParticipant("t1", "fp", None, ())], NOW)
    await asyncio.gather(first, arriving())
    assert len(crossings) == 1
    async with db.engine.connect() as connection:
        assert sorted(await tokens_stored(connection)) == ["t0", "t1", "t2"]


async def test_a_session_recorded_crosses_once_more_for_its_id(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = Records(db)
    crossings = count_crossings(monkeypatch)
    session = CreatedSession("s1", "mk:c:1", "http://otree/admin", (("p1", "u1"), ("p2", "u2")))
    turns: list[list[Persist]] = [
        [AddParticipant("t1", "fp", None, ()), AddParticipant("t2", "fp", None, ())],
        [RecordSession(1, session, (("t1", "p1", "u1"), ("t2", "p2", "u2")), False)],
    ]
    ids = await asyncio.gather(*(records.persist(1, writes, NOW) for writes in turns))
    assert len(crossings) == 2  # the rows and the session's, then the assignments and count
    async with db.engine.connect() as connection:
        rows = (await connection.execute(select(Participant.token, Participant.session_id))).all()
    assert sorted(rows) == [("t1", ids[1]), ("t2", ids[1])]


async def a_campaign(db: Database) -> int:
    async with db.engine.begin() as connection:
        return int(
            (
                await connection.execute(
                    insert(Campaign).returning(Campaign.id),
                    {
                        "namespace": "c",
                        "slug": "c",
                        "otree_config_name": "x",
                        "per_session": 2,
                        "max_sessions": 2,
                        "concurrent_sessions": 1,
                        "session_duration": 60,
                        "waiting_limit": 60,
                        "consent": "ok",
                        "state": CampaignState.RUNNING,
                        "session_asked": 1,
                    },
                )
            ).scalar_one()
        )


async def test_a_participant_added_is_the_same_on_both_databases(database_url: str) -> None:
    db = Database(async_url(database_url))
    try:
        campaign_id = await a_campaign(db)
        added = [
            AddParticipant("t1", "fp1", "PROLIFIC1", (("study", "s1"), ("é", "ü"))),
            AddParticipant("t2", "fp2", None, (), Outcome.PAUSED),  # turned away at once
        ]

        await Records(db).persist(campaign_id, added, NOW)

        async with db.engine.connect() as connection:
            people = {p.token: p for p in await connection.execute(select(Participant))}
        first, second = people["t1"], people["t2"]
        assert (first.campaign_id, first.browser_id, first.identity) == (
            campaign_id,
            "fp1",
            "PROLIFIC1",
        )
        assert first.params == {"study": "s1", "é": "ü"}
        assert (first.step, first.outcome, first.ended_at) == (Step.LANDED, None, None)
        assert aware(first.created_at) == aware(first.updated_at) == NOW
        assert (second.params, second.identity, second.step) == (None, None, Step.LEFT)
        assert (second.outcome, aware(second.ended_at)) == (Outcome.PAUSED, NOW)
    finally:
        await db.close()


async def test_an_ask_is_the_same_on_both_databases(database_url: str) -> None:
    db = Database(async_url(database_url))
    try:
        campaign_id = await a_campaign(db)
        later = NOW + timedelta(seconds=5)

        await Records(db).persist(campaign_id, [Ask(2)], later)

        async with db.engine.connect() as connection:
            campaign = (await connection.execute(select(Campaign))).one()
        assert (campaign.session_asked, aware(campaign.updated_at)) == (2, later)
        assert campaign.started_sessions == 0
    finally:
        await db.close()


@pytest.mark.parametrize("complete", [False, True], ids=["another", "the last"])
async def test_a_session_recorded_is_the_same_on_both_databases(
    database_url: str, complete: bool
) -> None:
    # SQLite's statements go straight to its driver, PostgreSQL's in one call of a function.
    db = Database(async_url(database_url))
    try:
        campaign_id = await a_campaign(db)
        records = Records(db)
        joined = [AddParticipant(t, "fp", None, ()) for t in ("t1", "t2", "t3")]
        await records.persist(campaign_id, joined, NOW)
        session = CreatedSession("S1", "c/1", "http://otree/S1", (("p1", "u1"), ("p2", "u2")))
        assignments = (("t1", "p1", "u1"), ("t3", "p2", "u2"))
        later = NOW + timedelta(seconds=5)

        recorded = await records.persist(
            campaign_id, [RecordSession(1, session, assignments, complete)], later
        )

        async with db.engine.connect() as connection:
            stored = (await connection.execute(select(OTreeSession))).one()
            people = {p.token: p for p in await connection.execute(select(Participant))}
            campaign = (await connection.execute(select(Campaign))).one()
        assert recorded == stored.id
        assert (stored.number, stored.mastok_id, stored.otree_code, stored.size) == (
            1,
            "c/1",
            "S1",
            2,
        )
        assert aware(stored.created_at) == later and stored.admin_url == "http://otree/S1"
        for token, code, url in assignments:
            person = people[token]
            assert (person.step, person.session_id, person.otree_code, person.start_url) == (
                Step.STARTED,
                stored.id,
                code,
                url,
            )
            assert person.outcome == Outcome.STARTED
            assert aware(person.ended_at) == aware(person.updated_at) == later
        assert (people["t2"].step, people["t2"].session_id) == (Step.LANDED, None)
        assert (campaign.started_sessions, campaign.session_asked) == (1, None)
        started = sorted(await records.started(campaign_id), key=lambda s: s.token)
        assert [(s.token, s.key, s.browser) for s in started] == [
            ("t1", "browser:fp", "browser:fp"),
            ("t3", "browser:fp", "browser:fp"),
        ]
        assert campaign.state == (CampaignState.COMPLETED if complete else CampaignState.RUNNING)
    finally:
        await db.close()


async def test_a_visit_ended_while_its_page_was_away_is_told_in_the_room_rebuilt(
    database_url: str,
) -> None:
    """A restart (or another leader) within the grace of a visit's end: the page back with its
    token gets its exit, as it would have from the room before."""
    db = Database(async_url(database_url))
    try:
        campaign_id = await a_campaign(db)  # waiting_limit: 60 minutes
        records = Records(db)
        people = [AddParticipant(t, f"fp-{t}", None, ()) for t in ("early", "late")]
        await records.persist(campaign_id, people, NOW)
        await records.persist(
            campaign_id, [Move(("early", "late"), Step.JOINING, "default", NOW)], NOW
        )
        limit = NOW + timedelta(minutes=60, seconds=1)
        await records.persist(campaign_id, [Leave(("early",), Outcome.TIMEOUT)], limit)
        later = limit + timedelta(seconds=1)
        await records.persist(campaign_id, [Leave(("late",), Outcome.TIMEOUT)], later)
        async with db.engine.begin() as connection:
            exits = {"timeout": {"code": "T1"}}
            await connection.execute(update(Campaign).values(exits=exits))
        async with db.session() as session:
            campaign = await session.get_one(Campaign, campaign_id)
        clock = ManualClock(limit + timedelta(seconds=30))  # the grace of the early one is over
        rules = Rules(timedelta(seconds=30), live_redirect=True)

        room = RoomHarness(room=await restore_room(campaign, records, rules, clock))

        room.now = clock.now()
        back = room.open()
        assert room.frames(back, room.send(back, "Resume", "late")) == [
            ("Exit", {"outcome": "timeout", "code": "T1", "url": None}),
            ("Disconnect", "Timeout"),
        ]
        too_late = room.open()
        assert room.frames(too_late, room.send(too_late, "Resume", "early")) == [
            ("Error", "unknown or expired resume token: Land again")
        ]
    finally:
        await db.close()


# -- rooms rebuilt from what they wrote --------------------------------------------------------

RULES = Rules(timedelta(seconds=30), live_redirect=True)


class StoredRoom(RoomHarness):
    """A room whose writes go to the database as its runner's do: each event's together, at the
    event's time (`await written()` commits those handled since)."""

    def __init__(self, room: RoomHarness, records: Records, campaign_id: int) -> None:
        super().__init__(room=room.room)
        self.now = room.now
        self.records, self.campaign_id = records, campaign_id
        self.turns: list[tuple[list[Persist], datetime]] = []

    def do(self, event: Event) -> list[Effect]:
        effects = super().do(event)
        writes = [effect for effect in effects if isinstance(effect, PERSIST)]
        if writes:
            self.turns.append((writes, self.now))
        return effects

    async def written(self) -> None:
        for writes, at in self.turns:
            await self.records.persist(self.campaign_id, writes, at)
        self.turns.clear()


async def rebuilt_room(db: Database, campaign_id: int, now: datetime) -> StoredRoom:
    """The campaign's room as a process that starts leading at `now` builds it, after its first
    event (Rebuilt), written."""
    records = Records(db)
    async with db.session() as session:
        campaign = await session.get_one(Campaign, campaign_id)
    restored = await restore_room(campaign, records, RULES, ManualClock(now))
    harness = RoomHarness(room=restored)
    harness.now = now
    room = StoredRoom(harness, records, campaign_id)
    room.do(Rebuilt())
    await room.written()
    return room


async def edit_limit(db: Database, campaign_id: int, minutes: int) -> RoomCampaign:
    """waiting_limit edited (from any process), as the database then has the campaign."""
    async with db.engine.begin() as connection:
        await connection.execute(update(Campaign).values(waiting_limit=minutes))
    async with db.session() as session:
        return RoomCampaign.of(await session.get_one(Campaign, campaign_id))


def back(room: StoredRoom, token: str) -> tuple[int, dict[str, int]]:
    """A page back with its token: its socket, and the figures of the Waiting it gets."""
    conn = room.open()
    frames = room.frames(conn, room.send(conn, "Resume", token))
    assert frames[-1][0] == "Waiting", frames
    return conn, frames[-1][1]


async def test_a_member_keeps_its_limit_in_a_room_rebuilt_after_a_shorter_one_was_edited(
    database_url: str,
) -> None:
    """Its page counts down the hour it was told: a restart (or another leader) after the
    campaign was given 10 minutes times it out at the hour, not at 10 minutes."""
    db = Database(async_url(database_url))
    try:
        campaign_id = await a_campaign(db)  # waiting_limit: 60 minutes
        room = await rebuilt_room(db, campaign_id, NOW)
        _, token = room.agree()
        room.later(minutes=5)
        room.do(Edited(await edit_limit(db, campaign_id, 10)))  # for newcomers
        await room.written()

        again = await rebuilt_room(db, campaign_id, room.now)

        conn, waiting = back(again, token)
        assert waiting == {"waited": 300, "limit": 3600, "leave_after": 0}
        assert again.tick(minutes=5, seconds=1) == []  # past 10 minutes
        assert again.tick(minutes=49, seconds=59) == []  # its hour, to the second
        assert again.frames(conn, again.tick(seconds=1)) == [("Disconnect", "Timeout")]
    finally:
        await db.close()


async def test_a_longer_limit_edited_while_waiting_is_kept_in_a_room_rebuilt(
    database_url: str,
) -> None:
    """A longer limit reached those waiting and their pages: a room rebuilt after the campaign
    was shortened again keeps it for them."""
    db = Database(async_url(database_url))
    try:
        campaign_id = await a_campaign(db)  # waiting_limit: 60 minutes
        room = await rebuilt_room(db, campaign_id, NOW)
        conn, token = room.agree()
        room.later(minutes=5)
        effects = room.do(Edited(await edit_limit(db, campaign_id, 90)))
        assert room.frames(conn, effects) == [
            ("Waiting", {"waited": 300, "limit": 5400, "leave_after": 0})
        ]
        room.later(minutes=5)
        room.do(Edited(await edit_limit(db, campaign_id, 10)))
        await room.written()

        again = await rebuilt_room(db, campaign_id, room.now)

        conn, waiting = back(again, token)
        assert waiting == {"waited": 600, "limit": 5400, "leave_after": 0}
        assert again.tick(minutes=80) == []  # its 90 minutes, to the second
        assert again.frames(conn, again.tick(seconds=1)) == [("Disconnect", "Timeout")]
    finally:
        await db.close()


async def test_a_longer_limit_edited_while_no_room_ran_is_kept_by_the_next_rooms(
    database_url: str,
) -> None:
    """Edited through a standby while no process led: the room rebuilt gives it to those
    waiting (their pages told when they come back), and so do the rooms rebuilt after it,
    the campaign shortened again meanwhile."""
    db = Database(async_url(database_url))
    try:
        campaign_id = await a_campaign(db)  # waiting_limit: 60 minutes
        room = await rebuilt_room(db, campaign_id, NOW)
        _, token = room.agree()
        await room.written()
        await edit_limit(db, campaign_id, 90)  # no room ran to see it

        room = await rebuilt_room(db, campaign_id, NOW + timedelta(minutes=5))
        await edit_limit(db, campaign_id, 10)
        again = await rebuilt_room(db, campaign_id, NOW + timedelta(minutes=6))

        conn, waiting = back(again, token)
        assert waiting == {"waited": 360, "limit": 5400, "leave_after": 0}
        assert again.tick(minutes=84) == []  # its 90 minutes, to the second
        assert again.frames(conn, again.tick(seconds=1)) == [("Disconnect", "Timeout")]
    finally:
        await db.close()
