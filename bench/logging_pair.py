"""Scenario 6's two-process run: a leader and a standby on one PostgreSQL, behind one wrk.

Both processes serve LightMill's API (issue 15). One wrk deals its connections to the two
processes' ports round-robin (bench/wrk/trials.lua, TRIALS_PORTS: each thread's address set in
wrk's setup), so the split costs nothing beyond wrk's own CPU, which is reported. The same runs
are posted first through the leader alone (the standby idle beside it), then through both, the
same connections in all: combined trials a second over one process's, each process's CPU, the
cluster's and wrk's. Then the checks: after every wrk run each run's position on the server is
the one wrk was acknowledged, or one more (a post in flight when wrk stopped); the export has
each completed trial once with its 5 events; and a lock taken through the leader holds through
the standby.
"""

from __future__ import annotations

import asyncio
import csv
import json
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench import procs, servers
from bench.logging_api import (
    EVENTS,
    EXPERIMENT,
    MAX_PER_CONNECTION,
    NO_OTREE,
    PER_BLOCK,
    Client,
    postmaster,
    prepare,
    resync,
    run_wrk,
)
from bench.scenarios import Context
from mastok.config import PROJECT_ROOT

# One process, then two, in turns, this many times. The machine's speed drifts within seconds:
# a round's ratio read 1.21 to 1.46 within one run of three rounds here (2-core AMD EPYC), so
# four rounds of each are pooled, where two rounds alone landed on either side of 1.3x by chance.
ROUNDS = 4


def two_processes(ctx: Context, connections: int, seconds: float, warm_up: float) -> dict[str, Any]:
    """Trials logged by one process, then by a leader and a standby together (legs of
    `seconds`), on one PostgreSQL, with the checks (module docstring)."""
    ctx.log(f"logging API on two processes (PostgreSQL), {connections} connections")
    total = warm_up + 2 * ROUNDS * seconds
    blocks = math.ceil(MAX_PER_CONNECTION * total / PER_BLOCK)
    with servers.postgres(ctx.workdir) as cluster:
        url = cluster.new_database()
        database_pid = postmaster(cluster.server.data_dir)
        leader = servers.start_mastok(ctx.workdir, "mastok-pair-leader", url, NO_OTREE)
        try:
            standby = servers.start_mastok(ctx.workdir, "mastok-pair-standby", url, NO_OTREE)
            try:
                pair = (leader, standby)
                out = _runs(ctx, pair, url, connections, blocks, seconds, warm_up, database_pid)
                out["roles"] = {"leader": _role(leader), "standby": _role(standby)}
            finally:
                standby.stop()
        finally:
            leader.stop()
        out["export_check"] = export_check(ctx, url, out["positions"])
    return out


def _runs(
    ctx: Context,
    pair: tuple[servers.Mastok, servers.Mastok],
    url: str,
    connections: int,
    blocks: int,
    seconds: float,
    warm_up: float,
    database_pid: int | None,
) -> dict[str, Any]:
    """The database settled, a warm-up through both, then one process and two in turns
    (ROUNDS of each, `seconds` each): other work on the machine weighs on both alike."""
    leader, standby = pair
    # One run more than connections: the lock check's, locked through the leader.
    clients = prepare(leader, connections + 1, blocks)
    settle(url)
    spare, clients = clients[-1], clients[:-1]
    ports = (leader.port, standby.port)
    phases = [("warm-up", warm_up, ports)]
    for n in range(1, ROUNDS + 1):
        phases += [(f"one process {n}", seconds, (leader.port,))]
        phases += [(f"two processes {n}", seconds, ports)]
    checks, figures = [], {}
    for name, length, to in phases:
        figures[name] = _phase(ctx, name, pair, clients, length, to, database_pid)
        checks.append(acknowledged_check(leader, clients, name))
    one = combined([figures[f"one process {n}"] for n in range(1, ROUNDS + 1)])
    two = combined([figures[f"two processes {n}"] for n in range(1, ROUNDS + 1)])
    ratio = two["rate_per_s"] / one["rate_per_s"] if one["rate_per_s"] else None
    each = round_ratios(figures)
    ctx.log(f"  two processes over one: {ratio:.2f}x (rounds {each})" if ratio else "  no rate")
    return {
        "machine": machine_bound(one, two, os.cpu_count() or 1),
        "connections": connections,
        "rounds": [figures[name] for name, _, _ in phases[1:]],
        "one_process": one,
        "two_processes": two,
        "ratio": round(ratio, 3) if ratio else None,
        "round_ratios": each,
        "acknowledged": checks,
        "lost": sum(c["lost"] for c in checks),
        "unexpected": sum(c["unexpected"] for c in checks),
        "locks": lock_check(leader, standby, spare),
        "positions": {c.run: c.position for c in clients},
    }


def settle(url: str) -> None:
    """VACUUM ANALYZE the design just imported, then autovacuum off for the rounds (the
    cluster is the pair's own). Left on, autovacuum's passes came in the middle of the rounds:
    first over the import (330 MB of `lm_trials` at 10% fill), then over the trials logged,
    each a core's worth for 10-15 s on whichever legs it met. In two runs of the pair alone it
    met the third round's one-process leg, which logged 6,579 and 7,391 trials/s against
    7,962-8,674 in the others, and that round read 1.663x and 1.493x against 1.196-1.363x.
    In a full run one process's legs slowed from 7,718 to 5,935 trials/s over the rounds as
    PostgreSQL's share in them rose from 0.25 to 0.42 of a core. Until its ANALYZE the trial
    write also read `lm_runs` by a sequential scan, and `lm_runs` (16 rows) had grown to 177
    pages by then, 3 in a run it did not meet (the import now analyzes its tables itself:
    mastok/lightmill/importing.py). The legs compare the servers; the database's upkeep is
    left out of both."""

    async def vacuum() -> None:
        connection = await asyncpg.connect(url)
        try:
            await connection.execute("VACUUM ANALYZE")
            await connection.execute("ALTER SYSTEM SET autovacuum = off")
            await connection.execute("SELECT pg_reload_conf()")
        finally:
            await connection.close()

    asyncio.run(vacuum())


def round_ratios(figures: dict[str, dict[str, Any]]) -> list[float | None]:
    """Each round's two processes over its one process: how far the machine's drift moves
    the ratio from one round to the next."""
    out = []
    for n in range(1, ROUNDS + 1):
        one, two = figures[f"one process {n}"], figures[f"two processes {n}"]
        rate = one["rate_per_s"]
        out.append(round(two["rate_per_s"] / rate, 3) if rate and two["rate_per_s"] else None)
    return out


def machine_bound(one: dict[str, Any], two: dict[str, Any], cores: int) -> dict[str, Any]:
    """What the machine's cores leave the pair: the cores one process's runs used in all (both
    servers, PostgreSQL, wrk), so the most two could log at one process's CPU a trial, and
    what a trial cost all of them with two processes against one."""
    used = [sum(f["cpu_share"].values()) + (f["wrk_cpu_share"] or 0) for f in (one, two)]
    rates = [f["rate_per_s"] for f in (one, two)]
    if not all(used) or not all(rates):
        return {"cores": cores}
    per_trial = [1000 * u / r for u, r in zip(used, rates, strict=True)]
    return {
        "cores": cores,
        "cores_used": {"one_process": round(used[0], 3), "two_processes": round(used[1], 3)},
        "cpu_ms_a_trial": {
            "one_process": round(per_trial[0], 3),
            "two_processes": round(per_trial[1], 3),
        },
        "most_at_one_process_cost": round(cores / used[0], 3),
        "cost_ratio": round(per_trial[1] / per_trial[0], 3),
        "servers_preempted_a_trial": {
            "one_process": round(one["preemptions"] / one["stored"], 3),
            "two_processes": round(two["preemptions"] / two["stored"], 3),
        },
    }


def _phase(
    ctx: Context,
    name: str,
    pair: tuple[servers.Mastok, servers.Mastok],
    clients: list[Client],
    seconds: float,
    to: tuple[int, ...],
    database_pid: int | None,
) -> dict[str, Any]:
    """One wrk run, its connections dealt to the ports `to`."""
    leader, standby = pair
    before = [c.position for c in clients]
    preempted = [procs.preemptions(p.pid) for p in pair]
    found = run_wrk(
        ctx,
        f"wrk-pair-{name.replace(' ', '-')}",
        leader.url,
        EXPERIMENT,
        clients,
        seconds,
        database_pid,
        ports=to,
        leader=leader.pid,
        standby=standby.pid,
    )
    found["preemptions"] = sum(procs.preemptions(p.pid) for p in pair) - sum(preempted)
    found["phase"] = name
    found["trials_by_process"] = _by_process(clients, before, to, (leader.port, standby.port))
    found["cpu_ms_per_own_trial"] = _per_own_trial(found)
    _log(ctx, name, found)
    return found


def combined(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several wrk runs' figures as one: totals, and shares weighted by each run's length."""
    seconds = sum(r["seconds"] for r in runs)
    stored = sum(r["stored"] for r in runs)
    who = {name for r in runs for name in r["cpu_share"]}
    cpu_s = {name: sum(r["cpu_share"].get(name, 0) * r["seconds"] for r in runs) for name in who}
    by_process: Counter[str] = Counter()
    for r in runs:
        by_process.update(r["trials_by_process"])
    found: dict[str, Any] = {
        "seconds": round(seconds, 2),
        "stored": stored,
        "non_2xx": sum(r["non_2xx"] for r in runs),
        "rate_per_s": round(stored / seconds, 1) if seconds else None,
        "p99_ms_worst": max(r["latency_ms"]["p99"] for r in runs),
        "cpu_share": {name: round(cpu / seconds, 3) for name, cpu in cpu_s.items()},
        "cpu_ms_per_trial": {
            name: round(1000 * cpu / stored, 3) if stored else None for name, cpu in cpu_s.items()
        },
        "wrk_cpu_share": round(sum(r["wrk_cpu_share"] * r["seconds"] for r in runs) / seconds, 3),
        "trials_by_process": dict(by_process),
        "preemptions": sum(r["preemptions"] for r in runs),
    }
    found["cpu_ms_per_own_trial"] = _per_own_trial(found)
    return found


def _by_process(
    clients: list[Client], before: list[int], to: tuple[int, ...], ports: tuple[int, ...]
) -> dict[str, int]:
    """Trials each process acknowledged: client i's went to port to[i % len(to)]."""
    names = dict(zip(ports, ("leader", "standby"), strict=True))
    out: Counter[str] = Counter()
    for i, (client, start) in enumerate(zip(clients, before, strict=True)):
        out[names[to[i % len(to)]]] += client.position - start
    return dict(out)


def _per_own_trial(f: dict[str, Any]) -> dict[str, float | None]:
    """Each process's CPU a trial it served itself (cpu_ms_per_trial divides by all trials)."""
    out = {}
    for who, own in f["trials_by_process"].items():
        per_trial = f["cpu_ms_per_trial"].get(who)
        out[who] = round(per_trial * f["stored"] / own, 3) if own and per_trial else None
    return out


def _log(ctx: Context, name: str, f: dict[str, Any]) -> None:
    share, ms = f["cpu_share"], f["cpu_ms_per_trial"]
    ctx.log(
        f"  {name}: {f['rate_per_s']} trials/s, p50/p99 {f['latency_ms']['p50']}/"
        f"{f['latency_ms']['p99']} ms; CPU share leader {share.get('leader')}, standby "
        f"{share.get('standby')}, PostgreSQL {share.get('database')}, wrk {f['wrk_cpu_share']}; "
        f"ms a trial {ms} (own trials {f['cpu_ms_per_own_trial']}); servers preempted "
        f"{f['preemptions'] / f['stored'] if f['stored'] else 0:.3f} times a trial; "
        f"non-2xx {f['non_2xx']}"
    )


def acknowledged_check(leader: servers.Mastok, clients: list[Client], phase: str) -> dict[str, Any]:
    """Each run's position on the server against the one wrk was acknowledged: equal, or one
    more (a post in flight when wrk stopped). Fewer is a trial lost; more than one more, a
    trial stored that no client posted in order. The clients move to the server's positions."""
    acknowledged = [c.position for c in clients]
    resync(leader, clients)
    gaps = [c.position - a for c, a in zip(clients, acknowledged, strict=True)]
    return {
        "phase": phase,
        "acknowledged": sum(acknowledged),
        "on_server": sum(c.position for c in clients),
        "in_flight_stored": sum(g for g in gaps if g == 1),
        "lost": sum(-g for g in gaps if g < 0),
        "unexpected": sum(g for g in gaps if g > 1),
    }


def lock_check(leader: servers.Mastok, standby: servers.Mastok, spare: Client) -> dict[str, Any]:
    """The spare run, locked through the leader: the standby refuses a second lock and a post
    with another token, and takes the post with the run's."""
    path = f"/api/trial/{EXPERIMENT}/{spare.run}/0/0"
    body = {"token": spare.token, "measures": {"trial": {"time": 1}, "events": []}}
    with httpx.Client(base_url=standby.url, timeout=30) as http:
        relock = http.get(f"/api/run/{EXPERIMENT}/{spare.run}/lock")
        wrong = http.post(path, content=json.dumps({**body, "token": "not-the-token"}))
        right = http.post(path, content=json.dumps(body))
    found = {
        "second_lock": f"{relock.status_code} {_type(relock)}",
        "wrong_token": f"{wrong.status_code} {_type(wrong)}",
        "right_token": str(right.status_code),
    }
    found["honoured"] = found == {
        "second_lock": "405 RunAlreadyLocked",
        "wrong_token": "405 WrongToken",
        "right_token": "200",
    }
    return found


def _type(answer: httpx.Response) -> str:
    try:
        return str(answer.json().get("type"))
    except ValueError:
        return answer.text[:80]


def _role(mastok: servers.Mastok) -> str:
    return str(httpx.get(f"{mastok.url}/readyz", timeout=10).json().get("role"))


# -- the export --------------------------------------------------------------------------------


def export_check(ctx: Context, url: str, positions: dict[str, int]) -> dict[str, Any]:
    """`mastok export` of the experiment: each wrk run's completed trials are its position on
    the server, each once, each with its 5 events once."""
    out_dir = ctx.workdir / "export-pair"
    argv = [sys.executable, "-m", "mastok", "export", "--experiment", EXPERIMENT]
    argv += ["--output-dir", str(out_dir), "--format", "csv", "--database", url]
    env = {**os.environ, "MASTOK_MODE": "TEST"}
    done = subprocess.run(argv, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"mastok export failed: {done.stderr[-2000:]}")
    trials = _completed_trials(out_dir / f"{EXPERIMENT}-trials.csv", set(positions))
    events = _events(out_dir / f"{EXPERIMENT}-events.csv", set(positions))
    per_run = Counter(run for run, _, _ in trials)
    mismatched = {
        run: (per_run.get(run, 0), n) for run, n in positions.items() if per_run.get(run, 0) != n
    }
    doubled_trials = sum(n - 1 for n in trials.values() if n > 1)
    doubled_events = sum(n - 1 for n in events.values() if n > 1)
    per_trial = Counter(key[:3] for key in events)
    wrong_events = sum(1 for key in trials if per_trial.get(key, 0) != EVENTS)
    found = {
        "trials_completed": sum(trials.values()),
        "events": sum(events.values()),
        "runs_mismatched": mismatched,
        "doubled_trials": doubled_trials,
        "doubled_events": doubled_events,
        "trials_without_their_events": wrong_events,
    }
    found["ok"] = not mismatched and not doubled_trials and not doubled_events and not wrong_events
    ctx.log(f"  export check: {found}")
    return found


def _completed_trials(path: Path, runs: set[str]) -> Counter[tuple[str, str, str]]:
    """(run, block, trial) of each completed trial of these runs, as often as exported."""
    with path.open(newline="") as f:
        return Counter(
            (row["runId"], row["blockNumber"], row["trialNumber"])
            for row in csv.DictReader(f)
            if row["serverCompletionDate"] and row["runId"] in runs
        )


def _events(path: Path, runs: set[str]) -> Counter[tuple[str, str, str, str]]:
    with path.open(newline="") as f:
        return Counter(
            (row["runId"], row["blockNumber"], row["trialNumber"], row["eventNumber"])
            for row in csv.DictReader(f)
            if row["runId"] in runs
        )
