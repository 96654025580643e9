"""The benchmark's results: the machine, the targets (PASS/MISS), latest.json, latest.md and the
chart."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import speed
from mastok.config import PROJECT_ROOT

KIB = 1024


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * KIB
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for package in (
        "uvicorn",
        "starlette",
        "websockets",
        "sqlalchemy",
        "asyncpg",
        "aiosqlite",
        "uvloop",
        "httptools",
    ):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    node = _output(["node", "--version"])
    ws_package = PROJECT_ROOT / "bench" / "node_modules" / "ws" / "package.json"
    ws_version = json.loads(ws_package.read_text())["version"] if ws_package.exists() else None
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(memory / 2**30, 1),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "node": node,
        "node_ws": ws_version,
        "packages": versions,
        "postgresql": _output(["pg_ctl", "--version"]),
    }


def _output(argv: list[str]) -> str | None:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def git() -> dict[str, Any]:
    commit = _output(["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"])
    try:
        status = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "status", "--porcelain"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        status = ""
    changed = [line[3:] for line in status.splitlines() if line.strip()]
    return {"commit": commit, "uncommitted_changes": changed}


# -- targets ----------------------------------------------------------------------------------


def _row(
    name: str, target: str, measured: Any, ratio: float | None, ok: bool | None, note: str = ""
) -> dict[str, Any]:
    status = "n/a" if ok is None else ("PASS" if ok else "MISS")
    return {
        "target": name,
        "goal": target,
        "measured": measured,
        "ratio": None if ratio is None else round(ratio, 3),
        "status": status,
        "note": note,
    }


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with its measured figure, measured/goal ratio and PASS or MISS."""
    rows = []
    scenarios = results.get("scenarios", {})
    ceiling = scenarios.get("ceiling")
    if ceiling and ceiling.get("rate_ratio") is not None:
        rows += _ceiling_targets(ceiling)
    for key in ("waiting_room_sqlite", "waiting_room_postgresql"):
        room = scenarios.get(key)
        if room and room.get("shares"):
            rows.append(_share_target(room))
    hold = scenarios.get("holding")
    if hold and hold.get("levels"):
        top = max(hold["levels"], key=lambda level: level["waiting"])
        kib = top["kib_per_participant"]
        rows.append(
            _row(
                f"server memory per idle waiting participant (at {top['waiting']:,})",
                "<= 30 KiB",
                f"{kib} KiB",
                kib / 30,
                kib <= 30,
                "; ".join(
                    f"{level['waiting']:,}: {level['kib_per_participant']} KiB"
                    for level in hold["levels"]
                )
                + _without_deflate_note(hold),
            )
        )
        p99 = top["consent_wait_ms"]["p99"]
        held = top["open_at_end"]
        rows.append(
            _row(
                f"{top['waiting']:,} waiting sockets held, newcomer gets Consent (p99)",
                f"{top['waiting']:,} held and <= 100 ms",
                f"{held:,} held, Consent p99 {p99} ms",
                None if p99 is None else p99 / 100,
                None if p99 is None else held >= top["waiting"] and p99 <= 100,
                f"p50 {top['consent_wait_ms']['p50']} ms over {top['probes']} probes",
            )
        )
    fan = scenarios.get("fanout")
    if fan:
        p99 = fan["agree_to_last_supervisor_ms"]["p99"]
        rows.append(
            _row(
                f"fan-out to {fan['supervisors']} supervisors (Agree -> last JoiningSize, p99)",
                f"<= {FANOUT_MS} ms (the 100 ms coalescing period + 20 ms)",
                f"{p99} ms",
                None if p99 is None else p99 / FANOUT_MS,
                None if p99 is None else p99 <= FANOUT_MS and not fan["changes_missed"],
                f"p50 {fan['agree_to_last_supervisor_ms']['p50']} ms, {fan['changes']} changes",
            )
        )
    if scenarios.get("placement"):
        rows.append(_placement_target(scenarios["placement"]))
    if scenarios.get("restart"):
        rows.append(_restart_target(scenarios["restart"]))
    otree = scenarios.get("real_otree")
    if otree and otree.get("mastok_share_overall") is not None:
        share = otree["mastok_share_overall"]
        rows.append(
            _row(
                "mastok's share of a real oTree session start",
                "< 20%",
                f"{share:.1%}",
                share / 0.2,
                share < 0.2,
                f"start p50 {otree['session_start_ms']['p50']} ms, oTree calls p50 "
                f"{otree['otree_calls_ms']['p50']} ms; {otree['mastok_share_with_proxy_hop']:.1%} "
                "counting the timing proxy's hop as mastok's",
            )
        )
    lightmill = scenarios.get("logging_api")
    if lightmill:
        rows += _logging_targets(lightmill)
    if scenarios.get("attacks"):
        rows.append(_attacks_target(scenarios["attacks"]))
    if scenarios.get("live_stats"):
        rows += _live_stats_targets(scenarios["live_stats"])
    if scenarios.get("failover"):
        rows.append(_failover_target(scenarios["failover"]))
    if scenarios.get("study"):
        rows.append(_study_target(scenarios["study"]))
    return rows


def _failover_target(fo: dict[str, Any]) -> dict[str, Any]:
    after = fo["back_after_lead_ms"]
    p99, doubled = after["p99"], fo["doubled"]
    goal_ms = 1000 * fo["target_s"]
    back = f"{fo['back_in_place']}/{fo['participants']} back in place"
    return _row(
        f"{fo['participants']:,} waiting participants back in place after the leader's SIGKILL "
        "(through the standby, PostgreSQL)",
        f"all back, p99 <= {fo['target_s']:g} s after the standby leads, no session doubled",
        f"p99 {_fmt(p99)} ms, {back}",
        None if p99 is None else p99 / goal_ms,
        p99 is not None and p99 <= goal_ms and fo["all_back"] and doubled["ok"],
        f"the standby led {_fmt(fo['leads_after_s'])} s after the SIGKILL (/readyz 200 at "
        f"{_fmt(fo['readyz_after_s'])} s); back p50 {_fmt(after['p50'])} ms, max "
        f"{_fmt(after['max'])} ms after the lead; sessions: {doubled['otree_sessions_created']} "
        f"in oTree, {doubled['mastok_sessions']} in mastok for {doubled['expected_sessions']} "
        f"campaigns; load average at the kill {fo['load_average_at_kill'][0]}",
    )


ECHO_SHARE = 0.25  # issue 15: a join is more work than 3 echoed frames, not 4x more
FLOOR_SHARE = 0.60  # of the same work done by a bare app (bench/join_floor_app.py)


def _ceiling_targets(ceiling: dict[str, Any]) -> list[dict[str, Any]]:
    mastok, echo = ceiling["mastok"], ceiling["echo"]
    floor = ceiling.get("floor") or {}
    mine = mastok["server_cpu_ms_per_participant"]
    cpu = f"server CPU per flow: mastok {mine} ms, echo {echo['server_cpu_ms_per_flow']} ms"
    if floor:
        cpu += f", the work-equivalent app {floor['server_cpu_ms_per_participant']} ms"
    ratio = ceiling["rate_ratio"]
    turns = _turns(ceiling)
    rows = [
        _row(
            "join-flow rate vs echo ceiling (same client, same run)",
            f">= {ECHO_SHARE:.0%} of the echo app's flow rate",
            f"{mastok['rate_per_s']}/s vs {echo['rate_per_s']}/s = {ratio:.1%}",
            ratio / ECHO_SHARE,
            ratio >= ECHO_SHARE,
            cpu + turns,
        )
    ]
    floor_ratio = ceiling.get("floor_rate_ratio")
    if floor_ratio is not None:
        rows.append(
            _row(
                "join-flow rate vs the work-equivalent app (same frames, rows and oTree calls; "
                "SQLite, same client, same run)",
                f">= {FLOOR_SHARE:.0%} of its flow rate",
                f"{mastok['rate_per_s']}/s vs {floor['rate_per_s']}/s = {floor_ratio:.1%}",
                floor_ratio / FLOOR_SHARE,
                floor_ratio >= FLOOR_SHARE,
                f"server CPU a participant: mastok {mine} ms, the app "
                f"{floor['server_cpu_ms_per_participant']} ms" + turns,
            )
        )
    return rows


def _turns(ceiling: dict[str, Any]) -> str:
    """Each server's rate in each turn, the quickest taken (older results ran once)."""
    if not ceiling.get("turns"):
        return ""
    rates = {
        name: ceiling[key].get("all_rates_per_s")
        for name, key in (("mastok", "mastok"), ("echo", "echo"), ("the app", "floor"))
    }
    shown = ", ".join(
        f"{name} {' / '.join(map(str, found))}" for name, found in rates.items() if found
    )
    return f"; the quickest of {ceiling['turns']} turns each ({shown} flows/s)"


def _share_target(room: dict[str, Any]) -> dict[str, Any]:
    """p99 last Agree -> Starting at half the saturation rate measured in the same run (the
    other shares reported beside it)."""
    half, *others = sorted(room["shares"], key=lambda run: run["share"])
    p99 = half["latency_ms"]["p99"]
    everyone = half["reached_starting"] == half["participants"]
    beside = "; ".join(
        f"at {run['share']:.0%} ({_rates(run['offered_rate_per_s'])}/s): p99 "
        f"{run['latency_ms']['p99']} ms"
        for run in others
    )
    saturations = _rates([turn["rate_per_s"] for turn in room["saturations"]])
    return _row(
        f"p99 last Agree -> Starting at {half['share']:.0%} of the saturation rate "
        f"({room['backend']}, same run)",
        "<= 50 ms",
        f"{p99} ms at {_rates(half['offered_rate_per_s'])}/s (saturation {saturations}/s)",
        None if p99 is None else p99 / 50,
        None if p99 is None else p99 <= 50 and everyone,
        f"{half['turns']} turns pooled (each turn's p99 {_rates(half['each_p99_ms'])} ms); "
        f"{half['reached_starting']:,}/{half['participants']:,} reached Starting; {beside}",
    )


def _rates(values: list[Any]) -> str:
    """Each turn's figure, in turn order."""
    return " / ".join(_fmt(value) for value in values)


def _study_target(figures: dict[str, Any]) -> dict[str, Any]:
    goal = figures["target_overshoot_s"]
    worst = figures["worst_overshoot_s"]
    arrivals = sum(rate["arrivals"] for rate in figures["rates"])
    each = "; ".join(
        f"{_fmt(rate['rate_per_s'])}/s: {rate['arrivals']} arrivals, timeouts "
        f"{_share(rate['timeout_share'])}, overshoot {_fmt(rate['overshoot_s'])} s"
        for rate in figures["rates"]
    )
    return _row(
        f"a simulated study (Poisson arrivals at {len(figures['rates'])} rates, waiting limit "
        f"{figures['waiting_limit_s']:g} s, ready check {figures['ready_check_s']} s, leavers)",
        f"nobody waits past the limit by more than {goal:g} s; every participant ends exactly "
        "one way",
        f"worst overshoot {_fmt(worst)} s, {figures['lost']} of {arrivals} lost or doubled",
        None if worst is None else max(worst, 0) / goal,
        figures["passed"],
        f"{each} (load average {figures['load_average']['before'][0]} -> "
        f"{figures['load_average']['after'][0]})",
    )


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _live_stats_targets(figures: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    goal = figures["target_ratio"]
    for backend in LOGGING_BACKENDS:
        run = figures.get(backend)
        if not run:
            continue
        rows.append(
            _row(
                f"a campaign's figures (`/stats`) at {figures['visits']:,} visits vs a bare "
                f"count(*) of them ({backend}, same table, same run)",
                f"<= {goal:g}x the count's time (p50)",
                f"{run['stats_ms']['p50']} ms vs {run['count_ms']['p50']} ms = x{run['ratio']}",
                run["ratio"] / goal,
                run["ratio"] <= goal,
                f"{run['table_rows']:,} visits in {figures['other_campaigns'] + 1} campaigns; "
                f"x{run['ratio_to_rows_read']} one read of the campaign's rows "
                f"({run['rows_read_ms']['p50']} ms)",
            )
        )
    return rows


def _attacks_target(attacked: dict[str, Any]) -> dict[str, Any]:
    runs = attacked["attacks"]
    quiet = runs["none"]["healthz_ms"]["p99"]
    each = ", ".join(
        f"{kind} {_fmt(run['healthz_ms']['p99'])}" for kind, run in runs.items() if kind != "none"
    )
    worst = attacked["worst_p99_ms"]
    return _row(
        "/healthz under each attack of issue 13, from one address, mastok's default limits",
        f"p99 < {attacked['target_p99_ms']:g} ms under every attack",
        f"worst p99 {_fmt(worst)} ms",
        worst / attacked["target_p99_ms"],
        attacked["passed"],
        f"p99 in ms: {each}; {_fmt(quiet)} without an attack, same run "
        f"({attacked['seconds']:g} s each)",
    )


PLACEMENT_RATIO = 2.0  # p99 with supervisors watching at most twice the p99 without
RESTART_SECONDS = 5.0  # bench/README.md says why


def _placement_target(place: dict[str, Any]) -> dict[str, Any]:
    alone, watched, ratios = place["without"], place["with"], place["ratios"]
    parts = [
        ("Agree -> Instructions", "agree_to_instructions_ms"),
        ("last Agree -> Starting", "last_agree_to_starting_ms"),
    ]
    measured = "; ".join(
        f"{what} p99 {_fmt(watched[key]['p99'])} vs {_fmt(alone[key]['p99'])} ms "
        f"(x{_fmt(ratios[f'{key}_p99'])})"
        for what, key in parts
    )
    worst = [ratios[f"{key}_p99"] for _, key in parts]
    ratio = None if None in worst else max(r for r in worst if r is not None)
    everyone = all(leg["reached_starting"] == place["participants"] for leg in (alone, watched))
    current = watched.get("supervisors_with_current_sizes")
    return _row(
        f"placement with {place['supervisors']} supervisors watching vs none (p99, "
        f"{place['rate_per_s']:g} participants/s)",
        f"p99 <= {PLACEMENT_RATIO:g}x the p99 without",
        measured,
        None if ratio is None else ratio / PLACEMENT_RATIO,
        None if ratio is None else ratio <= PLACEMENT_RATIO and everyone,
        f"p50 {_fmt(watched['agree_to_instructions_ms']['p50'])} vs "
        f"{_fmt(alone['agree_to_instructions_ms']['p50'])} ms (Agree -> Instructions); "
        f"reached Starting {watched['reached_starting']} and {alone['reached_starting']} of "
        f"{place['participants']}; {_fmt(current)} of {watched['supervisors']} supervisors "
        f"shown the current sizes; {_fmt(watched.get('frames_per_supervisor'))} frames each",
    )


def _restart_target(again: dict[str, Any]) -> dict[str, Any]:
    seconds = again["all_started_s"]
    otree = again["otree"]
    started = f"{again['campaigns_started']}/{again['campaigns']} started"
    return _row(
        f"{again['campaigns']} campaigns' first sessions after a restart (SIGKILL; oTree "
        f"holding {again['otree_sessions']:,} sessions)",
        f"all within {RESTART_SECONDS:g} s of the restart",
        f"{seconds} s, {otree['listings']} listings"
        if seconds is not None
        else f"{started} in {again['deadline_s']:g} s, {otree['listings']} listings",
        None if seconds is None else seconds / RESTART_SECONDS,
        seconds is not None and seconds <= RESTART_SECONDS,
        f"{started}; answering {again['answering_after_s']} s after the restart; oTree's "
        f"sessions listed {otree['listings']} times ({otree['listing_s']} s of listing, "
        f"{otree['listed_bytes'] / 1e6:.1f} MB), {otree['created']} sessions created",
    )


LOGGING_BACKENDS = ("sqlite", "postgresql")
LOGGING_CEILING_SHARE = 0.35
LOGGING_POSTGRESQL_RATE = 2000
# Supervisors are told the room's current view at most every 100 ms (mastok/live/watchers.py,
# as issue 9 asks), so a change can wait for the period: 20 ms (the target before) on top.
FANOUT_MS = 120
EXPORT_TRIALS = 100_000
# mastok's export reads in chunks on short connections (flat memory, no long transaction) and
# escapes spreadsheet formulas: twice the bare scans' time leaves room for that, not for waste.
EXPORT_CEILING_TIMES = 2.0
EXPORT_RSS_GROWTH = 1.10  # "does not grow": at most 10% more at 10x the rows

# Scenario 6 before the trial posts were batched (commit 148af05, 16 connections; measured
# on this 2-core machine while other work ran): the figures the fix started from.
LOGGING_BEFORE: dict[str, Any] = {
    "commit": "148af05",
    "sqlite": {"rate_per_s": 96.2, "server_cpu_ms_per_trial": 10.2, "p99_ms": 2179},
    "postgresql": {"rate_per_s": 111.9, "server_cpu_ms_per_trial": 7.4, "p99_ms": 255},
}


# Earlier runs of the same harness on this machine, for the before/after table (what each fix
# changed is in git log and the notes): the first run, before the fixes committed in
# 29bb636, and the run committed with 7120a0d. Keyed by the start of the target's name.
EARLIER_RUNS = ("first run (before 29bb636)", "committed run (7120a0d)")
EARLIER: dict[str, tuple[str, str]] = {
    "join-flow rate vs echo": (
        "69/s vs 1,243/s = 5.6% (14.5 ms CPU a participant)",
        "193.4/s vs 2,129.6/s = 9.1% (4.96 ms CPU a participant)",
    ),
    "p99 last Agree -> Starting at 1,000 participants (sqlite)": ("1,601 ms", "35.71 ms"),
    "p99 last Agree -> Starting at 1,000 participants (postgresql)": ("734 ms", "17.19 ms"),
    "server memory per idle waiting participant": ("83.4 KiB", "31.86 KiB"),
    "10,000 waiting sockets held": ("Consent p99 32.7 ms", "Consent p99 14.14 ms"),
    "fan-out to 50 supervisors": ("16.1 ms", "7.99 ms"),
    "mastok's share of a real oTree session start": ("20.2%", "20.1%"),
    "trial logging vs bare POST ceiling (sqlite": (
        "-",
        f"{LOGGING_BEFORE['sqlite']['rate_per_s']} trials/s (commit 148af05)",
    ),
    "trial logging vs bare POST ceiling (postgresql": (
        "-",
        f"{LOGGING_BEFORE['postgresql']['rate_per_s']} trials/s (commit 148af05)",
    ),
    "trials logged on PostgreSQL": (
        "-",
        f"{LOGGING_BEFORE['postgresql']['rate_per_s']} trials/s (commit 148af05)",
    ),
}


def _before_after(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "## Before and after",
        "",
        f"| target | {EARLIER_RUNS[0]} | {EARLIER_RUNS[1]} | this run |",
        "| --- | --- | --- | --- |",
    ]
    for row in rows:
        earlier = next((e for key, e in EARLIER.items() if row["target"].startswith(key)), None)
        if earlier is not None:
            lines.append(
                f"| {row['target']} | {earlier[0]} | {earlier[1]} | {row['measured']} "
                f"({row['status']}) |"
            )
    return lines if len(lines) > 5 else []


def _logging_targets(lm: dict[str, Any]) -> list[dict[str, Any]]:
    if lm.get("status") == "not run":
        return [_row("logging API (LightMill)", "scenario 6", "not run", None, None, lm["reason"])]
    rows = []
    for backend in LOGGING_BACKENDS:
        figures = lm.get(backend)
        if not figures:
            continue
        ceilings = {c["connections"]: c for c in figures.get("ceiling") or []}
        top = max(figures["levels"], key=lambda level: level["connections"])
        ceiling = ceilings.get(top["connections"])
        errors = top["non_2xx"] + sum(top["socket_errors"].values())
        if ceiling and ceiling["rate_per_s"] and top["rate_per_s"] is not None:
            share = top["rate_per_s"] / ceiling["rate_per_s"]
            rows.append(
                _row(
                    f"trial logging vs bare POST ceiling ({backend}, {top['connections']} "
                    "connections, same wrk, same run)",
                    f">= {LOGGING_CEILING_SHARE:.0%} of the ceiling's rate",
                    f"{top['rate_per_s']}/s vs {ceiling['rate_per_s']}/s = {share:.1%}",
                    share / LOGGING_CEILING_SHARE,
                    share >= LOGGING_CEILING_SHARE and not errors,
                    f"server CPU per request: mastok {top['cpu_ms_per_trial']['server']} ms, "
                    f"ceiling {ceiling['cpu_ms_per_trial']['server']} ms; {errors} errors"
                    + _logging_turns(top, ceiling),
                )
            )
        if backend == "postgresql" and top["rate_per_s"] is not None:
            rate = top["rate_per_s"]
            database = top["cpu_ms_per_trial"].get("database")
            rows.append(
                _row(
                    f"trials logged on PostgreSQL ({top['connections']} connections, 5 events "
                    "each)",
                    f">= {LOGGING_POSTGRESQL_RATE:,} trials/s",
                    f"{rate}/s",
                    rate / LOGGING_POSTGRESQL_RATE,
                    rate >= LOGGING_POSTGRESQL_RATE and not errors,
                    f"p99 {top['latency_ms']['p99']} ms; CPU per trial: mastok "
                    f"{top['cpu_ms_per_trial']['server']} ms, PostgreSQL {_fmt(database)} ms; "
                    f"{errors} errors",
                )
            )
    rows += _export_target(lm)
    if lm.get("two_processes"):
        rows.append(_two_processes_target(lm["two_processes"]))
    return rows


def _logging_turns(mine: dict[str, Any], ceiling: dict[str, Any]) -> str:
    """Every turn's rate, where the legs ran in turns (the quickest of each is the figure)."""
    if len(mine.get("turn_rates") or []) < 2:
        return ""
    return (
        f"; the quickest of {len(mine['turn_rates'])} turns each (mastok "
        + " / ".join(map(_fmt, mine["turn_rates"]))
        + ", ceiling "
        + " / ".join(map(_fmt, ceiling.get("turn_rates") or []))
        + " trials/s)"
    )


LOGGING_TWO_PROCESSES_RATIO = 1.3


def _two_processes_target(pair: dict[str, Any]) -> dict[str, Any]:
    """A leader and a standby logging on one PostgreSQL against one process, same wrk, same
    run: the rate's ratio, with nothing lost or doubled and the locks honoured."""
    one, two, ratio = pair["one_process"], pair["two_processes"], pair["ratio"]
    exported = pair["export_check"]
    sound = (
        not pair["lost"]
        and not pair["unexpected"]
        and pair["locks"]["honoured"]
        and exported["ok"]
        and not (one["non_2xx"] or two["non_2xx"])
    )
    share = two["cpu_share"]
    return _row(
        f"trials logged by a leader and a standby on one PostgreSQL ({pair['connections']} "
        "connections, same wrk, same run)",
        f">= {LOGGING_TWO_PROCESSES_RATIO:g}x one process's rate, nothing lost or doubled, "
        "locks honoured across processes",
        f"{two['rate_per_s']}/s vs {one['rate_per_s']}/s = {_fmt(ratio)}x",
        None if ratio is None else ratio / LOGGING_TWO_PROCESSES_RATIO,
        ratio is not None and ratio >= LOGGING_TWO_PROCESSES_RATIO and sound,
        f"CPU share: leader {share.get('leader')}, standby {share.get('standby')}, PostgreSQL "
        f"{share.get('database')}, wrk {two['wrk_cpu_share']}; lost {pair['lost']}, "
        f"doubled {_doubled(exported)}, locks honoured: {pair['locks']['honoured']}"
        + _rounds_sentence(pair.get("round_ratios"))
        + _machine_sentence(pair.get("machine") or {}),
    )


def _rounds_sentence(ratios: list[float | None] | None) -> str:
    """Each round's ratio, pooled above (bench/logging_pair.round_ratios)."""
    if not ratios:
        return ""
    return "; each round's ratio " + " / ".join(f"{_fmt(r)}x" for r in ratios)


def _machine_sentence(machine: dict[str, Any]) -> str:
    """How far the machine's cores let two processes go (bench/logging_pair.machine_bound)."""
    if "cost_ratio" not in machine:
        return ""
    used = machine["cores_used"]
    return (
        f"; one process's runs used {_fmt(used['one_process'])} of {machine['cores']} cores "
        f"in all, so at its CPU a trial the cores allow at most "
        f"{_fmt(machine['most_at_one_process_cost'])}x; with two processes a trial cost "
        f"{_fmt(machine['cost_ratio'])}x the CPU ({_fmt(used['two_processes'])} cores used)"
        + _preempted_sentence(machine.get("servers_preempted_a_trial"))
    )


def _preempted_sentence(preempted: dict[str, float] | None) -> str:
    """How often the scheduler took a core from a server mid-work, a trial: where the pair's
    dearer trials come from (bench/README.md, scenario 6, the twenty-second round)."""
    if not preempted:
        return ""
    return (
        f", and the servers were preempted {_fmt(preempted['one_process'])} times a trial with "
        f"one process, {_fmt(preempted['two_processes'])} with two"
    )


def _doubled(exported: dict[str, Any]) -> int:
    return int(exported["doubled_trials"] + exported["doubled_events"])


def _export_target(lm: dict[str, Any]) -> list[dict[str, Any]]:
    exports = {b: lm[b]["export"] for b in LOGGING_BACKENDS if lm.get(b, {}).get("export")}
    if not exports:
        return []
    largest = max(e["trials"] for runs in exports.values() for e in runs)
    at_largest = {
        backend: next(e for e in runs if e["trials"] == largest)
        for backend, runs in exports.items()
        if any(e["trials"] == largest for e in runs)
    }
    times = {
        backend: (e["seconds"], (e.get("ceiling") or {}).get("seconds"))
        for backend, e in at_largest.items()
    }
    ratios = [mine / bare for mine, bare in times.values() if bare]
    worst = max(ratios, default=None)
    growth = {}
    for backend, runs in exports.items():
        small, big = min(runs, key=lambda e: e["trials"]), max(runs, key=lambda e: e["trials"])
        if big["trials"] > small["trials"]:
            growth[backend] = (small, big)
    flat = all(
        big["peak_rss_mib"] <= EXPORT_RSS_GROWTH * small["peak_rss_mib"]
        for small, big in growth.values()
    )
    ok = None
    if largest == EXPORT_TRIALS and growth and worst is not None:
        ok = worst <= EXPORT_CEILING_TIMES and flat
    memory = "; ".join(
        f"{backend} peak RSS {small['peak_rss_mib']} MiB at {small['trials']:,}, "
        f"{big['peak_rss_mib']} MiB at {big['trials']:,}"
        for backend, (small, big) in growth.items()
    )
    measured = ", ".join(
        f"{backend} {mine} s vs {bare} s = x{mine / bare:.2f}" if bare else f"{backend} {mine} s"
        for backend, (mine, bare) in times.items()
    )
    return [
        _row(
            f"{largest:,} trials exported (`mastok export`, trials and events CSV, 5 events a "
            "trial) vs the bare driver and `csv` (same rows, same run)",
            f"<= {EXPORT_CEILING_TIMES:g}x the bare export's time at {EXPORT_TRIALS:,}, peak "
            f"memory not growing with the rows (<= {EXPORT_RSS_GROWTH - 1:.0%} more at 10x)",
            measured,
            None if worst is None else worst / EXPORT_CEILING_TIMES,
            ok,
            memory,
        )
    ]


def _without_deflate_note(hold: dict[str, Any]) -> str:
    levels = (hold.get("without_deflate") or {}).get("levels") or []
    if not levels:
        return ""
    return f"; without permessage-deflate {levels[-1]['kib_per_participant']} KiB"


# -- writing ----------------------------------------------------------------------------------


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


def _speed_lines(probes: list[dict[str, Any]]) -> list[str]:
    """The machine's speed through the run (bench/speed.py): how far apart in time two
    figures of a share may drift."""
    if not probes:
        return []
    each = ", ".join(
        f"{p['at']} {p['alone_ms']} ({'/'.join(str(ms) for ms in p['two_ms'])})" for p in probes
    )
    return [
        f"- speed: {speed.summary(probes)}",
        f"- speed probes, CPU ms alone (each of two at once): {each}",
    ]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _turns_sentence(exports: Iterable[dict[str, Any]]) -> str:
    """How the exports ran, when each ran more than once (older results ran once)."""
    turns = max((len(e.get("all_seconds") or []) for e in exports), default=0)
    if turns < 2:
        return ""
    return (
        f" Each ran {turns} times, in turns with the other: the figures are each side's "
        "quickest run (every run's time in brackets) and the highest peak RSS of its runs."
    )


def _all_runs(export: dict[str, Any]) -> str:
    """Every run's time of an export, when it ran more than once (older results ran once)."""
    times = export.get("all_seconds") or []
    return f" [{', '.join(map(str, times))}]" if len(times) > 1 else ""


def _threads(figures: dict[str, Any]) -> str:
    """The server's event loop thread, its other threads and its child processes (the SQLite
    worker), in cores (results before they were measured have none, or no children)."""
    shares = figures.get("server_threads_share")
    if not shares:
        return "-"
    return " / ".join(_fmt(shares.get(part, 0)) for part in ("main", "others", "children"))


def _lat(summary: dict[str, Any] | None) -> str:
    if not summary or summary.get("p50") is None:
        return "-"
    return f"{_fmt(summary['p50'])} / {_fmt(summary['p95'])} / {_fmt(summary['p99'])}"


def markdown(results: dict[str, Any], chart: str | None) -> str:
    m = results["machine"]
    g = results["git"]
    lines = [
        "# mastok benchmark results",
        "",
        f"Run {results['started_at']} in {results['seconds']:.0f} s (`{results['command']}`).",
        "",
        "## Machine",
        "",
        f"- {m['cores']} cores, {m['memory_gib']} GiB, {m['cpu_model']}",
        f"- Python {m['python']}, {m['platform']}; Node {m['node']} with ws {m['node_ws']}",
        f"- packages: {', '.join(f'{k} {v}' for k, v in m['packages'].items())}",
        f"- PostgreSQL: {m['postgresql']}",
        f"- git commit {g['commit']}"
        + (
            f" with {len(g['uncommitted_changes'])} uncommitted changes"
            if g["uncommitted_changes"]
            else ""
        ),
        f"- load average before {results['load_average']['before']}, after "
        f"{results['load_average']['after']}",
        *_speed_lines(results.get("machine_speed") or []),
        "",
        "## Targets",
        "",
        "| target | goal | measured | ratio (measured/goal) | status | note |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in results["targets"]:
        lines.append(
            f"| {row['target']} | {row['goal']} | {row['measured']} | {_fmt(row['ratio'])} | "
            f"**{row['status']}** | {row['note']} |"
        )
    lines += _before_after(results["targets"])
    if results.get("baseline"):
        lines += ["", side_by_side(results).rstrip("\n")]
    s = results["scenarios"]
    cc = results.get("client_ceiling")
    if cc:
        lines += [
            "",
            "## The client's own ceiling",
            "",
            "The load generator (Node, `ws`, permessage-deflate on as browsers do) against a Node "
            "ws echo server: "
            f"**{_fmt(cc['rate_per_s'])} flows/s** at {cc['concurrency']} at a time, client CPU "
            f"{cc['client_cpu_share']} "
            f"of a core, round trip p50/p95/p99 {_lat(cc['round_trip_ms'])} ms. Every figure below "
            "lists the client's "
            "CPU share beside it: near 1.0 means the client, not the server, set the pace.",
        ]
    if chart:
        lines += ["", f"![latency against load and holding]({chart})"]
    for key in ("waiting_room_sqlite", "waiting_room_postgresql"):
        room = s.get(key)
        if not room:
            continue
        lines += [
            "",
            f"## 1. Waiting room on {room['backend']} (stub oTree, per_session "
            f"{room['per_session']})",
            "",
            "Participants arrive in a ramp (rate rising linearly from 0 to the peak). Latency: a "
            "pool's last "
            "Agree to each member's Starting.",
            "",
            "| participants | ramp | offered peak/s | reached Starting | rate/s (peak 1 s) | "
            "latency p50/p95/p99 ms | "
            "Consent wait p50/p95/p99 ms | server CPU | CPU ms/participant | client CPU | errors |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        rows = [*room["ramps"]]
        for r in rows:
            lines.append(
                f"| {r['participants']:,} | {r['ramp_seconds']:g} s | "
                f"{r['offered_peak_rate_per_s']:g} | "
                f"{r['reached_starting']:,} | {_fmt(r['rate_per_s'])} ({r['peak_1s_rate_per_s']}) "
                "| "
                f"{_lat(r['latency_ms'])} | {_lat(r['consent_wait_ms'])} | "
                f"{_fmt(r['server_cpu_share'])} | "
                f"{_fmt(r['server_cpu_ms_per_participant'])} | {_fmt(r['client_cpu_share'])} | "
                f"{sum(r['errors'].values()) if r['errors'] else 0} |"
            )
        lines += _shares_markdown(room.get("shares") or [])
        sat = room.get("saturation")
        if sat:
            lines += [
                "",
                f"Saturation (closed loop, {sat['concurrency']} at a time, {sat['participants']:,} "
                f"flows, in each of {len(room['saturations'])} turns, before that turn's runs at "
                f"the shares above: {_rates(sat['all_rates_per_s'])}/s), the quickest turn: "
                f"**{_fmt(sat['rate_per_s'])} participants/s** through to Starting, latency "
                "p50/p95/p99 "
                f"{_lat(sat['latency_ms'])} ms, server CPU {sat['server_cpu_share']} "
                f"({sat['server_cpu_ms_per_participant']} ms a participant), client CPU "
                f"{sat['client_cpu_share']}, "
                f"errors {sat['errors'] or 0}.",
            ]
    c = s.get("ceiling")
    if c:
        e = c["echo"]
        lines += [
            "",
            "## 2. Ceilings: a bare echo app and the join's work-equivalent app (same client, "
            "same run)",
            "",
            f"Echo (connect, 3 request/response frames, server closes), {e['concurrency']} at a "
            "time: "
            f"**{_fmt(e['rate_per_s'])} flows/s**, server CPU {e['server_cpu_share']} "
            f"({e['server_cpu_ms_per_flow']} ms a flow), client CPU {e['client_cpu_share']}, round "
            "trip "
            f"p50/p95/p99 {_lat(e['round_trip_ms'])} ms.",
            "",
            f"mastok (SQLite) join flows, same client: **{_fmt(c['mastok']['rate_per_s'])}/s** = "
            f"**{_fmt(c.get('rate_ratio'))}** of the echo rate; server CPU per flow: echo/mastok = "
            f"{_fmt(c.get('server_cpu_ratio'))}.",
        ]
        f = c.get("floor")
        if f:
            lines += [
                "",
                "The work-equivalent app (`bench/join_floor_app.py`: the same frames in the same "
                "order, the same rows written in group commits, the same oTree calls through the "
                "same HTTP client; no state machine, no supervisors, no checks), SQLite, the same "
                f"closed loop: **{_fmt(f['rate_per_s'])} flows/s**, server CPU "
                f"{f['server_cpu_share']} ({f['server_cpu_ms_per_participant']} ms a "
                f"participant), client CPU {f['client_cpu_share']}. mastok's rate is "
                f"**{_fmt(c.get('floor_rate_ratio'))}** of it.",
            ]
    h = s.get("holding")
    if h:
        lines += [
            "",
            f"## 3. Holding capacity (SQLite, per_session {h['per_session']}, {h['per_campaign']} "
            "waiting per "
            f"campaign in {h['campaigns']} campaigns)",
            "",
            f"Server RSS before anyone waits: {h['baseline_rss_mib']} MiB. Consent wait with "
            "nobody waiting: "
            f"p50/p95/p99 {_lat(h['at_0']['consent_wait_ms'])} ms.",
            "",
            "| waiting | held at end | server RSS MiB | KiB per participant | Consent wait "
            "p50/p95/p99 ms | "
            "Land→Consent p50/p99 ms | idle server CPU | time to open |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for level in h["levels"]:
            lc = level["land_to_consent_ms"]
            lines.append(
                f"| {level['waiting']:,} | {level['open_at_end']:,} | {level['rss_mib']} | "
                f"{level['kib_per_participant']} | {_lat(level['consent_wait_ms'])} | "
                f"{_fmt(lc['p50'])} / {_fmt(lc['p99'])} | {level['idle_server_cpu_share']} | "
                f"{level['seconds_to_open']} s |"
            )
        if h.get("echo_reference"):
            ref = "; ".join(
                f"{r['sockets']:,} sockets: {r['kib_per_socket']} KiB each"
                for r in h["echo_reference"]
            )
            lines += ["", f"Reference, the bare stack (Starlette echo app, idle sockets): {ref}."]
        nd = h.get("without_deflate")
        if nd and nd.get("levels"):
            level = nd["levels"][-1]
            nd_ref: list[dict[str, Any]] = nd.get("echo_reference") or [{}]
            lines += [
                "",
                f"Without permessage-deflate (clients that do not offer it; the same as mastok "
                f"turning it off): {level['waiting']:,} waiting, **{level['kib_per_participant']} "
                f"KiB per participant** (bare stack {_fmt(nd_ref[-1].get('kib_per_socket'))} KiB a "
                f"socket), Consent wait p50/p95/p99 {_lat(level['consent_wait_ms'])} ms, "
                f"{level['open_at_end']:,} held.",
            ]
    f = s.get("fanout")
    if f:
        bg = f.get("background") or {}
        lines += [
            "",
            f"## 4. Fan-out to {f['supervisors']} supervisors (SQLite)",
            "",
            f"{f['changes']} pool changes (a participant's Agree), pools starting every {4} "
            "changes, with "
            f"{_fmt(bg.get('rate_per_s'))} participants/s churning through other campaigns. Agree "
            "→ last supervisor's "
            f"JoiningSize p50/p95/p99 **{_lat(f['agree_to_last_supervisor_ms'])} ms**; → first "
            "supervisor "
            f"{_lat(f['agree_to_first_supervisor_ms'])} ms; spread {_lat(f['spread_ms'])} ms. "
            "Server CPU "
            f"{f['server_cpu_share']}, client CPU {f['client_cpu_share']}, missed "
            f"{f['changes_missed']}.",
        ]
    o = s.get("real_otree")
    if o:
        d = o["otree_direct"]
        lines += [
            "",
            f"## 5. Real oTree (demo project, `guess_two`, per_session 4, {o['participants']} "
            "participants)",
            "",
            f"{o['reached_starting']} reached Starting in {o['sessions']} sessions. Session start "
            f"(last Agree → Starting) p50/p95/p99 {_lat(o['session_start_ms'])} ms, of which "
            "oTree's "
            f"calls {_lat(o['otree_calls_ms'])} ms; the rest, mastok's part, "
            f"{_lat(o['mastok_part_ms'])} ms with the timing proxy's own hop "
            f"({o['proxy_hop_ms_per_call']} ms a call) and {_lat(o['mastok_part_without_hop_ms'])} "
            "ms without it. mastok's share of the start time: "
            f"**{_fmt(o['mastok_share_overall'])}** "
            f"({_fmt(o['mastok_share_with_proxy_hop'])} counting the proxy's hop as mastok's).",
            "",
            f"oTree asked directly (POST then GET, one after the other): create p50/p99 "
            f"{_fmt(d['create_ms']['p50'])} / {_fmt(d['create_ms']['p99'])} ms, read back "
            f"{_fmt(d['read_ms']['p50'])} / {_fmt(d['read_ms']['p99'])} ms. Server CPU: mastok "
            f"{_fmt(o['server_cpu_share'])}, oTree {_fmt(o['otree_cpu_share'])}.",
            "",
            "Where a session start's time goes (medians over sessions; the proxy's hop is in the "
            "oTree lines):",
            "",
            "| step | ms |",
            "| --- | --- |",
            *[f"| {step} | {_fmt(ms)} |" for step, ms in o.get("breakdown_ms", {}).items()],
            "",
            "| oTree call (through mastok) | n | p50 ms | p99 ms |",
            "| --- | --- | --- | --- |",
        ]
        for call, summary in o["otree_calls"].items():
            lines.append(
                f"| {call} | {summary['n']} | {_fmt(summary['p50'])} | {_fmt(summary['p99'])} |"
            )
    lm = s.get("logging_api")
    if lm:
        lines += _logging_markdown(lm)
    if s.get("placement"):
        lines += _placement_markdown(s["placement"])
    if s.get("restart"):
        lines += _restart_markdown(s["restart"])
    if s.get("live_stats"):
        lines += _live_stats_markdown(s["live_stats"])
    if s.get("failover"):
        lines += _failover_markdown(s["failover"])
    if s.get("study"):
        lines += _study_markdown(s["study"])
    if results.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {note}" for note in results["notes"]]
    return "\n".join(lines) + "\n"


def _shares_markdown(shares: list[dict[str, Any]]) -> list[str]:
    if not shares:
        return []
    lines = [
        "",
        "At steady shares of the saturation rate below (same run: what the targets read, on any"
        " machine), each turn's runs at the share of its own saturation run, pooled:",
        "",
        "| share | offered/s (each turn) | reached Starting | latency p50/p95/p99 ms | "
        "Agree -> Instructions p50/p95/p99 ms | server CPU | CPU ms/participant | client CPU |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in shares:
        lines.append(
            f"| {run['share']:.0%} | {_rates(run['offered_rate_per_s'])} | "
            f"{run['reached_starting']:,}/{run['participants']:,} | {_lat(run['latency_ms'])} | "
            f"{_lat(run['agree_to_instructions_ms'])} | {_fmt(run['server_cpu_share'])} | "
            f"{_fmt(run['server_cpu_ms_per_participant'])} | {_fmt(run['client_cpu_share'])} |"
        )
    return lines


def _placement_markdown(place: dict[str, Any]) -> list[str]:
    per_leg = place.get("participants_per_leg", place["participants"])
    lines = [
        "",
        f"## 7. Placement with {place['supervisors']} supervisors watching (SQLite)",
        "",
        f"{place.get('rounds', 1)} rounds of {per_leg} participants at "
        f"{place['rate_per_s']:g}/s into one campaign (per_session "
        f"{place['per_session']}), unwatched, then into another watched by "
        f"{place['supervisors']} supervisor sockets reading every frame; each condition's legs "
        "pooled.",
        "",
        "| run | reached Starting | Agree → Instructions p50/p95/p99 ms | last Agree → Starting "
        "p50/p95/p99 ms | server CPU | client CPU | supervisors' client CPU |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for what, leg in (("no supervisors", place["without"]), ("watched", place["with"])):
        lines.append(
            f"| {what} | {leg['reached_starting']} | {_lat(leg['agree_to_instructions_ms'])} | "
            f"{_lat(leg['last_agree_to_starting_ms'])} | {_fmt(leg['server_cpu_share'])} | "
            f"{_fmt(leg['client_cpu_share'])} | {_fmt(leg['supervisors_client_cpu_share'])} |"
        )
    watched = place["with"]
    ratios = ", ".join(f"{key} x{_fmt(value)}" for key, value in place["ratios"].items())
    lines += [
        "",
        f"Watched over unwatched: {ratios}. Each supervisor read "
        f"{_fmt(watched.get('frames_per_supervisor'))} frames; at the end "
        f"{_fmt(watched.get('supervisors_with_current_sizes'))} of {watched['supervisors']} showed "
        f"the current joining size (final sizes seen: {watched.get('final_joining_sizes')}).",
    ]
    for number, ratios in enumerate(place.get("round_ratios", []), 1):
        lines.append(
            f"Round {number}: p99 x{_fmt(ratios['agree_to_instructions_ms_p99'])} "
            f"(Agree -> Instructions), x{_fmt(ratios['last_agree_to_starting_ms_p99'])} "
            "(last Agree -> Starting)."
        )
    return lines


def _restart_markdown(again: dict[str, Any]) -> list[str]:
    otree, firsts = again["otree"], again["first_session_s"]
    return [
        "",
        f"## 8. Restart: {again['campaigns']} campaigns' first sessions ({again['backend']}, "
        f"oTree holding {again['otree_sessions']:,} sessions)",
        "",
        f"In each campaign a full pool waited with one member away; mastok was killed (SIGKILL) "
        f"and started again, and answered after {again['answering_after_s']} s; every "
        f"participant resumed with its token at {again['resumed_after_s']} s. "
        f"**{again['campaigns_started']}/{again['campaigns']} first sessions started, the last "
        f"{_fmt(again['all_started_s'])} s after the restart** (campaigns' first Starting "
        f"p50/max {_fmt(firsts['p50'])} / {_fmt(firsts['max'])} s). oTree's sessions were "
        f"listed **{otree['listings']} times** ({otree['listings_asked']} asked; "
        f"{otree['listing_s']} s of listing, {otree['listed_bytes'] / 1e6:.1f} MB); "
        f"{otree['created']} sessions created; {again['reached_starting']}/"
        f"{again['participants']} participants reached Starting; errors "
        f"{again['errors'] or 0}.",
    ]


def _failover_markdown(fo: dict[str, Any]) -> list[str]:
    doubled = fo["doubled"]
    rows = [
        ("socket seen closed", fo["dropped_after_kill_ms"]),
        ("the attempt that got the place back started", fo["last_attempt_after_kill_ms"]),
        ("its handshake answered", fo["opened_after_kill_ms"]),
        ("its step back (Instructions)", fo["back_after_kill_ms"]),
    ]
    return [
        "",
        f"## 11. Failover: {fo['participants']:,} participants, the leader killed (PostgreSQL)",
        "",
        f"A leader and a standby on one PostgreSQL; {fo['participants']:,} participants waited "
        f"on the leader in {fo['campaigns']} campaigns (per_session {fo['per_session']}, "
        f"{fo['waiting_each']} in each: no pool starts); the leader was killed (SIGKILL, load "
        f"average {fo['load_average_at_kill'][0]}). Each participant came back by itself with "
        f"its token, trying the leader's address then the standby's, waiting "
        f"{fo['retry_ms']:g} ms (jittered) once both failed. **The standby led "
        f"{_fmt(fo['leads_after_s'])} s after the SIGKILL** (`/readyz` 200 at "
        f"{_fmt(fo['readyz_after_s'])} s); **{fo['back_in_place']}/{fo['participants']} back "
        f"in place, p50 / p99 / max {_lat3(fo['back_after_lead_ms'])} ms after the lead** "
        f"(attempts each p50 {_fmt(fo['attempts']['p50'])}, max {_fmt(fo['attempts']['max'])}; "
        f"failed attempts: {_counts(fo['refused'])}; not back: {_counts(fo['not_back'])}). "
        f"The standby used {fo['standby_cpu_s']} s of CPU from the kill until all were back.",
        "",
        "| from the SIGKILL, ms | p50 | p95 | p99 | max |",
        "| --- | --- | --- | --- | --- |",
        *[
            f"| {what} | {_fmt(x['p50'])} | {_fmt(x['p95'])} | {_fmt(x['p99'])} | "
            f"{_fmt(x['max'])} |"
            for what, x in rows
        ],
        "",
        f"Then newcomers filled every pool through the new leader: "
        f"{doubled['reached_starting']}/{doubled['expected_starting']} reached Starting, in "
        f"{doubled['sessions_in_starting_urls']} sessions; oTree created "
        f"{doubled['otree_sessions_created']}, mastok recorded {doubled['mastok_sessions']} for "
        f"{doubled['expected_sessions']} campaigns; participant rows by step before the kill "
        f"{doubled['rows_before_kill']['steps']}, after the resume "
        f"{doubled['rows_after_resume']['steps']}, after the fill "
        f"{doubled['rows_after_fill']['steps']}: "
        + ("nothing doubled." if doubled["ok"] else "**something doubled or missing.**"),
    ]


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{why} {n:,}" for why, n in counts.items()) or "none"


def _lat3(summary: dict[str, Any]) -> str:
    return " / ".join(_fmt(summary.get(key)) for key in ("p50", "p99", "max"))


def _live_stats_markdown(figures: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"## 10. A campaign's figures at {figures['visits']:,} visits",
        "",
        f"`campaign_stats` (what `GET /api/campaigns/{{namespace}}/stats` computes) for a "
        f"campaign of {figures['visits']:,} visits among {figures['other_visits']:,} of "
        f"{figures['other_campaigns']} other campaigns, beside `SELECT count(*)` of its visits "
        f"and a count of a column in no index (one read of its rows), {figures['repeats']} "
        "times each, alternately.",
        "",
        "| backend | stats p50 (min/max) ms | count(*) p50 ms | rows read p50 ms | stats/count | "
        "stats/rows read | each query, ms |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for backend in LOGGING_BACKENDS:
        run = figures.get(backend)
        if not run:
            continue
        stats_ms = run["stats_ms"]
        each = ", ".join(f"{name} {ms}" for name, ms in run["query_ms"].items())
        lines.append(
            f"| {backend} | {stats_ms['p50']} ({stats_ms['min']}/{stats_ms['max']}) | "
            f"{run['count_ms']['p50']} | {run['rows_read_ms']['p50']} | x{run['ratio']} | "
            f"x{run['ratio_to_rows_read']} | {each} |"
        )
    return lines


def _study_markdown(figures: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"## 12. A simulated study ({figures['backend']}, per_session "
        f"{figures['per_session']}, seed {figures['seed']})",
        "",
        f"Poisson arrivals for {figures['seconds']:g} s into {figures['campaigns_per_rate']} "
        f"campaigns at each rate, all at once on one mastok: waiting limit "
        f"{figures['waiting_limit_s']:g} s, ready check {figures['ready_check_s']} s, `Leave` "
        f"accepted after {figures['leave_after_s']} s. {figures['leave_share']:.0%} of arrivals "
        f"leave at a random time while waiting (two in three with `Leave`, one closes its page), "
        f"{figures['silent_share']:.0%} never answer a `ReadyCheck`, the others answer within "
        "2.5 s. Waits: `Agree` to `Starting` or to the `Disconnect` that ended the wait, in "
        "seconds; overshoot: the longest wait past the limit of anyone who did not start (the "
        "client's clock; mastok's own records in brackets). Lost: no outcome, two, or not the "
        "one mastok recorded.",
        "",
        "| rate/s a campaign | arrivals | outcomes | timeouts | started wait p50/p95/max s | "
        "timed out wait p50/p95/max s | overshoot s | started past the limit s | lost | "
        "ReadyChecks | sessions |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for rate in figures["rates"]:
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(rate["outcomes"].items()))
        lines.append(
            f"| {_fmt(rate['rate_per_s'])} | {rate['arrivals']} | {outcomes} | "
            f"{_share(rate['timeout_share'])} | {_waits(rate['started_wait_s'])} | "
            f"{_waits(rate['timeout_wait_s'])} | {_fmt(rate['overshoot_s'])} "
            f"({_fmt(rate['server_overshoot_s'])}) | {_fmt(rate['started_overshoot_s'])} | "
            f"{rate['lost']} | {rate['ready_checks']} | {rate['sessions']} |"
        )
    lines += [
        "",
        f"Server CPU {_fmt(figures['server_cpu_share'])}, client CPU "
        f"{_fmt(figures['client_cpu_share'])}; load average "
        f"{figures['load_average']['before']} before, {figures['load_average']['after']} after.",
    ]
    return lines


def _waits(summary: dict[str, Any]) -> str:
    if not summary.get("n"):
        return "-"
    return f"{_fmt(summary['p50'])} / {_fmt(summary['p95'])} / {_fmt(summary['max'])}"


def side_by_side(results: dict[str, Any]) -> str:
    """The targets measured on the baseline's server and on this tree's, in the same session."""
    base = results["baseline"]
    rows = {row["target"]: row for row in base["targets"]}
    lines = [
        f"## Baseline {base['rev']} ({base['commit'][:9]}) and this tree, same session",
        "",
        "The same harness, load and machine; each scenario ran on the baseline's server, then on "
        "this tree's. The ratio is this tree's figure over the baseline's.",
        "",
        "| target | baseline | now | now / baseline | status |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in results["targets"]:
        before = rows.get(row["target"])
        if before is None:
            continue
        ratio = None
        if before["ratio"] and row["ratio"] is not None:
            ratio = round(row["ratio"] / before["ratio"], 2)
        lines.append(
            f"| {row['target']} | {before['measured']} | {row['measured']} | {_fmt(ratio)} | "
            f"{before['status']} → {row['status']} |"
        )
    for name, error in base.get("failed", {}).items():
        text = " ".join(error.replace("|", "/").split())
        lines.append(f"| {name} on the baseline | failed: {text} | | | |")
    lines += [
        "",
        "Figures behind them (every size run, both sides):",
        "",
        "| figure | baseline | now | now / baseline |",
        "| --- | --- | --- | --- |",
    ]
    before = key_figures(base["scenarios"])
    for name, value in key_figures(results["scenarios"]).items():
        if name in before:
            old = before[name]
            ratio = round(value / old, 2) if old and value is not None else None
            lines.append(f"| {name} | {_fmt(old)} | {_fmt(value)} | {_fmt(ratio)} |")
    return "\n".join(lines) + "\n"


def key_figures(scenarios: dict[str, Any]) -> dict[str, float | None]:
    """The waiting-room scenarios' main figures, by name, for the side-by-side table."""
    out: dict[str, float | None] = {}
    for key in ("waiting_room_sqlite", "waiting_room_postgresql"):
        if scenarios.get(key):
            out.update(_room_figures(scenarios[key]))
    for level in (scenarios.get("holding") or {}).get("levels", []):
        out[f"holding {level['waiting']:,}: KiB a participant"] = level["kib_per_participant"]
        out[f"holding {level['waiting']:,}: Consent p99 ms"] = level["consent_wait_ms"]["p99"]
    if scenarios.get("fanout"):
        last = scenarios["fanout"]["agree_to_last_supervisor_ms"]
        out["fan-out: Agree → last supervisor p50 ms"] = last["p50"]
        out["fan-out: Agree → last supervisor p99 ms"] = last["p99"]
    if scenarios.get("placement"):
        out.update(_placement_figures(scenarios["placement"]))
    if scenarios.get("restart"):
        again = scenarios["restart"]
        out["restart: all first sessions started, s"] = again["all_started_s"]
        out["restart: campaigns started"] = again["campaigns_started"]
        out["restart: oTree listings"] = again["otree"]["listings"]
    return out


def _room_figures(room: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    backend = room["backend"]
    for run in room.get("shares") or []:
        at = f"{backend}, {run['share']:.0%} of saturation: last Agree → Starting"
        out[f"{at} p50 ms"] = run["latency_ms"]["p50"]
        out[f"{at} p99 ms"] = run["latency_ms"]["p99"]
    for ramp in room["ramps"]:
        at = f"{backend}, {ramp['participants']:,} in a ramp: last Agree → Starting"
        out[f"{at} p50 ms"] = ramp["latency_ms"]["p50"]
        out[f"{at} p99 ms"] = ramp["latency_ms"]["p99"]
    sat = room.get("saturation")
    if sat:
        out[f"{backend}, closed loop: flows/s"] = sat["rate_per_s"]
        out[f"{backend}, closed loop: server CPU ms a participant"] = sat[
            "server_cpu_ms_per_participant"
        ]
    return out


def _placement_figures(place: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    measures = (
        ("Agree → Instructions", "agree_to_instructions_ms"),
        ("last Agree → Starting", "last_agree_to_starting_ms"),
    )
    for leg in ("without", "with"):
        for what, key in measures:
            for p in ("p50", "p99"):
                out[f"placement, {leg} supervisors: {what} {p} ms"] = place[leg][key][p]
    return out


def _logging_markdown(lm: dict[str, Any]) -> list[str]:
    lines = ["", "## 6. Logging"]
    if lm.get("status") == "not run":
        return [*lines, "", f"Not run: {lm['reason']}."]
    lines += [
        "",
        "LightMill experiment clients posting their trials through mastok's API: wrk "
        "(`bench/wrk/trials.lua`), one connection per client, each with a run of its own, locked "
        "beforehand, posting its trials strictly in order with the run's token, moving on only on "
        f"200. A trial: {lm['body']}. The ceiling is a bare Starlette JSON POST endpoint under the "
        "same uvicorn options, parsing the same bodies, driven by the same wrk, in turns with "
        "mastok's legs on each database; each side's quickest turn is its figure.",
        "",
        "| server | connections | trials/s | share of the ceiling | latency p50/p95/p99 ms | "
        "server CPU ms a trial | server CPU: loop / other threads / worker process | "
        "PostgreSQL CPU ms a trial | wrk CPU | non-2xx |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    table = []
    for backend in LOGGING_BACKENDS:
        figures = lm.get(backend, {})
        table += [(f"bare POST ceiling, beside {backend}", c) for c in figures.get("ceiling") or []]
        table += [(f"mastok, {backend}", level) for level in figures.get("levels", [])]
    for what, f in table:
        errors = f["non_2xx"] + sum(f["socket_errors"].values())
        lines.append(
            f"| {what} | {f['connections']} | **{_fmt(f['rate_per_s'])}** | "
            f"{_fmt(f.get('ceiling_ratio'))} | {_lat(f['latency_ms'])} | "
            f"{_fmt(f['cpu_ms_per_trial'].get('server'))} | {_threads(f)} | "
            f"{_fmt(f['cpu_ms_per_trial'].get('database'))} | {_fmt(f['wrk_cpu_share'])} | "
            f"{errors} |"
        )
    stored = [
        f"{backend}: {lm[backend]['trials_stored']:,} trials stored "
        f"({lm[backend]['trials_stored_unacknowledged']} whose answer wrk never read)"
        for backend in LOGGING_BACKENDS
        if lm.get(backend)
    ]
    if stored:
        lines += ["", "Checked against the server after the runs: " + "; ".join(stored) + "."]
    before = LOGGING_BEFORE
    lines += [
        "",
        f"Before trial posts were batched (commit {before['commit']}: an ORM session for the "
        "lock's heartbeat, another for the trial, a third to read it back; SQLite writers "
        "sleeping in its busy handler): "
        + "; ".join(
            f"{backend} {before[backend]['rate_per_s']} trials/s, "
            f"{before[backend]['server_cpu_ms_per_trial']} ms of server CPU a trial, "
            f"p99 {before[backend]['p99_ms']} ms"
            for backend in LOGGING_BACKENDS
        )
        + ".",
    ]
    exports = [(b, e) for b in LOGGING_BACKENDS for e in lm.get(b, {}).get("export", [])]
    if exports:
        lines += [
            "",
            "Export: experiments of completed trials (runs of 2,000 trials, 3 trial measures, 5 "
            "events of 3 measures each), `python -m mastok export --format csv` as its own "
            "process; peak RSS is that process's own (VmHWM, polled from /proc). The ceiling: "
            "the same rows read with the bare driver and written with `csv` "
            "(`bench/export_ceiling.py`), as a process of its own, in the same run."
            + _turns_sentence(e for _, e in exports),
            "",
            "| backend | trials | events | `mastok export` s | trials file s | events file s | "
            "peak RSS MiB | CPU s | files MiB (trials + events) | bare driver and csv s (peak "
            "RSS MiB) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for backend, e in exports:
            bare = e.get("ceiling") or {}
            lines.append(
                f"| {backend} | {e['trials']:,} | {e['events']:,} | **{e['seconds']}**"
                f"{_all_runs(e)} | {e['trials_s']} | {e['events_s']} | **{e['peak_rss_mib']}** | "
                f"{e['cpu_s']} | {e['file_mib']['trials']} + {e['file_mib']['events']} | "
                f"{_fmt(bare.get('seconds'))}{_all_runs(bare)} ({_fmt(bare.get('peak_rss_mib'))}) |"
            )
    if lm.get("two_processes"):
        lines += _two_processes_markdown(lm["two_processes"])
    return lines


def _two_processes_markdown(pair: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "Two processes on one PostgreSQL: a leader and a standby (roles "
        f"{pair['roles']['leader']} / {pair['roles']['standby']}), one wrk dealing its "
        f"{pair['connections']} connections to both ports round-robin; the same runs posted "
        "through the leader alone (the standby idle) and through both, in turns.",
        "",
        "| run | trials/s | latency p50/p99 ms | trials leader / standby | CPU share "
        "leader / standby / PostgreSQL / wrk | CPU ms a trial served: leader / standby | "
        "PostgreSQL CPU ms a trial | non-2xx |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    rows = [(f["phase"], f, _lat2(f["latency_ms"])) for f in pair["rounds"]]
    rows += [
        ("one process, all rounds", pair["one_process"], "-"),
        ("two processes, all rounds", pair["two_processes"], "-"),
    ]
    for what, f, latency in rows:
        share, own, by = f["cpu_share"], f["cpu_ms_per_own_trial"], f["trials_by_process"]
        lines.append(
            f"| {what} | **{_fmt(f['rate_per_s'])}** | {latency} | {by.get('leader', 0)} / "
            f"{by.get('standby', 0)} | {share.get('leader')} / {share.get('standby')} / "
            f"{share.get('database')} / {f['wrk_cpu_share']} | {_fmt(own.get('leader'))} / "
            f"{_fmt(own.get('standby'))} | {_fmt(f['cpu_ms_per_trial'].get('database'))} | "
            f"{f['non_2xx']} |"
        )
    checks = "; ".join(
        f"{c['phase']}: {c['acknowledged']:,} acknowledged, {c['on_server']:,} on the server "
        f"({c['in_flight_stored']} in flight), {c['lost']} lost"
        for c in pair["acknowledged"]
    )
    exported = pair["export_check"]
    lines += [
        "",
        f"Combined over one process: **{_fmt(pair['ratio'])}x**. Each run's position after "
        f"every wrk run against what wrk was acknowledged: {checks}.",
    ]
    lines.append(
        f"The export: {exported['trials_completed']:,} completed trials and "
        f"{exported['events']:,} events; runs not matching their positions: "
        f"{len(exported['runs_mismatched'])}, trials doubled {exported['doubled_trials']}, "
        f"events doubled {exported['doubled_events']}, trials without their "
        f"{EVENTS_PER_TRIAL} events {exported['trials_without_their_events']}."
    )
    locks = pair["locks"]
    lines.append(
        f"A run locked through the leader, through the standby: a second lock "
        f"{locks['second_lock']}, a post with another token {locks['wrong_token']}, with its "
        f"token {locks['right_token']} (honoured: {locks['honoured']})."
    )
    return lines


EVENTS_PER_TRIAL = 5


def _lat2(latency: dict[str, Any]) -> str:
    return f"{latency['p50']} / {latency['p99']}"


def chart(results: dict[str, Any], path: Path) -> bool:
    """Latency against load (each backend's ramps), and memory against waiting sockets."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    s = results["scenarios"]
    rooms = [s[k] for k in ("waiting_room_sqlite", "waiting_room_postgresql") if s.get(k)]
    hold = s.get("holding")
    panels = (1 if rooms else 0) + (1 if hold and hold.get("levels") else 0)
    if not panels:
        return False
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 4.6), squeeze=False)
    ax_list = list(axes[0])
    if rooms:
        ax = ax_list.pop(0)
        colors = {"sqlite": "tab:blue", "postgresql": "tab:orange"}
        for room in rooms:
            points = [p for p in room.get("curve", []) if p["p50"] is not None]
            if not points:
                continue
            xs = [max(p["rate_per_s"], 1.0) for p in points]
            color = colors.get(room["backend"])
            backend = room["backend"]
            ax.plot(xs, [p["p50"] for p in points], "o-", color=color, label=f"{backend} p50")
            ax.plot(xs, [p["p99"] for p in points], "s--", color=color, label=f"{backend} p99")
        ax.axhline(50, color="grey", linewidth=0.8, linestyle=":")
        ax.set_yscale("log")
        ax.set_xscale("log")
        ax.set_xlabel("arrival rate when the pool formed (participants/s, log)")
        ax.set_ylabel("last Agree → Starting (ms, log)")
        ax.set_title("Waiting room: latency against load")
        ax.legend(fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
    if hold and hold.get("levels"):
        ax = ax_list.pop(0)
        xs = [0] + [level["waiting"] for level in hold["levels"]]
        ax.plot(
            xs,
            [hold["baseline_rss_mib"]] + [level["rss_mib"] for level in hold["levels"]],
            "o-",
            label="mastok RSS (MiB)",
        )
        ref = hold.get("echo_reference") or []
        if ref:
            ax.plot(
                [0] + [r["sockets"] for r in ref],
                [None] + [r["rss_mib"] for r in ref],
                "s--",
                label="bare echo app RSS (MiB)",
            )
        ax.set_xlabel("idle waiting sockets")
        ax.set_ylabel("server RSS (MiB)")
        ax2 = ax.twinx()
        ax2.plot(
            [0] + [level["waiting"] for level in hold["levels"]],
            [hold["at_0"]["consent_wait_ms"]["p99"]]
            + [level["consent_wait_ms"]["p99"] for level in hold["levels"]],
            "^:",
            color="tab:red",
            label="newcomer's Consent wait p99 (ms)",
        )
        ax2.set_ylabel("Consent wait p99 (ms)", color="tab:red")
        ax.set_ylim(bottom=0)
        ax2.set_ylim(bottom=0)
        ax.set_title("Holding: memory and a newcomer's wait")
        lines1, labels1 = ax.get_legend_handles_labels()
        lines2, labels2 = ax2.get_legend_handles_labels()
        ax.legend(lines1 + lines2, labels1 + labels2, fontsize=8, loc="upper left")
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
