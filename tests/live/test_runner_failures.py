"""Failures a real database or oTree cannot produce on demand, with stand-ins for them."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import OperationalError

from mastok.db.tables import Campaign, OTreeSession, utcnow
from mastok.live.protocol import Frame, decode
from mastok.live.runner import RoomSettings, Runner
from mastok.otree import Participant, Session


class FakeConnection:
    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.closing = False

    def send(self, kind: str, payload: Any = None) -> None:
        self.frames.append(Frame(kind, payload))

    def send_text(self, text: str) -> None:
        self.frames.append(decode(text))

    def disconnect(self, reason: str) -> None:
        self.send("Disconnect", reason)
        self.closing = True

    def kinds(self) -> list[str]:
        return [frame.kind for frame in self.frames]


class FlakyRecords:
    """Records in memory whose first `failures` session records fail like a lost database."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.ids = 0
        self.moves: list[tuple[list[int], dict[str, Any]]] = []

    async def add_participant(self, campaign_id: int, token: str, fingerprint: str) -> int:
        self.ids += 1
        return self.ids

    async def move(self, ids: list[int], **values: Any) -> None:
        self.moves.append((list(ids), values))

    async def live_start_url(self, *args: Any) -> None:
        return None

    async def live_session_times(self, *args: Any) -> list[Any]:
        return []

    async def record_start(self, campaign: Campaign, row: dict[str, Any], *args: Any) -> Any:
        if self.failures:
            self.failures -= 1
            raise OperationalError("UPDATE participants", {}, Exception("server closed"))
        return OTreeSession(campaign_id=campaign.id, created_at=utcnow(), **row)


class InstantStarter:
    def __init__(self) -> None:
        self.starts = 0

    async def start(self, campaign: Campaign, number: int) -> Session:
        self.starts += 1
        participants = [Participant(f"p{n}", n, None) for n in (1, 2)]
        return Session("sess1", 2, "guess_two", "http://otree/admin", "", {}, participants)

    mastok_id = staticmethod(lambda campaign, number: f"mk:{campaign.namespace}:{number}")

    def start_url(self, code: str) -> str:
        return f"http://otree/InitializeParticipant/{code}"

    def public_admin_url(self, url: str) -> str:
        return url


def campaign() -> Campaign:
    return Campaign(
        id=1,
        namespace="ns",
        uid="u",
        per_session=2,
        max_sessions=3,
        started_sessions=0,
        concurrent_sessions=2,
        session_duration=30,
        waiting_limit=5,
        grouping="",
        consent="[accept]OK[/accept]",
        instructions="Wait",
        pending="",
        paused="",
        completed="",
        show_nb_participants=True,
        join_once=False,
        state="Running",
    )


async def arrive(runner: Runner, fingerprint: str) -> FakeConnection:
    connection = FakeConnection()
    visitor = await runner.participant_arrives(connection)  # type: ignore[arg-type]
    assert visitor is not None
    await runner.participant_frame(visitor, Frame("Land", fingerprint))
    await runner.participant_frame(visitor, Frame("Agree"))
    return connection


async def test_a_lost_database_while_recording_a_session_is_retried_without_a_second_one() -> None:
    records, starter = FlakyRecords(failures=1), InstantStarter()
    runner = Runner(campaign(), records, starter, RoomSettings(grace=30, live_redirect=True))  # type: ignore[arg-type]
    supervisor = FakeConnection()
    await runner.supervisor_arrives(supervisor)  # type: ignore[arg-type]
    first, second = await arrive(runner, "a"), await arrive(runner, "b")
    await runner.drain()  # the session start runs in a task of its own

    errors = [f.payload for f in supervisor.frames if f.kind == "Error"]
    assert len(errors) == 1
    assert errors[0].startswith("mastok session creation failed: could not record session sess1")
    assert "server closed" in errors[0]
    assert Frame("State", "Unavailable") in supervisor.frames
    assert "Starting" not in first.kinds() + second.kinds()
    assert len(runner.pool("joining")) == 2

    assert runner._retry is not None
    runner._retry.at = 0  # the backoff is over
    await runner.tick()
    await runner.drain()
    assert starter.starts == 2  # claimed again by label: the starter finds the same session
    assert first.frames[-2:] == [
        Frame("Starting", "http://otree/InitializeParticipant/p1"),
        Frame("Disconnect", "Start"),
    ]
    assert second.frames[-2] == Frame("Starting", "http://otree/InitializeParticipant/p2")
    assert runner.campaign.started_sessions == 1
    assert runner.members == {}


async def test_a_failing_frame_is_answered_and_the_room_goes_on() -> None:
    class BrokenLanding(FlakyRecords):
        async def add_participant(self, *args: Any) -> int:
            raise OperationalError("INSERT", {}, Exception("disk full"))

    runner = Runner(campaign(), BrokenLanding(0), InstantStarter(), RoomSettings(30, True))  # type: ignore[arg-type]
    connection = FakeConnection()
    visitor = await runner.participant_arrives(connection)  # type: ignore[arg-type]
    assert visitor is not None
    await runner.participant_frame(visitor, Frame("Land", "fp"))
    assert connection.frames[-1] == Frame("Error", "mastok could not handle that: please retry")
    assert runner.members == {}
    assert not connection.closing
