"""The waiting room's rules (docs/protocol.md), event by event, against the core alone.

No socket, database, oTree or clock: `now` is set by hand. Every event handled here is also
rolled back and handled again (tests/live/room_harness.py), so each case also checks that an
event whose writes failed leaves the room as it was.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from mastok.live.events import (
    AddParticipant,
    Ask,
    Consented,
    Disconnect,
    Edited,
    Exit,
    Leave,
    Lengthened,
    Move,
    OTreeAnswers,
    Rebuilt,
    RecordSession,
    RoomCampaign,
    Rules,
    SessionFailed,
)
from mastok.live.room import RETRY_DELAYS, Room, Started, Waiting, key_of
from mastok.states import CampaignState, Outcome, RoomState, Step
from tests.live.room_harness import T0, WAITING_0, RoomHarness, campaign

LIMIT = campaign().waiting_limit  # the harness campaign's 5 minutes

# -- arriving --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "state"),
    [
        ({}, "Running"),
        ({"state": CampaignState.PAUSED}, "Paused"),
        ({"state": CampaignState.COMPLETED}, "Completed"),
    ],
)
def test_a_socket_first_hears_the_state(changes: dict[str, Any], state: str) -> None:
    room = RoomHarness(campaign(**changes))
    conn = room.open()
    if state == "Running":
        assert room.frames(conn) == [("State", "Running")]
        assert conn in room.room.sockets
    else:
        text = "<p>paused</p>" if state == "Paused" else "<p>done</p>"
        assert room.frames(conn) == [(state, text), ("Disconnect", state)]
        assert conn not in room.room.sockets


def test_a_busy_campaign_says_so() -> None:
    room = RoomHarness(campaign(concurrent_sessions=1))
    room.room.live_sessions[1] = T0
    conn = room.open()
    assert room.frames(conn) == [("State", "Busy")]


def test_sessions_count_as_live_until_their_duration_ends_even_before_a_tick() -> None:
    room = RoomHarness(campaign(concurrent_sessions=5)).room
    room.live_sessions.update({1: T0, 2: T0 + timedelta(minutes=10), 3: T0})
    assert room.live_count(T0 + timedelta(minutes=29)) == 3
    assert room.live_count(T0 + timedelta(minutes=30)) == 1  # 1 and 3 are over, not yet pruned
    assert room.live_count(T0 + timedelta(minutes=40)) == 0
    room.live_sessions.clear()
    assert room.live_count(T0) == 0


def test_land_gives_a_token_and_the_consent() -> None:
    room = RoomHarness()
    conn = room.open()
    effects = room.send(conn, "Land", "  browser-1  ")
    assert room.frames(conn, effects) == [("Resume", "tok1"), ("Consent", "<p>consent</p>")]
    assert room.of(AddParticipant, effects) == [AddParticipant("tok1", "browser-1")]
    assert room.room.members["tok1"].step == Step.LANDED


@pytest.mark.parametrize(
    "payload", [None, "", "   ", 7, ["fp"], {"id": "fp"}, True, "x" * 257, "\n\t"]
)
def test_a_land_without_a_usable_fingerprint_fails(payload: Any) -> None:
    room = RoomHarness()
    conn = room.open()
    effects = room.send(conn, "Land", payload)
    assert room.frames(conn, effects) == [("Disconnect", "LandingFailed")]
    assert room.room.members == {}
    # The visit is written down, ended, with no browser id.
    assert room.of(AddParticipant, effects) == [
        AddParticipant("tok1", None, outcome=Outcome.LANDING_FAILED)
    ]


def test_a_fingerprint_of_256_characters_is_accepted() -> None:
    room = RoomHarness()
    conn, _ = room.land("x" * 256)
    assert room.kinds(conn) == ["State", "Resume", "Consent"]


@pytest.mark.parametrize(
    ("kind", "payload", "error"),
    [
        ("State", "Running", "participants cannot send 'State'"),
        ("JoiningSize", "1/2", "participants cannot send 'JoiningSize'"),
        ("Starting", "http://x", "participants cannot send 'Starting'"),
        ("land", "fp", "participants cannot send 'land'"),
        ("Agree", None, "Agree comes once, after Land"),
        ("Connect", "A", "Connect comes once, after Agree and Grouping"),
    ],
)
def test_out_of_order_or_unknown_frames_are_answered_and_change_nothing(
    kind: str, payload: Any, error: str
) -> None:
    room = RoomHarness()
    conn = room.open()
    before = room.room.snapshot()
    effects = room.send(conn, kind, payload)
    assert room.frames(conn, effects) == [("Error", error)]
    assert room.room.snapshot() == before


@pytest.mark.parametrize("second", ["Land", "Resume"])
def test_landing_twice_is_an_error(second: str) -> None:
    room = RoomHarness()
    conn, token = room.land()
    effects = room.send(conn, second, token)
    assert room.frames(conn, effects) == [("Error", "already landed")]


def test_agree_twice_is_an_error() -> None:
    room = RoomHarness()
    conn, _ = room.agree()
    effects = room.send(conn, "Agree")
    assert room.frames(conn, effects) == [("Error", "Agree comes once, after Land")]


def test_frames_from_a_socket_the_room_dropped_are_ignored() -> None:
    room = RoomHarness()
    conn = room.open()
    room.send(conn, "Land", "")
    assert room.send(conn, "Land", "fp") == []


# -- join once and live redirects ------------------------------------------------------------


def test_join_once_refuses_a_fingerprint_already_in_the_room() -> None:
    room = RoomHarness(campaign(join_once=True))
    room.land("same")
    conn = room.open()
    assert room.frames(conn, room.send(conn, "Land", "same")) == [("Disconnect", "LandingFailed")]


def test_without_join_once_a_fingerprint_may_land_twice() -> None:
    room = RoomHarness()
    room.land("same")
    _conn, token = room.land("same")
    assert token == "tok2"


def started_room(**changes: Any) -> RoomHarness:
    """A room where `a` and `b` started session 1 at T0."""
    room = RoomHarness(campaign(**changes), live_redirect=changes.pop("live_redirect", True))
    room.agree("a")
    room.agree("b")
    room.created(1)
    return room


@pytest.mark.parametrize(
    ("minutes", "live_redirect", "join_once", "outcome"),
    [
        (0, True, False, "Disconnect Redirect:http://otree/InitializeParticipant/s1p1"),
        (29.9, True, False, "Disconnect Redirect:http://otree/InitializeParticipant/s1p1"),
        (30, True, False, "Consent"),
        (0, False, False, "Consent"),
        (0, True, True, "Disconnect Redirect:http://otree/InitializeParticipant/s1p1"),
        (31, True, True, "Disconnect LandingFailed"),
        (0, False, True, "Disconnect LandingFailed"),
    ],
)
def test_a_past_participant_coming_back(
    minutes: float, live_redirect: bool, join_once: bool, outcome: str
) -> None:
    room = RoomHarness(campaign(join_once=join_once, concurrent_sessions=2), 30, live_redirect)
    room.agree("a")
    room.agree("b")
    room.created(1)
    room.later(minutes=minutes)
    conn = room.open()
    kind, payload = room.frames(conn, room.send(conn, "Land", "a"))[-1]
    assert (f"{kind} {payload}" if kind == "Disconnect" else kind) == outcome


# -- resuming --------------------------------------------------------------------------------


def test_an_unknown_token_asks_to_land_again() -> None:
    room = RoomHarness()
    conn = room.open()
    effects = room.send(conn, "Resume", "nope")
    assert room.frames(conn, effects) == [("Error", "unknown or expired resume token: Land again")]


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([], [("Consent", "<p>consent</p>")]),
        (["Agree"], [("Instructions", "<p>wait</p>"), ("JoiningSize", "1/2"), WAITING_0]),
    ],
)
def test_resume_puts_a_participant_back_where_it_was(
    steps: list[str], expected: list[tuple[str, Any]]
) -> None:
    room = RoomHarness()
    conn, token = room.land()
    for step in steps:
        room.send(conn, step)
    room.close(conn)
    assert room.room.members[token].away_until == T0 + timedelta(seconds=30)
    again = room.open()
    effects = room.send(again, "Resume", token)
    assert room.frames(again, effects) == [("Resume", token), *expected]
    assert room.room.members[token].conn == again


def test_resume_while_choosing_a_group_shows_the_grouping_again() -> None:
    room = RoomHarness(campaign(groups=(("A", 1), ("B", 1))))
    conn, token = room.agree()
    assert room.last(conn) == ("Grouping", "Q?\nA:1\nB:1\nGo")  # Go Mastok's text
    again = room.open()
    effects = room.send(again, "Resume", token)
    assert room.kinds(again, effects) == ["Resume", "Grouping"]


def test_resume_in_the_pending_pool_shows_pending_again() -> None:
    room = RoomHarness(campaign(concurrent_sessions=1))
    room.room.live_sessions[1] = T0  # Busy
    conn, token = room.agree()
    assert room.frames(conn)[-2:] == [("Pending", "<p>pending</p>"), WAITING_0]
    again = room.open()
    effects = room.send(again, "Resume", token)
    assert room.kinds(again, effects) == ["Resume", "Pending", "Waiting"]


def test_a_second_socket_with_the_token_replaces_the_first() -> None:
    room = RoomHarness()
    first, token = room.agree()
    second = room.open()
    effects = room.send(second, "Resume", token)
    assert room.frames(first, effects) == [("Disconnect", "Replaced")]
    assert first not in room.room.sockets
    assert room.close(first) == []  # the old socket closing changes nothing
    assert room.room.members[token].conn == second


def test_a_token_whose_session_started_meanwhile_gets_its_url() -> None:
    room = started_room()
    conn = room.open()
    effects = room.send(conn, "Resume", "tok1")
    assert room.frames(conn, effects) == [
        ("Starting", "http://otree/InitializeParticipant/s1p1"),
        ("Disconnect", "Start"),
    ]


# -- grouping --------------------------------------------------------------------------------


@pytest.mark.parametrize("label", ["C", "", None, 1, ["A"], "a"])
def test_connect_needs_a_grouping_label(label: Any) -> None:
    room = RoomHarness(campaign(groups=(("A", 1), ("B", 1))))
    conn, token = room.agree()
    effects = room.send(conn, "Connect", label)
    assert room.frames(conn, effects) == [("Error", "Connect needs one of the Grouping labels")]
    assert room.room.members[token].step == Step.AGREED


def test_agree_with_a_grouping_asks_and_connect_chooses() -> None:
    room = RoomHarness(campaign(groups=(("A", 1), ("B", 1))))
    conn, token = room.agree()
    assert room.of(Move)[-1] == Move((token,), Step.AGREED)
    effects = room.send(conn, "Connect", "B")
    assert room.frames(conn, effects) == [
        ("Instructions", "<p>wait</p>"),
        ("JoiningSize", "1/2"),
        WAITING_0,
    ]
    assert room.of(Move, effects) == [
        Move((token,), Step.JOINING, group="B", queued_at=T0, limit=LIMIT)
    ]
    again = room.send(conn, "Connect", "A")
    assert room.frames(conn, again) == [("Error", "Connect comes once, after Agree and Grouping")]


@pytest.mark.parametrize(("a", "b", "starts"), [(1, 1, True), (2, 0, False), (0, 2, False)])
def test_a_session_needs_every_group_full(a: int, b: int, starts: bool) -> None:
    room = RoomHarness(campaign(groups=(("A", 1), ("B", 1))))
    for label in ["A"] * a + ["B"] * b:
        conn, _ = room.agree()
        room.send(conn, "Connect", label)
    assert bool(room.creations()) == starts
    # A group's pending pool holds size x (max_sessions - started + 1).
    assert room.room.pending_size() == f"{0 if starts else 1}/8"


# -- the pools -------------------------------------------------------------------------------


@pytest.mark.parametrize("per_session", [1, 2, 3, 5])
def test_a_full_pool_with_everyone_present_starts_a_session(per_session: int) -> None:
    room = RoomHarness(campaign(per_session=per_session))
    conns = [room.agree()[0] for _ in range(per_session)]
    assert room.creations() == [(1, False)]
    assert room.room.starting is not None
    assert [m.conn for m in room.room.starting.members] == conns
    assert room.joining() == []
    for conn in conns:
        assert room.last(conn) == ("JoiningSize", f"{per_session}/{per_session}")
        sizes = [p for k, p in room.frames(conn) if k == "JoiningSize"]
        assert sizes.count(f"{per_session}/{per_session}") == 1


def test_a_pool_that_filled_while_a_session_was_created_is_told_its_size_once() -> None:
    room = RoomHarness(campaign(per_session=2, concurrent_sessions=2))
    room.agree()
    room.agree()  # the first pool's session is being created
    waiting = [room.agree()[0] for _ in range(2)]
    assert room.creations() == [(1, False)]
    effects = room.created(1)
    assert room.creations(effects) == [(2, False)]
    assert all(room.frames(conn, effects) == [] for conn in waiting)
    for conn in waiting:
        sizes = [p for k, p in room.frames(conn) if k == "JoiningSize"]
        assert sizes[-1:] == ["2/2"] and sizes.count("2/2") == 1


def test_an_edit_of_per_session_tells_the_joining_pool_its_new_size() -> None:
    room = RoomHarness(campaign(per_session=4))
    conns = [room.agree()[0] for _ in range(2)]
    effects = room.do(Edited(campaign(per_session=4, max_sessions=7)))
    assert [room.frames(conn, effects) for conn in conns] == [[], []]
    effects = room.do(Edited(campaign(per_session=3)))
    assert [room.frames(conn, effects) for conn in conns] == [[("JoiningSize", "2/3")]] * 2


def test_joining_size_goes_to_the_joining_pool_as_it_changes() -> None:
    room = RoomHarness(campaign(per_session=3))
    first, _ = room.agree()
    room.agree()
    assert room.frames(first)[-4:] == [
        ("Instructions", "<p>wait</p>"),
        ("JoiningSize", "1/3"),
        WAITING_0,
        ("JoiningSize", "2/3"),
    ]


def test_newcomers_wait_in_pending_when_the_pool_is_full_then_leave_when_that_is_full() -> None:
    room = RoomHarness(campaign(per_session=2, max_sessions=1))
    room.room.live_sessions[1] = T0  # Busy: nobody joins, bound 2 x (1 - 0 + 1) = 4
    conns = [room.agree()[0] for _ in range(5)]
    assert [room.last(c) for c in conns[:4]] == [("Pending", "<p>pending</p>")] * 4
    assert room.last(conns[4]) == ("Disconnect", "Full")
    assert room.of(Leave)[-1].outcome == Outcome.FULL
    assert room.room.pending_size() == "4/4"


def test_pending_moves_up_when_a_session_ends_and_busy_is_over() -> None:
    room = RoomHarness(campaign(per_session=2, session_duration=timedelta(minutes=5)))
    room.room.live_sessions[1] = T0
    pending = [room.agree()[0] for _ in range(2)]
    assert room.room.public_state(room.now) == RoomState.BUSY
    assert room.creations(room.tick(minutes=4.9)) == []
    effects = room.tick(minutes=0.1)
    assert room.room.live_sessions == {}
    assert [room.frames(c, effects)[0] for c in pending] == [("Instructions", "<p>wait</p>")] * 2
    assert room.of(Move, effects)[0] == Move(("tok1", "tok2"), Step.JOINING)
    assert room.creations(effects) == [(1, False)]


def test_a_pool_waits_for_members_who_are_away() -> None:
    room = RoomHarness()
    first, token = room.agree()
    room.close(first)
    room.agree()
    assert room.creations() == []
    again = room.open()
    effects = room.send(again, "Resume", token)
    assert room.creations(effects) == [(1, False)]


def test_session_created_sends_each_member_to_its_own_participant() -> None:
    room = RoomHarness(campaign(concurrent_sessions=2))
    a, ta = room.agree("a")
    b, tb = room.agree("b")
    _c, tc = room.agree("c")  # into the next pool meanwhile
    effects = room.created(1)
    assert room.frames(a, effects) == [
        ("Starting", "http://otree/InitializeParticipant/s1p1"),
        ("Disconnect", "Start"),
    ]
    assert room.frames(b, effects)[0] == ("Starting", "http://otree/InitializeParticipant/s1p2")
    (record,) = room.of(RecordSession, effects)
    assert record.assignments == (
        (ta, "s1p1", "http://otree/InitializeParticipant/s1p1"),
        (tb, "s1p2", "http://otree/InitializeParticipant/s1p2"),
    )
    assert not record.complete
    (note,) = room.notes(effects)
    assert note[0] == "SessionStart"
    assert note[1]["participant_codes"] == ["s1p1", "s1p2"]
    assert note[1]["created_at"] == T0.isoformat()
    assert list(room.room.members) == [tc]
    assert room.room.campaign.started_sessions == 1


def test_the_pending_bound_shrinks_as_sessions_start() -> None:
    room = RoomHarness(campaign(per_session=2, max_sessions=3, concurrent_sessions=3))
    assert room.room.pending_size() == "0/8"  # 2 x (3 - 0 + 1)
    room.agree()
    room.agree()
    room.created(1)
    assert room.room.pending_size() == "0/6"


def test_the_last_session_completes_the_campaign_and_ends_the_wait() -> None:
    room = RoomHarness(campaign(max_sessions=1, concurrent_sessions=2))
    room.agree()
    room.agree()
    waiting, token = room.agree()
    consenting, _ = room.land()
    effects = room.created(1)
    assert room.of(RecordSession, effects)[0].complete
    for conn in (waiting, consenting):
        assert room.frames(conn, effects)[-2:] == [
            ("Completed", "<p>done</p>"),
            ("Disconnect", "Completed"),
        ]
    assert room.of(Leave, effects) == [Leave((token, "tok4"), Outcome.COMPLETED)]
    assert room.room.campaign.state == CampaignState.COMPLETED
    assert room.room.members == {}


def test_a_member_who_drops_while_its_session_is_created_keeps_its_place() -> None:
    room = RoomHarness(grace=5)
    first, token = room.agree()
    room.agree()
    room.close(first)
    room.tick(seconds=60)
    assert token in room.room.members  # reserved: no grace expiry
    room.created(1)
    again = room.open()
    assert room.frames(again, room.send(again, "Resume", token))[0][0] == "Starting"


def test_a_session_being_created_counts_as_live() -> None:
    room = RoomHarness(campaign(concurrent_sessions=1))
    room.agree()
    room.agree()
    late, _ = room.agree()
    assert room.last(late) == ("Pending", "<p>pending</p>")
    assert room.room.public_state(room.now) == RoomState.BUSY


def test_pending_people_move_up_as_soon_as_a_pool_is_set_aside() -> None:
    room = RoomHarness(campaign(concurrent_sessions=2))
    first, token = room.agree()
    room.close(first)
    room.agree()  # full, but its first member is away
    late, _ = room.agree()
    assert room.last(late) == ("Pending", "<p>pending</p>")
    again = room.open()
    effects = room.send(again, "Resume", token)
    assert room.creations(effects) == [(1, False)]
    # In the same event, not at the next tick: the set-aside pool left its places.
    assert room.frames(late, effects) == [
        ("Instructions", "<p>wait</p>"),
        ("JoiningSize", "1/2"),
        WAITING_0,
    ]


# -- failures --------------------------------------------------------------------------------


def test_a_failed_creation_puts_its_pool_back_ahead_of_newcomers() -> None:
    room = RoomHarness(campaign(concurrent_sessions=2))
    room.room.live_sessions[1] = T0 - timedelta(minutes=31)  # ended, forgotten at a tick
    _a, ta = room.agree()
    _b, tb = room.agree()
    c, tc = room.agree()  # the next pool, meanwhile
    _d, td = room.agree()
    assert room.joining() == [tc, td]
    effects = room.do(SessionFailed(1, "database is locked"))
    assert room.joining() == [ta, tb]
    assert room.pending() == [tc, td]
    assert room.of(Move, effects) == [Move((tc, td), Step.PENDING)]
    assert room.frames(c, effects)[0] == ("Pending", "<p>pending</p>")
    assert room.notes(effects) == [("Error", "oTree session creation failed: database is locked")]
    assert room.room.supervisor_state(room.now) == RoomState.UNAVAILABLE
    assert room.room.public_state(room.now) == RoomState.RUNNING


def test_failed_creations_back_off_1_2_4_up_to_60_seconds() -> None:
    room = RoomHarness()
    room.agree()
    room.agree()
    waited = []
    for attempt in range(1, 10):
        room.do(SessionFailed(1, "down"))
        retry = room.room.retry
        assert retry is not None and retry.attempt == attempt
        waited.append((retry.at - room.now).total_seconds())
        assert room.creations(room.tick(seconds=waited[-1] - 0.5)) == []
        assert room.creations(room.tick(seconds=0.5)) == [(1, True)]
    assert waited == [*RETRY_DELAYS, 60.0, 60.0]


def test_a_session_is_asked_of_otree_once_and_looked_up_after() -> None:
    room = RoomHarness(campaign(concurrent_sessions=2))
    room.agree()
    room.agree()
    assert room.of(Ask) == [Ask(1)]  # written before oTree is asked
    assert room.creations() == [(1, False)]
    room.do(SessionFailed(1, "timed out"))
    retried = room.tick(seconds=1)
    assert room.of(Ask, retried) == []
    assert room.creations(retried) == [(1, True)]
    room.created(1)
    assert room.room.asked is None
    room.agree()
    room.agree()
    assert room.of(Ask, room.log)[-1] == Ask(2)
    assert room.creations(room.log)[-1] == (2, False)


@pytest.mark.parametrize(("asked", "look_up"), [(None, False), (1, True), (3, False)])
def test_after_a_restart_only_a_number_asked_before_is_looked_up(
    asked: int | None, look_up: bool
) -> None:
    restored = Room.restore(
        campaign(), Rules(timedelta(seconds=30), True), lambda: "new", [], [], {}, T0, asked
    )
    room = RoomHarness(room=restored)
    room.agree()
    room.agree()
    assert room.creations() == [(1, look_up)]


def test_a_start_recorded_after_failures_clears_the_backoff() -> None:
    room = RoomHarness()
    room.agree()
    room.agree()
    room.do(SessionFailed(1, "down"))
    room.tick(seconds=1)
    room.created(1)
    assert room.room.retry is None and not room.room.unavailable


def test_otree_answering_again_brings_the_retry_forward() -> None:
    room = RoomHarness()
    room.agree()
    room.agree()
    for _ in range(5):  # the next retry is 16 s away
        room.do(SessionFailed(1, "refused"))
        room.tick(seconds=60)
    room.do(SessionFailed(1, "refused"))
    effects = room.do(OTreeAnswers())
    assert room.creations(effects) == [(1, True)]


def test_a_due_retry_whose_pool_changed_is_dropped() -> None:
    room = RoomHarness(grace=5)
    a, _ = room.agree()
    room.agree()
    room.do(SessionFailed(1, "down"))
    room.close(a)
    room.tick(seconds=2)
    assert room.room.retry is None and not room.room.unavailable


def test_a_retry_due_while_paused_creates_nothing() -> None:
    room = RoomHarness()
    room.agree()
    room.agree()
    room.do(SessionFailed(1, "down"))
    room.do(Edited(campaign(state=CampaignState.PAUSED)))
    assert room.creations(room.tick(minutes=5)) == []
    assert room.room.members == {}


def test_a_session_outcome_for_no_start_in_flight_is_ignored() -> None:
    room = RoomHarness()
    assert room.created(4) == []
    assert room.do(SessionFailed(4, "x")) == []


# -- the clock -------------------------------------------------------------------------------


def test_an_away_participant_loses_its_place_after_the_grace_period() -> None:
    room = RoomHarness(campaign(per_session=3), grace=30)
    first, token = room.agree()
    second, _ = room.agree()
    room.close(first)
    assert room.tick(seconds=29.9) == []
    effects = room.tick(seconds=0.1)
    assert room.of(Leave, effects) == [Leave((token,), Outcome.AWAY)]
    assert room.frames(second, effects) == [("JoiningSize", "1/3")]
    assert room.frames(first, effects) == []  # away: nobody to tell


@pytest.mark.parametrize(("minutes", "released"), [(4.9, False), (5, False), (5.01, True)])
def test_people_waiting_longer_than_the_limit_are_released(minutes: float, released: bool) -> None:
    room = RoomHarness(campaign(per_session=3, waiting_limit=timedelta(minutes=5)))
    conn, token = room.agree()
    consenting, _ = room.land()
    effects = room.tick(minutes=minutes)
    assert (room.frames(conn, effects) == [("Disconnect", "Timeout")]) == released
    assert room.frames(consenting, effects) == []  # not in a pool: no waiting limit
    assert (token not in room.room.members) == released


def test_pending_people_move_up_when_someone_leaves() -> None:
    room = RoomHarness(campaign(per_session=2), grace=10)
    first, _ = room.agree()
    room.close(first)
    room.agree()  # the pool is full, but its first member is away
    third, _ = room.agree()
    assert room.last(third) == ("Pending", "<p>pending</p>")
    effects = room.tick(seconds=10)
    assert room.frames(third, effects)[0] == ("Instructions", "<p>wait</p>")
    assert room.creations(effects) == [(1, False)]


# -- edits -----------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [CampaignState.PAUSED, CampaignState.COMPLETED])
def test_pausing_or_completing_sends_everyone_the_message(state: CampaignState) -> None:
    room = RoomHarness(campaign(per_session=3))
    joining, t1 = room.agree()
    consenting, t2 = room.land()
    visitor = room.open()
    effects = room.do(Edited(campaign(per_session=3, state=state)))
    text = "<p>paused</p>" if state == CampaignState.PAUSED else "<p>done</p>"
    for conn in (joining, consenting, visitor):
        assert room.frames(conn, effects) == [(state.value, text), ("Disconnect", state.value)]
    assert room.of(Leave, effects) == [Leave((t1, t2), Outcome(state.value.lower()))]
    assert room.room.members == {} and room.room.sockets == {}


def test_an_edit_waits_for_the_session_being_created() -> None:
    room = RoomHarness(campaign(per_session=2))
    a, _ = room.agree()
    room.agree()
    newcomer, _token = room.agree()
    assert room.do(Edited(campaign(state=CampaignState.PAUSED))) == []
    assert room.room.campaign.state == CampaignState.RUNNING
    effects = room.created(1)
    assert room.frames(a, effects)[0][0] == "Starting"
    assert room.frames(newcomer, effects)[-2:] == [
        ("Paused", "<p>paused</p>"),
        ("Disconnect", "Paused"),
    ]
    assert room.room.campaign.state == CampaignState.PAUSED
    assert room.room.campaign.started_sessions == 1  # the edit was read before the start


def test_an_edit_read_before_the_room_completed_the_campaign_keeps_it_completed() -> None:
    room = RoomHarness(campaign(max_sessions=1))
    room.agree()
    room.agree()
    room.do(Edited(campaign(max_sessions=1)))  # read before the start: Running, 0 started
    room.created(1)
    assert room.room.campaign.state == CampaignState.COMPLETED


def test_an_edit_down_to_the_sessions_started_creates_no_session_beyond_it() -> None:
    room = RoomHarness(campaign(max_sessions=3, concurrent_sessions=2))
    room.agree()
    room.agree()
    room.created(1)
    # The researchers stop at the one session started: max_sessions 1, the campaign Running.
    room.do(Edited(campaign(max_sessions=1, concurrent_sessions=2, started_sessions=1)))
    room.agree()
    room.agree()
    assert room.creations() == [(1, False)]  # no session 2: unpaid for


def test_an_edit_of_the_grouping_asks_again_those_whose_group_is_gone() -> None:
    room = RoomHarness(campaign(groups=(("A", 1), ("B", 1))))
    stranded, token = room.agree()
    room.send(stranded, "Connect", "A")
    choosing, _ = room.agree()
    effects = room.do(Edited(campaign(groups=(("C", 1), ("D", 1)))))
    for conn in (stranded, choosing):
        assert room.frames(conn, effects) == [("Grouping", "Q?\nC:1\nD:1\nGo")]
    assert room.of(Move, effects) == [Move((token,), Step.AGREED)]
    assert room.joining() == []
    room.send(stranded, "Connect", "C")
    room.send(choosing, "Connect", "D")
    assert room.creations() == [(1, False)]


def test_an_edit_removing_the_grouping_lets_those_choosing_a_group_in() -> None:
    room = RoomHarness(campaign(groups=(("A", 1), ("B", 1))))
    joined, first = room.agree()
    room.send(joined, "Connect", "A")
    choosing, second = room.agree()
    effects = room.do(Edited(campaign()))
    assert room.frames(joined, effects)[0] == ("Instructions", "<p>wait</p>")
    assert room.frames(choosing, effects)[0] == ("Instructions", "<p>wait</p>")
    assert room.creations(effects) == [(1, False)]
    starting = room.room.starting
    assert starting is not None and {m.token for m in starting.members} == {first, second}


def test_a_longer_waiting_limit_reaches_those_waiting_and_their_pages() -> None:
    room = RoomHarness(campaign(per_session=3))  # 5 minutes
    joining, token = room.agree()
    room.land()  # not waiting yet: nothing to lengthen
    room.later(minutes=2)
    effects = room.do(Edited(campaign(per_session=3, waiting_limit=timedelta(minutes=10))))
    assert room.frames(joining, effects) == [
        ("Waiting", {"waited": 120, "limit": 600, "leave_after": 0})
    ]
    assert room.of(Lengthened, effects) == [Lengthened((token,), timedelta(minutes=10))]
    assert room.tick(minutes=8) == []  # 10 minutes waited: the page's countdown is at 0
    assert room.frames(joining, room.tick(seconds=1)) == [("Disconnect", "Timeout")]


def test_a_shorter_waiting_limit_is_for_newcomers_not_for_those_promised_more() -> None:
    room = RoomHarness(campaign(per_session=3))  # 5 minutes
    joining, _ = room.agree()
    room.later(minutes=2)
    effects = room.do(Edited(campaign(per_session=3, waiting_limit=timedelta(minutes=1))))
    assert room.frames(joining, effects) == []  # its page's countdown still holds
    assert room.of(Lengthened, effects) == []
    newcomer, _ = room.agree()
    assert room.frames(newcomer)[-1] == ("Waiting", {"waited": 0, "limit": 60, "leave_after": 0})
    effects = room.tick(minutes=1, seconds=1)
    assert room.frames(newcomer, effects) == [("Disconnect", "Timeout")]
    assert room.frames(joining, effects) == [("JoiningSize", "1/3")]
    assert room.tick(minutes=1, seconds=58) == []  # 4:59 of its 5 minutes
    assert room.frames(joining, room.tick(seconds=2)) == [("Disconnect", "Timeout")]


def test_an_edit_of_leave_after_reaches_the_pages_waiting() -> None:
    room = RoomHarness(campaign(per_session=3))
    joining, _ = room.agree()
    choosing, _ = room.land()
    room.later(seconds=10)
    effects = room.do(Edited(campaign(per_session=3, leave_after=timedelta(seconds=60))))
    assert room.frames(joining, effects) == [
        ("Waiting", {"waited": 10, "limit": 300, "leave_after": 60})
    ]
    assert room.frames(choosing, effects) == []
    error = ("Error", "Leave comes after 60 seconds of waiting")
    assert room.frames(joining, room.send(joining, "Leave")) == [error]


def test_a_member_asked_to_choose_again_keeps_its_wait_and_its_place() -> None:
    """Its waiting_limit counts from its first entry into the pools in this visit, and its
    place in line too, as the database has it (pools are restored in `queued_at` order)."""
    room = RoomHarness(campaign(per_session=3, groups=(("A", 1), ("B", 2))))
    regrouped, token = room.agree()
    room.send(regrouped, "Connect", "A")
    room.later(minutes=4)
    in_b, _ = room.agree()
    room.send(in_b, "Connect", "B")
    room.do(Edited(campaign(per_session=3, groups=(("C", 1), ("B", 2)))))
    room.later(seconds=30)
    for _ in range(2):  # C's joining place taken, then one pending there
        newer, _ = room.agree()
        room.send(newer, "Connect", "C")
    effects = room.send(regrouped, "Connect", "C")
    assert room.of(Move, effects) == [
        Move((token,), Step.PENDING, group="C", queued_at=T0, limit=LIMIT)
    ]
    assert room.frames(regrouped, effects)[-1] == (
        "Waiting",
        {"waited": 270, "limit": 300, "leave_after": 0},
    )
    assert room.room.pending["C"][0].token == token  # ahead of the one who came after it
    assert room.frames(regrouped, room.tick(seconds=31)) == [("Disconnect", "Timeout")]


def test_an_agree_records_the_consent_its_page_was_shown() -> None:
    """The consent edited while someone reads it: their Agree is to the text they were shown
    (the page that comes back is shown the new one, and agrees to that)."""
    room = RoomHarness(campaign(consent_hash="v1"))
    conn, token = room.land()
    texts = replace(room.room.campaign.texts, consent="<p>consent v2</p>")
    effects = room.do(Edited(campaign(consent_hash="v2", texts=texts)))
    assert room.frames(conn, effects) == []
    effects = room.send(conn, "Agree")
    assert room.of(Consented, effects) == [Consented(token, "v1")]
    again, _ = room.land()
    assert room.frames(again)[-1] == ("Consent", "<p>consent v2</p>")
    assert room.of(Consented, room.send(again, "Agree")) == [Consented("tok2", "v2")]


def test_resuming_a_campaign_lets_people_in_again() -> None:
    room = RoomHarness(campaign(state=CampaignState.PAUSED))
    room.do(Edited(campaign()))
    conn = room.open()
    assert room.frames(conn) == [("State", "Running")]


def test_the_end_of_busy_starts_the_pool_that_waited() -> None:
    room = RoomHarness(campaign(per_session=1, session_duration=timedelta(minutes=5)))
    room.room.live_sessions[1] = T0
    room.agree()
    room.tick(minutes=5)
    assert room.creations()[-1] == (1, False)


# -- restoring -------------------------------------------------------------------------------


def test_a_restored_room_has_everyone_away_in_pool_order() -> None:
    waiting = [
        Waiting("t1", "a", Step.JOINING, "default", T0),
        Waiting("t2", "b", Step.LANDED, None, None),
        Waiting("t3", "c", Step.PENDING, "default", T0 + timedelta(seconds=1)),
        Waiting("t4", "d", Step.JOINING, "default", T0 + timedelta(seconds=2)),
    ]
    started = [Started("t0", key_of(None, "z"), "http://otree/InitializeParticipant/x", T0)]
    restored = Room.restore(
        campaign(per_session=3),
        Rules(timedelta(seconds=30), True),
        lambda: "new",
        waiting,
        started,
        {1: T0},
        T0,
    )
    room = RoomHarness(room=restored)
    assert room.joining() == ["t1", "t4"]
    assert room.pending() == ["t3"]
    away = T0 + timedelta(seconds=30)
    assert all(m.away_until == away and m.conn is None for m in restored.members.values())
    assert restored.public_state(T0) == RoomState.BUSY
    conn = room.open()
    assert room.frames(conn, room.send(conn, "Land", "z"))[-1] == (
        "Disconnect",
        "Redirect:http://otree/InitializeParticipant/x",
    )
    effects = room.tick(seconds=30)
    assert room.of(Leave, effects) == [Leave(("t1", "t2", "t3", "t4"), Outcome.AWAY)]


def rebuilt(
    room_campaign: RoomCampaign, *waiting: Waiting, asked: int | None = None
) -> RoomHarness:
    """The room as the database has it (`asked`: the session number asked of oTree and not
    recorded), after its first event."""
    rules = Rules(timedelta(seconds=30), True)
    restored = Room.restore(room_campaign, rules, lambda: "new", waiting, (), {}, T0, asked)
    room = RoomHarness(room=restored)
    room.do(Rebuilt())
    return room


def test_a_room_rebuilt_after_its_grouping_was_edited_asks_again_those_in_a_group_gone() -> None:
    """Edited through a standby while no room ran (the leader dead): the rows are as the room
    before left them."""
    room = rebuilt(
        campaign(groups=(("C", 1), ("B", 1))),
        Waiting("t1", "a", Step.JOINING, "A", T0),
        Waiting("t2", "b", Step.PENDING, "A", T0 + timedelta(seconds=1)),
        Waiting("t3", "c", Step.JOINING, "B", T0 + timedelta(seconds=2)),
    )
    assert room.of(Move) == [Move(("t1", "t2"), Step.AGREED)]
    assert room.joining() == ["t3"] and room.pending() == []
    conn = room.open()
    room.send(conn, "Resume", "t1")
    assert room.last(conn) == ("Grouping", "Q?\nC:1\nB:1\nGo")
    effects = room.send(conn, "Connect", "C")
    assert room.of(Move, effects) == [
        Move(("t1",), Step.JOINING, group="C", queued_at=T0, limit=LIMIT)
    ]


def test_a_room_rebuilt_after_its_grouping_was_removed_lets_those_choosing_in() -> None:
    room = rebuilt(campaign(), Waiting("t1", "a", Step.AGREED, None, None))
    assert room.of(Move) == [
        Move(("t1",), Step.JOINING, group="default", queued_at=T0, limit=LIMIT)
    ]
    assert room.joining() == ["t1"]


def test_a_room_rebuilt_as_it_was_changes_nothing() -> None:
    room = rebuilt(
        campaign(groups=(("A", 1), ("B", 1))),
        Waiting("t1", "a", Step.JOINING, "A", T0),
        Waiting("t2", "b", Step.AGREED, None, None),
    )
    assert room.log == []
    assert room.joining() == ["t1"]


def test_a_room_rebuilt_gives_each_member_the_limit_its_record_keeps() -> None:
    """The limit its page was told (longer than the campaign's, shortened since); a record
    without one (written before migration 0015) waits the campaign's."""
    room = rebuilt(
        campaign(per_session=3),  # 5 minutes
        Waiting("t1", "a", Step.JOINING, "default", T0, limit=timedelta(minutes=10)),
        Waiting("t2", "b", Step.JOINING, "default", T0),
    )
    assert room.log == []
    figures = {}
    for token in ("t1", "t2"):
        conn = room.open()
        figures[token] = room.frames(conn, room.send(conn, "Resume", token))[-1]
    assert figures == {
        "t1": ("Waiting", {"waited": 0, "limit": 600, "leave_after": 0}),
        "t2": ("Waiting", {"waited": 0, "limit": 300, "leave_after": 0}),
    }
    assert room.of(Leave, room.tick(minutes=5, seconds=1)) == [Leave(("t2",), Outcome.TIMEOUT)]
    assert room.of(Leave, room.tick(minutes=4, seconds=59)) == []
    assert room.of(Leave, room.tick(seconds=1)) == [Leave(("t1",), Outcome.TIMEOUT)]


def test_a_room_rebuilt_after_a_longer_limit_was_edited_gives_it_to_those_under_it() -> None:
    """Edited while no room ran: the first event lengthens their limits and writes them down,
    and each page gets the new limit when it comes back."""
    room = rebuilt(
        campaign(per_session=3, waiting_limit=timedelta(minutes=10)),
        Waiting("t1", "a", Step.JOINING, "default", T0, limit=timedelta(minutes=5)),
        Waiting("t2", "b", Step.JOINING, "default", T0, limit=timedelta(minutes=20)),
        Waiting("t3", "c", Step.LANDED, None, None),
    )
    assert room.of(Lengthened) == [Lengthened(("t1",), timedelta(minutes=10))]
    conn = room.open()
    assert room.frames(conn, room.send(conn, "Resume", "t1"))[-1] == (
        "Waiting",
        {"waited": 0, "limit": 600, "leave_after": 0},
    )


def paused_while_starting(state: CampaignState, **changes: Any) -> RoomHarness:
    """Paused (or completed) by an admin while oTree created session 1 (the edit waits for
    it), mastok killed before the session was recorded: the rows as the database has them
    then, the pool (t1, t2) in the joining pool, a newcomer since (t3), one reading the
    consent (t4), and the number asked."""
    before = T0 - timedelta(seconds=20)
    return rebuilt(
        campaign(state=state, **changes),
        Waiting("t1", "a", Step.JOINING, "default", before),
        Waiting("t2", "b", Step.JOINING, "default", before + timedelta(seconds=1)),
        Waiting("t3", "c", Step.JOINING, "default", before + timedelta(seconds=5)),
        Waiting("t4", "d", Step.LANDED, None, None),
        asked=1,
    )


@pytest.mark.parametrize("state", [CampaignState.PAUSED, CampaignState.COMPLETED])
def test_a_room_rebuilt_paused_while_its_pool_was_started_finishes_that_start(
    state: CampaignState,
) -> None:
    """The pool gets its session, as the edit that waited for it promised: looked up by its
    label first (it may exist); the campaign stays as the admin set it for everyone else."""
    room = paused_while_starting(state)
    text = "<p>paused</p>" if state == CampaignState.PAUSED else "<p>done</p>"
    assert room.creations() == [(1, True)]
    assert room.of(Ask) == []  # asked already
    assert room.of(Leave) == [Leave(("t3", "t4"), Outcome(state.value.lower()))]
    assert room.room.public_state(room.now) == RoomState(state.value)
    # A member of the pool back while oTree answers: its place, the pool full.
    room.later(seconds=3)
    a = room.open()
    assert room.frames(a) == [("State", state.value)]
    room.send(a, "Resume", "t1")
    assert room.frames(a)[1:4] == [
        ("Resume", "t1"),
        ("Instructions", "<p>wait</p>"),
        ("JoiningSize", "2/2"),
    ]
    assert room.frames(a, room.send(a, "Leave")) == [
        ("Error", "your session is being created: wait for Starting")
    ]
    # Someone else: the campaign's end.
    newcomer = room.open()
    effects = room.send(newcomer, "Land", "z")
    assert room.frames(newcomer, effects) == [(state.value, text), ("Disconnect", state.value)]
    # The other member stays away past the grace: its place is kept all the same.
    assert room.of(Leave, room.tick(seconds=60)) == []
    effects = room.created(1)
    assert room.frames(a, effects) == [
        ("Starting", "http://otree/InitializeParticipant/s1p1"),
        ("Disconnect", "Start"),
    ]
    (record,) = room.of(RecordSession, effects)
    assert [token for token, _, _ in record.assignments] == ["t1", "t2"]
    assert not record.complete
    assert room.room.campaign.state == state and room.room.campaign.started_sessions == 1
    assert room.room.members == {}
    # It comes back with its token: its Starting URL.
    b = room.open()
    assert room.frames(b) == [("State", state.value)]
    assert room.frames(b, room.send(b, "Resume", "t2")) == [
        ("Starting", "http://otree/InitializeParticipant/s1p2"),
        ("Disconnect", "Start"),
    ]


def test_a_page_of_that_pool_back_without_its_token_takes_its_place() -> None:
    """Go Mastok's page lands again: the same browser id is that member, whose session comes."""
    room = paused_while_starting(CampaignState.PAUSED)
    b = room.open()
    room.send(b, "Land", "b")
    assert room.kinds(b)[:4] == ["State", "Resume", "Instructions", "JoiningSize"]
    assert room.of(AddParticipant) == []  # the same visit
    assert room.frames(b, room.created(1))[0] == (
        "Starting",
        "http://otree/InitializeParticipant/s1p2",
    )


def test_that_pool_whose_creation_fails_ends_as_the_pause_ends_it() -> None:
    """As when a pause waits for a creation that fails: the pool goes back, and the pause then
    applies to it (the number stays asked: a later start looks it up)."""
    room = paused_while_starting(CampaignState.PAUSED, exits=((Outcome.PAUSED, Exit("P", None)),))
    a = room.open()
    room.send(a, "Resume", "t1")
    effects = room.do(SessionFailed(1, "down"))
    assert room.frames(a, effects)[-3:] == [
        ("Paused", "<p>paused</p>"),
        ("Exit", {"outcome": "paused", "code": "P", "url": None}),
        ("Disconnect", "Paused"),
    ]
    assert room.of(Leave, effects) == [Leave(("t1", "t2"), Outcome.PAUSED)]
    assert room.room.members == {} and room.room.asked == 1
    # The one away is told its end if its page comes back within the grace.
    b = room.open()
    assert room.kinds(b, room.send(b, "Resume", "t2")) == ["Exit", "Disconnect"]


def test_a_room_rebuilt_paused_with_a_number_asked_and_no_full_pool_ends_everyone() -> None:
    """Its pool ended before the pause (a failed creation sent it back, then someone left):
    nobody to start."""
    room = rebuilt(
        campaign(state=CampaignState.PAUSED),
        Waiting("t1", "a", Step.JOINING, "default", T0),
        asked=1,
    )
    assert room.creations() == []
    assert room.of(Leave) == [Leave(("t1",), Outcome.PAUSED)]


def test_view_is_what_supervisors_see() -> None:
    room = RoomHarness(campaign(per_session=2))
    room.agree()
    view = room.room.view(room.now)
    assert (view.state, view.joining, view.pending) == ("Running", "1/2", "0/8")
    assert replace(view, state=RoomState.BUSY).state == "Busy"


def test_every_disconnect_reason_is_a_protocol_reason() -> None:
    room = RoomHarness(campaign(per_session=1, max_sessions=1))
    room.agree()
    room.created(1)
    reasons = {e.reason for e in room.log if isinstance(e, Disconnect)}
    assert reasons == {"Start"}


# -- coming back without a token (Go Mastok's page) ------------------------------------------


@pytest.mark.parametrize(("code", "kept"), [(1000, 3), (1001, 30), (1006, 30), (None, 30)])
def test_a_page_closed_on_leaving_keeps_its_place_briefly(code: int | None, kept: float) -> None:
    room = RoomHarness(campaign(per_session=3), grace=30)
    conn, token = room.agree()
    room.close(conn, code)
    assert room.of(Leave, room.tick(seconds=kept - 0.1)) == []
    assert room.of(Leave, room.tick(seconds=0.1)) == [Leave((token,), Outcome.AWAY)]


def test_a_land_with_the_id_of_a_member_away_takes_its_place_back() -> None:
    room = RoomHarness(campaign(per_session=2))
    first, token = room.agree("browser-a")
    room.close(first, 1000)  # a reload
    again = room.open()
    effects = room.send(again, "Land", "browser-a")
    assert room.frames(again, effects) == [
        ("Resume", token),
        ("Instructions", "<p>wait</p>"),
        ("JoiningSize", "1/2"),
        WAITING_0,
    ]
    assert room.of(AddParticipant, effects) == []
    assert list(room.room.members) == [token]
    room.agree("browser-b")
    assert room.creations() == [(1, False)]  # nobody waits for a ghost


def test_a_land_with_the_id_of_a_member_present_is_someone_new() -> None:
    room = RoomHarness(campaign(per_session=3))
    room.agree("same")
    _, token = room.land("same")
    assert token == "tok2"
    assert len(room.room.members) == 2


def test_join_once_refuses_the_id_of_a_member_present_but_gives_an_away_one_its_place() -> None:
    room = RoomHarness(campaign(per_session=3, join_once=True))
    first, token = room.agree("same")
    conn = room.open()
    assert room.frames(conn, room.send(conn, "Land", "same")) == [("Disconnect", "LandingFailed")]
    room.close(first)
    back = room.open()
    assert room.frames(back, room.send(back, "Land", "same"))[0] == ("Resume", token)


@pytest.mark.parametrize("join_once", [False, True])
def test_a_member_whose_session_is_being_created_gets_its_seat_by_land(join_once: bool) -> None:
    room = RoomHarness(campaign(per_session=2, join_once=join_once))
    first, token = room.agree("a")
    room.agree("b")
    room.close(first)
    conn = room.open()
    assert room.frames(conn, room.send(conn, "Land", "a"))[:2] == [
        ("Resume", token),
        ("Instructions", "<p>wait</p>"),
    ]
    assert len(room.room.members) == 2  # no second seat
    assert room.frames(conn, room.created(1))[0] == (
        "Starting",
        "http://otree/InitializeParticipant/s1p1",
    )


def test_a_land_takes_the_seat_being_started_before_a_newer_place() -> None:
    room = RoomHarness(campaign(per_session=2, concurrent_sessions=2))
    first, token = room.agree("a")
    room.agree("b")  # the pool is being started
    newer, _ = room.agree("a")  # the same person again, in the next pool
    room.close(newer)
    room.close(first)
    conn = room.open()
    assert room.frames(conn, room.send(conn, "Land", "a"))[0] == ("Resume", token)


def test_the_latest_away_member_with_the_id_is_taken_over() -> None:
    room = RoomHarness(campaign(per_session=4))
    first, _ = room.agree("a")
    second, token = room.agree("a")
    room.close(first)
    room.close(second)
    conn = room.open()
    assert room.frames(conn, room.send(conn, "Land", "a"))[0] == ("Resume", token)


def test_session_start_carries_go_mastoks_keys() -> None:
    room = RoomHarness(campaign(concurrent_sessions=2))
    room.agree()
    room.agree()
    ((kind, payload),) = room.notes(room.created(1))
    assert kind == "SessionStart"
    assert {k: payload[k] for k in ("Code", "OtreeId", "Size", "AdminUrl", "Duration")} == {
        "Code": "sess1",
        "OtreeId": "mk:ns:1",
        "Size": 2,
        "AdminUrl": "http://otree/SessionStartLinks/sess1",
        "Duration": 30,
    }
    assert payload["CreatedAt"] == payload["LaunchedAt"] == T0.isoformat()
