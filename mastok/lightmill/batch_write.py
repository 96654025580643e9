"""A batch of checked trial posts written: one PostgreSQL statement, or SQLite's four.

Each run moves on only if it is still as its post's checks found it (same completed trials,
same lock token); its trial is completed and its values inserted only if it moved. On
PostgreSQL the statement is data-modifying CTEs over arrays (`unnest`): one round trip for a
batch, where one statement a step took five. The foreign keys stay: the inserted rows are
checked as any others. SQLite's DML takes no CTE: its four statements go straight to
aiosqlite, a crossing to its thread each, where SQLAlchemy's cursors took three or four.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from mastok.lightmill.results import TrialResults
from mastok.lightmill.tables import LMRun


@dataclass(frozen=True, slots=True)
class Checked:
    """A post its checks let through: its run as they found it, its trial, its values."""

    run_pk: int
    position: int  # the run's completed trials when checked
    token: str
    trial_pk: int
    ids: Mapping[str, int]  # the measures' ids by code
    results: TrialResults


# SET reads the run's row as it was: the last trial releases the lock (see store._moved_on).
_WRITE_BATCH = text(
    """
WITH posts AS (
    SELECT * FROM unnest(CAST(:run_pks AS INTEGER[]), CAST(:positions AS INTEGER[]),
        CAST(:tokens AS TEXT[]), CAST(:trial_pks AS INTEGER[]), CAST(:events AS INTEGER[]))
        AS p(run_pk, position, token, trial_pk, events)
), moved AS (
    UPDATE lm_runs AS r SET
        completed_trials = r.completed_trials + 1,
        heartbeat_at = CASE WHEN r.completed_trials + 1 >= r.trial_count THEN NULL
            ELSE CAST(:now AS TIMESTAMPTZ) END,
        lock_token = CASE WHEN r.completed_trials + 1 >= r.trial_count THEN NULL
            ELSE r.lock_token END,
        locked_at = CASE WHEN r.completed_trials + 1 >= r.trial_count THEN NULL
            ELSE r.locked_at END
    FROM posts
    WHERE r.id = posts.run_pk AND r.completed_trials = posts.position
        AND r.lock_token = posts.token
    RETURNING r.id AS run_pk, posts.trial_pk, posts.events
), completed AS (
    UPDATE lm_trials AS t SET completed_at = CAST(:now AS TIMESTAMPTZ), event_count = moved.events
    FROM moved WHERE t.id = moved.trial_pk
), trial_values AS (
    INSERT INTO lm_trial_measure_values (trial_id, measure_id, value)
    SELECT v.trial_id, v.measure_id, v.value
    FROM unnest(CAST(:tv_trial AS INTEGER[]), CAST(:tv_measure AS INTEGER[]),
        CAST(:tv_value AS TEXT[])) AS v(trial_id, measure_id, value)
    JOIN moved ON moved.trial_pk = v.trial_id
), event_values AS (
    INSERT INTO lm_event_measure_values (trial_id, event_number, measure_id, value)
    SELECT v.trial_id, v.event_number, v.measure_id, v.value
    FROM unnest(CAST(:ev_trial AS INTEGER[]), CAST(:ev_number AS INTEGER[]),
        CAST(:ev_measure AS INTEGER[]), CAST(:ev_value AS TEXT[]))
        AS v(trial_id, event_number, measure_id, value)
    JOIN moved ON moved.trial_pk = v.trial_id
)
SELECT run_pk FROM moved
"""
)


async def write_batch(
    connection: AsyncConnection, posts: Sequence[Checked], now: datetime
) -> set[int]:
    """Move each post's run on, complete its trial, insert its values; the runs moved (a run
    another client changed since the checks is left as it is, with nothing of its post)."""
    if connection.dialect.name == "sqlite":
        return await _write_batch_sqlite(connection, posts, now)
    tv_trial: list[int] = []
    tv_measure: list[int] = []
    tv_value: list[str] = []
    ev_trial: list[int] = []
    ev_number: list[int] = []
    ev_measure: list[int] = []
    ev_value: list[str] = []
    for post in posts:
        ids = post.ids
        for code, value in post.results.trial.items():
            tv_trial.append(post.trial_pk)
            tv_measure.append(ids[code])
            tv_value.append(value)
        for number, event in enumerate(post.results.events):
            for code, value in event.items():
                ev_trial.append(post.trial_pk)
                ev_number.append(number)
                ev_measure.append(ids[code])
                ev_value.append(value)
    moved = await connection.scalars(
        _WRITE_BATCH,
        {
            "run_pks": [p.run_pk for p in posts],
            "positions": [p.position for p in posts],
            "tokens": [p.token for p in posts],
            "trial_pks": [p.trial_pk for p in posts],
            "events": [len(p.results.events) for p in posts],
            "now": now,
            "tv_trial": tv_trial,
            "tv_measure": tv_measure,
            "tv_value": tv_value,
            "ev_trial": ev_trial,
            "ev_number": ev_number,
            "ev_measure": ev_measure,
            "ev_value": ev_value,
        },
    )
    return set(moved)


# As store._moved_on, for a batch: the runs as their posts' checks found them, in VALUES.
_SQLITE_MOVE_ON = (
    "UPDATE lm_runs SET completed_trials = completed_trials + 1, "
    "heartbeat_at = CASE WHEN completed_trials + 1 >= trial_count THEN NULL ELSE ? END, "
    "lock_token = CASE WHEN completed_trials + 1 >= trial_count THEN NULL ELSE lock_token END, "
    "locked_at = CASE WHEN completed_trials + 1 >= trial_count THEN NULL ELSE locked_at END "
    "WHERE (id, completed_trials, lock_token) IN (VALUES {rows}) RETURNING id"
)
_SQLITE_COMPLETE = "UPDATE lm_trials SET completed_at = ?, event_count = ? WHERE id = ?"
_SQLITE_TRIAL_VALUES = (
    "INSERT INTO lm_trial_measure_values (trial_id, measure_id, value) VALUES (?, ?, ?)"
)
_SQLITE_EVENT_VALUES = (
    "INSERT INTO lm_event_measure_values (trial_id, event_number, measure_id, value) "
    "VALUES (?, ?, ?, ?)"
)


async def _write_batch_sqlite(
    connection: AsyncConnection, posts: Sequence[Checked], now: datetime
) -> set[int]:
    """The same on SQLite, on the aiosqlite connection of the transaction SQLAlchemy began
    (sqlite3 begins it before the first write, and SQLAlchemy commits or rolls it back)."""
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection  # aiosqlite's
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
        _SQLITE_COMPLETE, [(stamp, len(post.results.events), post.trial_pk) for post in done]
    )
    trial_rows = [
        (post.trial_pk, post.ids[code], value)
        for post in done
        for code, value in post.results.trial.items()
    ]
    event_rows = [
        (post.trial_pk, number, post.ids[code], value)
        for post in done
        for number, event in enumerate(post.results.events)
        for code, value in event.items()
    ]
    if trial_rows:
        await driver.executemany(_SQLITE_TRIAL_VALUES, trial_rows)
    if event_rows:
        await driver.executemany(_SQLITE_EVENT_VALUES, event_rows)
    return moved
