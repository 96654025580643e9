"""The waiting room's promises under any sequence of events (Hypothesis draws them).

Whatever participants, oTree and the clock do: nobody is in two places, a joining pool never
holds more than its size, nobody enters a pending pool at its bound, a session is created only
for a full pool of present members, nobody is sent to two oTree participants, every
participant code goes to one person, and every event can be rolled back (the harness checks
that).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from mastok.live.events import (
    CreateSession,
    Edited,
    Move,
    OTreeAnswers,
    RecordSession,
    RoomCampaign,
    SessionFailed,
)
from mastok.live.room import Room
from mastok.states import CampaignState, Step
from tests.live.room_harness import RoomHarness, campaign

KINDS = ["Land", "Resume", "Agree", "Connect", "Leave", "Ready", "State", "Bogus"]


def studied(**changes: Any) -> RoomCampaign:
    """Two groups (1 and 2 places), 4 sessions of 3, 2 at once, short times: every rule meets
    every other within 50 events."""
    return campaign(
        per_session=3,
        max_sessions=4,
        concurrent_sessions=2,
        groups=(("A", 1), ("B", 2)),
        session_duration=timedelta(minutes=2),
        waiting_limit=timedelta(minutes=3),
        **changes,
    )


class WaitingRoom(RuleBasedStateMachine):
    changes: dict[str, Any] = {}

    def __init__(self) -> None:
        super().__init__()
        self.harness = RoomHarness(studied(**self.changes), grace=20)
        self.conns: list[int] = []
        self.assigned: dict[str, str] = {}  # participant code -> token

    @property
    def room(self) -> Room:
        return self.harness.room

    @rule()
    def open(self) -> None:
        self.conns.append(self.harness.open())

    @rule(group=st.sampled_from(["A", "B"]), fingerprint=st.sampled_from("abcdef"))
    def join(self, group: str, fingerprint: str) -> None:
        """A participant who does everything right, up to choosing a group."""
        conn = self.harness.open()
        self.conns.append(conn)
        for kind, payload in (("Land", fingerprint), ("Agree", None), ("Connect", group)):
            self.track(self.harness.send(conn, kind, payload))

    @precondition(lambda self: self.conns)
    @rule(data=st.data(), kind=st.sampled_from(KINDS), fingerprint=st.sampled_from("abcdef"))
    def frame(self, data: st.DataObject, kind: str, fingerprint: str) -> None:
        conn = data.draw(st.sampled_from(self.conns))
        payload: object = None
        if kind == "Land":
            payload = fingerprint
        elif kind == "Resume":
            tokens = sorted(self.room.members) + sorted(self.room.started_tokens) + ["nope"]
            payload = data.draw(st.sampled_from(tokens))
        elif kind == "Connect":
            payload = data.draw(st.sampled_from(["A", "B", "C"]))
        self.track(self.harness.send(conn, kind, payload))

    @precondition(lambda self: self.conns)
    @rule(data=st.data())
    def close(self, data: st.DataObject) -> None:
        self.track(self.harness.close(data.draw(st.sampled_from(self.conns))))

    @rule(seconds=st.sampled_from([0.5, 5, 21, 60, 200]))
    def tick(self, seconds: float) -> None:
        self.track(self.harness.tick(seconds=seconds))

    @precondition(lambda self: self.room.starting is not None)
    @rule(succeed=st.booleans())
    def otree_answers(self, succeed: bool) -> None:
        starting = self.room.starting
        assert starting is not None
        if succeed:
            effects = self.harness.created(starting.number)
        else:
            effects = self.harness.do(SessionFailed(starting.number, "down"))
        self.track(effects)

    @precondition(lambda self: self.room.check is not None)
    @rule(created=st.booleans())
    def the_pool_answers_ready(self, created: bool) -> None:
        """Everyone in a pool being asked answers (those away come back first)."""
        event("a pool answered its ready check")
        check = self.room.check
        assert check is not None
        for member in check.members:
            if member.conn is None:
                conn = self.harness.open()
                self.conns.append(conn)
                self.track(self.harness.send(conn, "Resume", member.token))
            if not member.ready and member.conn is not None:
                self.track(self.harness.send(member.conn, "Ready"))
        starting = self.room.starting
        assert starting is not None  # everyone answered: the session is asked of oTree
        if created:
            self.track(self.harness.created(starting.number))

    @rule()
    def otree_back(self) -> None:
        self.track(self.harness.do(OTreeAnswers()))

    @rule(state=st.sampled_from(list(CampaignState)))
    def edit(self, state: CampaignState) -> None:
        started = self.room.campaign.started_sessions
        edited = studied(state=state, started_sessions=started, **self.changes)
        self.track(self.harness.do(Edited(edited)))

    def track(self, effects: list[object]) -> None:
        for effect in effects:
            if isinstance(effect, CreateSession):
                assert self.room.starting is not None
                members = self.room.starting.members
                assert len(members) == 3 and all(m.conn is not None for m in members)
                assert sorted(m.group or "" for m in members) == ["A", "B", "B"]
                if self.room.campaign.ready_check:
                    assert all(m.ready for m in members)  # everyone answered its check
            if isinstance(effect, Move) and effect.step == Step.PENDING and effect.group:
                # A newcomer enters the pending pool only within its bound. (The bound shrinks
                # as sessions start, and a failed start sends its pool back on top of it: nobody
                # who had a place is turned away, so the pool itself may be over the bound.)
                size = dict(self.room.campaign.groups)[effect.group]
                pending = self.room.pending[effect.group]
                assert len(pending) <= self.room.campaign.pending_bound(size)
            if isinstance(effect, RecordSession):
                for token, code, _ in effect.assignments:
                    assert code not in self.assigned
                    assert token not in self.assigned.values()
                    self.assigned[code] = token
                event("a session started")

    @invariant()
    def everyone_is_in_one_place(self) -> None:
        room = self.room
        seen: set[str] = set()
        for pools, step in ((room.joining, Step.JOINING), (room.pending, Step.PENDING)):
            for pool in pools.values():
                for member in pool:
                    assert member.token not in seen
                    seen.add(member.token)
                    assert member.step == step and not member.reserved
                    assert room.members[member.token] is member
        reserved = [] if room.starting is None else list(room.starting.members)
        reserved += [] if room.check is None else list(room.check.members)
        assert room.starting is None or room.check is None
        for member in reserved:
            assert member.reserved and member.token not in seen
        for token, member in room.members.items():
            if member.step in (Step.JOINING, Step.PENDING) and not member.reserved:
                assert token in seen
            if member.conn is not None:
                assert room.sockets[member.conn] == token
        assert not set(room.members) & set(room.started_tokens)

    @invariant()
    def pools_stay_within_their_bounds(self) -> None:
        room = self.room
        for label, size in room.campaign.groups:
            assert len(room.joining.get(label, [])) <= size

    @invariant()
    def sessions_stay_within_the_campaign(self) -> None:
        assert self.room.campaign.started_sessions <= self.room.campaign.max_sessions
        assert len(self.assigned) == 3 * self.room.campaign.started_sessions


TestWaitingRoom = WaitingRoom.TestCase
TestWaitingRoom.settings = settings(
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)


class WaitingRoomWithReadyCheck(WaitingRoom):
    """The same promises when full pools are asked whether they are ready (10 s to answer)."""

    changes = {"ready_check": timedelta(seconds=10)}


TestWaitingRoomWithReadyCheck = WaitingRoomWithReadyCheck.TestCase
TestWaitingRoomWithReadyCheck.settings = TestWaitingRoom.settings
