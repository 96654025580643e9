"""Answering those who wait on a future, when they may have stopped waiting."""

from __future__ import annotations

import asyncio
from typing import Any


def settle(
    done: asyncio.Future[Any], result: Any = None, error: BaseException | None = None
) -> None:
    """Set the future's result, or `error`, unless its waiter gave up (it is done already)."""
    if done.done():
        return
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(result)
