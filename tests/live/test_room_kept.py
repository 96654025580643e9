"""A socket kept open while its process took the leader lock back: it comes into the room
rebuilt from the database (`Kept`) in the place the halted room knew it in."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from mastok.live.events import AddParticipant, Kept, Leave, Rebuilt, RoomCampaign, Rules
from mastok.live.room import Room, Started, Waiting
from mastok.states import CampaignState, Outcome, Step
from tests.live.room_harness import T0, RoomHarness, campaign

GRACE = 30


def rebuilt(
    *waiting: Waiting,
    room_campaign: RoomCampaign | None = None,
    started: tuple[Started, ...] = (),
    live_redirect: bool = True,
    first_event: bool = True,
    asked: int | None = None,
) -> RoomHarness:
    """The room as the database has it once the lock is taken back (everyone away), its first
    event handled (`first_event`: else left to the test); `asked`: the session number asked
    of oTree and not recorded."""
    restored = Room.restore(
        room_campaign or campaign(per_session=2),
        Rules(timedelta(seconds=GRACE), live_redirect),
        lambda: "unused",
        list(waiting),
        started,
        {1: T0} if started else {},
        T0,
        asked,
    )
    room = RoomHarness(room=restored)
    room.minted = 10  # tokens of its own newcomers: tok11, ...
    if first_event:
        room.do(Rebuilt())  # a rebuilt room's first event (mastok.live.rooms)
    return room


def joining(token: str) -> Waiting:
    return Waiting(token, f"browser-{token}", Step.JOINING, "default", T0)


def test_a_kept_socket_takes_its_place_back_with_no_state_frame() -> None:
    before = RoomHarness(campaign(per_session=2))
    conn, token = before.agree()
    kept = before.room.kept(conn)
    assert kept == Kept(conn, (), token)

    after = rebuilt(joining(token))
    effects = after.do(kept)
    # No State: the page would answer it with a Resume of its own ("already landed").
    assert after.kinds(conn, effects)[:3] == ["Resume", "Instructions", "JoiningSize"]
    assert after.frames(conn, effects)[0] == ("Resume", token)
    assert after.room.members[token].conn == conn
    # Present, not away: the grace that ends the places of those away does not end this one.
    assert after.of(Leave, after.tick(seconds=GRACE + 1)) == []
    newcomer, _ = after.agree()
    assert after.creations() == [(1, False)]
    assert after.kinds(newcomer)[-1] != "Disconnect"


def test_those_away_when_the_lock_was_lost_have_their_grace_from_the_rebuild() -> None:
    after = rebuilt(joining("present"), joining("away"))
    after.do(Kept(1, (), "present"))
    assert after.of(Leave, after.tick(seconds=GRACE - 1)) == []
    assert after.of(Leave, after.tick(seconds=1)) == [Leave(("away",), Outcome.AWAY)]


def test_a_kept_socket_that_never_landed_is_told_the_state_as_a_new_one() -> None:
    before = RoomHarness(campaign(per_session=2))
    conn = before.open()
    kept = before.room.kept(conn)
    assert kept == Kept(conn, (), None)
    after = rebuilt()
    assert after.frames(conn, after.do(kept)) == [("State", "Running")]
    assert after.room.sockets == {conn: None}


def test_a_kept_socket_whose_place_is_gone_is_told_the_state_and_resumes_by_itself() -> None:
    after = rebuilt()  # its place expired while the lock was lost
    assert after.frames(1, after.do(Kept(1, (), "gone"))) == [("State", "Running")]
    assert after.room.members == {}


def test_a_kept_socket_in_a_campaign_paused_meanwhile_gets_its_end() -> None:
    """The same visit ends paused (it was turned away as a second visit, the first left in
    the room to end away)."""
    paused = campaign(per_session=2, state=CampaignState.PAUSED)
    after = rebuilt(joining("t1"), joining("t2"), room_campaign=paused, first_event=False)
    ended = after.do(Rebuilt())  # the pause's end of their visits, which no room wrote
    assert after.of(Leave, ended) == [Leave(("t1", "t2"), Outcome.PAUSED)]
    assert after.room.members == {}
    effects = after.do(Kept(1, (), "t1"))
    assert after.frames(1, effects) == [("Paused", "<p>paused</p>"), ("Disconnect", "Paused")]
    assert after.of(AddParticipant, effects) == []  # no second visit
    assert after.of(Leave, effects) == []


def test_a_kept_socket_of_a_pool_being_started_when_its_campaign_was_paused_gets_its_url() -> None:
    """Paused while its session was created (the pause waits for it), the lock lost before it
    was recorded: the room rebuilt creates it again (looked up first) and the socket is back
    in that pool, then sent to its session."""
    paused = campaign(per_session=2, state=CampaignState.PAUSED)
    after = rebuilt(joining("t1"), joining("t2"), room_campaign=paused, asked=1)
    assert after.creations() == [(1, True)]
    effects = after.do(Kept(1, (), "t1"))
    assert after.kinds(1, effects)[:3] == ["Resume", "Instructions", "JoiningSize"]
    assert after.frames(1, after.created(1)) == [("Starting", URL), ("Disconnect", "Start")]


URL = "http://otree/InitializeParticipant/s1p1"


def started_before_told(room_campaign: RoomCampaign) -> tuple[RoomHarness, Kept]:
    """The lock lost between a session's record and its pool's Starting frames: the halted
    room knew the socket as a member of the pool being started, the database has it started."""
    before = RoomHarness(campaign(per_session=2))
    conn, token = before.agree("a")
    after = rebuilt(
        room_campaign=room_campaign,
        started=(Started(token, "browser:a", URL, T0),),
        live_redirect=False,
    )
    after.later(seconds=5)
    return after, before.room.kept(conn)


def test_a_kept_socket_whose_session_was_recorded_before_its_pool_was_told_gets_its_url() -> None:
    after, kept = started_before_told(campaign(per_session=2, started_sessions=1))
    frames = after.frames(kept.conn, after.do(kept))
    assert frames == [("Starting", URL), ("Disconnect", "Start")]  # as if its pool was told
    assert after.room.sockets == {} and after.room.members == {}
    # Its page back with its token gets its URL again, never a new place.
    again = after.open()
    assert after.frames(again, after.send(again, "Resume", kept.token)) == frames
    assert after.room.members == {}


def test_a_kept_socket_of_the_last_session_gets_its_url_not_the_campaigns_end() -> None:
    done = campaign(per_session=2, started_sessions=1, max_sessions=1)
    after, kept = started_before_told(replace(done, state=CampaignState.COMPLETED))
    assert after.kinds(kept.conn, after.do(kept)) == ["Starting", "Disconnect"]


def test_a_kept_socket_whose_session_is_over_is_told_the_state() -> None:
    after = rebuilt(started=(Started("t1", "browser:a", URL, T0),))
    after.later(minutes=30)
    assert after.frames(1, after.do(Kept(1, (), "t1"))) == [("State", "Running")]
