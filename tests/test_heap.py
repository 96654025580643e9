"""What a server built before serving is frozen out of the collector's passes (mastok/heap.py):
by `mastok serve`'s uvicorn server once the app has started, after collecting what is garbage."""

from __future__ import annotations

import gc
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
from starlette.applications import Starlette

from mastok.cli import FrozenAfterStartup, uvicorn_config
from mastok.heap import freeze_what_startup_built


class Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the test process's objects go back to the collector's care


def test_live_objects_are_frozen_and_garbage_is_not(unfrozen: None) -> None:
    kept = Cycle()
    garbage = weakref.ref(Cycle())  # unreachable at once, but only a pass frees a cycle
    assert garbage() is not None

    frozen = freeze_what_startup_built()

    assert frozen == gc.get_freeze_count() > 0
    assert all(obj is not kept for obj in gc.get_objects())  # no pass walks it any more
    assert garbage() is None  # collected, not kept for good


async def test_serve_freezes_once_the_app_has_started(unfrozen: None) -> None:
    started: list[int] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        started.append(gc.get_freeze_count())
        yield

    app = Starlette(lifespan=lifespan)
    server = FrozenAfterStartup(uvicorn_config(app, host="127.0.0.1", port=0, log_config=None))
    server.config.load()
    server.lifespan = server.config.lifespan_class(server.config)

    await server.startup()
    try:
        assert started == [0]  # not while the app was starting
        assert gc.get_freeze_count() > 0
    finally:
        await server.shutdown()
