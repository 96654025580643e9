"""What a batch of trial posts' checks read: each post's run (with its lock), block and trial,
and the trial's factor values (a row each, in the factors' order), in one query.

The posts' keys come as one parameter (PostgreSQL: arrays, `unnest`; SQLite: a JSON array,
`json_each`), so the query's text is the same for every batch: prepared once by the driver,
and planned once by PostgreSQL (its CPU for the query went from 0.43-0.57 ms to 0.20-0.23 ms
a batch of 10 to 14 posts). Their keys as IN lists (SQLAlchemy's expanding parameters)
made a new text for each batch size, which SQLAlchemy rendered again for every batch and
PostgreSQL planned again: that rendering was 5% of mastok's time on a trial (py-spy, bench
scenario 6).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Boolean
from sqlalchemy.ext.asyncio import AsyncConnection

from mastok.db.engine import driver_connection
from mastok.lightmill.tables import LMRun

Key = tuple[str, str, int, int]  # experiment, run, block, trial: as the post's path names it

_PG_POSTS = """
WITH posts AS (
    SELECT * FROM unnest(CAST(:experiments AS TEXT[]), CAST(:runs AS TEXT[]),
        CAST(:blocks AS INTEGER[]), CAST(:trials AS INTEGER[]))
        AS p(experiment, run, block, trial)
)"""
_SQLITE_POSTS = """
WITH posts(experiment, run, block, trial) AS (
    SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),
        json_extract(value, '$[2]'), json_extract(value, '$[3]')
    FROM json_each(:keys)
)"""
_FOUND = """
SELECT posts.experiment, posts.run, posts.block, posts.trial,
    r.id AS run_pk, r.experiment_id AS experiment_pk, r.completed_trials, r.lock_token,
    r.heartbeat_at, b.measured_number, b.practice, t.id AS trial_pk, t.position,
    t.completed_at, f.code AS factor, v.code AS value
FROM posts
JOIN lm_experiments AS e ON e.code = posts.experiment
JOIN lm_runs AS r ON r.experiment_id = e.id AND r.code = posts.run
JOIN lm_blocks AS b ON b.run_id = r.id AND b.number = posts.block
JOIN lm_trials AS t ON t.block_id = b.id AND t.number = posts.trial
LEFT JOIN lm_trial_factor_values AS tf ON tf.trial_id = t.id
LEFT JOIN lm_factors AS f ON f.id = tf.factor_id
LEFT JOIN lm_factor_values AS v ON v.id = tf.value_id
ORDER BY t.id, f.position
"""


class Found(NamedTuple):
    """A row of the query: a post's key, what its checks read, one of its trial's factors."""

    experiment: str
    run: str
    block: int
    trial: int
    run_pk: int
    experiment_pk: int
    completed_trials: int
    lock_token: str | None
    heartbeat_at: datetime | None
    measured_number: int | None
    practice: bool
    trial_pk: int
    position: int
    completed_at: datetime | None
    factor: str | None
    value: str | None


# In each driver's parameter style ($1 for asyncpg, ? for sqlite3).
_PG_FOUND = (_PG_POSTS + _FOUND).replace(":experiments", "$1").replace(":runs", "$2")
_PG_FOUND = _PG_FOUND.replace(":blocks", "$3").replace(":trials", "$4")
_SQLITE_FOUND = (_SQLITE_POSTS + _FOUND).replace(":keys", "?")


async def read_batch(connection: AsyncConnection, keys: Sequence[Key]) -> list[Found]:
    """The rows found for these keys (distinct), by trial, each trial's factors in order; a
    key whose run, block or trial is not there has none. Straight from the driver: through
    SQLAlchemy, the result's set-up cost more than the query (4% of a trial on SQLite)."""
    driver = await driver_connection(connection)
    if connection.dialect.name == "postgresql":
        columns = zip(*keys, strict=True) if keys else ([], [], [], [])
        return [Found._make(row) for row in await driver.fetch(_PG_FOUND, *map(list, columns))]
    # As SQLAlchemy reads them: its datetimes are text in SQLite, its booleans integers.
    dialect = connection.dialect
    as_datetime = LMRun.heartbeat_at.type.dialect_impl(dialect).result_processor(dialect, None)
    as_bool = Boolean().dialect_impl(dialect).result_processor(dialect, None)
    assert as_datetime is not None and as_bool is not None
    found = []
    for row in await driver.execute_fetchall(_SQLITE_FOUND, (json.dumps(keys),)):
        values = list(row)
        values[8], values[13] = as_datetime(values[8]), as_datetime(values[13])
        values[10] = as_bool(values[10])
        found.append(Found._make(values))
    return found
