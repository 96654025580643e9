"""The runner's lock: handed over in order, `first()` ahead of the queue, cancellation safe."""

from __future__ import annotations

import asyncio

import pytest

from mastok.live.lock import RoomLock


async def _take(lock: RoomLock, name: str, order: list[str], first: bool = False) -> None:
    if first:
        async with lock.first():
            order.append(name)
    else:
        async with lock:
            order.append(name)


async def test_waiters_get_the_lock_in_order_and_first_goes_ahead() -> None:
    lock, order = RoomLock(), []
    await lock.acquire()
    tasks = [asyncio.create_task(_take(lock, name, order)) for name in ("a", "b", "c")]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(_take(lock, "start", order, first=True)))
    await asyncio.sleep(0)
    assert order == [] and lock.locked()
    lock.release()
    await asyncio.gather(*tasks)
    assert order == ["start", "a", "b", "c"]
    assert not lock.locked()


async def test_nobody_barges_in_while_the_lock_is_handed_over() -> None:
    lock, order = RoomLock(), []
    await lock.acquire()
    waiting = asyncio.create_task(_take(lock, "waiting", order))
    await asyncio.sleep(0)
    lock.release()  # handed to `waiting`, which has not run yet
    late = asyncio.create_task(_take(lock, "late", order))
    await asyncio.gather(waiting, late)
    assert order == ["waiting", "late"]


async def test_a_cancelled_waiter_leaves_the_queue_and_passes_on_a_lock_handed_to_it() -> None:
    lock, order = RoomLock(), []
    await lock.acquire()
    cancelled = asyncio.create_task(_take(lock, "cancelled", order))
    after = asyncio.create_task(_take(lock, "after", order))
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    lock.release()
    await after
    assert order == ["after"]

    await lock.acquire()
    handed = asyncio.create_task(_take(lock, "handed", order))
    last = asyncio.create_task(_take(lock, "last", order))
    await asyncio.sleep(0)
    lock.release()  # handed to `handed`...
    handed.cancel()  # ...which is cancelled before it runs: `last` gets the lock
    with pytest.raises(asyncio.CancelledError):
        await handed
    await last
    assert order == ["after", "last"]
    assert not lock.locked()


async def test_releasing_a_free_lock_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        RoomLock().release()
