"""Scenario 11: 1,000 participants waiting on a leader that is killed, back in their places
through the standby.

Two `mastok serve` processes share one PostgreSQL database: the leader (it started first and
holds the leader lock) and a standby, behind one public origin as a proxy would put them.
`participants` agree and wait on the leader in campaigns whose pools cannot start (per_session
32, 25 waiting in each), then the leader is killed (SIGKILL). Every participant's socket closes;
each comes back by itself with its resume token, trying the leader's address then the
standby's (a refused connection or a 503 moves on, a short jittered wait once both failed), as
a page behind a proxy that follows the leader would. Figures: the time from the SIGKILL until
the standby leads (its log line, and its `/readyz` answering 200), and from then until each
participant has its place back (`Resume` with its own token, then `Instructions` and the pool's
size as it was). Then newcomers fill every pool through the new leader, so each campaign starts
one session: the stub oTree's sessions, mastok's sessions and its participants' rows say
whether any session or place was doubled.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import secrets
import time
from datetime import datetime
from typing import Any

import asyncpg
import httpx

from bench import loadgen, procs, servers, stats
from bench.scenarios import Context, client_ceiling
from bench.servers import Mastok, Server

PARTICIPANTS = 1000
PER_SESSION = 32  # the most a campaign allows: pools of WAITING_EACH never start
WAITING_EACH = 25
RETRY_MS = 250.0  # a page's wait once every address failed (jittered 0.5x to 1.5x)
RESUME_WITHIN_S = 60.0  # each participant's bound to be back, from its drop
LEADS_WITHIN_S = 30.0  # the standby must lead by then (README: within 5 s)
TARGET_S = 5.0  # p99 back after the standby leads; bench/README.md says why
ORIGIN = "http://mastok.bench"  # the one public origin a proxy gives both processes
LEADS_LINE = "mastok leads (took the lock)"
ADDRESS = re.compile(r" \d+\.\d+\.\d+\.\d+:\d+")  # a failed attempt's why, without its port


def failover(
    ctx: Context,
    participants: int = PARTICIPANTS,
    retry_ms: float = RETRY_MS,
    resume_within: float = RESUME_WITHIN_S,
) -> dict[str, Any]:
    """Scenario 11: `participants` waiting on the leader, SIGKILL, back through the standby."""
    counts = layout(participants)
    ctx.log(
        f"failover: {participants} participants in {len(counts)} campaigns (per_session "
        f"{PER_SESSION}), leader and standby on one PostgreSQL"
    )
    stub = servers.start_stub_otree(ctx.workdir, "failover-stub-otree", list_ms_per_session=0.0)
    try:
        with servers.postgres(ctx.workdir) as cluster:
            url = cluster.new_database()
            figures = _run(ctx, stub, url, counts, retry_ms, resume_within)
    finally:
        stub.stop()
    return {
        "backend": "postgresql",
        "participants": participants,
        "campaigns": len(counts),
        "per_session": PER_SESSION,
        "waiting_each": WAITING_EACH,
        "retry_ms": retry_ms,
        "resume_within_s": resume_within,
        "target_s": TARGET_S,
        **figures,
        "client_ceiling": client_ceiling(ctx),
    }


def layout(participants: int) -> list[int]:
    """How many wait in each campaign: WAITING_EACH, the last one the rest."""
    campaigns = max(1, math.ceil(participants / WAITING_EACH))
    counts = [WAITING_EACH] * campaigns
    counts[-1] = participants - WAITING_EACH * (campaigns - 1)
    return counts


def _pair(ctx: Context, url: str, stub: Server) -> tuple[Mastok, Mastok]:
    """The leader (started first: it takes the lock before it serves), then the standby."""
    shared = {"MASTOK_ORIGIN": ORIGIN, "MASTOK_SECRET_KEY": secrets.token_urlsafe(32)}
    leader = servers.start_mastok(ctx.workdir, "mastok-leader", url, stub.url, settings=shared)
    try:
        standby = servers.start_mastok(
            ctx.workdir, "mastok-standby", url, stub.url, settings=shared
        )
    except Exception:
        leader.stop()
        raise
    roles = (_role(leader), _role(standby))
    if roles != ("leader", "standby"):
        leader.stop()
        standby.stop()
        raise RuntimeError(f"failover: expected a leader and a standby, got {roles}")
    return leader, standby


def _role(mastok: Mastok) -> str | None:
    try:
        return str(httpx.get(f"{mastok.url}/readyz", timeout=2).json().get("role"))
    except (httpx.HTTPError, ValueError):
        return None


def _run(
    ctx: Context,
    stub: Server,
    url: str,
    counts: list[int],
    retry_ms: float,
    resume_within: float,
) -> dict[str, Any]:
    leader, standby = _pair(ctx, url, stub)
    holder: loadgen.Holder | None = None
    try:
        slugs = leader.create_campaigns("f", len(counts), per_session=PER_SESSION)
        holder = loadgen.Holder(
            ctx.workdir,
            ctx.job(
                kind="failover",
                urls=[leader.join_url, standby.join_url],
                origin=ORIGIN,
                slugs=slugs,
                counts=counts,
                per_session=PER_SESSION,
                flow_timeout_s=60,
                retry_ms=retry_ms,
                resume_within_s=resume_within,
            ),
            deadline=resume_within + 600,
        )
        waiting = holder.command({"cmd": "wait"}, 300)
        ctx.log(f"  {waiting['placed']} waiting on the leader ({waiting['seconds']:.1f} s)")
        if waiting["placed"] != sum(counts) or waiting["started"]:
            ctx.notes.append(f"failover: before the kill, not everyone waited: {waiting}")
        rows_before = _rows(url)
        meter = procs.CpuMeter(standby=standby.pid).start()
        load_at_kill = [round(x, 2) for x in os.getloadavg()]
        killed_at = time.time() * 1000
        leader.kill()
        ready_at, polls = _wait_ready(standby, LEADS_WITHIN_S)
        leads_at = _logged_lead(standby) or ready_at
        back = holder.command({"cmd": "collect", "timeout_s": resume_within}, resume_within + 60)
        meter.stop()
        rows_resumed = _rows(url)
        filled = holder.command({"cmd": "fill", "timeout_s": 60}, 120)
        holder.command({"cmd": "close"}, 30)
        otree = dict(httpx.get(f"{stub.url}/_bench/stats", timeout=30).json())
        rows_after = _rows(url)
    finally:
        if holder is not None:
            holder.child.stop()
        standby.stop()
        leader.stop()
    figures = _figures(back["records"], killed_at, leads_at, ready_at, counts)
    figures.update(
        waiting=waiting,
        load_average_at_kill=load_at_kill,
        readyz_polls=polls,
        standby_cpu_s=round(meter.cpu_s.get("standby", 0.0), 2),
        client_cpu_ms=back["cpu"],
        doubled=_doubling(filled, counts, slugs, otree, rows_before, rows_resumed, rows_after),
    )
    _log(ctx, figures)
    return figures


def _wait_ready(standby: Mastok, within: float) -> tuple[float | None, int]:
    """When the standby's `/readyz` first answered 200 (epoch ms; polled every 20 ms), and how
    many polls it took; None if not within `within` seconds."""
    deadline = time.monotonic() + within
    polls = 0
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < deadline:
            polls += 1
            try:
                if client.get(f"{standby.url}/readyz").status_code == 200:
                    return time.time() * 1000, polls
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
    return None, polls


def _logged_lead(standby: Mastok) -> float | None:
    """When the standby logged that it leads (epoch ms): its rooms rebuilt and running."""
    try:
        text = standby.child.log_path.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if LEADS_LINE in line:
            try:
                return datetime.fromisoformat(line.split(" ", 1)[0]).timestamp() * 1000
            except ValueError:
                return None
    return None


def _rows(url: str) -> dict[str, Any]:
    """mastok's own account, from its database: participants by step, sessions and their sizes."""

    async def read() -> dict[str, Any]:
        connection = await asyncpg.connect(url)
        try:
            steps = await connection.fetch(
                "SELECT step, count(*) AS n FROM participants GROUP BY step"
            )
            sizes = await connection.fetch(
                "SELECT s.campaign_id, s.size, count(p.id) AS members FROM sessions s "
                "LEFT JOIN participants p ON p.session_id = s.id GROUP BY s.id"
            )
            tokens = await connection.fetchval(
                "SELECT count(*) - count(DISTINCT token) FROM participants"
            )
        finally:
            await connection.close()
        per_campaign: dict[int, int] = {}
        for row in sizes:
            per_campaign[row["campaign_id"]] = per_campaign.get(row["campaign_id"], 0) + 1
        return {
            "steps": {row["step"]: row["n"] for row in steps},
            "sessions": len(sizes),
            "campaigns_with_more_than_one_session": sum(1 for n in per_campaign.values() if n > 1),
            "sessions_not_full": sum(
                1 for row in sizes if row["members"] != row["size"] or row["size"] != PER_SESSION
            ),
            "duplicate_tokens": tokens,
        }

    return asyncio.run(read())


def _figures(
    records: list[dict[str, Any]],
    killed_at: float,
    leads_at: float | None,
    ready_at: float | None,
    counts: list[int],
) -> dict[str, Any]:
    expected = {slug: f"{n}/{PER_SESSION}" for slug, n in _slug_counts(records).items()}
    back = [r for r in records if _in_place(r, expected)]
    times = [r["instructions"] for r in back]
    since_lead = [t - leads_at for t in times] if leads_at is not None else []
    return {
        "leads_after_s": _seconds(leads_at, killed_at),
        "readyz_after_s": _seconds(ready_at, killed_at),
        "dropped": sum(1 for r in records if r["dropped"] is not None),
        "back_in_place": len(back),
        "all_back": len(back) == len(records) == sum(counts),
        "back_after_lead_ms": stats.summary(since_lead),
        "back_after_kill_ms": stats.summary([t - killed_at for t in times]),
        # Where the time went, from the SIGKILL: each socket seen closed, the attempt that got
        # its place back started, its handshake answered.
        "dropped_after_kill_ms": _since([r["dropped"] for r in records], killed_at),
        "last_attempt_after_kill_ms": _since([r["t0"] for r in back], killed_at),
        "opened_after_kill_ms": _since([r["opened"] for r in back], killed_at),
        "first_back_before_lead": sum(1 for x in since_lead if x < 0),
        "last_back_after_lead_s": round(max(since_lead) / 1000, 2) if since_lead else None,
        "attempts": stats.summary([r["attempts"] for r in back], 1),
        "refused": _refused(records),
        "via_standby": sum(1 for r in back if r["via"] == 1),
        "not_back": _tally(_why_not(r, expected) for r in records if r not in back),
    }


def _slug_counts(records: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in records:
        out[r["slug"]] = out.get(r["slug"], 0) + 1
    return out


def _in_place(r: dict[str, Any], expected: dict[str, str]) -> bool:
    """Back with its own token, in the joining pool it was in, sized as before the kill."""
    return (
        r["instructions"] is not None
        and r["token_back"] == r["token"]
        and r["consent"] is None
        and r["joining"] == expected[r["slug"]]
    )


def _why_not(r: dict[str, Any], expected: dict[str, str]) -> str:
    if r["instructions"] is None:
        return str(r["err"] or "no Instructions")[:80]
    if r["token_back"] != r["token"]:
        return "another token"
    if r["consent"] is not None:
        return "a new visit (Consent)"
    return f"pool size {r['joining']} (expected {expected[r['slug']]})"


def _refused(records: list[dict[str, Any]]) -> dict[str, int]:
    """The failed attempts of everyone, by why (a refused connection, a 503, ...)."""
    out: dict[str, int] = {}
    for r in records:
        for why, n in r["refused"].items():
            key = ADDRESS.sub("", why)[:80]
            out[key] = out.get(key, 0) + n
    return out


def _tally(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for value in values:
        key = str(value)[:80]
        out[key] = out.get(key, 0) + 1
    return out


def _since(times: list[float | None], since: float) -> dict[str, Any]:
    return stats.summary([t - since for t in times if t is not None])


def _seconds(at: float | None, since: float) -> float | None:
    return None if at is None else round((at - since) / 1000, 3)


def _doubling(
    filled: dict[str, Any],
    counts: list[int],
    slugs: list[str],
    otree: dict[str, Any],
    before: dict[str, Any],
    resumed: dict[str, Any],
    after: dict[str, Any],
) -> dict[str, Any]:
    """Every pool filled once: one session a campaign in oTree, in mastok's database and in the
    participants' Starting; one row a participant, none doubled."""
    everyone = filled["records"] + filled["newcomers"]
    started = [r for r in everyone if r.get("starting") is not None and r.get("url")]
    sessions_by_slug: dict[str, set[str]] = {}
    for r in started:
        sessions_by_slug.setdefault(r["slug"], set()).add(stats.session_of(r["url"]))
    total = PER_SESSION * len(counts)
    verdict = {
        "expected_sessions": len(slugs),
        "otree_sessions_created": otree.get("created"),
        "mastok_sessions": after["sessions"],
        "reached_starting": len(started),
        "expected_starting": total,
        "sessions_in_starting_urls": sum(len(s) for s in sessions_by_slug.values()),
        "newcomer_errors": stats.errors(filled["newcomers"]),
        "rows_before_kill": before,
        "rows_after_resume": resumed,
        "rows_after_fill": after,
    }
    verdict["ok"] = (
        verdict["otree_sessions_created"] == len(slugs)
        and after["sessions"] == len(slugs)
        and after["campaigns_with_more_than_one_session"] == 0
        and after["sessions_not_full"] == 0
        and after["duplicate_tokens"] == 0
        and after["steps"] == {"started": total}
        and resumed["steps"] == before["steps"] == {"joining": sum(counts)}
        and len(started) == total
        and all(len(s) == 1 for s in sessions_by_slug.values())
        and len(sessions_by_slug) == len(slugs)
    )
    return verdict


def _log(ctx: Context, figures: dict[str, Any]) -> None:
    lead = figures["back_after_lead_ms"]
    ctx.log(
        f"  the standby led {figures['leads_after_s']} s after the SIGKILL (/readyz 200 at "
        f"{figures['readyz_after_s']} s); {figures['back_in_place']}/{figures['dropped']} back "
        f"in place, after the lead p50 {lead['p50']} ms p99 {lead['p99']} ms max {lead['max']} "
        f"ms; nothing doubled: {figures['doubled']['ok']}"
    )
