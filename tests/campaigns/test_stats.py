"""The campaign's figures (GET /api/campaigns/{namespace}/stats) against a scripted history
whose every figure is computed by hand below, on both databases."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Update, select, update

from mastok.campaigns.stats import _fills
from mastok.clock import ManualClock
from mastok.db import Database, async_url
from mastok.db.tables import Campaign, OTreeSession, Participant
from tests.campaigns.factories import campaign_input
from tests.fixtures.app import ClientFactory

NOW = datetime(2026, 11, 30, 13, 0, tzinfo=UTC)


def at(clock: str) -> datetime:
    """A time of the scripted day: "12:30:20"."""
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    return datetime(2026, 11, 30, hours, minutes, seconds, tzinfo=UTC)


# (landed, consented, joined, ended, outcome, step, session number)
HISTORY: list[tuple[str, str | None, str | None, str | None, str | None, str, int | None]] = [
    ("11:00:00", "11:00:10", "11:00:20", "11:01:00", "started", "started", 1),  # waited 40
    ("11:00:30", "11:00:40", "11:00:50", "11:01:00", "started", "started", 1),  # 10
    ("11:10:00", "11:10:05", "11:10:10", "11:15:15", "timeout", "left", None),  # 305
    ("11:20:00", None, None, "11:20:00", "paused", "left", None),
    # the last hour (from 12:00:00)
    ("12:30:00", "12:30:10", "12:30:20", "12:31:20", "left", "left", None),  # 60
    ("12:40:00", "12:40:05", "12:40:15", "12:42:00", "started", "started", 2),  # 105
    ("12:41:00", "12:41:10", "12:41:30", "12:42:00", "started", "started", 2),  # 30
    ("12:50:00", None, None, None, None, "landed", None),  # reading the consent
    ("12:55:00", "12:55:05", "12:55:30", None, None, "joining", None),  # waiting 270
    ("12:58:00", "12:58:10", "12:58:40", None, None, "pending", None),  # waiting 80
    ("12:59:30", "12:59:40", None, "12:59:40", "full", "left", None),
]
SESSIONS = {1: "11:01:00", 2: "12:42:00"}  # started at


async def script(database_url: str, campaign_id: int) -> None:
    db = Database(async_url(database_url))
    try:
        async with db.session() as session:
            ids = {}
            for number, started in SESSIONS.items():
                record = OTreeSession(
                    campaign_id=campaign_id,
                    number=number,
                    mastok_id=f"mk:stats:{number}",
                    otree_code=f"code{number}",
                    size=2,
                    created_at=at(started),
                )
                session.add(record)
                await session.flush()
                ids[number] = record.id
            for landed, consented, joined, ended, outcome, step, number in HISTORY:
                session.add(
                    Participant(
                        campaign_id=campaign_id,
                        token=secrets.token_hex(8),
                        browser_id=secrets.token_hex(4),
                        identity="P9" if landed == "12:55:00" else None,
                        step=step,
                        outcome=outcome,
                        group_label="default" if joined else None,
                        created_at=at(landed),
                        consented_at=at(consented) if consented else None,
                        queued_at=at(joined) if joined else None,
                        ended_at=at(ended) if ended else None,
                        session_id=ids[number] if number else None,
                    )
                )
            await session.execute(running(campaign_id))  # people wait in its room
            await session.commit()
    finally:
        await db.close()


def expected_arrivals() -> list[list[Any]]:
    """The 60 minutes up to 13:00 (12:01 to 13:00), one visit at each arrival of the hour."""
    arrived = {"12:30", "12:40", "12:41", "12:50", "12:55", "12:58", "12:59"}
    minutes = [f"{12 + (m // 60)}:{m % 60:02d}" for m in range(1, 61)]
    return [[f"2026-11-30T{m}:00+00:00", 1 if m in arrived else 0] for m in minutes]


async def test_stats_of_a_scripted_history(make_client: ClientFactory, database_url: str) -> None:
    client = make_client(clock=ManualClock(NOW))
    created = client.post("/api/campaigns", json=campaign_input("stats"))
    assert created.status_code == 201, created.text
    campaign_id = await _campaign_id(database_url, "stats")
    await script(database_url, campaign_id)

    answer = client.get("/api/campaigns/stats/stats")
    assert answer.status_code == 200, answer.text
    stats = answer.json()

    none = {o: 0 for o in ("timeout", "completed", "rejected", "not_ready", "missing_id")}
    none |= {"landing_failed": 0, "redirected": 0, "away": 0}
    assert stats["funnel"] == {
        "arrived": 11,
        "consented": 9,
        "joined": 8,
        "started": 4,
        "in_room": 3,
    }
    assert stats["outcomes"] == {
        **none,
        "started": 4,
        "timeout": 1,
        "paused": 1,
        "left": 1,
        "full": 1,
    }
    assert stats["last_hour"] == {
        "funnel": {"arrived": 7, "consented": 6, "joined": 5, "started": 2, "in_room": 3},
        "outcomes": {**none, "paused": 0, "started": 2, "left": 1, "full": 1},
    }
    # Waits 10, 30, 40, 60, 105, 305: median between 40 and 60; p95 at rank 4.75 of 0..5.
    assert stats["wait_seconds"] == {"count": 6, "median": 50.0, "p95": 255.0, "max": 305}
    # Up to 305 s: 30-second bins, 0 to 300.
    assert stats["wait_histogram"] == {
        "bin_seconds": 30,
        "bins": [0, 30, 60, 90, 120, 150, 180, 210, 240, 270, 300],
        "started": [1, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0],  # 10; 30, 40; 105
        "gave_up": [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1],  # 60 left; 305 timeout
    }
    # Session 1: first joined 11:00:20, started 11:01:00; session 2: first joined 12:40:15
    # (after session 1 started), started 12:42:00.
    assert stats["fill_seconds"] == {"count": 2, "median": 72.5, "last": [40, 105]}
    assert stats["arrivals_per_minute"] == expected_arrivals()
    assert stats["waiting"] == [
        {
            "group": "default",
            "step": "joining",
            "waited_seconds": 270,
            "joined": "2026-11-30T12:55:30+00:00",
            "present": False,  # restored from the database: away until they come back
        },
        {
            "group": "default",
            "step": "pending",
            "waited_seconds": 80,
            "joined": "2026-11-30T12:58:40+00:00",
            "present": False,
        },
    ]
    with_ids = client.get("/api/campaigns/stats/stats?identities=1").json()
    assert [person["identity"] for person in with_ids["waiting"]] == ["P9", None]


def test_stats_of_a_campaign_without_visits(client: Any) -> None:
    assert client.post("/api/campaigns", json=campaign_input("empty")).status_code == 201
    stats = client.get("/api/campaigns/empty/stats").json()
    assert stats["funnel"] == {
        "arrived": 0,
        "consented": 0,
        "joined": 0,
        "started": 0,
        "in_room": 0,
    }
    assert stats["wait_seconds"] == {"count": 0, "median": None, "p95": None, "max": None}
    assert stats["fill_seconds"] == {"count": 0, "median": None, "last": []}
    assert len(stats["arrivals_per_minute"]) == 60
    assert stats["waiting"] == []
    assert client.get("/api/campaigns/nope/stats").status_code == 404


def running(campaign_id: int) -> Update:
    """The campaign Running: a room built for a campaign paused or completed ends the visits
    of whoever is in it (as the pause would have), and these wait in its room."""
    return update(Campaign).where(Campaign.id == campaign_id).values(state="Running")


async def _campaign_id(database_url: str, namespace: str) -> int:
    db = Database(async_url(database_url))
    try:
        async with db.session() as session:
            found = await session.scalar(select(Campaign.id).where(Campaign.namespace == namespace))
            assert found is not None
            return int(found)
    finally:
        await db.close()


async def test_the_dashboard_gives_each_campaign_its_funnel_and_sparkline(
    make_client: ClientFactory, database_url: str
) -> None:
    client = make_client(clock=ManualClock(NOW))
    assert client.post("/api/campaigns", json=campaign_input("stats")).status_code == 201
    await script(database_url, await _campaign_id(database_url, "stats"))
    (item,) = client.get("/api/dashboard").json()["campaigns"]["items"]
    assert item["namespace"] == "stats"
    assert item["funnel"]["started"] == 4
    assert item["arrivals_per_minute"] == expected_arrivals()
    points = item["sparkline"].split(" ")
    assert len(points) == 60
    assert points[0] == "0.0,23.0" and points[-1] == "120.0,23.0"  # no arrival: the bottom
    assert points[29] == f"{29 * 120 / 59:.1f},1.0"  # 12:30, the busiest minute: the top
    page = client.get("/dashboard").text
    assert "11 → 9 → 8 → 4 (4 ended otherwise)" in page
    assert 'class="sparkline"' in page


async def test_who_waits_comes_in_pool_order_whatever_the_rows_order(
    make_client: ClientFactory, database_url: str
) -> None:
    """Pool order is when each joined the pools, then the row's id: the row written first
    (someone resumed, say) can have joined later."""
    client = make_client(clock=ManualClock(NOW))
    order = campaign_input("order", per_session=4)  # no pool of the three to start
    assert client.post("/api/campaigns", json=order).status_code == 201
    campaign_id = await _campaign_id(database_url, "order")
    db = Database(async_url(database_url))
    try:
        async with db.session() as session:
            for name, joined in (("late", "12:59:00"), ("early", "12:50:00"), ("tie", "12:59:00")):
                session.add(
                    Participant(
                        campaign_id=campaign_id,
                        token=name,
                        identity=name,
                        step="joining",
                        group_label="default",
                        created_at=at("12:40:00"),
                        queued_at=at(joined),
                    )
                )
            await session.execute(running(campaign_id))  # people wait in its room
            await session.commit()
    finally:
        await db.close()
    waiting = client.get("/api/campaigns/order/stats?identities=1").json()["waiting"]
    assert [(p["identity"], p["waited_seconds"]) for p in waiting] == [
        ("early", 600),
        ("late", 60),
        ("tie", 60),
    ]


def test_a_pools_fill_time_and_the_last_ten() -> None:
    """Twelve sessions, one a minute from 12:01; each pool's first member joined 20 s before
    its start, but the third's joined before the second started: its fill counts from then."""
    rows = [
        (n, at(f"12:{n:02d}:00"), at(f"12:{n - 1:02d}:40") if n != 3 else at("12:01:30"))
        for n in range(1, 13)
    ]
    fills = _fills(rows)
    assert fills["count"] == 12
    assert fills["last"] == [60] + [20] * 9  # sessions 3 to 12: the third from 12:02:00
    assert _fills(rows[:3])["last"] == [20, 20, 60]
    assert fills["median"] == 20.0
