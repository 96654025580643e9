"""Trial posts recorded in batches: one transaction, and a few statements, for many posts.

A trial post is a few small statements (read the run and the trial, move the run on, complete
the trial, insert its values), and it is their number, not their size, that costs: each is a
round trip through SQLAlchemy and the driver, and on SQLite a writer holds the database across
the event loop's turns between them (so concurrent writers would sleep in its busy handler).

So posts queue in mastok, first come first served, and are recorded a batch at a time: the
posts that arrive while a batch's transaction runs make up the next batch, whose statements
each cover all of its posts. Every post is still checked and written whole (its results and
events with its trial's completion, or nothing), and its caller hears back only once the
batch is committed. A post the batch cannot take as it is (a check that refuses it, a measure
to register, a second post for the same run, a race lost to a lock change) is recorded alone
after the batch, in a transaction of its own, which gives its precise answer. If the batch's
transaction fails, nothing of it was written, and each of its posts is recorded alone.

The waiting room's writes (mastok/live/records.py) queue the same way, on their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from mastok.db import Database
from mastok.futures import settle

P = TypeVar("P")
R = TypeVar("R")

# What a batch answers for each post: its result, or None to have it recorded alone.
Batch = Callable[[AsyncConnection, Sequence[P]], Awaitable[list[R | None]]]
Alone = Callable[[AsyncConnection, P], Awaitable[R]]

# PostgreSQL: while a batch's statements run in the database (its inserts check every value's
# foreign keys), the next batch is checked and sent on another connection.
PARALLEL = 2


class Batches(Generic[P, R]):
    """`parallel`: batches at once, each on a connection of its own (SQLite: always one)."""

    def __init__(
        self, db: Database, batch: Batch[P, R], alone: Alone[P, R], parallel: int = PARALLEL
    ) -> None:
        self.db = db
        self._batch = batch
        self._alone = alone
        self._parallel = 1 if db.is_sqlite else parallel
        self._queued: list[tuple[P, asyncio.Future[R]]] = []
        self._committers: set[asyncio.Task[None]] = set()

    async def record(self, post: P) -> R:
        """Record the post; its result once committed, or what it raised."""
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queued.append((post, done))
        # A committer that found the queue empty is done, even before its callback runs.
        self._committers = {c for c in self._committers if not c.done()}
        if len(self._committers) < self._parallel:
            committer = asyncio.create_task(self._commit_batches())
            self._committers.add(committer)
            committer.add_done_callback(self._committers.discard)
        return await done

    async def _commit_batches(self) -> None:
        """Commit what is queued, a batch per transaction, until nothing is, on a connection
        kept from one batch to the next. A batch whose transaction fails wrote nothing: its
        posts are recorded alone, and the next batch gets a new connection."""
        batch: list[tuple[P, asyncio.Future[R]]] = []
        try:
            while self._queued:
                async with self.db.engine.connect() as connection:
                    while self._queued:
                        batch, self._queued = self._queued, []
                        try:
                            async with connection.begin():
                                outcomes = await self._batch(connection, [p for p, _ in batch])
                        except Exception:
                            break
                        for (post, done), outcome in zip(batch, outcomes, strict=True):
                            if outcome is None:
                                await self._record_alone(post, done)
                            else:
                                settle(done, outcome)
                        batch = []
                for post, done in batch:
                    await self._record_alone(post, done)
                batch = []
        except Exception as error:  # no connection to be had: tell those waiting
            for _, done in batch + self._queued:
                settle(done, error=error)
            self._queued = []
        finally:  # cancelled (mastok is stopping): nobody waits for ever
            for _, done in batch + self._queued:
                done.cancel()
            self._queued = []

    async def _record_alone(self, post: P, done: asyncio.Future[R]) -> None:
        if done.done():  # its caller gave up waiting
            return
        try:
            async with self.db.engine.begin() as connection:
                result = await self._alone(connection, post)
        except Exception as error:
            settle(done, error=error)
        else:
            settle(done, result)
