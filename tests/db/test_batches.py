"""Group commit (mastok/db/batches.py): stand-in items for Batches, closures for GroupCommit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Literal

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from mastok.db import Database, async_url
from mastok.db.batches import ALONE, Batches, GroupCommit, Leave


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    database = Database("sqlite+aiosqlite:///:memory:")
    yield database
    await database.close()


class Recorder:
    """Items are numbers: a batch takes the even ones (answering 10x), leaves the odd ones to
    be written alone (answering -x), and fails whole when it holds a 0."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.alone: list[int] = []

    async def many(
        self, _connection: AsyncConnection, items: Sequence[int]
    ) -> list[int | Literal[Leave.ALONE]]:
        self.batches.append(list(items))
        if 0 in items:
            raise RuntimeError("the batch fails")
        return [10 * i if i % 2 == 0 else ALONE for i in items]

    async def one(self, _connection: AsyncConnection, item: int) -> int:
        self.alone.append(item)
        if item == 0:
            raise ValueError("refused")
        return -item


async def test_items_arriving_together_share_a_batch(db: Database) -> None:
    recorder = Recorder()
    batches = Batches(db, recorder.many, recorder.one)

    outcomes = await asyncio.gather(*(batches.write(i) for i in (2, 3, 4)))

    assert outcomes == [20, -3, 40]
    assert recorder.batches == [[2, 3, 4]]
    assert recorder.alone == [3]


async def test_a_failed_batch_writes_each_item_alone(db: Database) -> None:
    recorder = Recorder()
    batches = Batches(db, recorder.many, recorder.one)

    outcomes = await asyncio.gather(*(batches.write(i) for i in (2, 0, 4)), return_exceptions=True)

    assert outcomes[0] == -2 and outcomes[2] == -4
    assert isinstance(outcomes[1], ValueError)
    assert recorder.alone == [2, 0, 4]
    assert await batches.write(6) == 60  # and the next batch goes on


async def test_an_item_queued_as_the_committer_ends_is_written(db: Database) -> None:
    recorder = Recorder()
    batches = Batches(db, recorder.many, recorder.one)
    # A committer that found the queue empty and ended, its done callback not run yet.
    ended = asyncio.create_task(asyncio.sleep(0))
    await asyncio.wait({ended})
    batches._committers = {ended}

    assert await asyncio.wait_for(batches.write(8), 5) == 80


async def test_a_committer_keeps_its_connection_while_writes_keep_coming(db: Database) -> None:
    connections: list[AsyncConnection] = []

    async def many(connection: AsyncConnection, items: Sequence[int]) -> list[int]:
        connections.append(connection)
        return list(items)

    held = Batches(db, many, Recorder().one, hold=3600)  # longer than the test, whatever the clock
    given_back = Batches(db, many, Recorder().one, hold=0)
    for batches in (held, given_back):
        assert await batches.write(1) == 1
        assert await batches.write(2) == 2  # queued a turn after the first was answered

    assert connections[0] is connections[1]
    assert connections[2] is not connections[3]
    for committer in held._committers:  # still holding: let its connection go
        committer.cancel()
    await asyncio.gather(*held._committers, return_exceptions=True)


async def test_a_committer_gathers_what_reaches_the_queue_within_its_turns(db: Database) -> None:
    """A write queued two turns of the loop after the one that woke the committer (as a post
    read from its socket reaches the queue) shares its batch only when the committer lets three
    turns pass first."""

    async def arriving(batches: Batches[int, int], item: int) -> int:
        for _ in range(2):
            await asyncio.sleep(0)
        return await batches.write(item)

    seen: dict[int, list[list[int]]] = {}
    for turns in (0, 3):
        recorder = Recorder()
        batches = Batches(db, recorder.many, recorder.one, hold=3600, gather_turns=turns)
        assert await batches.write(2) == 20  # its committer now holds its connection, waiting
        outcomes = await asyncio.gather(batches.write(4), arriving(batches, 6))
        assert outcomes == [40, 60]
        seen[turns] = recorder.batches
        for committer in batches._committers:  # holding for the hour: let its connection go
            committer.cancel()
        await asyncio.gather(*batches._committers, return_exceptions=True)

    assert seen == {0: [[2], [4], [6]], 3: [[2], [4, 6]]}


async def test_an_autocommit_batch_runs_outside_a_transaction(postgres_database_url: str) -> None:
    """Each statement is a transaction of its own (its own now()): a `many` must write in one
    statement. The connection goes back to the pool as it came."""
    db = Database(async_url(postgres_database_url))
    try:

        async def many(connection: AsyncConnection, items: Sequence[int]) -> list[bool]:
            first = await connection.scalar(text("SELECT now()"))
            second = await connection.scalar(text("SELECT now()"))
            return [first != second for _ in items]

        assert await Batches(db, many, Recorder().one, autocommit=True).write(1) is True
        assert await Batches(db, many, Recorder().one).write(1) is False
    finally:
        await db.close()


# --- Transaction closures ---------------------------------------------------------------------


async def notes_table(db: Database) -> None:
    async with db.engine.begin() as connection:
        await connection.execute(text("CREATE TABLE notes (note TEXT NOT NULL UNIQUE)"))


async def notes(db: Database) -> list[str]:
    async with db.engine.connect() as connection:
        return list(await connection.scalars(text("SELECT note FROM notes ORDER BY rowid")))


def note(value: str, ran: list[str]) -> Callable[[AsyncConnection], Awaitable[int]]:
    """A closure that inserts a note and answers its row count; `ran` keeps each run."""

    async def work(connection: AsyncConnection) -> int:
        ran.append(value)
        await connection.execute(text("INSERT INTO notes VALUES (:v)"), {"v": value})
        return int(await connection.scalar(text("SELECT count(*) FROM notes")) or 0)

    return work


async def test_closures_arriving_together_commit_in_one_transaction(db: Database) -> None:
    await notes_table(db)
    group = GroupCommit(db)
    ran: list[str] = []

    counts = await asyncio.gather(*(group.commit(note(v, ran)) for v in "abc"))

    # Each saw the ones before it in the same transaction, and each ran once.
    assert counts == [1, 2, 3]
    assert ran == ["a", "b", "c"]
    assert await notes(db) == ["a", "b", "c"]


async def transactions_of_closures_in_turns(db: Database, turns: int) -> list[list[str]]:
    """The notes each transaction wrote: one closure asked for alone, then two, the second
    asked for two turns of the loop after the first (as a post read from its socket)."""
    transactions: list[list[str]] = []
    ran: list[str] = []

    async def finish(_connection: AsyncConnection) -> None:
        transactions.append(ran[:])
        ran.clear()

    group = GroupCommit(db, finish=finish, gather_turns=turns, hold=3600)

    async def arriving(value: str) -> int:
        for _ in range(2):
            await asyncio.sleep(0)
        return await group.commit(note(value, ran))

    await group.commit(note(f"{turns}a", ran))  # its committer now holds its connection
    await asyncio.gather(group.commit(note(f"{turns}b", ran)), arriving(f"{turns}c"))
    for committer in group._batches._committers:  # holding for the hour: let it go
        committer.cancel()
    await asyncio.gather(*group._batches._committers, return_exceptions=True)
    return transactions


async def test_closures_gather_what_reaches_the_queue_within_the_committers_turns(
    db: Database,
) -> None:
    """As for `Batches`: the later closure shares its transaction only when the committer lets
    three turns pass first."""
    await notes_table(db)
    assert await transactions_of_closures_in_turns(db, 0) == [["0a"], ["0b"], ["0c"]]
    assert await transactions_of_closures_in_turns(db, 3) == [["3a"], ["3b", "3c"]]


async def test_a_failing_closure_fails_alone(db: Database) -> None:
    await notes_table(db)
    group = GroupCommit(db)
    ran: list[str] = []
    works = [note(v, ran) for v in ("a", "b", "a", "c")]  # the second "a" breaks UNIQUE

    outcomes = await asyncio.gather(*(group.commit(w) for w in works), return_exceptions=True)

    assert outcomes[:2] == [1, 2] and outcomes[3] == 3
    assert isinstance(outcomes[2], Exception)
    assert await notes(db) == ["a", "b", "c"]
    # The batch ran until the failure, then each closure alone.
    assert ran == ["a", "b", "a", "a", "b", "a", "c"]


async def test_a_closure_answering_none_runs_once(db: Database) -> None:
    await notes_table(db)
    group = GroupCommit(db)
    runs = 0

    async def work(connection: AsyncConnection) -> None:
        nonlocal runs
        runs += 1
        await connection.execute(text("INSERT INTO notes VALUES ('x')"))

    outcomes = await asyncio.gather(group.commit(work), group.commit(note("y", [])))

    assert list(outcomes) == [None, 2]
    assert runs == 1
    assert await notes(db) == ["x", "y"]
