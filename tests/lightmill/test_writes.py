"""Trial posts recorded in batches (mastok/lightmill/writes.py), with stand-in posts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from mastok.db import Database
from mastok.lightmill.writes import Batches


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    database = Database("sqlite+aiosqlite:///:memory:")
    yield database
    await database.close()


class Recorder:
    """Posts are numbers: a batch takes the even ones (answering 10x), leaves the odd ones to
    be recorded alone (answering -x), and fails whole when it holds a 0."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.alone: list[int] = []

    async def batch(self, _connection: AsyncConnection, posts: Sequence[int]) -> list[int | None]:
        self.batches.append(list(posts))
        if 0 in posts:
            raise RuntimeError("the batch fails")
        return [10 * p if p % 2 == 0 else None for p in posts]

    async def record_alone(self, _connection: AsyncConnection, post: int) -> int:
        self.alone.append(post)
        if post == 0:
            raise ValueError("refused")
        return -post


async def test_posts_arriving_together_share_a_batch(db: Database) -> None:
    recorder = Recorder()
    batches = Batches(db, recorder.batch, recorder.record_alone)

    outcomes = await asyncio.gather(*(batches.record(p) for p in (2, 3, 4)))

    assert outcomes == [20, -3, 40]
    assert recorder.batches == [[2, 3, 4]]
    assert recorder.alone == [3]


async def test_a_failed_batch_records_each_post_alone(db: Database) -> None:
    recorder = Recorder()
    batches = Batches(db, recorder.batch, recorder.record_alone)

    outcomes = await asyncio.gather(*(batches.record(p) for p in (2, 0, 4)), return_exceptions=True)

    assert outcomes[0] == -2 and outcomes[2] == -4
    assert isinstance(outcomes[1], ValueError)
    assert recorder.alone == [2, 0, 4]
    assert await batches.record(6) == 60  # and the next batch goes on


async def test_a_post_queued_as_the_committer_ends_is_recorded(db: Database) -> None:
    recorder = Recorder()
    batches = Batches(db, recorder.batch, recorder.record_alone)
    # A committer that found the queue empty and ended, its done callback not run yet.
    ended = asyncio.create_task(asyncio.sleep(0))
    await asyncio.wait({ended})
    batches._committers = {ended}

    assert await asyncio.wait_for(batches.record(8), 5) == 80
