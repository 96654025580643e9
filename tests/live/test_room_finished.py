"""Sessions whose participants have all finished in oTree stop counting as live at once
(`SessionsFinished`): Busy ends, the pending pools move up, the next pool may start. Every
event goes through the harness: rolled back, replayed, then committed."""

from __future__ import annotations

from datetime import timedelta

from mastok.live.events import Move, SessionsEnded, SessionsFinished
from mastok.states import RoomState, Step
from tests.live.room_harness import RoomHarness, campaign


def busy_room() -> tuple[RoomHarness, list[int]]:
    """Session 1 live (one at a time), and two people pending behind it."""
    room = RoomHarness(campaign(per_session=2))
    room.agree()
    room.agree()
    room.created(1)
    pending = [room.agree()[0] for _ in range(2)]
    assert room.room.public_state(room.now) == RoomState.BUSY
    assert room.pending() == ["tok3", "tok4"]
    return room, pending


def test_a_finished_session_ends_busy_and_the_pending_pool_starts() -> None:
    room, pending = busy_room()
    room.later(minutes=3)  # long before the 30 minutes of session_duration
    effects = room.do(SessionsFinished((1,)))
    assert room.of(SessionsEnded, effects) == [SessionsEnded((1,))]
    assert room.room.live_sessions == {}
    assert room.of(Move, effects)[0] == Move(("tok3", "tok4"), Step.JOINING)
    assert [room.frames(c, effects)[0] for c in pending] == [("Instructions", "<p>wait</p>")] * 2
    assert room.creations(effects) == [(2, False)]


def test_sessions_not_live_are_left_alone() -> None:
    room, _ = busy_room()
    assert room.do(SessionsFinished((7,))) == []  # never started
    room.do(SessionsFinished((1,)))
    assert room.do(SessionsFinished((1,))) == []  # once is enough
    assert room.room.live_sessions == {}  # (Busy again: the pending pool is starting)


def test_a_session_past_its_duration_is_not_ended_twice() -> None:
    room = RoomHarness(campaign(per_session=2, session_duration=timedelta(minutes=5)))
    room.agree()
    room.agree()
    room.created(1)
    room.tick(minutes=5)
    assert room.room.live_sessions == {}
    assert room.do(SessionsFinished((1,))) == []


def test_only_the_finished_sessions_stop_counting() -> None:
    room = RoomHarness(campaign(per_session=1, concurrent_sessions=2, max_sessions=5))
    room.agree()
    room.created(1)
    room.agree()
    room.created(2)
    room.agree()  # pending: two sessions live
    assert room.room.public_state(room.now) == RoomState.BUSY
    effects = room.do(SessionsFinished((2, 9)))
    assert room.of(SessionsEnded, effects) == [SessionsEnded((2,))]
    assert list(room.room.live_sessions) == [1]
    assert room.creations(effects) == [(3, False)]
