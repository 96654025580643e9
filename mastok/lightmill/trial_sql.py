"""The trial path's SQL: a batch's writes and the places' read, in each driver's parameter style.

Texts only, importing nothing: the SQLite worker process (sqlite_worker_main.py) runs them without
SQLAlchemy. They go straight to the drivers ($1 for asyncpg, ? for sqlite3): prepared once,
and planned once by PostgreSQL (trial_places.py, batch_write.py).
"""

_POSTS_PG = """
WITH posts AS (
    SELECT * FROM unnest(CAST($1 AS TEXT[]), CAST($2 AS TEXT[]),
        CAST($3 AS INTEGER[]), CAST($4 AS INTEGER[]))
        AS p(experiment, run, block, trial)
),"""
_POSTS_SQLITE = """
WITH posts(experiment, run, block, trial) AS (
    SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),
        json_extract(value, '$[2]'), json_extract(value, '$[3]')
    FROM json_each(?)
),"""
# Each post's run and its trial's position (a lookup by unique keys alone, whatever the
# statistics), then that trial and those after it in the run.
_FIRSTS = """
firsts AS (
    SELECT DISTINCT posts.experiment, posts.run, r.id AS run_pk,
        r.experiment_id AS experiment_pk, t.position
    FROM posts
    JOIN lm_experiments AS e ON e.code = posts.experiment
    JOIN lm_runs AS r ON r.experiment_id = e.id AND r.code = posts.run
    JOIN lm_blocks AS b ON b.run_id = r.id AND b.number = posts.block
    JOIN lm_trials AS t ON t.block_id = b.id AND t.number = posts.trial
)"""
PLACES_SQLITE = (
    _POSTS_SQLITE
    + _FIRSTS
    + """
SELECT firsts.experiment, firsts.run, b.number, t.number, firsts.run_pk,
    firsts.experiment_pk, b.measured_number, b.practice, t.id, t.position,
    f.code, v.code
FROM firsts
JOIN lm_trials AS t ON t.run_id = firsts.run_pk
    AND t.position >= firsts.position AND t.position < firsts.position + ?
JOIN lm_blocks AS b ON b.id = t.block_id
LEFT JOIN lm_trial_factor_values AS tf ON tf.trial_id = t.id
LEFT JOIN lm_factors AS f ON f.id = tf.factor_id
LEFT JOIN lm_factor_values AS v ON v.id = tf.value_id
ORDER BY t.id, f.position
"""
)
# PostgreSQL plans by its statistics, and a design's tables have none until autovacuum's
# ANALYZE, a minute or more after the import that filled them, just as a study starts. With the
# joins above it then guessed 0.5% of the factor values a trial and hashed the whole table:
# 194-234 ms a read of one run's next 32 places, against 2-6 ms after ANALYZE (bench
# scenario 6's sixteenth round), and the plan could change again at any later ANALYZE. Here
# the run's trials are its next `$5` in the order of its (run_id, position) index, and a
# trial's factor values are read by its id behind `OFFSET 0` (which keeps that subquery a
# lookup a trial): the same plan with statistics or without (1-7 ms either way).
PLACES_PG = (
    _POSTS_PG
    + _FIRSTS
    + """
SELECT firsts.experiment, firsts.run, next.block, next.number, firsts.run_pk,
    firsts.experiment_pk, next.measured_number, next.practice, next.id, next.position,
    its.factor, its.value
FROM firsts
CROSS JOIN LATERAL (
    SELECT t.id, t.number, t.position, b.number AS block, b.measured_number, b.practice
    FROM lm_trials AS t JOIN lm_blocks AS b ON b.id = t.block_id
    WHERE t.run_id = firsts.run_pk
        AND t.position >= firsts.position AND t.position < firsts.position + $5
    ORDER BY t.position LIMIT $5
) AS next
LEFT JOIN LATERAL (
    SELECT f.code AS factor, v.code AS value, f.position
    FROM lm_trial_factor_values AS tf
    JOIN lm_factors AS f ON f.id = tf.factor_id
    JOIN lm_factor_values AS v ON v.id = tf.value_id
    WHERE tf.trial_id = next.id
    OFFSET 0
) AS its ON true
ORDER BY next.id, its.position
"""
)

# SET reads the run's row as it was: the last trial releases the lock (see store._moved_on).
# In asyncpg's parameter style: the statement goes straight to the driver, as trial_places' read.
WRITE_BATCH_PG = """
WITH posts AS (
    SELECT * FROM unnest(CAST($1 AS INTEGER[]), CAST($2 AS INTEGER[]),
        CAST($3 AS TEXT[]), CAST($4 AS INTEGER[]), CAST($5 AS INTEGER[]),
        CAST($6 AS TEXT[]), CAST($8 AS TEXT[]))
        AS p(run_pk, position, token, trial_pk, events, measure_values, event_values)
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
    RETURNING r.id AS run_pk, posts.trial_pk, posts.events, posts.measure_values,
        posts.event_values
), completed AS (
    UPDATE lm_trials AS t SET completed_at = CAST($7 AS TIMESTAMPTZ), event_count = moved.events,
        measure_values = moved.measure_values, event_values = moved.event_values
    FROM moved WHERE t.id = moved.trial_pk
)
SELECT run_pk FROM moved
"""

# As store._moved_on: each run moved on where its post says it is (its id, position and token).
# Either form finds a run by its id: `(id, completed_trials, lock_token) IN (VALUES ...)`
# scanned the whole table for each batch (600 µs a batch at 5,000 runs).
_MOVE_ON_SQLITE = (
    "UPDATE lm_runs SET completed_trials = completed_trials + 1, "
    "heartbeat_at = CASE WHEN completed_trials + 1 >= trial_count THEN NULL ELSE ? END, "
    "lock_token = CASE WHEN completed_trials + 1 >= trial_count THEN NULL ELSE lock_token END, "
    "locked_at = CASE WHEN completed_trials + 1 >= trial_count THEN NULL ELSE locked_at END "
)
# A batch's posts in one statement, as a JSON array of [run, position, token]: one crossing to
# aiosqlite's thread (its fixed cost, about 55 µs in SQLite, is less than a crossing a post).
MOVE_ON_SQLITE = _MOVE_ON_SQLITE + (
    "FROM (SELECT json_extract(value, '$[0]') AS run_pk, json_extract(value, '$[1]') AS position, "
    "json_extract(value, '$[2]') AS token FROM json_each(?)) AS posts "
    "WHERE lm_runs.id = posts.run_pk AND lm_runs.completed_trials = posts.position "
    "AND lm_runs.lock_token = posts.token RETURNING lm_runs.id"
)
# One post's run: the worker process's, which calls sqlite3 itself (about 4 µs a post).
MOVE_ON_ONE_SQLITE = _MOVE_ON_SQLITE + (
    "WHERE id = ? AND completed_trials = ? AND lock_token = ? RETURNING id"
)
COMPLETE_SQLITE = (
    "UPDATE lm_trials SET completed_at = ?, event_count = ?, measure_values = ?, "
    "event_values = ? WHERE id = ?"
)
