"""Scenario 7: participants' placement latency with 500 supervisors watching, against none.

The same offered load (participants arriving at a constant rate into one campaign, pools of 4)
on one server, in `ROUNDS` rounds: each round a leg into a campaign nobody watches, then a leg
into another watched by `supervisors` supervisor sockets (the admin's credentials, each reading
every frame, in a load generator process of their own), who leave again at the round's end.
The placement latencies (Agree -> Instructions, and a pool's last Agree -> each member's
Starting) of all unwatched legs pooled against all watched legs pooled, and their ratio: what
being watched costs the people being placed. Alternating legs keeps the machine's drift out of
the ratio, and pooling them makes each p99 the 1% tail of 900 placements, not of 300: one
round's p99 ratio moved 1.5x from run to run on a quiet machine (bench/README scenario 7).
A watched leg of `WARM_UP` participants comes first, not measured, as `warm_up` warms the rest.
After each watched leg every supervisor must show the campaign's current sizes.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from typing import Any

from bench import loadgen, servers, stats
from bench.scenarios import (
    PER_SESSION,
    Context,
    client_ceiling,
    join_figures,
    join_job,
    mastok_on,
    measure,
    placement_samples,
    settle,
    warm_up,
)
from bench.servers import Mastok, Server

SUPERVISORS = 500
PARTICIPANTS = 300  # a leg's
RATE = 20.0  # participants a second, into the one campaign
ROUNDS = 3
WARM_UP = 60  # participants of the watched leg before the rounds, not measured
TARGET_RATIO = 2.0  # p99 with supervisors at most twice the p99 without
LATENCIES = ("agree_to_instructions_ms", "last_agree_to_starting_ms")


def placement(
    ctx: Context,
    supervisors: int = SUPERVISORS,
    participants: int = PARTICIPANTS,
    rate: float = RATE,
    rounds: int = ROUNDS,
) -> dict[str, Any]:
    """Scenario 7: placement latency without supervisors and with `supervisors` watching,
    alternating, `rounds` times."""
    participants = max(PER_SESSION, participants // PER_SESSION * PER_SESSION)
    ctx.log(
        f"placement: {rounds} rounds of {participants} participants at {rate:g}/s, "
        f"0 then {supervisors} watching"
    )
    legs: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
    with mastok_on(ctx, "sqlite", "mastok-placement") as (mastok, stub):
        warm_up(ctx, mastok)
        slugs = mastok.create_campaigns("place", 2 * rounds + 1)
        # The watched path warm as the unwatched one is (warm_up): in one full run the first
        # watched leg alone read x11 at p99, the rounds after it x1.6 and x1.9.
        _watched_leg(ctx, mastok, stub, slugs.pop(), WARM_UP, rate, supervisors)
        for quiet, watched in zip(slugs[::2], slugs[1::2], strict=True):
            legs["without"].append(_leg(ctx, mastok, stub, quiet, participants, rate))
            settle()
            legs["with"].append(
                _watched_leg(ctx, mastok, stub, watched, participants, rate, supervisors)
            )
            settle()
    alone, with_them = _pooled(legs["without"]), _pooled(legs["with"])
    return {
        "participants": participants * rounds,
        "participants_per_leg": participants,
        "rounds": rounds,
        "rate_per_s": rate,
        "per_session": PER_SESSION,
        "supervisors": supervisors,
        "without": alone,
        "with": with_them,
        "ratios": _ratios(alone, with_them),
        "round_ratios": [
            _ratios(quiet, watched)
            for quiet, watched in zip(legs["without"], legs["with"], strict=True)
        ],
        "client_ceiling": client_ceiling(ctx),
    }


def _watched_leg(
    ctx: Context,
    mastok: Mastok,
    stub: Server,
    slug: str,
    participants: int,
    rate: float,
    supervisors: int,
) -> dict[str, Any]:
    """A leg into campaign `slug` with `supervisors` watching it, who leave again after it."""
    holder = _supervisors(ctx, mastok, slug, supervisors)
    try:
        return _leg(ctx, mastok, stub, slug, participants, rate, holder)
    finally:
        with contextlib.suppress(Exception):
            holder.close()
        holder.child.stop()


def _supervisors(ctx: Context, mastok: Mastok, slug: str, count: int) -> loadgen.Holder:
    """`count` supervisors connected to campaign `slug`, each with its whole view."""
    holder = loadgen.Holder(
        ctx.workdir,
        ctx.job(
            kind="supervise",
            supervise_url=f"{mastok.supervise_url}?namespace={slug}",
            origin=mastok.origin,
            credentials=f"{servers.LOGIN}:{servers.PASSWORD}",
        ),
    )
    opened = holder.command({"cmd": "open", "count": count, "concurrency": 50}, 300)
    ctx.log(f"  {opened['opened']}/{count} supervisors connected in {opened['seconds']:.1f} s")
    if opened["failed"]:
        ctx.notes.append(f"placement: {opened['failed']} supervisors failed: {opened['errors']}")
    settle(1)
    return holder


def _leg(
    ctx: Context,
    mastok: Mastok,
    stub: Server,
    slug: str,
    participants: int,
    rate: float,
    holder: loadgen.Holder | None = None,
) -> dict[str, Any]:
    seconds = participants / rate
    job = join_job(
        mastok,
        [slug],
        participants,
        {"mode": "rate", "rate": rate},
        group=PER_SESSION,
        flow_timeout_s=90,
    )
    pids = {"server": mastok.pid} | ({"supervisors": holder.child.pid} if holder else {})
    result, meter = measure(ctx, job, seconds + 150, **pids)
    figures = join_figures(result, meter, participants)
    out = {
        "supervisors": 0,
        "reached_starting": figures["reached_starting"],
        "errors": figures["errors"],
        "agree_to_instructions_ms": figures["agree_to_instructions_ms"],
        "last_agree_to_starting_ms": figures["latency_ms"],
        "consent_wait_ms": figures["consent_wait_ms"],
        "server_cpu_share": figures["server_cpu_share"],
        "client_cpu_share": figures["client_cpu_share"],
        "supervisors_client_cpu_share": meter.shares().get("supervisors"),
        "samples": placement_samples(result["records"]),
    }
    if holder is not None:
        out.update(_watched(holder, result))
    ctx.log(
        f"  {out['reached_starting']}/{participants} started; Agree -> Instructions p50/p99 "
        f"{_p(out['agree_to_instructions_ms'])} ms, last Agree -> Starting "
        f"{_p(out['last_agree_to_starting_ms'])} ms, server CPU {out['server_cpu_share']}"
    )
    return out


def _pooled(legs: list[dict[str, Any]]) -> dict[str, Any]:
    """One condition's legs as one: latencies pooled, counts summed, the supervisors' view of
    each leg kept (the fewest shown the current sizes), CPU shares averaged."""
    last = legs[-1]
    samples = [leg.pop("samples") for leg in legs]
    out: dict[str, Any] = {
        key: stats.summary([v for leg in samples for v in leg[key]]) for key in LATENCIES
    }
    out["reached_starting"] = sum(leg["reached_starting"] for leg in legs)
    out["errors"] = dict(sum((Counter(leg["errors"]) for leg in legs), Counter()))
    for key in ("server_cpu_share", "client_cpu_share", "supervisors_client_cpu_share"):
        shares = [leg[key] for leg in legs if leg[key] is not None]
        out[key] = round(sum(shares) / len(shares), 3) if shares else None
    out["consent_wait_ms"] = last["consent_wait_ms"]
    if "supervisors_with_current_sizes" in last:
        counts = [leg["supervisors_with_current_sizes"] for leg in legs]
        out["supervisors_with_current_sizes"] = None if None in counts else min(counts)
        out["supervisors"] = min(leg["supervisors"] for leg in legs)
        out["frames_per_supervisor"] = round(
            sum(leg["frames_per_supervisor"] for leg in legs) / len(legs), 1
        )
        out["final_joining_sizes"] = [leg["final_joining_sizes"] for leg in legs]
    else:
        out["supervisors"] = 0
    out["legs"] = legs
    return out


def _watched(holder: loadgen.Holder, result: dict[str, Any]) -> dict[str, Any]:
    """What the supervisors saw: frames read, and whether each ends up with the current sizes
    (every pool started: the joining pool is empty)."""
    time.sleep(0.5)  # past the coalescing interval: the last view has gone out
    status = holder.command({"cmd": "status"})
    expected = f"0/{PER_SESSION}"
    started = len(stats.started(result["records"]))
    current = status["joining"].get(expected, 0) if started == len(result["records"]) else None
    return {
        "supervisors": status["open"],
        "frames_per_supervisor": round(status["frames"] / max(status["open"], 1), 1),
        "final_joining_sizes": status["joining"],
        "supervisors_with_current_sizes": current,
    }


def _ratios(alone: dict[str, Any], with_them: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key in LATENCIES:
        for p in ("p50", "p99"):
            before, after = alone[key][p], with_them[key][p]
            out[f"{key}_{p}"] = round(after / before, 2) if before and after is not None else None
    return out


def _p(summary: dict[str, Any]) -> str:
    return f"{summary['p50']}/{summary['p99']}"
