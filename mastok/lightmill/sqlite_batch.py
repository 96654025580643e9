"""A batch of trial posts as SQLite writes it: its statements and their rows, whichever
connection runs them (the event loop's, through aiosqlite: `move_on` for all the posts in one
statement; or the SQLite worker process's, which calls sqlite3 itself: `write`, a statement a
post to move the runs on).

A post comes as it is stored (`StoredPost`: its values already JSON text), so that the worker
process needs nothing of the design or its measures: it runs what it is sent.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any, NamedTuple

from mastok.lightmill.trial_sql import COMPLETE_SQLITE, MOVE_ON_ONE_SQLITE, MOVE_ON_SQLITE


class StoredPost(NamedTuple):
    """A post to write: its run, where the post says the run is, its token, its trial, and its
    values as stored (measure_values.py)."""

    run_pk: int
    position: int
    token: str
    trial_pk: int
    event_count: int
    trial_values: str | None
    event_values: str | None


def move_on(posts: Sequence[StoredPost], stamp: str) -> tuple[str, list[Any]]:
    """The statement that moves on each run at its post's trial and locked with its token
    (its `RETURNING` lists them), and its parameters: all the batch's posts in one."""
    runs = [[post.run_pk, post.position, post.token] for post in posts]
    return MOVE_ON_SQLITE, [stamp, json.dumps(runs)]


def completions(done: Sequence[StoredPost], stamp: str) -> list[tuple[Any, ...]]:
    return [completion(post, stamp) for post in done]


def completion(post: StoredPost, stamp: str) -> tuple[Any, ...]:
    """COMPLETE_SQLITE's parameters: the post's trial completed at `stamp`."""
    return (stamp, post.event_count, post.trial_values, post.event_values, post.trial_pk)


def write(connection: sqlite3.Connection, posts: Sequence[tuple[StoredPost, str]]) -> set[int]:
    """The batch, each post with its stamp (the time it is answered with), in a transaction of
    its own on a connection that begins none itself (`isolation_level=None`); the runs moved.
    Anything raised leaves nothing written."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        moved = {
            row[0]
            for post, stamp in posts
            for row in connection.execute(
                MOVE_ON_ONE_SQLITE, (stamp, post.run_pk, post.position, post.token)
            )
        }
        done = [completion(post, stamp) for post, stamp in posts if post.run_pk in moved]
        if done:
            connection.executemany(COMPLETE_SQLITE, done)
        connection.execute("COMMIT")
    except BaseException:
        connection.rollback()
        raise
    return moved
