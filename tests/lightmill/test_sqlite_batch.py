"""SQLite's batch statements (mastok/lightmill/sqlite_batch.py, trial_sql.py) find each run by
its id: neither form of the move-on scans `lm_runs`, whose rows a study counts in thousands (the
row-value `IN (VALUES ...)` they replace scanned it for every batch)."""

from __future__ import annotations

import json

from mastok.lightmill.trial_sql import MOVE_ON_ONE_SQLITE, MOVE_ON_SQLITE
from mastok.sqlite_connection import connect


def plan(path: str, sql: str, params: list[object]) -> list[str]:
    connection = connect(path)
    try:
        return [row[3] for row in connection.execute("EXPLAIN QUERY PLAN " + sql, params)]
    finally:
        connection.close()


def test_neither_move_on_scans_the_runs(sqlite_database_url: str) -> None:
    path = sqlite_database_url.split(":///", 1)[1]
    stamp = "2026-12-02 10:00:00.000000"
    batch = plan(path, MOVE_ON_SQLITE, [stamp, json.dumps([[1, 0, "a"], [2, 3, "b"]])])
    one = plan(path, MOVE_ON_ONE_SQLITE, [stamp, 1, 0, "a"])

    for steps in (batch, one):
        assert any(step.startswith("SEARCH lm_runs USING INTEGER PRIMARY KEY") for step in steps)
        assert not any("SCAN lm_runs" in step for step in steps), steps
