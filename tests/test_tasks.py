"""The app's task scope (mastok/tasks.py): a task that fails is logged and ends alone, and work
handed to the scope is never left as a coroutine nobody awaited: neither when the scope is
closed already, nor when it is left before the work began."""

from __future__ import annotations

import asyncio
import gc
import logging
import warnings

import pytest

from mastok.tasks import task_scope


async def test_a_failing_task_is_logged_and_the_others_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    done = asyncio.Event()

    async def fails() -> None:
        raise ValueError("a campaign's bug")

    async def goes_on() -> None:
        await asyncio.sleep(0)
        done.set()

    async with task_scope() as scope:
        scope.spawn(fails(), "failing")
        scope.spawn(goes_on(), "going on")
        await done.wait()

    assert "failing failed" in caplog.text
    assert [r.levelno for r in caplog.records] == [logging.ERROR]


async def test_work_is_not_left_unawaited_when_the_scope_is_left_or_closed() -> None:
    started: list[str] = []

    async def work(name: str) -> None:
        started.append(name)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with task_scope() as scope:
            scope.spawn(work("never begun"), "left at once")
        with pytest.raises(RuntimeError):
            scope.spawn(work("too late"), "closed")
        gc.collect()

    assert started == []
    assert [str(w.message) for w in caught if w.category is RuntimeWarning] == []
