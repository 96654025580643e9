"""The leadership loop (`mastok.live.leader`) outlives an error nobody foresaw: the driver run
with a lock and rooms of the test's own, no database. Were the loop to end, a leader would stop
checking its lock and run its rooms on after losing it, beside the process that took it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace

import pytest

from mastok.db.leader_term import Fence
from mastok.live import leader as leader_module
from mastok.live.leader import Leader
from mastok.live.leadership import Acquired, Dropped, Role
from mastok.tasks import TaskScope, task_scope
from tests.live.test_leader_edits import FakeRooms


class FlakyLock:
    """A lock held whenever tried, whose next attempt or check raises `failure` once."""

    term = None  # no term to check (as SQLite's)

    def __init__(self) -> None:
        self.failure: Exception | None = None
        self.checks = 0
        self.closes = 0
        self.called = asyncio.Event()  # set by every attempt and check

    def _fail(self) -> None:
        self.called.set()
        failure, self.failure = self.failure, None
        if failure is not None:
            raise failure

    async def try_acquire(self, queue: bool = False) -> bool:
        self._fail()
        return True

    async def check(self) -> None:
        self.checks += 1
        self._fail()

    async def close(self) -> None:
        self.closes += 1


@pytest.fixture
async def scope(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[TaskScope]:
    monkeypatch.setattr(leader_module, "ATTEMPT_SECONDS", 0.0)
    async with task_scope() as tasks:
        yield tasks


def driver(
    lock: FlakyLock, tasks: TaskScope, records: object = None
) -> tuple[Leader, list[FakeRooms]]:
    """The leader, and the rooms each of its terms built (ready at once)."""
    built: list[FakeRooms] = []

    def make_rooms(_term_tasks: TaskScope) -> FakeRooms:
        rooms = FakeRooms()
        rooms.may_start.set()
        built.append(rooms)
        return rooms

    leader = Leader(
        None,  # type: ignore[arg-type]  # not read: the lock is given
        make_rooms,  # type: ignore[arg-type]
        records,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        tasks,
        lock=lock,
    )
    return leader, built


async def until(lock: FlakyLock, condition: Callable[[], bool]) -> None:
    """Wait for the loop's attempts and checks until `condition` holds."""
    async with asyncio.timeout(5):
        while not condition():
            lock.called.clear()
            await lock.called.wait()


async def test_a_check_failing_unforeseen_halts_the_rooms_and_the_lock_is_taken_again(
    scope: TaskScope, caplog: pytest.LogCaptureFixture
) -> None:
    lock = FlakyLock()
    leader, built = driver(lock, scope)
    await leader.start()
    assert leader.role == Role.LEADER and leader.machine.terms == 1
    first_rooms = leader.rooms

    lock.failure = RuntimeError("an asyncpg error of a kind nobody listed")
    await until(lock, lambda: leader.machine.terms == 2 and leader.rooms is not None)

    assert lock.closes == 1  # the lock's connection closed: the lock is free while adrift
    assert leader.role == Role.LEADER
    assert leader.rooms is not first_rooms and len(built) == 2
    checks = lock.checks
    await until(lock, lambda: lock.checks > checks + 1)  # and the lock is checked on
    assert "checking the leader lock failed" in caplog.text
    assert "RuntimeError: an asyncpg error of a kind nobody listed" in caplog.text
    await leader.stop()


async def test_an_attempt_failing_unforeseen_is_tried_again(scope: TaskScope) -> None:
    lock = FlakyLock()
    lock.failure = RuntimeError("unforeseen")
    leader, _built = driver(lock, scope)
    await leader.start()  # the first attempt, which fails
    assert leader.role == Role.STANDBY
    assert lock.closes == 1

    await until(lock, lambda: leader.role == Role.LEADER)
    await leader.stop()


async def test_an_effect_failing_unforeseen_leaves_the_loop_running(
    scope: TaskScope, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = FlakyLock()
    leader, _built = driver(lock, scope)
    await leader.start()
    calls = 0
    real_attempt = leader._attempt

    async def failing_once(queue: bool) -> object:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug in the driver")
        return await real_attempt(queue)

    monkeypatch.setattr(leader, "_attempt", failing_once)
    await until(lock, lambda: calls >= 3)

    assert "the leadership step failed" in caplog.text
    await leader.stop()


class TermLock(FlakyLock):
    """A PostgreSQL lock's stand-in: held with a term (whose check never fails here, as when
    the lock's connection alone is cut off and the check waits for its timeout)."""

    term = 7


async def test_a_write_finding_another_leader_halts_the_rooms_before_the_next_check(
    scope: TaskScope, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(leader_module, "ATTEMPT_SECONDS", 3600.0)  # no check comes meanwhile
    lock, records = TermLock(), SimpleNamespace(fence=None)
    leader, built = driver(lock, scope, records)
    await leader.start()
    halted = asyncio.Event()
    built[0].halt = halted.set  # type: ignore[method-assign]
    fence = records.fence
    assert isinstance(fence, Fence) and fence.term == 7  # the rooms write in the lock's term

    fence.superseded(6, "a write of an earlier term, still in flight")
    assert leader._superseded is None  # says nothing of this term
    fence.superseded(7, "another process leads")
    async with asyncio.timeout(5):
        await halted.wait()
    assert leader.role == Role.ADRIFT and lock.closes == 1 and lock.checks == 0
    await leader.stop()


class RefusedLock(FlakyLock):
    """Held by another process: every attempt refused, each one's `queue` recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.queued: list[bool] = []

    async def try_acquire(self, queue: bool = False) -> bool:
        self.queued.append(queue)
        self._fail()
        return False


async def test_a_standby_waits_in_the_locks_queue_but_not_before_it_serves(
    scope: TaskScope,
) -> None:
    lock = RefusedLock()
    leader, _built = driver(lock, scope)
    await leader.start()
    assert lock.queued == [False]  # the process comes up without waiting for the lock
    await until(lock, lambda: len(lock.queued) >= 3)
    assert leader.role == Role.STANDBY
    assert lock.queued[1:3] == [True, True]
    await leader.stop()


async def test_a_leader_adrift_tries_the_lock_without_waiting_in_its_queue(
    scope: TaskScope,
) -> None:
    lock = RefusedLock()
    leader, _built = driver(lock, scope)
    leader.machine.handle(Acquired())  # led, then lost its lock's connection
    leader.machine.handle(Dropped("the database restarted"))
    assert leader.role == Role.ADRIFT
    await leader.start()
    await until(lock, lambda: len(lock.queued) >= 2)
    # Adrift, it learns at once that another leads; a standby then, it waits.
    assert lock.queued[:2] == [False, True]
    await leader.stop()
