"""A batch of trial posts written: one PostgreSQL statement, or SQLite's two.

Each run moves on only if it is where its post says it is: at the post's trial (the trial's
position is the run's completed trials: trials are completed in order), locked with the post's
token. That is all a post's checks of its run asked: this write makes them. Its trial is
completed, with its own measures' values and its events', only if it moved. On PostgreSQL the
statement is data-modifying CTEs over arrays (`unnest`), sent straight to asyncpg: one round
trip for a batch, where one statement a step took five. A trial's events go as the one JSON
array they are stored as (`encode_each`): as arrays of an element an event, asyncpg checked
each element (an ABC check in Python for each), and mastok ran 6.2% more instructions a trial
(callgrind, 16 clients). A value is keyed by a measure id resolved among its experiment's
measures. SQLite's DML takes no CTE: its statements go straight to aiosqlite, a crossing to
its thread each, where SQLAlchemy's cursors took three or four.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import NamedTuple, cast

from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from mastok.db.engine import driver_connection
from mastok.lightmill import sqlite_batch
from mastok.lightmill.measure_values import encode, encode_each
from mastok.lightmill.results import TrialResults
from mastok.lightmill.sqlite_batch import StoredPost
from mastok.lightmill.tables import LMRun
from mastok.lightmill.trial_sql import COMPLETE_SQLITE, WRITE_BATCH_PG


class Checked(NamedTuple):
    """A post to write: its run, where the post says the run is, its trial, its values."""

    run_pk: int
    position: int  # its trial's: the run's completed trials, if the post is the run's next
    token: str
    trial_pk: int
    ids: Mapping[str, int]  # the measures' ids by code
    results: TrialResults


async def write_batch(
    connection: AsyncConnection, posts: Sequence[Checked], now: datetime
) -> set[int]:
    """Move each post's run on, complete its trial, insert its values; the runs moved (a run not
    at its post's trial, or not locked with its token, is left as it is, with nothing of it)."""
    if connection.dialect.name == "sqlite":
        return await _write_batch_sqlite(connection, posts, now)
    driver = await driver_connection(connection)  # asyncpg's
    rows = await driver.fetch(
        WRITE_BATCH_PG,
        [p.run_pk for p in posts],
        [p.position for p in posts],
        [p.token for p in posts],
        [p.trial_pk for p in posts],
        [len(p.results.events) for p in posts],
        [encode(p.ids, p.results.trial) for p in posts],
        now,
        [encode_each(p.ids, p.results.events) for p in posts],
    )
    return {row[0] for row in rows}


def stored_post(post: Checked) -> StoredPost:
    """The post as SQLite's statements write it (sqlite_batch.py)."""
    return StoredPost(
        post.run_pk,
        post.position,
        post.token,
        post.trial_pk,
        len(post.results.events),
        encode(post.ids, post.results.trial),
        encode_each(post.ids, post.results.events),
    )


def sqlite_stamp(dialect: Dialect) -> Callable[[datetime], str]:
    """A time as SQLAlchemy stores it on SQLite (its SQLite type's; the column's generic type
    has none, and sqlite3's own adapter wrote the offset, and no fraction for a whole second)."""
    as_stored = LMRun.heartbeat_at.type.dialect_impl(dialect).bind_processor(dialect)
    assert as_stored is not None
    return cast(Callable[[datetime], str], as_stored)


async def _write_batch_sqlite(
    connection: AsyncConnection, posts: Sequence[Checked], now: datetime
) -> set[int]:
    """The same on SQLite, on the aiosqlite connection of the transaction SQLAlchemy began
    (sqlite3 begins it before the first write, and SQLAlchemy commits or rolls it back)."""
    driver = await driver_connection(connection)  # aiosqlite's
    stamp = sqlite_stamp(connection.dialect)(now)
    stored = [stored_post(post) for post in posts]
    sql, params = sqlite_batch.move_on(stored, stamp)
    moved = {row[0] for row in await driver.execute_fetchall(sql, params)}
    done = [post for post in stored if post.run_pk in moved]
    if done:
        await driver.executemany(COMPLETE_SQLITE, sqlite_batch.completions(done, stamp))
    return moved
