"""The room's writes of every participant on SQLite, straight to aiosqlite.

SQLAlchemy's aiosqlite adapter crosses to the driver's thread three times a statement (a
cursor opened, the statement, the cursor closed); these statements cross once, in the
transaction SQLAlchemy began (sqlite3 begins it before the first write; SQLAlchemy commits or
rolls it back), as LightMill's batches do (`mastok.lightmill.batch_write`). Every participant
is a row added on Land and moved on Agree, and every session an ask and a record (the ask
through SQLAlchemy was 3% of the server's CPU in a join flow): on 2 cores, with 500
supervisors watching, each crossing was a wait for the processor (bench scenario 7). Values
are stored as SQLAlchemy stores them (its types' bind processors): PostgreSQL's statements,
the same changes, are `postgres_writes`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

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
_COUNT_SESSION = (
    f"UPDATE {Campaign.__tablename__} SET started_sessions = started_sessions + 1, "
    "session_asked = NULL, updated_at = ?{state} WHERE id = ?"
)


async def add_participant(connection: AsyncConnection, row: Mapping[str, Any]) -> None:
    """The participant's row (`row`: the columns of `_ADDED`)."""
    as_json = _stored("params", connection.dialect)
    values = [row[column] for column in _ADDED]
    values = [stamp(v) if isinstance(v, datetime) else v for v in values]
    values[_ADDED.index("params")] = as_json(row["params"])
    await (await driver_connection(connection)).execute(_ADD_PARTICIPANT, values)


async def move(
    connection: AsyncConnection, tokens: Sequence[str], values: dict[str, Any], now: datetime
) -> None:
    """UPDATE participants SET these columns (and updated_at) WHERE token IN (tokens)."""
    columns = tuple(sorted(values))
    parameters = [stamp(v) if isinstance(v, datetime) else v for v in map(values.get, columns)]
    parameters += (stamp(now), *tokens)
    await (await driver_connection(connection)).execute(_move(columns, len(tokens)), parameters)


async def ask(connection: AsyncConnection, campaign_id: int, number: int, now: datetime) -> None:
    """The number of the session about to be asked of oTree, written before it is asked."""
    await (await driver_connection(connection)).execute(_ASK, (number, stamp(now), campaign_id))


async def record_session(
    connection: AsyncConnection, campaign_id: int, change: RecordSession, now: datetime
) -> int:
    """The session, each participant's code and URL, and the campaign's count (and state):
    three crossings where SQLAlchemy's cursors took eleven, in the turn that tells a pool
    Starting. Returns the session's id."""
    driver = await driver_connection(connection)
    at = stamp(now)
    session = change.session
    row = (campaign_id, at, change.number, session.mastok_id, session.code)
    added = await driver.execute_fetchall(
        _ADD_SESSION, (*row, session.admin_url, len(change.assignments))
    )
    session_id = int(next(iter(added))[0])
    if change.assignments:
        started = (str(Step.STARTED), session_id)
        await driver.executemany(
            _ASSIGN,
            [
                (*started, code, url, str(Outcome.STARTED), at, at, token)
                for token, code, url in change.assignments
            ],
        )
    state = ", state = ?" if change.complete else ""
    counted = (at, str(CampaignState.COMPLETED)) if change.complete else (at,)
    await driver.execute(_COUNT_SESSION.format(state=state), (*counted, campaign_id))
    return session_id


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
