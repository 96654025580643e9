"""A campaign's figures, read from its participants' records with indexed aggregate queries.

The funnel (arrived, consented, joined the pools, started) and every outcome, for the whole
campaign and for the last hour; waits in the pools (median, 95th percentile, max, and a
histogram of those who started apart from those who timed out or left); how long each pool
took to fill; arrivals per minute over the last hour; who is in the pools now.

The database does the counting: waits come back as one row per outcome and whole second,
arrivals as one row per minute, so a campaign of 100,000 visits costs a few aggregate scans of
an index, not 100,000 rows in Python. Each query filters on `campaign_id` first and is served
by an index (`tests/campaigns/test_stats_plans.py` reads the plans on both databases):
`ix_participants_campaign_step`, `..._created_at`, `..._queued_at` and `ix_participants_session_id`.

Percentiles interpolate linearly between ranks (the median of 10 s and 20 s is 15 s); a wait
is counted in whole seconds, from joining the pools to the visit's end.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Float, Integer, Select, cast, func, literal, select

from mastok.clock import aware
from mastok.db import Database
from mastok.db.tables import OTreeSession, Participant
from mastok.states import Outcome, Step

WINDOW = timedelta(hours=1)  # "the last hour" of the funnel
ARRIVAL_MINUTES = 60  # arrivals per minute over this many minutes, this one included
LAST_FILLS = 10
HISTOGRAM_BINS = 12
GAVE_UP = (Outcome.TIMEOUT, Outcome.LEFT)
POOLS = (Step.JOINING, Step.PENDING)
NICE_WIDTHS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
AnySelect = Select[*tuple[Any, ...]]


@dataclass(frozen=True)
class Queries:
    """The statements behind a campaign's figures at a moment, for one SQL dialect."""

    funnel: AnySelect  # per outcome: visits, consented, joined
    recent: AnySelect  # the same for visits that arrived within WINDOW
    waits: AnySelect  # per outcome and whole second waited: visits
    arrivals: AnySelect  # per minute: visits that arrived
    fills: AnySelect  # per session: number, start, its members' first time in the pools
    waiting: AnySelect  # who is in the pools (put in pool order in Python, see below)

    def all(self) -> dict[str, AnySelect]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def minute_of(moment: datetime) -> datetime:
    return aware(moment).replace(second=0, microsecond=0)


def queries(campaign_id: int, now: datetime, dialect: str) -> Queries:
    """`dialect`: SQLAlchemy's name of the database's ("sqlite" or "postgresql")."""
    p = Participant
    of_campaign = p.campaign_id == campaign_id
    counts = (func.count(), func.count(p.consented_at), func.count(p.queued_at))
    funnel = select(p.outcome, *counts).where(of_campaign).group_by(p.outcome)
    recent = (
        select(p.outcome, *counts)
        .where(of_campaign, p.created_at >= now - WINDOW)
        .group_by(p.outcome)
    )
    second = _whole_seconds(dialect).label("second")
    waits = (
        select(p.outcome, second, func.count())
        .where(of_campaign, p.queued_at.is_not(None), p.ended_at.is_not(None))
        .group_by(p.outcome, second)
    )
    minute = _minute(dialect).label("minute")
    first_minute = minute_of(now) - timedelta(minutes=ARRIVAL_MINUTES - 1)
    arrivals = (
        select(minute, func.count())
        .where(of_campaign, p.created_at >= first_minute)
        .group_by(minute)
    )
    s = OTreeSession
    fills = (
        (
            select(s.number, s.created_at, func.min(p.queued_at))
            .join(p, p.session_id == s.id)
            .where(s.campaign_id == campaign_id)
            .group_by(s.id, s.number, s.created_at)
            .order_by(s.number)
        )
        if dialect == "sqlite"
        else _fills_postgresql(campaign_id)
    )
    # No ORDER BY: SQLite would rather read every visit of the campaign in queued_at order
    # than sort the few people in the pools found through the step's index.
    waiting = select(p.token, p.group_label, p.step, p.queued_at, p.identity, p.id).where(
        of_campaign, p.step.in_(POOLS)
    )
    return Queries(funnel, recent, waits, arrivals, fills, waiting)


def _fills_postgresql(campaign_id: int) -> AnySelect:
    """The fills with the campaign's members grouped by session first: joined as SQLite's
    are, PostgreSQL reads every visit of every campaign (the whole table, or the whole
    session_id index) to match them to the sessions. SQLite is better off as it is: it looks
    up each session's members by session_id, twice as fast as this shape at 100,000 visits."""
    p, s = Participant, OTreeSession
    first = (
        select(p.session_id, func.min(p.queued_at).label("first_queued"))
        .where(p.campaign_id == campaign_id, p.session_id.is_not(None))
        .group_by(p.session_id)
        .subquery()
    )
    return (
        select(s.number, s.created_at, first.c.first_queued)
        .join(first, first.c.session_id == s.id)
        .where(s.campaign_id == campaign_id)
        .order_by(s.number)
    )


def _whole_seconds(dialect: str) -> ColumnElement[int]:
    """ended_at - queued_at in whole seconds (SQLite keeps times as text: julianday's days,
    nudged by a millisecond against floating point's 29.9999 for 30)."""
    p = Participant
    if dialect == "sqlite":
        days = func.julianday(p.ended_at) - func.julianday(p.queued_at)
        return cast(days * literal(86400.0, Float) + literal(0.001, Float), Integer)
    return cast(func.floor(func.date_part("epoch", p.ended_at - p.queued_at)), Integer)


def _minute(dialect: str) -> ColumnElement[str]:
    """A visit's minute of arrival in UTC, as text: 2026-11-30T12:05."""
    created = Participant.created_at
    if dialect == "sqlite":
        return func.strftime("%Y-%m-%dT%H:%M", created)
    return func.to_char(func.timezone("UTC", created), 'YYYY-MM-DD"T"HH24:MI')


async def campaign_stats(db: Database, campaign_id: int, now: datetime) -> dict[str, Any]:
    """Every figure of the campaign at `now` (JSON-ready); `waiting` entries carry their
    `token` and `identity` for the caller to keep or drop."""
    found = queries(campaign_id, now, db.engine.dialect.name)
    async with db.engine.connect() as connection:
        rows = {
            name: (await connection.execute(statement)).all()
            for name, statement in found.all().items()
        }
    funnel, outcomes = _funnel(rows["funnel"])
    recent_funnel, recent_outcomes = _funnel(rows["recent"])
    waits = {(outcome, int(second)): int(n) for outcome, second, n in rows["waits"]}
    return {
        "at": now.isoformat(),
        "funnel": funnel,
        "outcomes": outcomes,
        "last_hour": {"funnel": recent_funnel, "outcomes": recent_outcomes},
        "wait_seconds": _summary(_counts(waits, None)),
        "wait_histogram": histogram(
            {
                "started": _counts(waits, (Outcome.STARTED,)),
                "gave_up": _counts(waits, GAVE_UP),
            }
        ),
        "fill_seconds": _fills(rows["fills"]),
        "arrivals_per_minute": _arrivals(rows["arrivals"], now),
        "waiting": [
            {
                "token": token,
                "identity": identity,
                "group": group,
                "step": step,
                "waited_seconds": _seconds(now - aware(queued)) if queued else 0,
                "joined": aware(queued).isoformat() if queued else None,
            }
            for token, group, step, queued, identity, _ in sorted(rows["waiting"], key=_pool_order)
        ],
    }


async def campaign_summary(db: Database, campaign_id: int, now: datetime) -> dict[str, Any]:
    """The dashboard's line of a campaign: its funnel and outcomes, arrivals per minute."""
    found = queries(campaign_id, now, db.engine.dialect.name)
    async with db.engine.connect() as connection:
        funnel_rows = (await connection.execute(found.funnel)).all()
        arrival_rows = (await connection.execute(found.arrivals)).all()
    funnel, outcomes = _funnel(funnel_rows)
    return {
        "funnel": funnel,
        "outcomes": outcomes,
        "arrivals_per_minute": _arrivals(arrival_rows, now),
    }


def sparkline(counts: list[int], width: int = 120, height: int = 24) -> str:
    """An SVG polyline's points for counts over time, the largest at the top."""
    if not counts:
        return ""
    top = max(max(counts), 1)
    step = width / max(len(counts) - 1, 1)
    return " ".join(
        f"{i * step:.1f},{height - (n / top) * (height - 2) - 1:.1f}" for i, n in enumerate(counts)
    )


def _funnel(rows: Iterable[Any]) -> tuple[dict[str, int], dict[str, int]]:
    funnel = {"arrived": 0, "consented": 0, "joined": 0, "started": 0}
    outcomes = {outcome.value: 0 for outcome in Outcome}
    for outcome, visits, consented, joined in rows:
        funnel["arrived"] += visits
        funnel["consented"] += consented
        funnel["joined"] += joined
        if outcome is not None:
            outcomes[outcome] = outcomes.get(outcome, 0) + visits
    funnel["started"] = outcomes[Outcome.STARTED]
    funnel["in_room"] = funnel["arrived"] - sum(outcomes.values())  # no outcome yet
    return funnel, outcomes


def _counts(
    waits: Mapping[tuple[str, int], int], outcomes: tuple[Outcome, ...] | None
) -> dict[int, int]:
    """Visits per whole second waited, of these outcomes (None: every outcome)."""
    counts: dict[int, int] = {}
    for (outcome, second), n in waits.items():
        if outcomes is None or outcome in outcomes:
            counts[second] = counts.get(second, 0) + n
    return counts


def percentile(counts: Mapping[int, int], fraction: float) -> float | None:
    """The `fraction` percentile of values given as value -> how many, interpolated linearly
    between the two ranks around it; None without values."""
    total = sum(counts.values())
    if total == 0:
        return None
    rank = (total - 1) * fraction
    low, high = math.floor(rank), math.ceil(rank)
    values = _value_at(counts, (low, high))
    return round(values[0] + (values[1] - values[0]) * (rank - low), 1)


def _value_at(counts: Mapping[int, int], ranks: tuple[int, int]) -> tuple[int, int]:
    """The values at these 0-based ranks of the sorted values."""
    found: list[int] = []
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        while len(found) < len(ranks) and ranks[len(found)] < seen:
            found.append(value)
    return found[0], found[1]


def _summary(counts: Mapping[int, int]) -> dict[str, Any]:
    return {
        "count": sum(counts.values()),
        "median": percentile(counts, 0.5),
        "p95": percentile(counts, 0.95),
        "max": max(counts) if counts else None,
    }


def histogram(series: Mapping[str, Mapping[int, int]]) -> dict[str, Any]:
    """Series of waits in bins of a width that keeps them to about HISTOGRAM_BINS: each bin
    counts the waits from its start to the next one's (`bins`: their starts, in seconds)."""
    top = max((max(counts) for counts in series.values() if counts), default=0)
    width = next((w for w in NICE_WIDTHS if (top + 1) / w <= HISTOGRAM_BINS), NICE_WIDTHS[-1])
    size = top // width + 1
    result: dict[str, Any] = {"bin_seconds": width, "bins": [i * width for i in range(size)]}
    for name, counts in series.items():
        bins = [0] * size
        for second, n in counts.items():
            bins[second // width] += n
        result[name] = bins
    return result


def _fills(rows: Iterable[Any]) -> dict[str, Any]:
    """A pool's time to fill: from when it could begin (its first member joined the pools, or
    the session before it started, whichever is later) to its session's start."""
    fills: list[int] = []
    previous: datetime | None = None
    for _, started, first_queued in rows:
        started = aware(started)
        began = aware(first_queued) if first_queued is not None else started
        if previous is not None and previous > began:
            began = previous
        fills.append(_seconds(started - began))
        previous = started
    counts: dict[int, int] = {}
    for fill in fills:
        counts[fill] = counts.get(fill, 0) + 1
    return {"count": len(fills), "median": percentile(counts, 0.5), "last": fills[-LAST_FILLS:]}


def _arrivals(rows: Iterable[Any], now: datetime) -> list[list[Any]]:
    """[minute, visits] for each of the last ARRIVAL_MINUTES minutes, oldest first."""
    counts = {str(minute): int(n) for minute, n in rows}
    last = minute_of(now)
    result: list[list[Any]] = []
    for back in range(ARRIVAL_MINUTES - 1, -1, -1):
        minute = last - timedelta(minutes=back)
        result.append([minute.isoformat(), counts.get(minute.strftime("%Y-%m-%dT%H:%M"), 0)])
    return result


def _pool_order(row: Any) -> tuple[bool, datetime, int]:
    """Pools are ordered by when each joined them, then by id."""
    queued = row.queued_at
    return queued is None, aware(queued) if queued is not None else datetime.min, row.id


def _seconds(span: timedelta) -> int:
    return max(int(span.total_seconds()), 0)
