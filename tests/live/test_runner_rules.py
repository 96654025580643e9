"""Rules of the runner that need no socket: waiting limit, pending bounds, sizes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from mastok.db.tables import Campaign, utcnow
from mastok.live.runner import Member, RoomSettings, Runner


def runner_for(**fields: Any) -> Runner:
    values = {
        "id": 1,
        "namespace": "ns",
        "per_session": 4,
        "max_sessions": 3,
        "started_sessions": 0,
        "concurrent_sessions": 1,
        "session_duration": 30,
        "waiting_limit": 5,
        "grouping": "",
        "state": "Running",
        **fields,
    }
    return Runner(Campaign(**values), None, None, RoomSettings(grace=30, live_redirect=True))  # type: ignore[arg-type]


def member(token: str, step: str, waited_minutes: float | None = None) -> Member:
    since = utcnow() - timedelta(minutes=waited_minutes) if waited_minutes is not None else None
    return Member(1, token, "fp", step, "default", waiting_since=since)


def test_people_waiting_longer_than_the_limit_are_released() -> None:
    runner = runner_for(waiting_limit=5)
    for m in (
        member("fresh", "joining", 1),
        member("old", "joining", 6),
        member("old_pending", "pending", 5.5),
        member("consenting", "landed"),
    ):
        runner.members[m.token] = m
    assert sorted(m.token for m in runner._waited_too_long()) == ["old", "old_pending"]


def test_pending_bound_shrinks_as_sessions_start() -> None:
    runner = runner_for(per_session=4, max_sessions=3)
    assert runner.pending_size() == "0/16"
    runner.campaign.started_sessions = 2
    assert runner.pending_size() == "0/8"


def test_grouping_sizes_define_the_pools() -> None:
    runner = runner_for(per_session=3, grouping="Q\nA:1\nB:2\nGo")
    assert runner.group_sizes() == {"A": 1, "B": 2}
    assert runner.pending_size() == "0/12"  # (1 + 2) x (3 - 0 + 1)
