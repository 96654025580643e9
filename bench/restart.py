"""Scenario 8: how long 20 campaigns take to start their first sessions after mastok is killed
and restarted, against an oTree holding 1,500 sessions of other studies.

The stub oTree starts holding `otree_sessions` sessions and lists them at oTree 6's cost (1 ms a
session, one listing at a time: bench/stub_otree.py). mastok gets `campaigns` campaigns; in
each, a full pool waits with one member away (their socket dropped before the others agreed), so
no session starts. mastok is killed (SIGKILL) and started again on the same port and database;
once it answers, every participant comes back with its resume token, which fills every pool with
members present: each campaign starts its first session. Figures: the time from the restart (the
new process spawned) until every campaign's first `Starting`, and how many times oTree's
sessions were listed meanwhile (a first session needs no listing: no session of that number was
ever asked of oTree).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import httpx

from bench import loadgen, servers, stats
from bench.scenarios import PER_SESSION, Context, client_ceiling
from bench.servers import Server

CAMPAIGNS = 20
OTREE_SESSIONS = 1500
DEADLINE_S = 90.0  # how long the participants wait for their Starting after the restart
TARGET_S = 5.0  # bench/README.md says why


def restart(
    ctx: Context,
    campaigns: int = CAMPAIGNS,
    otree_sessions: int = OTREE_SESSIONS,
    list_ms_per_session: float | None = None,
    deadline: float = DEADLINE_S,
    backend: str = "sqlite",
) -> dict[str, Any]:
    """Scenario 8: `campaigns` first sessions after a SIGKILL and a restart."""
    ctx.log(f"restart: {campaigns} campaigns, oTree holding {otree_sessions} sessions")
    stub = servers.start_stub_otree(
        ctx.workdir, "restart-stub-otree", otree_sessions, list_ms_per_session
    )
    try:
        with _database(ctx, backend) as url:
            figures = _run(ctx, stub, url, campaigns, deadline)
    finally:
        stub.stop()
    return {
        "backend": backend,
        "campaigns": campaigns,
        "per_session": PER_SESSION,
        "otree_sessions": otree_sessions,
        "list_ms_per_session": list_ms_per_session,
        "deadline_s": deadline,
        **figures,
        "client_ceiling": client_ceiling(ctx),
    }


@contextlib.contextmanager
def _database(ctx: Context, backend: str) -> Iterator[str]:
    if backend == "postgresql":
        with servers.postgres(ctx.workdir) as cluster:
            yield cluster.new_database()
    else:
        yield servers.sqlite_url(ctx.workdir, "mastok-restart")


def _run(ctx: Context, stub: Server, url: str, campaigns: int, deadline: float) -> dict[str, Any]:
    mastok = servers.start_mastok(ctx.workdir, "mastok-restart", url, stub.url)
    holder: loadgen.Holder | None = None
    try:
        slugs = mastok.create_campaigns("r", campaigns)
        holder = loadgen.Holder(
            ctx.workdir,
            ctx.job(
                kind="restart",
                url=mastok.join_url,
                origin=mastok.origin,
                slugs=slugs,
                per_session=PER_SESSION,
                flow_timeout_s=deadline,
            ),
            deadline=deadline + 300,
        )
        waiting = holder.command({"cmd": "wait"}, 120)
        ctx.log(f"  {waiting['placed']} waiting ({campaigns} pools, one member of each away)")
        if waiting["placed"] != campaigns * PER_SESSION or waiting["started"]:
            ctx.notes.append(f"restart: before the restart, not every pool waited: {waiting}")
        before = _stub_stats(stub, clear=True)
        mastok.kill()
        restarted_at = time.time() * 1000
        mastok = servers.start_mastok(
            ctx.workdir, "mastok-restarted", url, stub.url, port=mastok.port
        )
        answering_at = time.time() * 1000
        ctx.log(f"  killed and restarted: answering after {answering_at - restarted_at:.0f} ms")
        back = holder.command({"cmd": "resume"}, deadline + 30)
        after = _stub_stats(stub)
    finally:
        if holder is not None:
            holder.child.stop()
        mastok.stop()
    figures = _figures(back["records"], slugs, restarted_at, answering_at, back["t0"])
    figures.update(waiting=waiting, before_restart=before, otree=after)
    ctx.log(
        f"  {figures['campaigns_started']}/{campaigns} first sessions in "
        f"{figures['all_started_s']} s from the restart; oTree's sessions listed "
        f"{after['listings']} times ({after['listing_s']} s of listing)"
    )
    return figures


def _stub_stats(stub: Server, clear: bool = False) -> dict[str, Any]:
    query = "?clear=1" if clear else ""
    return dict(httpx.get(f"{stub.url}/_bench/stats{query}", timeout=30).json())


def _figures(
    records: list[dict[str, Any]],
    slugs: list[str],
    restarted_at: float,
    answering_at: float,
    resumed_at: float,
) -> dict[str, Any]:
    """Each campaign's first Starting after the restart, in seconds from it."""
    firsts: dict[str, float] = {}
    for r in records:
        if r.get("starting") is not None:
            firsts[r["slug"]] = min(firsts.get(r["slug"], r["starting"]), r["starting"])
    since = sorted((t - restarted_at) / 1000 for t in firsts.values())
    everyone = len(firsts) == len(slugs)
    return {
        "campaigns_started": len(firsts),
        "all_started_s": round(since[-1], 2) if everyone else None,
        "first_session_s": stats.summary(since),
        "answering_after_s": round((answering_at - restarted_at) / 1000, 2),
        "resumed_after_s": round((resumed_at - restarted_at) / 1000, 2),
        "resume_to_all_started_s": round((max(firsts.values()) - resumed_at) / 1000, 2)
        if everyone
        else None,
        "participants": len(records),
        "reached_starting": sum(1 for r in records if r.get("starting") is not None),
        "errors": stats.errors(records),
    }
