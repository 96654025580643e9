"""The runner's lock: first come first served, except for what must go first.

A session start's completion (record it, send its pool to oTree) waits for the lock like any
frame; behind a busy campaign's queue of frames, each holding the lock across a database write,
its members would wait for all of them. `first()` puts it at the head of the queue instead: it
waits only for the event that holds the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from types import TracebackType


class RoomLock:
    """A lock handed from holder to waiter (nobody barges in between), FIFO but for `first()`."""

    def __init__(self) -> None:
        self._locked = False
        self._waiters: deque[asyncio.Future[None]] = deque()

    def locked(self) -> bool:
        return self._locked

    async def acquire(self, first: bool = False) -> None:
        if not self._locked and not self._waiters:
            self._locked = True
            return
        waiter = asyncio.get_running_loop().create_future()
        if first:
            self._waiters.appendleft(waiter)
        else:
            self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed the lock as it was cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):  # release() may have dropped it already
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        if not self._locked:
            raise RuntimeError("RoomLock is not held")
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # still locked: now the waiter's
                return
        self._locked = False

    @contextlib.asynccontextmanager
    async def first(self) -> AsyncIterator[None]:
        """Hold the lock, ahead of everyone waiting for it."""
        await self.acquire(first=True)
        try:
            yield
        finally:
            self.release()

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
