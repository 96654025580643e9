"""The progress poller (`mastok.live.progress`), with stand-ins for the rooms, oTree and the
database: it outlives a database that was away for a poll (the poll after it reads oTree and
tells the room), and it writes the pages it read through the rooms' writer, never on a
connection of its own (on SQLite a second writer made the rooms' commits sleep in SQLite's busy
handler)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from mastok.live import pages
from mastok.live.events import SessionsFinished
from mastok.live.progress import ProgressPoller
from mastok.otree import Progress


class OneRoom:
    """A room with live session 1, noting what is posted to it."""

    def __init__(self) -> None:
        self.room = SimpleNamespace(live_sessions={1: None})
        self.campaign_id = 3
        self.posted: asyncio.Future[object] = asyncio.get_running_loop().create_future()

    def post(self, event: object, first: bool = False) -> None:
        if not self.posted.done():
            self.posted.set_result(event)

    def runners(self) -> list[Any]:
        return [self]


class FinishedOTree:
    async def session_progress(self, code: str) -> list[Progress]:
        return [Progress(code="p1", index=3, page_count=2)]


class RoomsWriter:
    """The rooms' group commit: runs each work on its connection, noting the work."""

    def __init__(self) -> None:
        self.connection = object()
        self.works: list[Callable[[Any], Awaitable[Any]]] = []

    async def commit(self, work: Callable[[Any], Awaitable[Any]]) -> Any:
        self.works.append(work)
        return await work(self.connection)


class FixedClock:
    def now(self) -> datetime:
        return datetime(2026, 1, 1, tzinfo=UTC)


async def test_a_poll_that_met_the_database_away_does_not_end_the_polling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failures = [OperationalError("SELECT", {}, ConnectionRefusedError("database away"))]

    async def sessions_numbered(
        db: object, campaign_id: int, numbers: Sequence[int]
    ) -> list[pages.LiveSession]:
        if failures:
            raise failures.pop()
        return [pages.LiveSession(10, 1, "abc")]

    async def record(*args: object) -> None:
        return None

    monkeypatch.setattr(pages, "sessions_numbered", sessions_numbered)
    monkeypatch.setattr(pages, "record", record)
    room = OneRoom()
    poller = ProgressPoller(room, FinishedOTree(), None, RoomsWriter(), FixedClock(), interval=0.0)  # type: ignore[arg-type]
    polling = asyncio.create_task(poller.run())
    try:
        await asyncio.wait({polling, room.posted}, return_when=asyncio.FIRST_COMPLETED)
        assert not polling.done(), "the poller stopped"
        assert room.posted.result() == SessionsFinished((1,))
    finally:
        polling.cancel()


async def test_the_pages_read_are_written_in_the_rooms_writer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def sessions_numbered(
        db: object, campaign_id: int, numbers: Sequence[int]
    ) -> list[pages.LiveSession]:
        return [pages.LiveSession(10, 1, "abc")]

    recorded: list[tuple[object, int, list[Progress], datetime]] = []

    async def record(
        connection: object, session_id: int, seen: list[Progress], now: datetime
    ) -> None:
        recorded.append((connection, session_id, seen, now))

    monkeypatch.setattr(pages, "sessions_numbered", sessions_numbered)
    monkeypatch.setattr(pages, "record", record)
    writer = RoomsWriter()
    poller = ProgressPoller(OneRoom(), FinishedOTree(), None, writer, FixedClock())  # type: ignore[arg-type]
    await poller.poll()
    assert len(writer.works) == 1
    assert recorded == [
        (writer.connection, 10, [Progress(code="p1", index=3, page_count=2)], FixedClock().now())
    ]
