"""A batch of checked trial posts written in one PostgreSQL statement.

Each run moves on only if it is still as its post's checks found it (same completed trials,
same lock token); its trial is completed and its values inserted only if it moved. The
statement is data-modifying CTEs over arrays (`unnest`): one round trip for a batch, where one
statement a step took five. The foreign keys stay: the inserted rows are checked as any
others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from mastok.lightmill.results import TrialResults


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
