"""What a batch of trial posts' checks read: each post's run (with its lock), block and trial,
and the trial's factor values (a row each, in the factors' order), in one query.

The posts' keys come as one parameter (PostgreSQL: arrays, `unnest`; SQLite: a JSON array,
`json_each`), so the query's text is the same for every batch: prepared once by the driver,
and planned once by PostgreSQL. Their keys as IN lists (SQLAlchemy's expanding parameters)
made a new text for each batch size, which SQLAlchemy rendered again for every batch and
PostgreSQL planned again: that rendering was 5% of mastok's time on a trial (py-spy, bench
scenario 6).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Boolean, Integer, String, TextualSelect, text
from sqlalchemy.ext.asyncio import AsyncConnection

from mastok.lightmill.tables import LMRun, LMTrial

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
# The columns' types, for what the drivers give back (SQLite's datetimes are text).
_TYPES: dict[str, Any] = {
    "experiment": String,
    "run": String,
    "block": Integer,
    "trial": Integer,
    "run_pk": Integer,
    "experiment_pk": Integer,
    "completed_trials": Integer,
    "lock_token": String,
    "heartbeat_at": LMRun.heartbeat_at.type,
    "measured_number": Integer,
    "practice": Boolean,
    "trial_pk": Integer,
    "position": Integer,
    "completed_at": LMTrial.completed_at.type,
    "factor": String,
    "value": String,
}


def _query(posts: str) -> TextualSelect:
    return text(posts + _FOUND).columns(**_TYPES)


_PG_FOUND = _query(_PG_POSTS)
_SQLITE_FOUND = _query(_SQLITE_POSTS)


async def read_batch(connection: AsyncConnection, keys: Sequence[Key]) -> Iterable[Any]:
    """The rows found for these keys (distinct), by trial, each trial's factors in order; a
    key whose run, block or trial is not there has none."""
    if connection.dialect.name == "postgresql":
        return await connection.execute(
            _PG_FOUND,
            {
                "experiments": [key[0] for key in keys],
                "runs": [key[1] for key in keys],
                "blocks": [key[2] for key in keys],
                "trials": [key[3] for key in keys],
            },
        )
    return await connection.execute(_SQLITE_FOUND, {"keys": json.dumps(keys)})
