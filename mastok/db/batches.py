"""Group commit: writes queue, and each transaction commits all those queued, one batch at a time.

Many small transactions cost more than their statements: a round trip per statement and per
commit, and on SQLite one writer at a time (concurrent writers sleep in its busy handler). So
writes queue in mastok, first come first served, and a committer takes everything queued as one
batch, in one transaction; the writes that arrive meanwhile make up the next batch. A caller
hears back only once its write is committed.

A batch answers each of its items with a result, or with `ALONE` for an item it cannot take as
it is: that item is then written alone, after the batch, in a transaction of its own, which
gives its answer (result or error). If a batch's transaction fails, nothing of it was written,
and each of its items is written alone, so that only the one at fault fails.

`Batches(db, many, one)` is the primitive: `many(connection, items)` writes a batch (a few
statements for all of its items, say), `one(connection, item)` a single item. `GroupCommit(db)`
is the common case: transaction closures, run one after the other in the batch's transaction.

`autocommit`: for a `many` whose only write is one statement (atomic alone), the batch runs
without BEGIN and COMMIT, two round trips fewer, and without a SQLAlchemy transaction: its
begin and its commit each crossed into a greenlet, whose Python stack is memory mapped and
unmapped each time. With engine.py's `driver_connection`, which no longer crosses either,
mastok ran 1.7% fewer instructions a trial logged on PostgreSQL (772,000-774,000 against
759,000-760,000; callgrind, 16 clients).

A committer keeps its connection while writes keep coming: once the queue is empty, it waits
up to `hold` seconds for the next one before giving the connection back. Under a steady load it
never does, and a batch goes out as soon as the last one is done. Giving it back at once cost
a checkout and the pool's pre-ping (3 round trips with asyncpg) every few batches, while the
posts waiting for them left mastok's loop idle. PostgreSQL trial logging at 16 clients, three
legs of each in turns: about 4,300 trials a second giving it back at once, 5,700 with the
hold. Polling instead (the connection kept for 30 more turns of the loop, never asleep) gave
6,300 in those legs, but no more than the hold in a later pair of runs (5,100 against 6,300),
and it takes CPU from whatever shares the cores (bench/README.md, scenario 6).

`gather_turns`: turns of the event loop a committer lets pass before it takes a batch. A request
read from its socket reaches the queue two turns later (its bytes parsed, then its task run), so
three turns take every write whose bytes had come in when the committer woke, where it took
only those already queued. Each batch then carries more writes, each of which pays less of the
batch's fixed cost (its round trip, PostgreSQL's statement and its commit). It matters most where
processes share the cores: trials logged by a leader and a standby on one PostgreSQL, about
7,000 a second without it and 8,400-8,900 with it (bench scenario 6, twentieth round).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from enum import Enum
from typing import Any, Generic, Literal, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from mastok.db.engine import Database
from mastok.futures import settle
from mastok.tasks import Spawn, create_task

P = TypeVar("P")
R = TypeVar("R")
T = TypeVar("T")


class Leave(Enum):
    ALONE = "alone"


ALONE = Leave.ALONE  # what a batch answers for an item to write alone

Many = Callable[[AsyncConnection, Sequence[P]], Awaitable[Sequence[R | Literal[Leave.ALONE]]]]
One = Callable[[AsyncConnection, P], Awaitable[R]]
Work = Callable[[AsyncConnection], Awaitable[Any]]

HOLD = 0.1  # seconds a committer keeps its connection with nothing queued


class Batches(Generic[P, R]):
    """`parallel`: batches committing at once, each on a connection of its own (on SQLite
    always one: it takes one writer at a time); `autocommit`, `hold`, `gather_turns`: the
    module's docstring."""

    def __init__(
        self,
        db: Database,
        many: Many[P, R],
        one: One[P, R],
        parallel: int = 1,
        spawn: Spawn | None = None,
        autocommit: bool = False,
        hold: float = HOLD,
        gather_turns: int = 0,
    ) -> None:
        self.db = db
        self._spawn = spawn or create_task
        self._many = many
        self._one = one
        self._parallel = 1 if db.is_sqlite else parallel
        self._autocommit = autocommit
        self._hold = hold
        self._gather_turns = gather_turns
        self._queued: list[tuple[P, asyncio.Future[R]]] = []
        self._committers: set[asyncio.Task[None]] = set()
        self._holding: list[asyncio.Future[None]] = []  # committers waiting for a write

    async def write(self, item: P) -> R:
        """Write the item; its result once committed, or what it raised."""
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queued.append((item, done))
        for holding in self._holding:
            settle(holding, None)
        # A committer that found the queue empty is done, even before its callback runs.
        self._committers = {c for c in self._committers if not c.done()}
        if len(self._committers) < self._parallel:
            committer = self._spawn(self._commit_batches(), "mastok group commit")
            self._committers.add(committer)
            committer.add_done_callback(self._committers.discard)
        return await done

    async def _commit_batches(self) -> None:
        """Commit what is queued, a batch per transaction, until nothing is within the hold,
        on a connection kept from one batch to the next. A batch whose transaction fails wrote
        nothing: its items are written alone, and the next batch gets a new connection."""
        batch: list[tuple[P, asyncio.Future[R]]] = []
        try:
            while self._queued:
                async with self.db.engine.connect() as connection:
                    if self._autocommit:
                        await connection.execution_options(isolation_level="AUTOCOMMIT")
                    while await self._more():
                        for _ in range(self._gather_turns):
                            await asyncio.sleep(0)
                        batch, self._queued = self._queued, []
                        try:
                            answers = await self._write_batch(connection, [i for i, _ in batch])
                        except Exception:
                            break
                        for (item, done), answer in zip(batch, answers, strict=True):
                            if answer is Leave.ALONE:
                                await self._write_alone(item, done)
                            else:
                                settle(done, answer)
                        batch = []
                for item, done in batch:
                    await self._write_alone(item, done)
                batch = []
        except Exception as error:  # no connection to be had: tell those waiting
            for _, done in batch + self._queued:
                settle(done, error=error)
            self._queued = []
        finally:  # cancelled (mastok is stopping): nobody waits for ever
            for _, done in batch + self._queued:
                done.cancel()
            self._queued = []

    async def _write_batch(self, connection: AsyncConnection, items: list[P]) -> Sequence[Any]:
        if self._autocommit:
            return await self._many(connection, items)
        async with connection.begin():
            return await self._many(connection, items)

    async def _more(self) -> bool:
        """Whether writes are queued, now or within the hold."""
        if self._queued or self._hold <= 0:
            return bool(self._queued)
        loop = asyncio.get_running_loop()
        holding: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(self._hold, settle, holding, None)
        self._holding.append(holding)
        try:
            await holding
        finally:
            timer.cancel()
            self._holding.remove(holding)
        return bool(self._queued)  # a write may have come as the hold ended

    async def _write_alone(self, item: P, done: asyncio.Future[R]) -> None:
        if done.done():  # its caller gave up waiting
            return
        try:
            async with self.db.engine.begin() as connection:
                result = await self._one(connection, item)
        except Exception as error:
            settle(done, error=error)
        else:
            settle(done, result)


class GroupCommit:
    """Transaction closures (`async def work(connection) -> T`) committed together, in the
    order they came, each alone when their batch fails. `finish(connection)` runs last in
    each transaction, before its commit (statements the closures left waiting, say);
    `gather_turns`, `hold`: as for `Batches`."""

    def __init__(
        self,
        db: Database,
        parallel: int = 1,
        spawn: Spawn | None = None,
        finish: Work | None = None,
        gather_turns: int = 0,
        hold: float = HOLD,
    ) -> None:
        async def run_each(connection: AsyncConnection, works: Sequence[Work]) -> list[Any]:
            results = [await work(connection) for work in works]
            if finish is not None:
                await finish(connection)
            return results

        async def run(connection: AsyncConnection, work: Work) -> Any:
            return (await run_each(connection, [work]))[0]

        self._batches: Batches[Work, Any] = Batches(
            db, run_each, run, parallel, spawn, hold=hold, gather_turns=gather_turns
        )

    async def commit(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """`work`'s result once committed, or what it raised (then alone, nothing of it
        written)."""
        result: T = await self._batches.write(work)
        return result
