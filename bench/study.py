"""Scenario 12: a simulated study, measured: Poisson arrivals at several rates into campaigns
with a waiting limit and a ready check, some people leaving and some missing the check.

Each rate gets campaigns of its own (all on one mastok, at the same time: a few arrivals a
second in all, far from any limit of the server). In each campaign people arrive with
exponential inter-arrival times (a Poisson process) for `seconds`; the harness draws the
schedule and each person's conduct from one seed, so a run is reproducible: a share leaves at a
random time while waiting (most with `Leave`, some by closing the page), a share never answers
its `ReadyCheck`, everyone else answers it within a couple of seconds. Per rate: arrivals,
outcomes by kind, waits (Agree to the end of the wait) for those who started and those who
timed out, and the largest overshoot of the waiting limit among those who did not start. Every
participant must end exactly one way, as its page saw it and as mastok recorded it.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

from bench import loadgen, stats
from bench.scenarios import PER_SESSION, Context, client_ceiling, mastok_on, measure
from bench.servers import Mastok

RATES = (0.04, 0.1, 0.5)  # arrivals a second into each campaign: pools fill in ~100, 40, 8 s
CAMPAIGNS_PER_RATE = 6
SECONDS = 120.0  # arrivals for this long; then everyone's wait runs out
WAITING_LIMIT_MIN = 1  # minutes, the shortest a campaign takes (mastok/campaigns/rules.py)
READY_CHECK_S = 10
LEAVE_AFTER_S = 5
LEAVE_SHARE = 0.15  # of arrivals: leave while waiting (two in three with Leave, one closes)
SILENT_SHARE = 0.10  # of arrivals: never answer a ReadyCheck
READY_MS = (200, 2500)  # how long the others take to answer one
SEED = 12
OVERSHOOT_TARGET_S = 2.0  # bench/README.md says why

# What a page sees (its Disconnect reason) -> the outcome mastok records.
OUTCOMES = {"Start": "started", "Timeout": "timeout", "NotReady": "not_ready", "Left": "left"}
# A page closed by its person leaves mastok to decide: away, unless its limit or a ready
# check it can no longer answer came first.
CLOSED_OUTCOMES = ("away", "timeout", "not_ready")
# Every outcome owed an exit has one (`away` has none: nobody is there to be told).
EXITS = {o: {"code": o.upper(), "url": None} for o in ("timeout", "not_ready", "left")}


@dataclass(frozen=True)
class Plan:
    """The study's settings: what is simulated, and how long."""

    rates: tuple[float, ...] = RATES
    campaigns: int = CAMPAIGNS_PER_RATE
    seconds: float = SECONDS
    seed: int = SEED
    leave_share: float = LEAVE_SHARE
    silent_share: float = SILENT_SHARE

    @property
    def limit_s(self) -> float:
        return WAITING_LIMIT_MIN * 60.0

    @property
    def flow_timeout_s(self) -> float:
        """Past the limit, a few ready checks and a margin: a flow still open then is lost."""
        return self.limit_s + 3 * READY_CHECK_S + 30


def study(ctx: Context, plan: Plan, backend: str = "sqlite") -> dict[str, Any]:
    """Scenario 12: every rate's campaigns on one mastok, at once; figures per rate."""
    load_before = [round(x, 2) for x in os.getloadavg()]
    ctx.log(
        f"study: rates {', '.join(f'{r:g}' for r in plan.rates)}/s into {plan.campaigns} "
        f"campaigns each for {plan.seconds:g} s, waiting limit {plan.limit_s:g} s, ready "
        f"check {READY_CHECK_S} s, {backend}"
    )
    with mastok_on(ctx, backend, "mastok-study") as (mastok, stub):
        slugs = _campaigns(mastok, plan)
        people = schedule(plan, slugs)
        ctx.log(f"  {len(people)} arrivals scheduled (seed {plan.seed})")
        job = {
            "kind": "study",
            "url": mastok.join_url,
            "origin": mastok.origin,
            "participants": people,
            "flow_timeout_s": plan.flow_timeout_s,
        }
        timeout = plan.seconds + plan.flow_timeout_s + 60
        result, meter = measure(ctx, job, timeout, 1, server=mastok.pid, stub=stub.pid)
        visits = _visits(mastok, [s for per_rate in slugs.values() for s in per_rate])
    records = result["records"]
    rates = [
        _rate_figures(rate, plan, [r for r in records if r["slug"] in slugs[rate]], visits)
        for rate in plan.rates
    ]
    for figures in rates:
        ctx.log(_summary_line(figures))
    return {
        "backend": backend,
        "per_session": PER_SESSION,
        "rates_per_s": list(plan.rates),
        "campaigns_per_rate": plan.campaigns,
        "seconds": plan.seconds,
        "seed": plan.seed,
        "waiting_limit_s": plan.limit_s,
        "ready_check_s": READY_CHECK_S,
        "leave_after_s": LEAVE_AFTER_S,
        "leave_share": plan.leave_share,
        "silent_share": plan.silent_share,
        "target_overshoot_s": OVERSHOOT_TARGET_S,
        "rates": rates,
        "worst_overshoot_s": _worst(f["overshoot_s"] for f in rates),
        "lost": sum(f["lost"] for f in rates),
        "passed": all(f["passed"] for f in rates),
        "server_cpu_share": meter.shares().get("server"),
        "client_cpu_share": loadgen.client_share(result),
        "load_average": {"before": load_before, "after": [round(x, 2) for x in os.getloadavg()]},
        "client_ceiling": client_ceiling(ctx),
    }


def _campaigns(mastok: Mastok, plan: Plan) -> dict[float, list[str]]:
    """Each rate's campaigns, with the limit, the ready check and an exit for each outcome
    (so every ending a page sees is named by an `Exit` frame)."""
    fields = {
        "per_session": PER_SESSION,
        "waiting_limit": WAITING_LIMIT_MIN,
        "ready_check_seconds": READY_CHECK_S,
        "leave_after_seconds": LEAVE_AFTER_S,
        "exits": EXITS,
    }
    return {
        rate: mastok.create_campaigns(f"study{k}_", plan.campaigns, **fields)
        for k, rate in enumerate(plan.rates)
    }


def schedule(plan: Plan, slugs: dict[float, list[str]]) -> list[dict[str, Any]]:
    """Everyone's arrival (ms from the start) and conduct, drawn from the plan's seed: each
    campaign a Poisson process at its rate for `plan.seconds`."""
    draw = random.Random(plan.seed)
    people: list[dict[str, Any]] = []
    for rate, campaigns in slugs.items():
        for slug in campaigns:
            at = draw.expovariate(rate)
            while at < plan.seconds:
                people.append({"slug": slug, "at_ms": round(at * 1000), **_conduct(draw, plan)})
                at += draw.expovariate(rate)
    people.sort(key=lambda p: p["at_ms"])
    return [{"i": i, **p} for i, p in enumerate(people)]


def _conduct(draw: random.Random, plan: Plan) -> dict[str, Any]:
    """One person's role, when it would leave (after Agree) and how long it takes to answer a
    ReadyCheck; every draw is made whatever the role, so roles do not shift the schedule."""
    u = draw.random()
    leave_ms = round(draw.uniform(LEAVE_AFTER_S + 0.5, plan.limit_s - 1) * 1000)
    ready_ms = round(draw.uniform(*READY_MS))
    if u < plan.leave_share * 2 / 3:
        role = "leave"
    elif u < plan.leave_share:
        role = "close"
    elif u < plan.leave_share + plan.silent_share:
        role = "silent"
    else:
        role = "stay"
    return {"role": role, "leave_ms": leave_ms, "ready_ms": ready_ms}


def _visits(mastok: Mastok, slugs: list[str]) -> dict[str, list[dict[str, Any]]]:
    """mastok's records of every visit to the study's campaigns, by browser id."""
    by_browser: dict[str, list[dict[str, Any]]] = {}
    with mastok.admin() as admin:
        for slug in slugs:
            url: str | None = f"/api/campaigns/{slug}/participants?limit=1000"
            while url:
                page = admin.get(url)
                page.raise_for_status()
                body = page.json()
                for visit in body["participants"]:
                    by_browser.setdefault(visit["browser_id"], []).append(visit)
                url = body["next"]
    return by_browser


def outcome_of(record: dict[str, Any]) -> str:
    """The one way this participant's visit ended, as its page saw it ("lost": none, "double":
    more than one)."""
    seen = record.get("outcomes") or []
    if len(seen) != 1:
        return "lost" if not seen else "double"
    return "closed" if seen[0] == "closed" else OUTCOMES.get(seen[0], seen[0])


def waited_s(record: dict[str, Any]) -> float | None:
    """Agree to the end of the wait: Starting, the Disconnect, or the page's own close."""
    end = record.get("starting") or record.get("disconnect")
    if end is None or record.get("agree") is None:
        return None
    return (end - record["agree"]) / 1000


def _agrees(record: dict[str, Any], visits: list[dict[str, Any]]) -> bool:
    """The page's and mastok's outcome are one and the same, and mastok has one visit."""
    if len(visits) != 1 or visits[0]["outcome"] is None:
        return False
    mine, theirs = outcome_of(record), visits[0]["outcome"]
    return theirs in CLOSED_OUTCOMES if mine == "closed" else mine == theirs


def _rate_figures(
    rate: float, plan: Plan, records: list[dict[str, Any]], visits: dict[str, list[Any]]
) -> dict[str, Any]:
    outcomes = Counter(outcome_of(r) for r in records)
    waits: dict[str, list[float]] = {}
    for r in records:
        wait = waited_s(r)
        if wait is not None:
            waits.setdefault(outcome_of(r), []).append(wait)
    ended = [w for outcome, ws in waits.items() if outcome != "started" for w in ws]
    overshoot = _past(ended, plan.limit_s)
    server_waits = [
        v["waited_seconds"]
        for r in records
        for v in visits.get(r["browser_id"], [])
        if v["outcome"] != "started" and v["waited_seconds"] is not None
    ]
    mismatched = [r["i"] for r in records if not _agrees(r, visits.get(r["browser_id"], []))]
    lost = outcomes["lost"] + outcomes["double"] + len(mismatched)
    arrivals = len(records)
    return {
        "rate_per_s": rate,
        "campaigns": plan.campaigns,
        "arrivals": arrivals,
        "roles": dict(Counter(r["role"] for r in records)),
        "outcomes": dict(outcomes),
        "server_outcomes": dict(
            Counter(v["outcome"] for r in records for v in visits.get(r["browser_id"], []))
        ),
        "timeout_share": round(outcomes["timeout"] / arrivals, 3) if arrivals else None,
        "sessions": len({stats.session_of(r["url"]) for r in records if r.get("url")}),
        "ready_checks": sum(r["checks"] for r in records),
        "started_wait_s": stats.summary(waits.get("started", [])),
        "timeout_wait_s": stats.summary(waits.get("timeout", [])),
        "overshoot_s": round(overshoot, 2),
        "started_overshoot_s": _past(waits.get("started", []), plan.limit_s),
        "server_overshoot_s": _past(server_waits, plan.limit_s),
        "lost": lost,
        "mismatched": mismatched[:20],
        "refused": dict(Counter(x for r in records for x in r.get("refused", []))),
        "errors": stats.errors(records),
        "passed": overshoot <= OVERSHOOT_TARGET_S and lost == 0 and not stats.errors(records),
    }


def _past(waits: list[float], limit: float) -> float:
    """The longest wait past the limit, seconds (0: nobody waited past it)."""
    return round(max(max(waits, default=limit) - limit, 0.0), 2)


def _worst(values: Any) -> float | None:
    return max(values, default=None)


def _summary_line(f: dict[str, Any]) -> str:
    started, timed_out = f["started_wait_s"], f["timeout_wait_s"]
    return (
        f"  {f['rate_per_s']:g}/s: {f['arrivals']} arrivals, {f['outcomes']}; timeouts "
        f"{f['timeout_share']:.0%}; started wait p50/p95/max {started['p50']}/{started['p95']}/"
        f"{started['max']} s, timed out {timed_out['p50']}/{timed_out['p95']}/"
        f"{timed_out['max']} s; overshoot {f['overshoot_s']} s (server "
        f"{f['server_overshoot_s']} s); lost {f['lost']}"
    )
