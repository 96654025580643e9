"""The rules of a visit's identity and its end (docs/protocol.md), against the core alone:
platform identities, outcomes with their exits, Leave, and the ready check."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from mastok.live.events import (
    AddParticipant,
    Conn,
    Consented,
    CreatedSession,
    CreateSession,
    Edited,
    Effect,
    Entrant,
    Exit,
    Leave,
    MarkReady,
    Opened,
    Rules,
    SessionCreated,
    SessionFailed,
)
from mastok.live.room import REASONS, Past, Room, Started, key_of
from mastok.states import CampaignState, Outcome, RoomState
from tests.live.room_harness import T0, RoomHarness, campaign

PROLIFIC = {
    "identity_param": "PROLIFIC_PID",
    "capture_params": ("PROLIFIC_PID", "STUDY_ID"),
}
RETURN = "https://app.prolific.com/submissions/complete?cc={code}&pid={PROLIFIC_PID}"


def exits(**given: tuple[str | None, str | None]) -> tuple[tuple[Outcome, Exit], ...]:
    return tuple((Outcome(outcome), Exit(code, url)) for outcome, (code, url) in given.items())


# -- identity --------------------------------------------------------------------------------


def test_the_declared_parameters_are_kept_with_the_visit_and_no_others() -> None:
    room = RoomHarness(campaign(**PROLIFIC))
    conn, token = room.land(PROLIFIC_PID="p1", STUDY_ID="s1", SESSION_ID="x", other="y")
    (added,) = room.of(AddParticipant)
    assert added == AddParticipant(
        token, f"fp{conn}", "p1", (("PROLIFIC_PID", "p1"), ("STUDY_ID", "s1"))
    )


@pytest.mark.parametrize("value", ["", "   ", "x" * 129, "bad\nline", "tab\there"])
def test_a_parameter_too_long_or_unprintable_counts_as_missing(value: str) -> None:
    room = RoomHarness(campaign(**PROLIFIC, require_identity=True))
    conn = room.open(PROLIFIC_PID=value)
    assert room.frames(conn) == [("Disconnect", "MissingId")]
    assert room.of(AddParticipant) == [AddParticipant("tok1", None, None, (), Outcome.MISSING_ID)]


def test_a_parameter_of_128_characters_is_an_identity() -> None:
    room = RoomHarness(campaign(**PROLIFIC, require_identity=True))
    _, token = room.land(PROLIFIC_PID="p" * 128)
    assert room.room.members[token].identity == "p" * 128


def test_a_required_identity_missing_ends_the_visit_with_its_exit() -> None:
    given = exits(missing_id=("NOID", "https://example.org/back?o={outcome}"))
    room = RoomHarness(campaign(**PROLIFIC, require_identity=True, exits=given))
    conn = room.open(STUDY_ID="s1")
    exit_ = {
        "outcome": "missing_id",
        "code": "NOID",
        "url": "https://example.org/back?o=missing_id",
    }
    assert room.frames(conn) == [("Exit", exit_), ("Disconnect", "MissingId")]
    assert conn not in room.room.sockets
    assert room.of(AddParticipant) == [
        AddParticipant("tok1", None, None, (("STUDY_ID", "s1"),), Outcome.MISSING_ID)
    ]


def test_without_a_required_identity_anyone_lands() -> None:
    room = RoomHarness(campaign(**PROLIFIC))
    _, token = room.land("b1")
    assert room.room.members[token].identity is None


def two_starts(room: RoomHarness, first: dict[str, str], second: dict[str, str]) -> str:
    """A session of one for `first`; what `second` gets on landing (the last frame)."""
    conn, _ = room.agree("browser-1", **first)
    room.created(1)
    assert room.last(conn)[0] == "Disconnect"
    browser = second.pop("browser", "browser-1")
    later = room.open(**second)
    room.send(later, "Land", browser)
    return room.last(later)[1]


def test_a_live_redirect_follows_the_identity_not_the_browser() -> None:
    room = RoomHarness(campaign(**PROLIFIC, per_session=1))
    got = two_starts(room, {"PROLIFIC_PID": "p1"}, {"PROLIFIC_PID": "p1", "browser": "other"})
    assert got == "Redirect:http://otree/InitializeParticipant/s1p1"
    assert room.of(AddParticipant)[-1].outcome == Outcome.REDIRECTED


def test_the_same_browser_with_another_identity_is_not_redirected() -> None:
    room = RoomHarness(campaign(**PROLIFIC, per_session=1, max_sessions=3))
    got = two_starts(room, {"PROLIFIC_PID": "p1"}, {"PROLIFIC_PID": "p2"})
    assert got == "<p>consent</p>"  # a new visit of its own


def test_an_identity_cannot_pass_for_a_browser_id() -> None:
    room = RoomHarness(campaign(**PROLIFIC, per_session=1, max_sessions=3))
    room.agree("victim-browser")  # no identity: known by its browser id
    room.created(1)
    later = room.open(PROLIFIC_PID="victim-browser")
    room.send(later, "Land", "attacker")
    assert room.last(later) == ("Consent", "<p>consent</p>")


def test_join_once_keys_on_the_identity() -> None:
    room = RoomHarness(campaign(**PROLIFIC, per_session=1, max_sessions=3, join_once=True))
    room.agree("b1", PROLIFIC_PID="p1")
    room.created(1)
    room.later(minutes=31)  # the session is over: no redirect, but join_once still refuses
    conn = room.open(PROLIFIC_PID="p1")
    effects = room.send(conn, "Land", "b2")
    assert room.frames(conn, effects) == [("Disconnect", "LandingFailed")]
    assert room.of(AddParticipant, effects)[0].outcome == Outcome.REJECTED


def test_join_once_sends_the_identity_of_a_member_being_started_to_its_own_seat() -> None:
    """A page back without its token (a new tab, storage lost) while its session is created:
    the same identity takes its member's place (its seat), never a refusal nor a second seat;
    another identity, or the same browser without the identity, is someone else."""
    room = RoomHarness(campaign(**PROLIFIC, per_session=2, join_once=True))
    first, token = room.agree("b1", PROLIFIC_PID="p1")
    room.agree("b2", PROLIFIC_PID="p2")
    room.close(first)
    stranger = room.open(PROLIFIC_PID="p3")
    room.send(stranger, "Land", "b1")
    assert room.last(stranger) == ("Consent", "<p>consent</p>")  # a new visit of its own
    no_identity = room.open()
    room.send(no_identity, "Land", "b1")
    assert room.last(no_identity) == ("Consent", "<p>consent</p>")
    back = room.open(PROLIFIC_PID="p1")
    effects = room.send(back, "Land", "another-browser")
    assert room.frames(back, effects)[0] == ("Resume", token)
    assert room.of(AddParticipant, effects) == []  # the same visit, not a second one
    assert room.frames(back, room.created(1)) == [
        ("Starting", "http://otree/InitializeParticipant/s1p1"),
        ("Disconnect", "Start"),
    ]


def test_otree_learns_the_label_group_wait_and_parameters() -> None:
    given = exits(started=("DONE", "https://example.org/{code}/{PROLIFIC_PID}"))
    room = RoomHarness(campaign(**PROLIFIC, per_session=2, exits=given))
    room.agree("b1", PROLIFIC_PID="p1", STUDY_ID="s")
    room.later(seconds=42)
    room.agree("b2", PROLIFIC_PID="p 2")
    (created,) = room.of(CreateSession)
    assert created.entrants == (
        Entrant(
            "p1",
            (
                ("mastok_group", "default"),
                ("mastok_waited_seconds", 42),
                ("PROLIFIC_PID", "p1"),
                ("STUDY_ID", "s"),
                ("mastok_exit_code", "DONE"),
                ("mastok_exit_url", "https://example.org/DONE/p1"),
            ),
        ),
        Entrant(
            "p 2",
            (
                ("mastok_group", "default"),
                ("mastok_waited_seconds", 0),
                ("PROLIFIC_PID", "p 2"),
                ("mastok_exit_code", "DONE"),
                ("mastok_exit_url", "https://example.org/DONE/p%202"),
            ),
        ),
    )


def test_agreeing_records_the_consent_version() -> None:
    room = RoomHarness(campaign(consent_hash="abc"))
    _, token = room.agree()
    assert room.of(Consented) == [Consented(token, "abc")]


# -- outcomes and exits ----------------------------------------------------------------------


def test_every_outcome_but_a_redirect_has_its_disconnect_reason() -> None:
    assert set(REASONS) == set(Outcome) - {Outcome.REDIRECTED}


@pytest.mark.parametrize("state", [CampaignState.PAUSED, CampaignState.COMPLETED])
def test_a_campaign_that_turns_people_away_gives_them_its_exit(state: CampaignState) -> None:
    outcome = state.value.lower()
    given = exits(**{outcome: ("C1", None)})
    room = RoomHarness(campaign(state=state, exits=given))
    conn = room.open()
    assert room.frames(conn)[1:] == [
        ("Exit", {"outcome": outcome, "code": "C1", "url": None}),
        ("Disconnect", state.value),
    ]
    assert room.of(AddParticipant)[0].outcome == outcome


def test_an_outcome_without_an_exit_sends_none() -> None:
    room = RoomHarness(campaign(state=CampaignState.PAUSED, exits=exits(timeout=("T", None))))
    conn = room.open()
    assert room.kinds(conn) == ["Paused", "Disconnect"]


def test_a_timeout_gets_its_code_and_a_filled_url() -> None:
    given = exits(
        timeout=("T1", "https://p.example/return?cc={code}&o={outcome}&id={PROLIFIC_PID}")
    )
    room = RoomHarness(campaign(**PROLIFIC, exits=given))
    conn, token = room.agree(PROLIFIC_PID="a&b=c")
    effects = room.tick(minutes=5, seconds=1)
    url = "https://p.example/return?cc=T1&o=timeout&id=a%26b%3Dc"
    assert room.frames(conn, effects) == [
        ("Exit", {"outcome": "timeout", "code": "T1", "url": url}),
        ("Disconnect", "Timeout"),
    ]
    assert room.of(Leave, effects) == [Leave((token,), Outcome.TIMEOUT)]


def test_pausing_gives_everyone_waiting_and_landing_their_exit() -> None:
    given = exits(paused=("P", "https://x.example/{PROLIFIC_PID}"))
    room = RoomHarness(campaign(**PROLIFIC, exits=given))
    waiting, token = room.agree(PROLIFIC_PID="w")
    arriving = room.open(PROLIFIC_PID="a")
    effects = room.do(Edited(replace(room.room.campaign, state=CampaignState.PAUSED)))
    assert room.frames(waiting, effects)[1] == (
        "Exit",
        {"outcome": "paused", "code": "P", "url": "https://x.example/w"},
    )
    assert room.frames(arriving, effects)[1] == (
        "Exit",
        {"outcome": "paused", "code": "P", "url": "https://x.example/a"},
    )
    assert room.of(Leave, effects) == [Leave((token,), Outcome.PAUSED)]
    # The socket that had not landed is a visit too, ended at once.
    assert [a.outcome for a in room.of(AddParticipant, effects)] == [Outcome.PAUSED]
    assert room.room.arrivals == {}


def test_a_full_pending_pool_is_an_outcome() -> None:
    room = RoomHarness(campaign(per_session=1, max_sessions=1, exits=exits(full=("F", None))))
    room.room.live_sessions[1] = T0  # Busy: pending holds 1 x (1 - 0 + 1) = 2
    for _ in range(2):
        room.agree()
    conn, _ = room.agree()
    assert room.frames(conn)[-2:] == [
        ("Exit", {"outcome": "full", "code": "F", "url": None}),
        ("Disconnect", "Full"),
    ]


# -- Leave -----------------------------------------------------------------------------------


def test_leave_ends_the_visit_and_pending_moves_up() -> None:
    room = RoomHarness(campaign(per_session=2, exits=exits(left=("L", None))))
    away, _ = room.agree()
    room.close(away)
    leaving, token = room.agree()  # the pool is full but one is away: no session
    third, _ = room.agree()
    assert room.last(third)[0] == "Pending"
    effects = room.send(leaving, "Leave")
    assert room.frames(leaving, effects) == [
        ("Exit", {"outcome": "left", "code": "L", "url": None}),
        ("Disconnect", "Left"),
    ]
    assert room.of(Leave, effects) == [Leave((token,), Outcome.LEFT)]
    assert room.frames(third, effects)[0] == ("Instructions", "<p>wait</p>")


def test_leave_comes_only_after_leave_after_seconds_in_the_pools() -> None:
    room = RoomHarness(campaign(per_session=3, leave_after=timedelta(seconds=60)))
    conn, token = room.land()
    refused = [("Error", "Leave comes after 60 seconds of waiting")]
    assert room.frames(conn, room.send(conn, "Leave")) == refused  # not in the pools yet
    room.send(conn, "Agree")
    room.later(seconds=59)
    early = room.send(conn, "Leave")
    assert room.frames(conn, early) == [("Error", "Leave comes after 60 seconds of waiting")]
    assert token in room.room.members
    room.later(seconds=1)
    assert room.frames(conn, room.send(conn, "Leave")) == [("Disconnect", "Left")]


def test_leave_is_refused_while_the_session_is_being_created() -> None:
    room = RoomHarness(campaign(per_session=1))
    conn, token = room.agree()
    assert room.room.starting is not None
    effects = room.send(conn, "Leave")
    assert room.frames(conn, effects) == [
        ("Error", "your session is being created: wait for Starting")
    ]
    assert token in room.room.members


def test_leave_before_landing_is_an_error() -> None:
    room = RoomHarness()
    conn = room.open()
    assert room.frames(conn, room.send(conn, "Leave")) == [("Error", "Leave comes after Land")]


# -- the ready check -------------------------------------------------------------------------


def checking(seconds: int = 20, **changes: Any) -> RoomHarness:
    return RoomHarness(
        campaign(ready_check=timedelta(seconds=seconds), concurrent_sessions=1, **changes)
    )


def test_a_full_pool_is_asked_whether_it_is_ready_before_its_session() -> None:
    room = checking()
    a, _ = room.agree()
    b, _ = room.agree()
    assert room.creations() == []
    assert room.room.check is not None
    for conn in (a, b):
        assert room.last(conn) == ("ReadyCheck", 20)
        assert room.kinds(conn).count("ReadyCheck") == 1
        assert ("JoiningSize", "2/2") in room.frames(conn)
    assert room.room.public_state(room.now) == RoomState.BUSY  # a check counts as a start
    room.send(a, "Ready")
    assert room.creations() == []
    effects = room.send(b, "Ready")
    assert room.creations(effects) == [(1, False)]
    assert [e.token for e in room.of(MarkReady)] == [room.room.sockets[a], room.room.sockets[b]]


def test_ready_is_accepted_only_during_a_check_and_again_changes_nothing() -> None:
    room = checking(per_session=3)
    conn, token = room.agree()
    message = [("Error", "Ready answers a ReadyCheck")]
    assert room.frames(conn, room.send(conn, "Ready")) == message
    room.agree()
    room.agree()
    assert room.of(MarkReady, room.send(conn, "Ready")) == [MarkReady(token)]
    assert room.send(conn, "Ready") == []  # a page that came back and was asked again


def test_who_does_not_answer_ends_not_ready_and_the_others_wait_for_a_new_check() -> None:
    given = exits(not_ready=("NR", None))
    room = checking(seconds=20, exits=given)
    ready, ready_token = room.agree()
    silent, silent_token = room.agree()
    newcomer, newcomer_token = room.agree()  # Busy during the check: pending
    assert room.last(newcomer)[0] == "Pending"
    room.send(ready, "Ready")
    assert room.of(Leave, room.tick(seconds=19.5)) == []
    effects = room.tick(seconds=0.5)
    assert room.frames(silent, effects) == [
        ("Exit", {"outcome": "not_ready", "code": "NR", "url": None}),
        ("Disconnect", "NotReady"),
    ]
    assert room.of(Leave, effects) == [Leave((silent_token,), Outcome.NOT_READY)]
    # The one who answered is back ahead, the newcomer moved up: a new check for both.
    check = room.room.check
    assert check is not None
    assert [m.token for m in check.members] == [ready_token, newcomer_token]
    assert ("ReadyCheck", 20) in room.frames(ready, effects)
    assert ("ReadyCheck", 20) in room.frames(newcomer, effects)
    room.send(ready, "Ready")
    assert room.creations(room.send(newcomer, "Ready")) == [(1, False)]


def test_a_ready_past_the_deadline_counts_as_not_ready_before_the_tick() -> None:
    """The deadline is the deadline: a Ready that comes once it has passed, before the tick
    that would end the check, does not start the session."""
    room = checking(seconds=20, exits=exits(not_ready=("NR", None)))
    on_time, on_time_token = room.agree()
    late, late_token = room.agree()
    room.later(seconds=19.9)
    room.send(on_time, "Ready")
    room.later(seconds=0.1)
    effects = room.send(late, "Ready")
    assert room.creations(effects) == [] and room.of(MarkReady, effects) == []
    assert room.frames(late, effects) == [
        ("Exit", {"outcome": "not_ready", "code": "NR", "url": None}),
        ("Disconnect", "NotReady"),
    ]
    assert room.of(Leave, effects) == [Leave((late_token,), Outcome.NOT_READY)]
    assert room.room.check is None and room.joining() == [on_time_token]
    assert room.of(Leave, room.tick()) == []  # the tick finds the check over


# A check the tick would end, before that tick: the room, `ready` (answered), `silent` (did
# not), `newcomer` (landed, its consent on its page), and how the tick ends someone.
Overdue = tuple[RoomHarness, tuple[Conn, Conn, Conn], Leave]


def past_the_deadline() -> Overdue:
    """A check of 20 s whose deadline passed half a second ago."""
    room = checking(seconds=20, exits=exits(not_ready=("NR", None)))
    ready, _ = room.agree()
    silent, silent_token = room.agree()
    newcomer, _ = room.land()
    room.send(ready, "Ready")
    room.later(seconds=20.5)
    return room, (ready, silent, newcomer), Leave((silent_token,), Outcome.NOT_READY)


def past_a_limit() -> Overdue:
    """A check of 20 s, 10.5 s in, whose first member (it answered) waited its limit (5 minutes)
    half a second ago."""
    room = checking(seconds=20, per_session=3, exits=exits(timeout=("T", None)))
    old, old_token = room.agree()
    room.later(minutes=4, seconds=50)
    ready, _ = room.agree()
    silent, _ = room.agree()
    newcomer, _ = room.land()
    room.send(old, "Ready")
    room.send(ready, "Ready")
    room.later(seconds=10.5)
    return room, (ready, silent, newcomer), Leave((old_token,), Outcome.TIMEOUT)


def edit(room: RoomHarness) -> list[Effect]:
    return room.do(Edited(replace(room.room.campaign, max_sessions=5)))


# Events that may come before the tick that ends a check, to (room, ready, silent, newcomer).
LATE_EVENTS: dict[str, Callable[[RoomHarness, Conn, Conn, Conn], list[Effect]]] = {
    "a Leave from who answered": lambda room, ready, _, __: room.send(ready, "Leave"),
    "a Leave from who did not": lambda room, _, silent, __: room.send(silent, "Leave"),
    "an edit": lambda room, *_: edit(room),
    "a newcomer": lambda room, _, __, newcomer: room.send(newcomer, "Agree"),
    "a disconnect": lambda room, _, silent, __: room.close(silent),
    "a socket opening": lambda room, *_: room.do(Opened(99)),
    "a late Ready": lambda room, _, silent, __: room.send(silent, "Ready"),
}


@pytest.mark.parametrize("overdue", [past_the_deadline, past_a_limit])
@pytest.mark.parametrize("late", LATE_EVENTS.values(), ids=LATE_EVENTS.keys())
def test_an_event_before_the_tick_finds_the_check_over_as_if_the_tick_came_first(
    late: Callable[[RoomHarness, Conn, Conn, Conn], list[Effect]],
    overdue: Callable[[], Overdue],
) -> None:
    """The tick ends a check at its deadline, or once a member has waited its limit: an event
    that comes after either, before that tick, has the effects it has after the tick (the
    same endings, the same frames, the same room)."""
    tick_first, people, _ = overdue()
    after_the_tick = tick_first.tick() + late(tick_first, *people)
    room, people, ending = overdue()
    before_the_tick = late(room, *people) + room.tick()
    assert before_the_tick == after_the_tick
    assert room.room.snapshot() == tick_first.room.snapshot()
    assert ending in room.of(Leave, before_the_tick)


@pytest.mark.parametrize("answered", [False, True])
def test_a_member_coming_back_during_the_check_is_asked_again_with_the_time_left(
    answered: bool,
) -> None:
    room = checking(seconds=20)
    first, token = room.agree()
    room.agree()
    if answered:
        room.send(first, "Ready")
    room.close(first)
    room.later(seconds=5)
    again = room.open()
    room.send(again, "Resume", token)
    assert room.last(again) == ("ReadyCheck", 15)
    room.send(again, "Ready")
    assert room.room.members[token].ready


def test_leaving_during_the_check_sends_the_others_back() -> None:
    room = checking()
    a, _ = room.agree()
    b, b_token = room.agree()
    effects = room.send(a, "Leave")
    assert room.room.check is None
    assert room.joining() == [b_token]
    assert room.frames(b, effects) == [("JoiningSize", "1/2")]


@pytest.mark.parametrize("answered", [False, True])
def test_a_member_whose_limit_passes_during_the_check_times_out_then_not_at_its_end(
    answered: bool,
) -> None:
    # Issue 15's simulated study: a check that ran on past a member's waiting limit kept it
    # up to the check's length (10 s there) past the limit, ended timeout or not_ready.
    given = exits(timeout=("T", None))
    room = checking(seconds=20, per_session=3, exits=given)  # a 5 minutes' limit
    old, old_token = room.agree()
    room.later(minutes=4, seconds=50)
    silent, _ = room.agree()
    ready, ready_token = room.agree()  # the pool is full: asked until 5:10
    room.send(ready, "Ready")
    if answered:
        room.send(old, "Ready")
    assert room.of(Leave, room.tick(seconds=9.5)) == []
    effects = room.tick(seconds=1)  # 5:00.5 for the first member
    assert room.frames(old, effects) == [
        ("Exit", {"outcome": "timeout", "code": "T", "url": None}),
        ("Disconnect", "Timeout"),
    ]
    assert room.of(Leave, effects) == [Leave((old_token,), Outcome.TIMEOUT)]
    # The others go back as when someone leaves during a check, nobody held to it.
    assert room.room.check is None
    assert room.joining()[-1] == ready_token and len(room.joining()) == 2
    assert ("JoiningSize", "2/3") in room.frames(silent, effects)


def test_a_limit_passed_before_the_check_ended_is_a_timeout_at_a_later_tick() -> None:
    """Ticks come every half second: one may come after both a member's limit and then the
    check's end. The limit passed first, during the check: timeout, not not_ready."""
    given = exits(timeout=("T", None), not_ready=("NR", None))
    room = checking(seconds=20, per_session=3, exits=given)  # a 5 minutes' limit
    old, old_token = room.agree()
    room.later(minutes=4, seconds=40.2)
    silent, silent_token = room.agree()
    ready, _ = room.agree()  # the pool is full: asked until 5:00.2 for the first member
    room.send(ready, "Ready")
    assert room.of(Leave, room.tick(seconds=19.7)) == []  # 4:59.9
    effects = room.tick(seconds=0.5)  # 5:00.4: its limit at 5:00, the check's end at 5:00.2
    assert room.frames(old, effects) == [
        ("Exit", {"outcome": "timeout", "code": "T", "url": None}),
        ("Disconnect", "Timeout"),
    ]
    assert room.frames(silent, effects)[:2] == [
        ("Exit", {"outcome": "not_ready", "code": "NR", "url": None}),
        ("Disconnect", "NotReady"),
    ]
    assert sorted(room.of(Leave, effects), key=lambda leave: leave.outcome) == [
        Leave((silent_token,), Outcome.NOT_READY),
        Leave((old_token,), Outcome.TIMEOUT),
    ]


def test_an_edit_during_the_check_sends_the_pool_back_and_asks_again() -> None:
    room = checking()
    a, a_token = room.agree()
    b, b_token = room.agree()
    room.send(a, "Ready")
    texts = replace(room.room.campaign.texts, instructions="<p>new</p>")
    effects = room.do(Edited(replace(room.room.campaign, texts=texts)))
    check = room.room.check
    assert check is not None and [m.token for m in check.members] == [a_token, b_token]
    assert not room.room.members[a_token].ready  # asked again, everyone
    assert ("ReadyCheck", 20) in room.frames(b, effects)


def test_a_failed_creation_after_the_check_puts_the_pool_back() -> None:
    room = checking()
    a, _ = room.agree()
    b, _ = room.agree()
    room.send(a, "Ready")
    room.send(b, "Ready")
    room.do(SessionFailed(1, "boom"))
    assert room.room.check is None and room.room.starting is None
    assert len(room.joining()) == 2


# -- resume tokens ---------------------------------------------------------------------------


def test_a_started_token_opens_its_session_only_while_the_session_is_live() -> None:
    room = RoomHarness(campaign(per_session=1))  # sessions live 30 minutes
    _, token = room.agree()
    room.created(1)
    room.later(minutes=29)
    page = room.open()
    effects = room.send(page, "Resume", token)
    assert room.frames(page, effects) == [
        ("Starting", "http://otree/InitializeParticipant/s1p1"),
        ("Disconnect", "Start"),
    ]
    room.tick(minutes=1)  # the session is over
    assert room.room.started_tokens == {}
    late = room.open()
    assert room.frames(late, room.send(late, "Resume", token)) == [
        ("Error", "unknown or expired resume token: Land again")
    ]


def test_a_socket_that_never_lands_is_closed_after_land_within() -> None:
    room = RoomHarness()  # land_within: 30 s
    silent = room.open()
    landing = room.open()
    room.later(seconds=10)
    room.send(landing, "Land", "b1")
    assert room.frames(silent, room.tick(seconds=19.5)) == []
    effects = room.tick(seconds=0.5)
    assert room.frames(silent, effects) == [("Disconnect", "LandingFailed")]
    assert room.of(AddParticipant, effects) == []  # it never said who it is: not a visit
    assert room.frames(landing, effects) == []
    assert silent not in room.room.sockets and room.room.arrivals == {}


def test_a_page_back_after_its_visit_timed_out_while_away_gets_its_exit() -> None:
    room = RoomHarness(campaign(per_session=2, exits=exits(timeout=("T1", None))))
    conn, token = room.agree()
    room.later(minutes=4, seconds=50)
    room.close(conn)  # its connection drops just before its limit
    room.tick(seconds=11)
    assert token not in room.room.members
    back = room.open()
    effects = room.send(back, "Resume", token)
    assert room.frames(back, effects) == [
        ("Exit", {"outcome": "timeout", "code": "T1", "url": None}),
        ("Disconnect", "Timeout"),
    ]
    assert room.of(AddParticipant, effects) == []  # the same visit, not a new one


@pytest.mark.parametrize("state", [CampaignState.PAUSED, CampaignState.COMPLETED])
def test_a_page_back_after_its_visit_timed_out_gets_its_exit_from_a_campaign_ended_meanwhile(
    state: CampaignState,
) -> None:
    """No session live to come back to: the room still waits for the page's token, and its
    own ending's exit (the one a platform pays on), not the pause's, in the same visit."""
    ended_exits = exits(timeout=("T1", None), paused=("P1", None), completed=("C1", None))
    room = RoomHarness(campaign(per_session=2, exits=ended_exits))
    conn, token = room.agree()
    room.later(minutes=4, seconds=50)
    room.close(conn)  # its connection drops just before its limit
    room.tick(seconds=11)
    room.do(Edited(campaign(per_session=2, exits=ended_exits, state=state)))
    back = room.open()
    assert room.frames(back) == [("State", state.value)]
    effects = room.send(back, "Resume", token)
    assert room.frames(back, effects) == [
        ("Exit", {"outcome": "timeout", "code": "T1", "url": None}),
        ("Disconnect", "Timeout"),
    ]
    assert room.of(AddParticipant, effects) == []  # the same visit, not a new one


def test_a_page_back_after_its_visit_was_paused_while_away_gets_its_exit() -> None:
    """Paused and Running again while the page was away: back within the grace, it is told
    its visit ended, not sent through the consent again as a new visit."""
    room = RoomHarness(campaign(per_session=2, exits=exits(paused=("P1", None))))
    conn, token = room.agree()
    room.close(conn)
    running = room.room.campaign
    room.do(Edited(replace(running, state=CampaignState.PAUSED)))
    room.later(seconds=10)
    room.do(Edited(running))
    room.later(seconds=10)
    back = room.open()
    effects = room.send(back, "Resume", token)
    assert room.frames(back, effects) == [
        ("Exit", {"outcome": "paused", "code": "P1", "url": None}),
        ("Disconnect", "Paused"),
    ]
    assert room.of(AddParticipant, effects) == []  # the same visit, not a new one


def test_a_member_away_when_the_last_session_starts_gets_its_start_url_back() -> None:
    """Its session is recorded with it whatever its socket does, and completes the campaign:
    the page back with its token is told the state, resumes, and gets its own start URL."""
    room = RoomHarness(campaign(per_session=2, max_sessions=1))
    away, token = room.agree("a")
    room.agree("b")
    room.close(away)  # its connection drops while oTree creates the session
    room.created(1)
    assert room.room.campaign.state == CampaignState.COMPLETED
    back = room.open()
    assert room.frames(back) == [("State", "Completed")]
    assert room.frames(back, room.send(back, "Resume", token)) == [
        ("Starting", "http://otree/InitializeParticipant/s1p1"),
        ("Disconnect", "Start"),
    ]


def test_a_member_away_when_a_pause_waited_for_its_session_gets_its_start_url_back() -> None:
    running = campaign(per_session=2, exits=exits(paused=("P1", None)))
    room = RoomHarness(running)
    away, token = room.agree("a")
    room.agree("b")
    room.close(away)
    room.do(Edited(replace(running, state=CampaignState.PAUSED)))
    room.created(1)
    back = room.open()
    assert room.frames(back) == [("State", "Paused")]
    effects = room.send(back, "Resume", token)
    assert room.frames(back, effects)[0] == ("Starting", "http://otree/InitializeParticipant/s1p1")
    assert room.of(AddParticipant, effects) == []
    # Anyone else, while that session is live, is told the pause once it says who it is.
    other = room.open()
    effects = room.send(other, "Land", "c")
    assert room.frames(other, effects) == [
        ("Paused", "<p>paused</p>"),
        ("Exit", {"outcome": "paused", "code": "P1", "url": None}),
        ("Disconnect", "Paused"),
    ]
    assert room.of(AddParticipant, effects)[0].outcome == Outcome.PAUSED
    stale = room.open()
    assert room.frames(stale, room.send(stale, "Resume", "unknown"))[-1] == ("Disconnect", "Paused")


def test_a_person_whose_last_session_is_live_is_redirected_by_land() -> None:
    room = RoomHarness(campaign(**PROLIFIC, per_session=1, max_sessions=1))
    room.agree("b1", PROLIFIC_PID="p1")
    room.created(1)  # the last session: the campaign is Completed
    back = room.open(PROLIFIC_PID="p1")
    room.send(back, "Land", "b2")
    assert room.last(back) == ("Disconnect", "Redirect:http://otree/InitializeParticipant/s1p1")
    room.tick(minutes=30)  # the session is over: a completed campaign, as before
    late = room.open(PROLIFIC_PID="p1")
    assert room.frames(late) == [("Completed", "<p>done</p>"), ("Disconnect", "Completed")]


# -- erasure ---------------------------------------------------------------------------------


def labelled(number: int, pid: str) -> CreatedSession:
    """A session of one, its start link labelled with the platform id, as oTree is asked."""
    url = f"http://otree/InitializeParticipant/s{number}p1?participant_label={pid}"
    return CreatedSession(f"sess{number}", f"mk:ns:{number}", "", ((f"s{number}p1", url),))


def test_an_erasure_forgets_the_identities_the_room_keeps_for_pages_coming_back() -> None:
    given = exits(paused=("P", RETURN))
    room = RoomHarness(campaign(**PROLIFIC, per_session=1, join_once=True, exits=given))
    _, started = room.agree("b1", PROLIFIC_PID="p1")
    room.do(SessionCreated(1, labelled(1, "p1")))
    away, ended = room.agree("b2", PROLIFIC_PID="p2")  # Busy: pending
    room.close(away)
    paused = replace(room.room.campaign, state=CampaignState.PAUSED)
    room.do(Edited(paused))  # p2's visit ends while its page is away
    room.do(Edited(replace(paused, identity_erasures=1)))

    page = room.open(PROLIFIC_PID="p1")
    room.send(page, "Land", "another-browser")  # no longer known by its identity
    assert room.last(page) == ("Disconnect", "Paused")
    page = room.open()
    room.send(page, "Land", "b1")  # but by its browser id, as the records still have it
    assert room.last(page) == ("Disconnect", "Redirect:http://otree/InitializeParticipant/s1p1")
    page = room.open()
    effects = room.send(page, "Resume", started)
    assert room.frames(page, effects)[0] == ("Starting", "http://otree/InitializeParticipant/s1p1")
    page = room.open()
    effects = room.send(page, "Resume", ended)
    url = "https://app.prolific.com/submissions/complete?cc=P&pid="
    assert room.frames(page, effects)[0] == ("Exit", {"outcome": "paused", "code": "P", "url": url})


def test_an_edit_read_before_an_erasure_neither_undoes_it_nor_forgets_anyone_new() -> None:
    room = RoomHarness(campaign(**PROLIFIC, per_session=1, join_once=True))
    read_before = room.room.campaign
    room.do(Edited(replace(read_before, identity_erasures=1)))
    room.do(Edited(read_before))  # a stale read, handed over late
    assert room.room.campaign.identity_erasures == 1
    room.agree("b1", PROLIFIC_PID="p1")
    room.created(1)
    room.later(minutes=31)
    room.do(Edited(replace(read_before, identity_erasures=1)))  # the next edit: no new erasure
    page = room.open(PROLIFIC_PID="p1")
    assert room.frames(page, room.send(page, "Land", "b2")) == [("Disconnect", "LandingFailed")]


def test_a_restored_room_knows_its_people_by_their_browser_id_after_an_erasure() -> None:
    url = "http://otree/InitializeParticipant/x"
    started = [Started("t0", key_of("p1", "b1"), f"{url}?participant_label=p1", T0, "browser:b1")]
    restored = Room.restore(
        campaign(**PROLIFIC, join_once=True),
        Rules(timedelta(seconds=30), True),
        lambda: "new",
        (),
        started,
        {1: T0},
        T0,
    )
    room = RoomHarness(room=restored)
    room.do(Edited(replace(room.room.campaign, identity_erasures=1)))
    assert room.room.past == {"browser:b1": Past(url, T0, "browser:b1")}
    page = room.open()
    room.send(page, "Land", "b1")
    assert room.last(page) == ("Disconnect", f"Redirect:{url}")
