"""A batch of trial posts written: one PostgreSQL statement, or SQLite's three.

Each run moves on only if it is where its post says it is: at the post's trial (the trial's
position is the run's completed trials: trials are completed in order), locked with the post's
token. That is all a post's checks of its run asked: this write makes them. Its trial is
completed (with its own measures' values) and its events inserted only if it moved. On
PostgreSQL the statement is data-modifying CTEs over arrays (`unnest`), sent straight to
asyncpg: one round trip for a batch, where one statement a step took five. The events' rows
are checked by their foreign key as any others; a value is keyed by a measure id resolved
among its experiment's measures. SQLite's DML takes no CTE: its statements go straight to
aiosqlite, a crossing to its thread each, where SQLAlchemy's cursors took three or four.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from mastok.db.engine import driver_connection
from mastok.lightmill.measure_values import encode
from mastok.lightmill.results import TrialResults
from mastok.lightmill.tables import LMRun


@dataclass(frozen=True, slots=True)
class Checked:
    """A post to write: its run, where the post says the run is, its trial, its values."""

    run_pk: int
    position: int  # its trial's: the run's completed trials, if the post is the run's next
    token: str
    trial_pk: int
    ids: Mapping[str, int]  # the measures' ids by code
    results: TrialResults


# SET reads the run's row as it was: the last trial releases the lock (see store._moved_on).
# In asyncpg's parameter style: the statement goes straight to the driver, as trial_places' read.
_WRITE_BATCH = """
WITH posts AS (
    SELECT * FROM unnest(CAST($1 AS INTEGER[]), CAST($2 AS INTEGER[]),
        CAST($3 AS TEXT[]), CAST($4 AS INTEGER[]), CAST($5 AS INTEGER[]),
        CAST($6 AS TEXT[]))
        AS p(run_pk, position, token, trial_pk, events, measure_values)
), moved AS (
    UPDATE lm_runs AS r SET
        completed_trials = r.completed_trials + 1,
        heartbeat_at = CASE WHEN r.completed_trials + 1 >= r.trial_count THEN NULL
            ELSE CAST($7 AS TIMESTAMPTZ) END,
        lock_token = CASE WHEN r.completed_trials + 1 >= r.trial_count THEN NULL
            ELSE r.lock_token END,
        locked_at = CASE WHEN r.completed_trials + 1 >= r.trial_count THEN NULL
            ELSE r.locked_at END
    FROM posts
    WHERE r.id = posts.run_pk AND r.completed_trials = posts.position
        AND r.lock_token = posts.token
    RETURNING r.id AS run_pk, posts.trial_pk, posts.events, posts.measure_values
), completed AS (
    UPDATE lm_trials AS t SET completed_at = CAST($7 AS TIMESTAMPTZ), event_count = moved.events,
        measure_values = moved.measure_values
    FROM moved WHERE t.id = moved.trial_pk
), new_events AS (
    INSERT INTO lm_events (trial_id, number, measure_values)
    SELECT e.trial_id, e.number, e.measure_values
    FROM unnest(CAST($8 AS INTEGER[]), CAST($9 AS INTEGER[]),
        CAST($10 AS TEXT[])) AS e(trial_id, number, measure_values)
    JOIN moved ON moved.trial_pk = e.trial_id
)
SELECT run_pk FROM moved
"""


async def write_batch(
    connection: AsyncConnection, posts: Sequence[Checked], now: datetime
) -> set[int]:
    """Move each post's run on, complete its trial, insert its values; the runs moved (a run not
    at its post's trial, or not locked with its token, is left as it is, with nothing of it)."""
    if connection.dialect.name == "sqlite":
        return await _write_batch_sqlite(connection, posts, now)
    ev_trial: list[int] = []
    ev_number: list[int] = []
    ev_values: list[str] = []
    for post in posts:
        for number, event in enumerate(post.results.events):
            stored = encode(post.ids, event)
            if stored is not None:
                ev_trial.append(post.trial_pk)
                ev_number.append(number)
                ev_values.append(stored)
    driver = await driver_connection(connection)  # asyncpg's
    rows = await driver.fetch(
        _WRITE_BATCH,
        [p.run_pk for p in posts],
        [p.position for p in posts],
        [p.token for p in posts],
        [p.trial_pk for p in posts],
        [len(p.results.events) for p in posts],
        [encode(p.ids, p.results.trial) for p in posts],
        now,
        ev_trial,
        ev_number,
        ev_values,
    )
    return {row[0] for row in rows}


# As store._moved_on, for a batch: the runs where their posts say they are, in VALUES.
_SQLITE_MOVE_ON = (
    "UPDATE lm_runs SET completed_trials = completed_trials + 1, "
    "heartbeat_at = CASE WHEN completed_trials + 1 >= trial_count THEN NULL ELSE ? END, "
    "lock_token = CASE WHEN completed_trials + 1 >= trial_count THEN NULL ELSE lock_token END, "
    "locked_at = CASE WHEN completed_trials + 1 >= trial_count THEN NULL ELSE locked_at END "
    "WHERE (id, completed_trials, lock_token) IN (VALUES {rows}) RETURNING id"
)
_SQLITE_COMPLETE = (
    "UPDATE lm_trials SET completed_at = ?, event_count = ?, measure_values = ? WHERE id = ?"
)
_SQLITE_EVENTS = "INSERT INTO lm_events (trial_id, number, measure_values) VALUES (?, ?, ?)"


async def _write_batch_sqlite(
    connection: AsyncConnection, posts: Sequence[Checked], now: datetime
) -> set[int]:
    """The same on SQLite, on the aiosqlite connection of the transaction SQLAlchemy began
    (sqlite3 begins it before the first write, and SQLAlchemy commits or rolls it back)."""
    driver = await driver_connection(connection)  # aiosqlite's
    dialect = connection.dialect
    # As SQLAlchemy stores a datetime (its SQLite type's; the column's generic type has none,
    # and sqlite3's own adapter wrote the offset, and no fraction for a whole second).
    as_stored = LMRun.heartbeat_at.type.dialect_impl(dialect).bind_processor(dialect)
    assert as_stored is not None
    stamp = as_stored(now)
    params: list[Any] = [stamp]
    for post in posts:
        params += (post.run_pk, post.position, post.token)
    sql = _SQLITE_MOVE_ON.format(rows=", ".join(["(?, ?, ?)"] * len(posts)))
    moved = {row[0] for row in await driver.execute_fetchall(sql, params)}
    done = [post for post in posts if post.run_pk in moved]
    if not done:
        return moved
    await driver.executemany(
        _SQLITE_COMPLETE,
        [
            (stamp, len(post.results.events), encode(post.ids, post.results.trial), post.trial_pk)
            for post in done
        ],
    )
    events = [
        (post.trial_pk, number, stored)
        for post in done
        for number, event in enumerate(post.results.events)
        if (stored := encode(post.ids, event)) is not None
    ]
    if events:
        await driver.executemany(_SQLITE_EVENTS, events)
    return moved
