"""Every background task mastok runs belongs to one scope, owned by the app's lifespan.

The scope is an `asyncio.TaskGroup`: leaving the lifespan cancels every task still running
(runners, the clock, write committers, session creations) and waits for them. A task that
fails is logged and ends alone: one campaign's bug must not stop every other campaign.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger("mastok")
T = TypeVar("T")

# How a component starts its background tasks: `TaskScope.spawn` in the app; outside it (the
# CLI, some tests) `create_task`, the tasks then being the caller's to end.
Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[Any]"]


def create_task(work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[Any]:
    return asyncio.create_task(work, name=name)


class TaskScope:
    def __init__(self, group: asyncio.TaskGroup) -> None:
        self._group = group
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T | None]:
        """Run `work` in the scope. Raises RuntimeError once the scope is closed."""
        logged = _logged(work, name)
        try:
            task = self._group.create_task(logged, name=name)
        except RuntimeError:  # Python 3.11's TaskGroup leaves the coroutine to its caller
            logged.close()
            work.close()
            raise
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        # Cancelled before it began (the scope left at once), `work` was never awaited.
        task.add_done_callback(lambda _: work.close())
        return task

    def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()


async def _logged(work: Coroutine[Any, Any, T], name: str) -> T | None:
    try:
        return await work
    except Exception:
        log.exception("%s failed", name)
        return None


@contextlib.asynccontextmanager
async def task_scope() -> AsyncIterator[TaskScope]:
    """A scope whose tasks are all cancelled, and awaited, when it is left."""
    async with asyncio.TaskGroup() as group:
        scope = TaskScope(group)
        try:
            yield scope
        finally:
            scope.cancel_all()
