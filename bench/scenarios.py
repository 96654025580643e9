"""The benchmark's scenarios (bench/README.md says what each measures and why).

Each scenario starts the servers it needs as processes of their own, drives them with the Node
load generator, stops everything, and returns a JSON-able dict of figures. Every figure a client
measured comes with that client's own CPU share (1.0: one core busy) and the run carries the
client's ceiling, so a reader can tell a server's limit from the client's.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import loadgen, procs, servers, stats
from bench.servers import Mastok, Server

PER_SESSION = 4
# The latency targets are read at these shares of the saturation rate measured in the same run
# (issue 15: a fixed arrival rate saturates a slower processor and measures its queue instead).
SHARES = (0.5, 0.8)
SHARE_SECONDS = 8.0  # long enough for a few hundred pools at any share, short enough to repeat
SHARE_MINIMUM = 200
# Turns of a saturation run and the share runs at its rate, their latencies pooled a share: this
# machine's speed moves by half again within minutes (the speed probes), so one saturation read
# in a quick minute made "50%" a heavier load in a slow one, and a p99 of one 8 s run was its
# 10 slowest pools (bench/README.md, scenario 1).
SHARE_TURNS = 3


@dataclass
class Context:
    """What every scenario shares: where to write, how hard to push, what was measured once."""

    workdir: Path
    clients: int = 1
    concurrency: int = 100
    flows: int = 2400
    deflate: bool = True
    verbose: bool = True
    client_ceiling: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    speed: list[dict[str, Any]] = field(default_factory=list)  # bench/speed.py's probes

    def log(self, message: str) -> None:
        if self.verbose:
            print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    def job(self, **job: Any) -> dict[str, Any]:
        return {"deflate": self.deflate, **job}


def _cpu_ms_per(cpu_s: float, count: int) -> float | None:
    return round(1000 * cpu_s / count, 3) if count else None


def measure(
    ctx: Context, job: dict[str, Any], timeout: float, clients: int | None = None, **pids: int
) -> tuple[dict[str, Any], procs.CpuMeter]:
    meter = procs.CpuMeter(**pids).start()
    result = loadgen.run_many(ctx.workdir, ctx.job(**job), clients or ctx.clients, timeout)
    meter.stop()
    return result, meter


def settle(seconds: float = 1.5) -> None:
    time.sleep(seconds)


# -- the client's own ceiling -----------------------------------------------------------------


def client_ceiling(ctx: Context) -> dict[str, Any]:
    """The load generator against the fastest server we have (a Node ws echo server): how many
    flows a second and what round trip the client itself can see."""
    if ctx.client_ceiling is not None:
        return ctx.client_ceiling
    ctx.log("client ceiling: Node echo server")
    echo = servers.start_node_echo(ctx.workdir)
    try:
        figures = _echo_run(ctx, echo, "client ceiling (Node ws echo server)")
    finally:
        echo.stop()
    ctx.client_ceiling = figures
    return figures


def _echo_run(ctx: Context, echo: Server, what: str) -> dict[str, Any]:
    url = f"ws://{procs.LOOPBACK}:{echo.port}/ws/echo"
    warm = {
        "kind": "echo",
        "url": url,
        "count": 500,
        "arrival": {"mode": "closed", "concurrency": 50},
    }
    loadgen.run(ctx.workdir, ctx.job(**warm), timeout=60)
    settle(1)
    job = {
        "kind": "echo",
        "url": url,
        "count": ctx.flows,
        "arrival": {"mode": "closed", "concurrency": ctx.concurrency},
    }
    result, meter = measure(ctx, job, timeout=180, server=echo.pid)
    records = result["records"]
    ok = [r for r in records if not r.get("err")]
    rtts = [x for r in ok for x in r.get("rtt", [])]
    return {
        "what": what,
        "flows": len(records),
        "ok": len(ok),
        "errors": stats.errors(records),
        "concurrency": ctx.concurrency,
        "rate_per_s": _round(stats.steady_rate(r["closed"] for r in ok)),
        "flow_ms": stats.summary([r["closed"] - r["t0"] for r in ok]),
        "round_trip_ms": stats.summary(rtts),
        "server_cpu_share": meter.shares()["server"],
        "server_cpu_ms_per_flow": _cpu_ms_per(meter.cpu_s["server"], len(ok)),
        "client_cpu_share": loadgen.client_share(result),
        "client_processes": result.get("clients", 1),
    }


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


# -- mastok against the stub oTree ------------------------------------------------------------


@contextlib.contextmanager
def mastok_on(
    ctx: Context, backend: str, name: str, list_ms_per_session: float = 0.0
) -> Iterator[tuple[Mastok, Server]]:
    """A stub oTree and mastok on a fresh database of `backend`, both stopped afterwards. The
    stub lists its sessions at once unless told otherwise: these scenarios measure mastok alone
    (scenario 8 measures what oTree's listings cost)."""
    stub = servers.start_stub_otree(
        ctx.workdir, f"{name}-stub-otree", list_ms_per_session=list_ms_per_session
    )
    try:
        with contextlib.ExitStack() as stack:
            if backend == "postgresql":
                cluster = stack.enter_context(servers.postgres(ctx.workdir))
                url = cluster.new_database()
            else:
                url = servers.sqlite_url(ctx.workdir, name)
            mastok = servers.start_mastok(ctx.workdir, name, url, stub.url)
            try:
                yield mastok, stub
            finally:
                mastok.stop()
    finally:
        stub.stop()


_campaign_sets = iter(range(1, 10_000))


def _campaigns(mastok: Mastok, participants: int, **fields: Any) -> list[str]:
    prefix = f"c{next(_campaign_sets)}_"
    return mastok.create_campaigns(prefix, servers.campaigns_for(participants), **fields)


def join_job(
    mastok: Mastok, slugs: list[str], count: int, arrival: dict[str, Any], **options: Any
) -> dict[str, Any]:
    """A load generator job: `count` participants through the whole join flow into `slugs`."""
    return {
        "kind": "join",
        "url": mastok.join_url,
        "origin": mastok.origin,
        "slugs": slugs,
        "count": count,
        "arrival": arrival,
        **options,
    }


def warm_up(ctx: Context, mastok: Mastok) -> None:
    """Code paths, caches and connection pools warm before anything is measured."""
    slugs = _campaigns(mastok, 200)
    job = join_job(mastok, slugs, 200, {"mode": "closed", "concurrency": 20})
    loadgen.run(ctx.workdir, ctx.job(**job), timeout=120)
    settle()


def join_figures(result: dict[str, Any], meter: procs.CpuMeter, count: int) -> dict[str, Any]:
    records = result["records"]
    grouped = stats.pools(records)
    samples = placement_samples(records)
    ok = [r for r in stats.started(records) if r.get("reason") == "Start"]
    first = min(r["t0"] for r in records)
    last = max((r["starting"] for r in ok), default=first)
    makespan = (last - first) / 1000
    figures = {
        "participants": count,
        "reached_starting": len(ok),
        "errors": stats.errors(records),
        "sessions": len(grouped),
        "pools_not_full": sum(1 for members in grouped.values() if len(members) != PER_SESSION),
        "seconds": round(makespan, 2),
        "rate_per_s": round(len(ok) / makespan, 1) if makespan > 0 else None,
        "peak_1s_rate_per_s": max(stats.per_second(r["starting"] for r in ok), default=0),
        "latency_ms": stats.summary(samples["last_agree_to_starting_ms"]),
        "consent_wait_ms": stats.summary(
            [r["consent"] - r["t0"] for r in records if r.get("consent")]
        ),
        "agree_to_instructions_ms": stats.summary(samples["agree_to_instructions_ms"]),
        "server_cpu_share": meter.shares().get("server"),
        "server_cpu_ms_per_participant": _cpu_ms_per(meter.cpu_s.get("server", 0), len(ok)),
        "stub_otree_cpu_share": meter.shares().get("stub"),
        "client_cpu_share": loadgen.client_share(result),
        "client_processes": result.get("clients", 1),
    }
    return figures


def placement_samples(records: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Each participant's Agree -> Instructions, and each pool member's latency from the pool's
    last Agree to its Starting (ms)."""
    return {
        "agree_to_instructions_ms": [
            r["instructions"] - r["agree"] for r in records if r.get("instructions")
        ],
        "last_agree_to_starting_ms": [
            latency for _, latency in stats.pool_latencies(stats.pools(records))
        ],
    }


def ramp_run(
    ctx: Context, mastok: Mastok, stub: Server, participants: int, seconds: float
) -> tuple[dict[str, Any], list[tuple[float, float]]]:
    """`participants` arriving in a ramp: the arrival rate rises linearly from 0 to
    2 x participants / seconds over `seconds`. The figures, and (offered arrival rate when a
    pool's last member arrived, that member's latency) points for the curve."""
    slugs = _campaigns(mastok, participants)
    job = join_job(
        mastok,
        slugs,
        participants,
        {"mode": "ramp", "seconds": seconds},
        group=PER_SESSION,
        flow_timeout_s=90,
    )
    ctx.log(f"  ramp: {participants} participants over {seconds:g} s into {len(slugs)} campaigns")
    result, meter = measure(ctx, job, timeout=seconds + 150, server=mastok.pid, stub=stub.pid)
    figures = join_figures(result, meter, participants)
    points = _rated_latencies(result, participants, seconds)
    figures.update(
        campaigns=len(slugs),
        ramp_seconds=seconds,
        offered_mean_rate_per_s=round(participants / seconds, 1),
        offered_peak_rate_per_s=round(2 * participants / seconds, 1),
        curve=latency_curve(points, bins=10),
    )
    ctx.log(
        f"    {figures['reached_starting']}/{participants} started, {figures['rate_per_s']}/s, "
        f"latency p50 {figures['latency_ms']['p50']} p99 {figures['latency_ms']['p99']} ms, "
        f"server CPU {figures['server_cpu_share']}"
    )
    return figures, points


def _rated_latencies(
    result: dict[str, Any], participants: int, seconds: float
) -> list[tuple[float, float]]:
    """For each member of each pool: the ramp's arrival rate when the pool's last member
    arrived (the load the pool formed under), and the member's last-Agree-to-Starting latency."""
    peak = 2 * participants / seconds
    points: list[tuple[float, float]] = []
    for members in stats.pools(result["records"]).values():
        arrived = (max(m["t0"] for m in members) - result["t0"]) / 1000
        rate = min(peak, max(0.0, peak * arrived / seconds))
        last_agree = max(m["agree"] for m in members)
        points.extend((rate, m["starting"] - last_agree) for m in members)
    return points


def latency_curve(
    points: list[tuple[float, float]], bins: int = 10, minimum: int = 20
) -> list[dict[str, Any]]:
    """Latency percentiles in `bins` bins along the arrival rate, spaced evenly on a log scale
    (from 1/s to the highest rate); bins with fewer than `minimum` points join the next."""
    if not points:
        return []
    top = max(rate for rate, _ in points)
    edges = [math.exp(math.log(max(top, 1.0) + 1) * k / bins) for k in range(1, bins + 1)]
    curve: list[dict[str, Any]] = []
    chunk: list[tuple[float, float]] = []
    edge = 0
    for rate, latency in sorted(points):
        while edge < len(edges) - 1 and rate > edges[edge]:
            if len(chunk) >= minimum:
                curve.append(_bin(chunk))
                chunk = []
            edge += 1
        chunk.append((rate, latency))
    if chunk:
        curve.append(_bin(chunk))
    return curve


def _bin(chunk: list[tuple[float, float]]) -> dict[str, Any]:
    return {
        "rate_per_s": round(statistics.fmean(rate for rate, _ in chunk), 1),
        **stats.summary([latency for _, latency in chunk]),
    }


def saturation_run(ctx: Context, mastok: Mastok, stub: Server) -> dict[str, Any]:
    """As many join flows as the server takes: `ctx.concurrency` participants at a time, each
    replaced by a new one when it reaches Starting (a closed loop), `ctx.flows` in all."""
    campaigns = servers.campaigns_for(ctx.flows)
    # Every campaign gets a whole number of pools, and enough people at once to fill one.
    flows = math.ceil(ctx.flows / (PER_SESSION * campaigns)) * PER_SESSION * campaigns
    concurrency = max(ctx.concurrency, (PER_SESSION - 1) * campaigns + 1)
    prefix = f"c{next(_campaign_sets)}_"
    slugs = mastok.create_campaigns(prefix, campaigns)
    job = join_job(
        mastok,
        slugs,
        flows,
        {"mode": "closed", "concurrency": concurrency},
        group=PER_SESSION,
        flow_timeout_s=90,
    )
    ctx.log(f"  saturation: {flows} join flows, {concurrency} at a time, {campaigns} campaigns")
    result, meter = measure(ctx, job, timeout=400, server=mastok.pid, stub=stub.pid)
    figures = join_figures(result, meter, flows)
    ok = [r for r in stats.started(result["records"]) if r.get("reason") == "Start"]
    figures.update(
        concurrency=concurrency,
        campaigns=campaigns,
        rate_per_s=_round(stats.steady_rate(r["closed"] for r in ok)),
    )
    ctx.log(
        f"    {figures['rate_per_s']} flows/s, server CPU {figures['server_cpu_share']} "
        f"({figures['server_cpu_ms_per_participant']} ms a participant), "
        f"client CPU {figures['client_cpu_share']}"
    )
    return figures


def share_run(
    ctx: Context, mastok: Mastok, stub: Server, saturation_rate: float, share: float
) -> dict[str, Any]:
    """Participants arriving at a steady `share` of the saturation rate measured in the same
    run, for `SHARE_SECONDS`: the latency a machine gives at that load, whatever its speed."""
    rate = share * saturation_rate
    count = max(SHARE_MINIMUM, round(rate * SHARE_SECONDS / PER_SESSION) * PER_SESSION)
    slugs = _campaigns(mastok, count)
    job = join_job(
        mastok, slugs, count, {"mode": "rate", "rate": rate}, group=PER_SESSION, flow_timeout_s=90
    )
    ctx.log(f"  {share:.0%} of saturation: {count} participants at {rate:.1f}/s")
    result, meter = measure(ctx, job, timeout=count / rate + 150, server=mastok.pid, stub=stub.pid)
    figures = join_figures(result, meter, count)
    figures.update(share=share, offered_rate_per_s=round(rate, 1), campaigns=len(slugs))
    figures["samples"] = placement_samples(result["records"])  # pooled, then dropped
    ctx.log(
        f"    {figures['reached_starting']}/{count} started, latency p50 "
        f"{figures['latency_ms']['p50']} p99 {figures['latency_ms']['p99']} ms, "
        f"server CPU {figures['server_cpu_share']}"
    )
    return figures


def waiting_room(
    ctx: Context,
    backend: str,
    participants: tuple[int, ...] = (100, 1000, 5000),
    ramp_seconds: float = 10.0,
    saturate: bool = True,
    turns: int = SHARE_TURNS,
) -> dict[str, Any]:
    """Scenario 1: join flows through to Starting, against a stub oTree: in `turns` turns, the
    saturation rate and the latency at fixed shares of it, each turn's latencies pooled with
    the others' at the same share; then ramps of fixed sizes (absolute, for the record)."""
    ctx.log(f"waiting room on {backend}")
    saturations: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    with mastok_on(ctx, backend, f"mastok-{backend}") as (mastok, stub):
        warm_up(ctx, mastok)
        for _ in range(turns if saturate else 0):
            saturation = saturation_run(ctx, mastok, stub)
            saturations.append(saturation)
            for share in SHARES if saturation["rate_per_s"] else ():
                settle()
                runs.append(share_run(ctx, mastok, stub, saturation["rate_per_s"], share))
            settle()
        ramps, points = [], []
        for count in participants:
            settle()
            figures, rated = ramp_run(ctx, mastok, stub, count, ramp_seconds)
            ramps.append(figures)
            points += rated
    by_share = {share: [run for run in runs if run["share"] == share] for share in SHARES}
    return {
        "backend": backend,
        "per_session": PER_SESSION,
        "saturation": _quickest(saturations) if saturations else None,
        "saturations": saturations,
        # None without a saturation rate.
        "shares": [_pooled_share(pooled) for pooled in by_share.values() if pooled],
        "ramps": ramps,
        # Every ramp's pools together: latency against the load they formed under.
        "curve": latency_curve(points, bins=20),
        "client_ceiling": client_ceiling(ctx),
    }


def _pooled_share(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One share's runs as one: latencies pooled (each p99 the 1% tail of all their pools),
    counts summed, CPU over all of them; each run's rate and p99 beside."""
    samples = [run.pop("samples") for run in runs]
    reached = sum(run["reached_starting"] for run in runs)
    cpu_ms = [run["server_cpu_ms_per_participant"] for run in runs]
    weighed = zip(cpu_ms, runs, strict=True)
    return {
        "share": runs[0]["share"],
        "turns": len(runs),
        "offered_rate_per_s": [run["offered_rate_per_s"] for run in runs],
        "participants": sum(run["participants"] for run in runs),
        "reached_starting": reached,
        "errors": dict(sum((Counter(run["errors"]) for run in runs), Counter())),
        "latency_ms": stats.summary([x for s in samples for x in s["last_agree_to_starting_ms"]]),
        "agree_to_instructions_ms": stats.summary(
            [x for s in samples for x in s["agree_to_instructions_ms"]]
        ),
        "server_cpu_share": _mean(run["server_cpu_share"] for run in runs),
        "server_cpu_ms_per_participant": (
            round(sum(ms * run["reached_starting"] for ms, run in weighed) / reached, 3)
            if reached and None not in cpu_ms
            else None
        ),
        "client_cpu_share": _mean(run["client_cpu_share"] for run in runs),
        "each_p99_ms": [run["latency_ms"]["p99"] for run in runs],
    }


def _mean(values: Iterable[float | None]) -> float | None:
    found = [value for value in values if value is not None]
    return round(sum(found) / len(found), 3) if found else None


# -- scenario 2: the ceiling ------------------------------------------------------------------


CEILING_TURNS = 3


def ceiling(ctx: Context, mastok_saturation: dict[str, Any] | None = None) -> dict[str, Any]:
    """Scenario 2: a bare Starlette WebSocket echo app served as mastok is, mastok and the
    join's work-equivalent app, driven by the same client with the same concurrency; mastok's
    join-flow rate as a share of each. The three run in turns, `CEILING_TURNS` times, each on a
    fresh server, and each one's quickest run is its figure, with every run's rate beside it:
    run once each, the shares moved with how fast this machine was in each minute (mastok's
    against the work-equivalent app's 34% to 65% over full runs of one code). Given
    `mastok_saturation` (bench compare: scenario 1's), mastok is not run again."""
    echos, mastoks, floors = [], [], []
    for turn in range(1, CEILING_TURNS + 1):
        ctx.log(f"ceiling, turn {turn} of {CEILING_TURNS}: Starlette echo app")
        echos.append(echo_saturation(ctx))
        if mastok_saturation is None:
            with mastok_on(ctx, "sqlite", f"mastok-ceiling-{turn}") as (mastok, stub):
                warm_up(ctx, mastok)
                mastoks.append(saturation_run(ctx, mastok, stub))
        floors.append(floor_saturation(ctx, turn))
    figures = _quickest(echos)
    floor = _quickest(floors)
    if mastok_saturation is None:
        mastok_saturation = _quickest(mastoks)
    out = {
        "echo": figures,
        "floor": floor,
        "mastok": mastok_saturation,
        "turns": CEILING_TURNS,
        "client_ceiling": client_ceiling(ctx),
    }
    mastok_rate = mastok_saturation.get("rate_per_s")
    if figures["rate_per_s"] and mastok_rate:
        out["rate_ratio"] = round(mastok_rate / figures["rate_per_s"], 3)
    if floor.get("rate_per_s") and mastok_rate:
        out["floor_rate_ratio"] = round(mastok_rate / floor["rate_per_s"], 3)
    echo_cpu = figures["server_cpu_ms_per_flow"]
    mastok_cpu = mastok_saturation.get("server_cpu_ms_per_participant")
    if echo_cpu and mastok_cpu:
        out["server_cpu_ratio"] = round(echo_cpu / mastok_cpu, 3)
    return out


def _quickest(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of the highest rate, with every run's rate."""
    figures = dict(max(runs, key=lambda run: run.get("rate_per_s") or 0.0))
    figures["all_rates_per_s"] = [run.get("rate_per_s") for run in runs]
    return figures


def echo_saturation(ctx: Context) -> dict[str, Any]:
    """The bare Starlette WebSocket echo app through the same closed loop."""
    echo = servers.start_echo(ctx.workdir)
    try:
        figures = _echo_run(ctx, echo, "bare Starlette WebSocket echo app under uvicorn")
    finally:
        echo.stop()
    ctx.log(f"  echo {figures['rate_per_s']} flows/s, server CPU {figures['server_cpu_share']}")
    return figures


def floor_saturation(ctx: Context, turn: int = 1) -> dict[str, Any]:
    """The same closed loop as mastok's saturation run (SQLite, stub oTree) against the join's
    work-equivalent app (`bench/join_floor_app.py`): the work's own floor."""
    ctx.log("ceiling: the join's work-equivalent app (SQLite)")
    stub = servers.start_stub_otree(ctx.workdir, f"floor-stub-otree-{turn}")
    try:
        url = servers.sqlite_url(ctx.workdir, f"join-floor-{turn}")
        floor = servers.start_join_floor(ctx.workdir, url, stub.url)
        try:
            warm_up(ctx, floor)  # type: ignore[arg-type]  # a Mastok as far as a join goes
            return saturation_run(ctx, floor, stub)  # type: ignore[arg-type]
        finally:
            floor.stop()
    finally:
        stub.stop()


# -- scenario 3: holding capacity -------------------------------------------------------------

HOLD_PER_SESSION = 32
HOLD_PER_CAMPAIGN = HOLD_PER_SESSION - 1  # a pool starts only when full: stay one short


def _probes(
    ctx: Context, mastok: Mastok, slugs: list[str], count: int, first: int
) -> dict[str, Any]:
    job = {
        "kind": "probe",
        "url": mastok.join_url,
        "origin": mastok.origin,
        "slugs": slugs,
        "count": count,
        "first_index": first,
        "gap_ms": 20,
    }
    result = loadgen.run(ctx.workdir, ctx.job(**job), timeout=120)
    records = result["records"]
    ok = [r for r in records if r.get("consent")]
    return {
        "probes": len(records),
        "errors": stats.errors(records),
        "consent_wait_ms": stats.summary([r["consent"] - r["t0"] for r in ok]),
        "land_to_consent_ms": stats.summary([r["consent"] - r["land"] for r in ok]),
    }


def _idle_cpu(pid: int, seconds: float) -> float:
    meter = procs.CpuMeter(server=pid).start()
    time.sleep(seconds)
    meter.stop()
    return meter.shares()["server"]


def holding(
    ctx: Context,
    levels: tuple[int, ...] = (1000, 10000),
    probes: int = 50,
    without_deflate: bool = True,
) -> dict[str, Any]:
    """Scenario 3: memory per idle waiting participant, and how long a newcomer waits for
    Consent while that many wait. `without_deflate`: the top level again with clients that do
    not offer permessage-deflate (what mastok would cost with it turned off)."""
    ctx.log("holding capacity")
    top = max(levels)
    out: dict[str, Any] = {
        "per_session": HOLD_PER_SESSION,
        "per_campaign": HOLD_PER_CAMPAIGN,
        "campaigns": math.ceil(top / HOLD_PER_CAMPAIGN),
        "open_files_limit": procs.raise_open_files(),
        **_hold(ctx, levels, probes, ctx.deflate),
        "echo_reference": _idle_echo_reference(ctx, levels, ctx.deflate),
    }
    if without_deflate and ctx.deflate:
        ctx.log("  again without permessage-deflate")
        out["without_deflate"] = {
            **_hold(ctx, (top,), probes, False),
            "echo_reference": _idle_echo_reference(ctx, (top,), False),
        }
    out["client_ceiling"] = client_ceiling(ctx)
    return out


def _hold(ctx: Context, levels: tuple[int, ...], probes: int, deflate: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"deflate": deflate, "levels": []}
    campaigns = math.ceil(max(levels) / HOLD_PER_CAMPAIGN)
    with mastok_on(ctx, "sqlite", "mastok-holding") as (mastok, _stub):
        ctx.log(f"  {campaigns} campaigns of per_session {HOLD_PER_SESSION}")
        slugs = mastok.create_campaigns("h", campaigns, per_session=HOLD_PER_SESSION)
        probe_index = 10_000_000
        _probes(ctx, mastok, slugs[:5], 20, probe_index)  # warm up
        probe_index += 100
        settle(2)
        baseline = mastok.child.usage().rss_bytes
        out["baseline_rss_mib"] = round(baseline / 2**20, 1)
        out["at_0"] = _probes(ctx, mastok, slugs[:5], probes, probe_index)
        probe_index += 100
        holder = loadgen.Holder(
            ctx.workdir,
            {
                **ctx.job(
                    url=mastok.join_url,
                    origin=mastok.origin,
                    slugs=slugs,
                    per_campaign=HOLD_PER_CAMPAIGN,
                ),
                "deflate": deflate,
            },
        )
        held = 0
        try:
            for level in sorted(levels):
                ctx.log(f"  opening {level - held} more waiting participants")
                opened = holder.command(
                    {"cmd": "open", "count": level - held, "concurrency": 100}, 400
                )
                held = level
                settle(3)
                rss = mastok.child.usage().rss_bytes
                filled = slugs[: math.ceil(level / HOLD_PER_CAMPAIGN)]
                probed = _probes(ctx, mastok, filled, probes, probe_index)
                probe_index += 100
                count = holder.command({"cmd": "count"})["open"]
                figures = {
                    "waiting": level,
                    "open_at_end": count,
                    "open_failures": opened["failed"],
                    "open_errors": opened["errors"],
                    "seconds_to_open": round(opened["seconds"], 1),
                    "rss_mib": round(rss / 2**20, 1),
                    "kib_per_participant": round((rss - baseline) / 1024 / level, 2),
                    "idle_server_cpu_share": _idle_cpu(mastok.pid, 5),
                    **probed,
                }
                ctx.log(
                    f"    {count} open, {figures['kib_per_participant']} KiB each, Consent p50 "
                    f"{probed['consent_wait_ms']['p50']} p99 {probed['consent_wait_ms']['p99']} ms"
                )
                out["levels"].append(figures)
        finally:
            with contextlib.suppress(Exception):
                out["client_close"] = holder.close()
            holder.child.stop()
    return out


def _idle_echo_reference(
    ctx: Context, levels: tuple[int, ...], deflate: bool
) -> list[dict[str, Any]]:
    """What the bare stack (uvicorn + Starlette, same WebSocket options) costs per idle socket."""
    ctx.log("  reference: idle sockets on the Starlette echo app")
    echo = servers.start_echo(ctx.workdir)
    out = []
    try:
        settle(1)
        baseline = echo.child.usage().rss_bytes
        holder = loadgen.Holder(
            ctx.workdir,
            {
                **ctx.job(
                    url=f"ws://{procs.LOOPBACK}:{echo.port}/ws/echo",
                    idle=True,
                    slugs=["-"],
                    per_campaign=1,
                ),
                "deflate": deflate,
            },
        )
        held = 0
        try:
            for level in sorted(levels):
                holder.command({"cmd": "open", "count": level - held, "concurrency": 100}, 300)
                held = level
                settle(2)
                rss = echo.child.usage().rss_bytes
                out.append(
                    {
                        "sockets": level,
                        "rss_mib": round(rss / 2**20, 1),
                        "kib_per_socket": round((rss - baseline) / 1024 / level, 2),
                    }
                )
        finally:
            with contextlib.suppress(Exception):
                holder.close()
            holder.child.stop()
    finally:
        echo.stop()
    return out


# -- scenario 4: fan-out to supervisors -------------------------------------------------------


def fanout(
    ctx: Context, supervisors: int = 50, changes: int = 320, background_rate: float = 25.0
) -> dict[str, Any]:
    """Scenario 4: with `supervisors` watching one campaign and pools churning (its own, filled
    and started one participant at a time, and others' at `background_rate` participants a
    second), the delay from a participant's Agree to the last supervisor's JoiningSize."""
    ctx.log(f"fan-out to {supervisors} supervisors")
    with mastok_on(ctx, "sqlite", "mastok-fanout") as (mastok, _stub):
        warm_up(ctx, mastok)
        (slug,) = mastok.create_campaigns("fan", 1, session_duration=1)
        seconds = max(10.0, changes * 0.03)
        background_count = int(background_rate * seconds) // PER_SESSION * PER_SESSION
        background = None
        if background_count:
            slugs = _campaigns(mastok, background_count)
            background = loadgen.start(
                ctx.workdir,
                ctx.job(
                    **join_job(
                        mastok,
                        slugs,
                        background_count,
                        {"mode": "rate", "rate": background_rate},
                        group=PER_SESSION,
                        deadline_s=seconds + 120,
                    )
                ),
            )
            time.sleep(1)
        job = {
            "kind": "fanout",
            "url": mastok.join_url,
            "supervise_url": f"{mastok.supervise_url}?namespace={slug}",
            "origin": mastok.origin,
            "credentials": f"{servers.LOGIN}:{servers.PASSWORD}",
            "slug": slug,
            "supervisors": supervisors,
            "changes": changes,
            "per_session": PER_SESSION,
            "gap_ms": 10,
        }
        try:
            result, meter = measure(ctx, job, timeout=180, clients=1, server=mastok.pid)
        finally:
            background_figures = None
            if background is not None:
                child, out = background
                with contextlib.suppress(RuntimeError):
                    bg = loadgen.finish(child, out, seconds + 130)
                    background_figures = {
                        "rate_per_s": background_rate,
                        "participants": background_count,
                        "reached_starting": len(stats.started(bg["records"])),
                        "errors": stats.errors(bg["records"]),
                        "client_cpu_share": loadgen.client_share(bg),
                    }
                child.stop()
    rows = result["changes"]
    complete = [c for c in rows if not c["missing"]]
    figures: dict[str, Any] = {
        "supervisors": supervisors,
        "changes": len(rows),
        "changes_missed": len(rows) - len(complete),
        "agree_to_last_supervisor_ms": stats.summary([c["last_ms"] for c in complete]),
        "agree_to_first_supervisor_ms": stats.summary([c["first_ms"] for c in complete]),
        "spread_ms": stats.summary([c["last_ms"] - c["first_ms"] for c in complete]),
        "server_cpu_share": meter.shares()["server"],
        "client_cpu_share": loadgen.client_share(result),
        "background": background_figures,
        "client_ceiling": client_ceiling(ctx),
    }
    ctx.log(
        f"  Agree -> last supervisor p50 {figures['agree_to_last_supervisor_ms']['p50']} "
        f"p99 {figures['agree_to_last_supervisor_ms']['p99']} ms"
    )
    return figures


# -- scenario 5: a real oTree -----------------------------------------------------------------


def real_otree(ctx: Context, participants: int = 200, ramp_seconds: float = 20.0) -> dict[str, Any]:
    """Scenario 5: participants through mastok into the real demo oTree. A timing proxy between
    mastok and oTree notes how long each oTree call took; a session start's time from the
    pool's last Agree to Starting, less oTree's calls for that session, is mastok's share."""
    from mastok.otree.local import DEMO_PROJECT, LocalOTree, find_otree_venv

    ctx.log(f"real oTree: {participants} participants")
    port = procs.free_port()
    # oTree runs in a copy of the demo project, outside the repository, removed afterwards.
    data_dir = Path(tempfile.mkdtemp(prefix="mastok-bench-otree-"))
    otree = LocalOTree(
        DEMO_PROJECT,
        port,
        servers.OTREE_KEY,
        venv=find_otree_venv(),
        host=procs.LOOPBACK,
        data_dir=data_dir,
    )
    try:
        otree.start()
        otree_pid = otree.pid or 0
        proxy = servers.start_otree_proxy(ctx.workdir, otree.url)
        try:
            direct = _otree_direct(otree.url, 20)
            hop = _proxy_hop(otree.url, proxy.url)
            httpx.get(f"{proxy.url}/_bench/calls?clear=1", timeout=10)
            url = servers.sqlite_url(ctx.workdir, "mastok-otree")
            mastok = servers.start_mastok(ctx.workdir, "mastok-otree", url, proxy.url, otree.url)
            try:
                slugs = mastok.create_campaigns(
                    "otree", 1, otree_config_name="guess_two", session_duration=60
                )
                job = join_job(
                    mastok,
                    slugs,
                    participants,
                    {"mode": "ramp", "seconds": ramp_seconds},
                    group=PER_SESSION,
                    flow_timeout_s=90,
                )
                result, meter = measure(
                    ctx, job, ramp_seconds + 150, server=mastok.pid, otree=otree_pid
                )
                calls = httpx.get(f"{proxy.url}/_bench/calls", timeout=30).json()
            finally:
                mastok.stop()
        finally:
            proxy.stop()
    finally:
        otree.stop()
        if otree.log_path.exists():
            shutil.copyfile(otree.log_path, ctx.workdir / "otree.log")
        shutil.rmtree(data_dir, ignore_errors=True)
    return _otree_figures(result, meter, calls, direct, participants, hop)


def _proxy_hop(otree_url: str, proxy_url: str, count: int = 100) -> float:
    """What going through the timing proxy adds to one call (ms): the median time of a cheap
    oTree call through it, less the median time of the same call made directly, alternately."""
    headers = {"otree-rest-key": servers.OTREE_KEY}
    times: dict[str, list[float]] = {otree_url: [], proxy_url: []}
    with httpx.Client(headers=headers, timeout=30) as http:
        for n in range(count + 5):
            for url in (otree_url, proxy_url):
                begin = time.perf_counter()
                http.get(f"{url}/api/otree_version").raise_for_status()
                if n >= 5:
                    times[url].append((time.perf_counter() - begin) * 1000)
    hop = statistics.median(times[proxy_url]) - statistics.median(times[otree_url])
    return max(hop, 0.0)


def _otree_direct(url: str, count: int) -> dict[str, Any]:
    """oTree's own creation time, asked directly: POST /api/sessions then GET the session (what
    mastok needs for one session), one after the other."""
    creations, reads = [], []
    with httpx.Client(
        base_url=url, headers={"otree-rest-key": servers.OTREE_KEY}, timeout=30
    ) as http:
        for n in range(count + 2):
            begin = time.perf_counter()
            answer = http.post(
                "/api/sessions",
                json={
                    "session_config_name": "guess_two",
                    "num_participants": 4,
                    "label": f"direct-{n}",
                },
            )
            answer.raise_for_status()
            middle = time.perf_counter()
            http.get(f"/api/sessions/{answer.json()['code']}").raise_for_status()
            end = time.perf_counter()
            if n >= 2:  # the first ones warm oTree up
                creations.append((middle - begin) * 1000)
                reads.append((end - middle) * 1000)
    return {
        "sessions": count,
        "create_ms": stats.summary(creations),
        "read_ms": stats.summary(reads),
        "create_and_read_ms": stats.summary([a + b for a, b in zip(creations, reads, strict=True)]),
    }


def _otree_figures(
    result: dict[str, Any],
    meter: procs.CpuMeter,
    calls: list[dict[str, Any]],
    direct: dict[str, Any],
    participants: int,
    hop_ms: float,
) -> dict[str, Any]:
    # Which oTree session each participant code belongs to, from the proxy's GET session calls.
    session_of: dict[str, str] = {}
    for call in calls:
        for code in call.get("participants") or []:
            session_of[code] = call["code"]
    grouped = stats.pools(
        result["records"], lambda url: session_of.get(url.rsplit("/", 1)[-1], "?")
    )
    # oTree's time for each session: its creation, its read-back, its participants' vars (set
    # in parallel: the span from the first call in to the last out), and the label lookup that
    # came just before its creation (mastok asks for every session's label first).
    otree_ms: dict[str, float] = {}
    hops: dict[str, int] = {}
    for code, (first, last) in _vars_spans(calls, session_of).items():
        otree_ms[code] = last - first
        hops[code] = 1
    lookup, lookups = 0.0, 0
    for call in calls:
        if call["method"] == "GET" and call["path"] == "/api/sessions":
            lookup += call["ms"]
            lookups += 1
        elif call["method"] == "POST" and call["path"] == "/api/sessions" and call.get("code"):
            otree_ms[call["code"]] = otree_ms.get(call["code"], 0.0) + call["ms"] + lookup
            hops[call["code"]] = hops.get(call["code"], 0) + 1 + lookups
            lookup, lookups = 0.0, 0
        elif call["method"] == "GET" and call.get("code"):
            otree_ms[call["code"]] = otree_ms.get(call["code"], 0.0) + call["ms"]
            hops[call["code"]] = hops.get(call["code"], 0) + 1
    starts, shares, mastok_parts, corrected = [], [], [], []
    for code, members in grouped.items():
        if code not in otree_ms:
            continue
        last_agree = max(m["agree"] for m in members)
        start_ms = max(m["starting"] for m in members) - last_agree
        starts.append(start_ms)
        mastok_parts.append(start_ms - otree_ms[code])
        corrected.append(start_ms - otree_ms[code] - hop_ms * hops[code])
        shares.append((start_ms - otree_ms[code]) / start_ms if start_ms > 0 else 0.0)
    total_start = sum(starts)
    return {
        "breakdown_ms": _start_breakdown(grouped, calls),
        "participants": participants,
        "reached_starting": len(stats.started(result["records"])),
        "errors": stats.errors(result["records"]),
        "sessions": len(starts),
        "session_start_ms": stats.summary(starts),
        "otree_calls_ms": stats.summary([otree_ms[c] for c in grouped if c in otree_ms]),
        "mastok_part_ms": stats.summary(mastok_parts),
        "mastok_share_p50": _round(stats.percentile(shares, 50), 3),
        # mastok's part over all sessions' start time: as measured (the proxy's hop counted as
        # mastok's), and without the proxy's hop (what mastok costs without the instrument).
        "mastok_share_with_proxy_hop": round(sum(mastok_parts) / total_start, 3)
        if total_start
        else None,
        "mastok_share_overall": round(sum(corrected) / total_start, 3) if total_start else None,
        "proxy_hop_ms_per_call": round(hop_ms, 2),
        "mastok_part_without_hop_ms": stats.summary(corrected),
        "otree_calls": _call_summary(calls),
        "otree_direct": direct,
        "server_cpu_share": meter.shares().get("server"),
        "otree_cpu_share": meter.shares().get("otree"),
        "client_cpu_share": loadgen.client_share(result),
    }


VARS_PATH = "/api/participant_vars/"


def _vars_spans(
    calls: list[dict[str, Any]], session_of: dict[str, str]
) -> dict[str, tuple[float, float]]:
    """Each session's participant vars calls (issue 11: one a participant, in parallel): from
    the first to reach oTree to the last to leave it, wall-clock ms."""
    spans: dict[str, tuple[float, float]] = {}
    for call in calls:
        if call["method"] != "POST" or not call["path"].startswith(VARS_PATH):
            continue
        code = session_of.get(call["path"][len(VARS_PATH) :])
        if code is None:
            continue
        first, last = spans.get(code, (call["arrived"], call["left"]))
        spans[code] = (min(first, call["arrived"]), max(last, call["left"]))
    return spans


def _start_breakdown(
    grouped: dict[str, list[dict[str, Any]]], calls: list[dict[str, Any]]
) -> dict[str, Any]:
    """Where a session start's time goes (medians over sessions, ms), from the load
    generator's times and the proxy's (both wall-clock): mastok's steps and oTree's calls."""
    creations = {c["code"]: c for c in calls if c["method"] == "POST" and c.get("code")}
    reads = {
        c["code"]: c
        for c in calls
        if c["method"] == "GET" and c["path"].startswith("/api/sessions/")
    }
    session_of = {p: c["code"] for c in reads.values() for p in c.get("participants") or []}
    spans = _vars_spans(calls, session_of)
    steps: dict[str, list[float]] = {}
    for code, members in grouped.items():
        post, get, span = creations.get(code), reads.get(code), spans.get(code)
        if post is None or get is None or span is None:
            continue
        last = max(members, key=lambda m: m["agree"])
        if last.get("instructions") is None:
            continue
        marks = [
            (
                "mastok: last Agree to the creation request reaching oTree",
                last["agree"],
                post["arrived"],
            ),
            ("oTree (through the proxy): POST /api/sessions", post["arrived"], post["left"]),
            ("mastok: to the read-back request reaching oTree", post["left"], get["arrived"]),
            ("oTree (through the proxy): GET /api/sessions/{code}", get["arrived"], get["left"]),
            ("mastok: to the first participant vars request reaching oTree", get["left"], span[0]),
            ("oTree (through the proxy): each participant's vars, in parallel", *span),
            (
                "mastok: to the first Starting (the start, written)",
                span[1],
                min(m["starting"] for m in members),
            ),
            (
                "meanwhile, mastok: last Agree to its Instructions (the move, written)",
                last["agree"],
                last["instructions"],
            ),
        ]
        for name, begin, end in marks:
            steps.setdefault(name, []).append(end - begin)
    return {name: _round(stats.percentile(values, 50), 2) for name, values in steps.items()}


def _call_summary(calls: list[dict[str, Any]]) -> dict[str, Any]:
    kinds: dict[str, list[float]] = {}
    for call in calls:
        path = call["path"]
        if path.startswith("/api/sessions/"):
            path = "/api/sessions/{code}"
        elif path.startswith(VARS_PATH):
            path = VARS_PATH + "{code}"
        key = f"{call['method']} {path}"
        kinds.setdefault(key, []).append(call["ms"])
    return {key: stats.summary(values) for key, values in sorted(kinds.items())}


# -- scenario 6: the logging API (LightMill) --------------------------------------------------


def logging_api(ctx: Context, **options: Any) -> dict[str, Any]:
    """Scenario 6: trials logged through LightMill's API by wrk clients, on SQLite and
    PostgreSQL, against a bare JSON POST ceiling; the export's time and memory
    (bench/logging_api.py, which takes the options)."""
    from bench import logging_api as scenario

    return scenario.logging_api(ctx, **options)


SCENARIOS: dict[str, Callable[..., dict[str, Any]]] = {
    "waiting_room": waiting_room,
    "ceiling": ceiling,
    "holding": holding,
    "fanout": fanout,
    "real_otree": real_otree,
    "logging_api": logging_api,
}
