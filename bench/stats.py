"""Figures from the load generator's records: percentiles, rates, pools."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any


def percentile(values: Sequence[float], p: float) -> float | None:
    """Linear interpolation between closest ranks (as numpy's default); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: Sequence[float], digits: int = 2) -> dict[str, Any]:
    """n, p50, p95, p99, max (milliseconds in, milliseconds out)."""
    out: dict[str, Any] = {"n": len(values)}
    for name, p in (("p50", 50), ("p95", 95), ("p99", 99)):
        value = percentile(values, p)
        out[name] = None if value is None else round(value, digits)
    out["max"] = round(max(values), digits) if values else None
    return out


def steady_rate(done_times: Iterable[float], trim: float = 0.1) -> float | None:
    """Completions per second between the first and last `trim` of completions (ms times):
    the rate once the generator is up to speed and before the tail drains."""
    times = sorted(done_times)
    if len(times) < 10:
        return None
    lo, hi = int(len(times) * trim), int(len(times) * (1 - trim)) - 1
    span = (times[hi] - times[lo]) / 1000
    return (hi - lo) / span if span > 0 else None


def errors(records: Iterable[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for r in records:
        if r.get("err"):
            counts[str(r["err"])[:80]] += 1
    return dict(counts)


def session_of(url: str) -> str:
    """The stub's participant codes are `{session}_{n}`: the session of a Starting URL."""
    return url.rsplit("/", 1)[-1].rsplit("_", 1)[0]


def started(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        r
        for r in records
        if r.get("starting") is not None and r.get("agree") is not None and r.get("url")
    ]


def pools(
    records: Iterable[dict[str, Any]], session: Any = session_of
) -> dict[str, list[dict[str, Any]]]:
    """Participants who reached Starting, grouped by the session they were sent to."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in started(records):
        grouped[session(r["url"])].append(r)
    return dict(grouped)


def pool_latencies(grouped: dict[str, list[dict[str, Any]]]) -> list[tuple[float, float]]:
    """(the pool's last Agree, ms from it to this member's Starting) for every member."""
    out: list[tuple[float, float]] = []
    for members in grouped.values():
        last = max(m["agree"] for m in members)
        out.extend((last, m["starting"] - last) for m in members)
    return out


def per_second(times_ms: Iterable[float]) -> list[int]:
    """Counts in each one-second bucket from the first time on."""
    times = sorted(times_ms)
    if not times:
        return []
    buckets = [0] * (int((times[-1] - times[0]) // 1000) + 1)
    for t in times:
        buckets[int((t - times[0]) // 1000)] += 1
    return buckets
