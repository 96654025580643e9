"""The room's writes of every participant on SQLite, straight to aiosqlite.

SQLAlchemy's aiosqlite adapter crosses to the driver's thread three times a statement (a
cursor opened, the statement, the cursor closed); these go to sqlite3 itself, in the
transaction SQLAlchemy began (sqlite3 begins it before the first write; SQLAlchemy commits or
rolls it back). Every participant is a row added on Land and moved on Agree, and every session
an ask and a record (the ask through SQLAlchemy was 3% of the server's CPU in a join flow): on
2 cores, with 500 supervisors watching, each crossing was a wait for the processor (bench
scenario 7). Values are stored as SQLAlchemy stores them (its types' bind processors):
PostgreSQL's statements, the same changes, are `postgres_writes`.

A transaction's statements are not run one by one as they come: they wait (`_Pending`, kept in
the connection's `info` for its transaction) and all go to aiosqlite's thread at once, at the
end of the transaction (`flush`, GroupCommit's `finish`), or with the next statement whose
answer is needed (a session's id). Each crossing costs both threads a wake-up and the GIL
changing hands twice: a join crossed 3.4 times a participant for its statements, and 0.47
times since (bench/counting, a saturation run of 2,400 flows); aiosqlite's thread used a fifth
less CPU, and the join's rate was higher in 8 of 11 pairs of saturation runs in turns, 4% at
the median (bench scenario 2, seventeenth round). aiosqlite runs a function in its thread only
through its private `_execute`, on its private `_conn`: `run_in_thread` is the one place that
uses them, and tests/live/test_records.py checks it still does what it must.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, TypeVar

import aiosqlite
from sqlalchemy import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from mastok.db.engine import driver_connection
from mastok.db.tables import Campaign, OTreeSession, Participant
from mastok.live.events import RecordSession
from mastok.states import CampaignState, Outcome, Step

_ADDED = (
    "campaign_id",
    "token",
    "browser_id",
    "identity",
    "params",
    "step",
    "outcome",
    "ended_at",
    "created_at",
    "updated_at",
)
_ADD_PARTICIPANT = (
    f"INSERT INTO {Participant.__tablename__} ({', '.join(_ADDED)}) "
    f"VALUES ({', '.join('?' * len(_ADDED))})"
)
_ADD_SESSION = (
    f"INSERT INTO {OTreeSession.__tablename__} "
    "(campaign_id, created_at, number, mastok_id, otree_code, admin_url, size) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id"
)
_ASSIGN = (
    f"UPDATE {Participant.__tablename__} SET step = ?, session_id = ?, otree_code = ?, "
    "start_url = ?, outcome = ?, ended_at = ?, updated_at = ? WHERE token = ?"
)
_ASK = f"UPDATE {Campaign.__tablename__} SET session_asked = ?, updated_at = ? WHERE id = ?"
_SESSIONS_ENDED = (
    f"UPDATE {OTreeSession.__tablename__} SET finished_at = ? "
    "WHERE campaign_id = ? AND number IN ({numbers})"
)
_COUNT_SESSION = (
    f"UPDATE {Campaign.__tablename__} SET started_sessions = started_sessions + 1, "
    "session_asked = NULL, updated_at = ?{state} WHERE id = ?"
)


T = TypeVar("T")
_PENDING = "mastok.sqlite_writes.pending"  # the connection's `info` key


class _Pending:
    """The statements of one transaction not yet run, in order: `many` for executemany."""

    __slots__ = ("driver", "statements", "transaction")

    def __init__(self, driver: aiosqlite.Connection, transaction: object) -> None:
        self.driver = driver  # aiosqlite's connection
        self.transaction = transaction  # the SQLAlchemy transaction they belong to
        self.statements: list[tuple[bool, str, Any]] = []

    def add(self, sql: str, parameters: Any, many: bool = False) -> None:
        self.statements.append((many, sql, parameters))

    async def run(self, returning: tuple[str, Any] | None = None) -> list[Any]:
        """Run the waiting statements, then `returning` (a statement and its parameters) if
        given, whose rows come back: one crossing to aiosqlite's thread."""
        statements, self.statements = self.statements, []
        if not statements and returning is None:
            return []

        def room_statements(connection: sqlite3.Connection) -> list[Any]:
            for many, sql, parameters in statements:
                if many:
                    connection.executemany(sql, parameters)
                else:
                    connection.execute(sql, parameters)
            if returning is None:
                return []
            return connection.execute(*returning).fetchall()

        return await run_in_thread(self.driver, room_statements)


async def run_in_thread(
    driver: aiosqlite.Connection, function: Callable[[sqlite3.Connection], T]
) -> T:
    """`function(sqlite3's connection)` in aiosqlite's thread, in the transaction it is in."""
    return await driver._execute(function, driver._conn)  # private: the module's docstring


def _waiting(connection: AsyncConnection) -> tuple[_Pending | None, object]:
    """The statements waiting in `connection`'s transaction, and that transaction. Those of
    another are not: a transaction that failed before its end left its own, never to run."""
    sync = connection.sync_connection
    transaction = sync.get_transaction() if sync is not None else None
    pending: _Pending | None = connection.info.get(_PENDING)
    if pending is not None and pending.transaction is not transaction:
        pending = None
    return pending, transaction


async def _pending(connection: AsyncConnection) -> _Pending:
    pending, transaction = _waiting(connection)
    if pending is None:
        pending = _Pending(await driver_connection(connection), transaction)
        connection.info[_PENDING] = pending
    return pending


async def flush(connection: AsyncConnection) -> None:
    """Run the statements waiting in `connection`'s transaction (before its commit)."""
    pending, _ = _waiting(connection)
    connection.info.pop(_PENDING, None)
    if pending is not None:
        await pending.run()


async def add_participant(connection: AsyncConnection, row: Mapping[str, Any]) -> None:
    """The participant's row (`row`: the columns of `_ADDED`)."""
    as_json = _stored("params", connection.dialect)
    values = [row[column] for column in _ADDED]
    values = [stamp(v) if isinstance(v, datetime) else v for v in values]
    values[_ADDED.index("params")] = as_json(row["params"])
    (await _pending(connection)).add(_ADD_PARTICIPANT, values)


async def move(
    connection: AsyncConnection, tokens: Sequence[str], values: dict[str, Any], now: datetime
) -> None:
    """UPDATE participants SET these columns (and updated_at) WHERE token IN (tokens)."""
    columns = tuple(sorted(values))
    parameters = [stamp(v) if isinstance(v, datetime) else v for v in map(values.get, columns)]
    parameters += (stamp(now), *tokens)
    (await _pending(connection)).add(_move(columns, len(tokens)), parameters)


async def ask(connection: AsyncConnection, campaign_id: int, number: int, now: datetime) -> None:
    """The number of the session about to be asked of oTree, written before it is asked."""
    (await _pending(connection)).add(_ASK, (number, stamp(now), campaign_id))


async def record_session(
    connection: AsyncConnection, campaign_id: int, change: RecordSession, now: datetime
) -> int:
    """The session, each participant's code and URL, and the campaign's count (and state):
    the session's row goes with the statements waiting before it (its id is needed), the
    others wait for the end of the transaction. Returns the session's id."""
    pending = await _pending(connection)
    at = stamp(now)
    session = change.session
    row = (campaign_id, at, change.number, session.mastok_id, session.code)
    added = await pending.run((_ADD_SESSION, (*row, session.admin_url, len(change.assignments))))
    session_id = int(added[0][0])
    if change.assignments:
        started = (str(Step.STARTED), session_id)
        assigned = [
            (*started, code, url, str(Outcome.STARTED), at, at, token)
            for token, code, url in change.assignments
        ]
        pending.add(_ASSIGN, assigned, many=True)
    state = ", state = ?" if change.complete else ""
    counted = (at, str(CampaignState.COMPLETED)) if change.complete else (at,)
    pending.add(_COUNT_SESSION.format(state=state), (*counted, campaign_id))
    return session_id


async def sessions_ended(
    connection: AsyncConnection, campaign_id: int, numbers: Sequence[int], now: datetime
) -> None:
    """These sessions (by number) finished now."""
    sql = _SESSIONS_ENDED.format(numbers=", ".join("?" * len(numbers)))
    (await _pending(connection)).add(sql, (stamp(now), campaign_id, *numbers))


@lru_cache(maxsize=64)
def _move(columns: tuple[str, ...], tokens: int) -> str:
    assigned = ", ".join(f"{column} = ?" for column in (*columns, "updated_at"))
    listed = ", ".join("?" * tokens)
    return f"UPDATE {Participant.__tablename__} SET {assigned} WHERE token IN ({listed})"


def stamp(moment: datetime) -> str:
    """A time as SQLAlchemy stores it in SQLite (its DateTime's text form: the wall time to the
    microsecond, any zone left out), by datetime's own code: SQLAlchemy's bind processor
    builds a dict of seven fields for a `%` format, six times a participant: a join ran 1.35%
    fewer instructions without it (callgrind, `bench.instructions --join`, 600 flows)."""
    return moment.isoformat(" ", "microseconds")[:26]


@lru_cache(maxsize=4)
def _stored(column: str, dialect: Dialect) -> Callable[[Any], Any]:
    """A value of the participants' `column` as SQLAlchemy stores it (its type's bind
    processor: a time as text, JSON as text and None as NULL)."""
    stored = Participant.__table__.c[column].type.dialect_impl(dialect).bind_processor(dialect)
    assert stored is not None
    return stored
