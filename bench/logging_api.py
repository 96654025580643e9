"""Scenario 6: LightMill's logging API (bench/README.md).

Trials logged per second by concurrent experiment clients, on SQLite and on PostgreSQL, against
the ceiling of the same stack (a bare Starlette JSON POST endpoint driven by the same load), and
the export of 10,000 and 100,000 completed trials: its time and its peak memory.

The load is wrk (bench/wrk/trials.lua): one connection per wrk thread, each with a run of its
own, locked here beforehand, posting that run's trials strictly in order with the run's token,
each trial with a few measures and 5 events, moving on only when the server answered 200. wrk
is C and uses a fraction of a core for thousands of requests a second, so the figure is the
server's; its own CPU share is reported beside each figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import httpx

from bench import procs, servers
from bench.procs import Child
from bench.scenarios import Context
from mastok.config import PROJECT_ROOT

WRK_SCRIPT = PROJECT_ROOT / "bench" / "wrk" / "trials.lua"
EXPERIMENT = "bench_logging"
PER_BLOCK = 200  # trials a block
# What the runs are sized for, so that none completes while measured (a completed run would
# answer 410): at most this many trials a second in all (2.6x the 4,626/s that 4 connections
# logged on a quicker Xeon, where runs sized at 800 a connection completed and answered 410;
# 16 connections and more are sized by the line below), and a connection at most...
MAX_RATE = 12_000
# ... this many: 16 clients at 2.6x the fastest rate seen on a 2-core machine (4,930/s on
# PostgreSQL; at 300 a connection, that run's runs completed and answered 410).
MAX_PER_CONNECTION = 800
# mastok's legs and the ceiling's, in turns; each side's quickest is its figure (scenario 6).
LOGGING_TURNS = 3
EVENTS = 5
NO_OTREE = "http://127.0.0.1:9"  # the logging API never calls oTree
CLK_TCK = os.sysconf("SC_CLK_TCK")


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


# -- the design -------------------------------------------------------------------------------


def design_xml(runs: int, blocks: int, per_block: int = PER_BLOCK) -> bytes:
    """A pointing experiment: `runs` runs of `blocks` blocks of `per_block` trials, the measures
    the Lua script posts declared (the trial's, and its events')."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<experiment id="{EXPERIMENT}" name="Pointing (bench)" author="bench">',
        '<factor id="technique" name="Technique" type="String" kind="key">'
        '<value id="mouse" name="Mouse"/><value id="touch" name="Touch"/></factor>',
        '<factor id="size" name="Size" type="Integer" kind="key">'
        '<value id="small"/><value id="large" default="true"/></factor>',
        '<factor id="distance" name="Distance" type="Integer">'
        '<value id="near"/><value id="far"/></factor>',
        '<measure id="time" name="Time" type="Integer" log="ok"/>',
        '<measure id="durations.reaction" name="Reaction" type="Integer" log="ok"/>',
        '<measure id="durations.movement" name="Movement" type="Integer" log="ok"/>',
        '<measure id="hit" name="Hit" type="Boolean" log="ok"/>',
        '<measure id="errors" name="Errors" type="Integer" log="ok"/>',
        '<measure id="t" name="Time" type="Integer" cine="ok"/>',
        '<measure id="x" name="X" type="Float" cine="ok"/>',
        '<measure id="y" name="Y" type="Float" cine="ok"/>',
        '<measure id="type" name="Type" type="String" cine="ok"/>',
    ]
    trials = "".join(
        f'<trial values="size={"small" if t % 2 else "large"},'
        f'distance={"far" if t % 3 else "near"}"/>'
        for t in range(per_block)
    )
    for r in range(runs):
        out.append(f"<run id={quoteattr(run_id(r))}>")
        for b in range(blocks):
            technique = "touch" if (b + r) % 2 else "mouse"
            out.append(f'<block class="B" values="technique={technique}">{trials}</block>')
        out.append("</run>")
    out.append("</experiment>")
    return "\n".join(out).encode()


def run_id(n: int) -> str:
    return f"P{n:03d}"


# -- wrk --------------------------------------------------------------------------------------


@dataclass
class Client:
    """One wrk connection's run: its id, its lock's token, the position of its next trial."""

    run: str
    token: str
    position: int = 0


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string of ASCII text is a valid Lua string


def write_config(path: Path, experiment: str, clients: list[Client]) -> Path:
    runs = ",\n".join(
        f"  {{{_lua_string(c.run)}, {_lua_string(c.token)}, {c.position}}}" for c in clients
    )
    path.write_text(
        f"return {{experiment = {_lua_string(experiment)}, per_block = {PER_BLOCK}, "
        f"runs = {{\n{runs}\n}}}}\n"
    )
    return path


def wait_with_usage(child: Child, timeout: float) -> tuple[int, Any]:
    """Wait for the child to exit (stopping it after `timeout`): its exit code and its own
    resource usage (its CPU time), from wait4."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            code = os.waitstatus_to_exitcode(status)
            child.process.returncode = code
            return code, usage
        if time.monotonic() > deadline:
            child.stop()
            raise RuntimeError(f"{child.name} did not finish in {timeout:g} s: {child.log_tail()}")
        time.sleep(0.05)


def run_wrk(
    ctx: Context,
    name: str,
    url: str,
    experiment: str,
    clients: list[Client],
    seconds: float,
    database_pid: int | None = None,
    ports: tuple[int, ...] = (),
    **pids: int,
) -> dict[str, Any]:
    """wrk with one connection (and thread) per client for `seconds`; the clients' positions
    move on. Its figures, with the CPU of the processes in `pids` (and of the PostgreSQL
    cluster of `database_pid`) over the run. `ports`: the connections dealt round-robin to
    these ports of the URL's host (client i to ports[i % n]) instead of the URL's."""
    config = write_config(ctx.workdir / f"{name}.lua", experiment, clients)
    argv = [
        "wrk",
        "-t",
        str(len(clients)),
        "-c",
        str(len(clients)),
        "-d",
        f"{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(WRK_SCRIPT),
        url,
        "--",
        str(config),
    ]
    meter = procs.CpuMeter(**pids).start(threads_of="server" if "server" in pids else None)
    cluster = ClusterCpu(database_pid).start() if database_pid else None
    env = {**os.environ, "TRIALS_PORTS": ",".join(map(str, ports))}
    child = Child(name, argv, ctx.workdir / f"{name}.log", env=env)
    try:
        code, usage = wait_with_usage(child, seconds + 60)
    finally:
        meter.stop()
        if cluster is not None:
            meter.cpu_s["database"] = cluster.stop()
        child.stop()
    text = child.log_path.read_text(errors="replace")
    line = next((x for x in text.splitlines() if x.startswith("WRK_JSON ")), None)
    if code != 0 or line is None:
        raise RuntimeError(f"wrk failed ({code}): {text[-2000:]}")
    raw = json.loads(line.removeprefix("WRK_JSON "))
    by_run = {t["run"]: t for t in raw["threads"]}
    for client in clients:
        client.position = by_run[client.run]["next"]
    stored = sum(t["stored"] for t in raw["threads"])
    failed = sum(t["failed"] for t in raw["threads"])
    wall = raw["duration_us"] / 1e6
    wrk_cpu = usage.ru_utime + usage.ru_stime
    latency = raw["latency_us"]
    socket_errors = {k: v for k, v in raw["socket_errors"].items() if v}
    return {
        "connections": len(clients),
        "seconds": round(wall, 2),
        "requests": raw["requests"],
        "stored": stored,
        "non_2xx": failed,
        "socket_errors": socket_errors,
        "last_errors": sorted({t["last_error"] for t in raw["threads"] if t["last_error"]})[:5],
        "rate_per_s": round(stored / wall, 1) if wall else None,
        "latency_ms": {
            "p50": latency["50"] / 1000,
            "p90": latency["90"] / 1000,
            "p95": latency["95"] / 1000,
            "p99": latency["99"] / 1000,
            "max": latency["max"] / 1000,
            "mean": round(latency["mean"] / 1000, 3),
        },
        "cpu_share": meter.shares(),
        # The event loop's thread and the others (aiosqlite's): bench/README.md, scenario 6.
        "server_threads_share": meter.thread_shares(),
        "cpu_ms_per_trial": {
            who: round(1000 * cpu / stored, 3) if stored else None
            for who, cpu in meter.cpu_s.items()
        },
        "wrk_cpu_share": round(wrk_cpu / meter.seconds, 3) if meter.seconds else None,
    }


def _leg(
    ctx: Context,
    name: str,
    url: str,
    experiment: str,
    clients: list[Client],
    seconds: float,
    pid: int,
    database_pid: int | None = None,
) -> dict[str, Any]:
    """One wrk run of `seconds`, logged."""
    figures = run_wrk(
        ctx, f"wrk-{name}", url, experiment, clients, seconds, database_pid, server=pid
    )
    database = figures["cpu_ms_per_trial"].get("database")
    ctx.log(
        f"  {name}: {figures['rate_per_s']} trials/s, latency p50/p99 "
        f"{figures['latency_ms']['p50']}/{figures['latency_ms']['p99']} ms, server CPU "
        f"{figures['cpu_ms_per_trial']['server']} ms a trial"
        + (f" (PostgreSQL {database} ms)" if database is not None else "")
        + f", wrk CPU {figures['wrk_cpu_share']}, non-2xx {figures['non_2xx']}"
    )
    return figures


def _quickest_turn(turns: list[dict[str, Any]]) -> dict[str, Any]:
    """The turn with the highest rate, with every turn's rate; its errors are all the turns'
    (an error in any turn still fails the target)."""
    figures = dict(max(turns, key=lambda turn: turn["rate_per_s"] or 0))
    figures["turn_rates"] = [turn["rate_per_s"] for turn in turns]
    figures["non_2xx"] = sum(turn["non_2xx"] for turn in turns)
    figures["socket_errors"] = dict(sum((Counter(t["socket_errors"]) for t in turns), Counter()))
    return figures


# -- mastok ------------------------------------------------------------------------------------


@contextlib.contextmanager
def database(ctx: Context, backend: str, name: str) -> Iterator[tuple[str, int | None]]:
    """A fresh database of `backend`: its URL, and (PostgreSQL, a throwaway cluster) the pid of
    its postmaster, whose processes do the database's work."""
    if backend == "postgresql":
        with servers.postgres(ctx.workdir) as cluster:
            url = cluster.new_database()
            yield url, postmaster(cluster.server.data_dir)
    else:
        yield servers.sqlite_url(ctx.workdir, name), None


def postmaster(data_dir: Path) -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if argv[0].endswith(b"postgres") and str(data_dir).encode() in argv:
                return int(entry.name)
    return None


class ClusterCpu:
    """CPU used by a PostgreSQL cluster (its postmaster, its backends, and the children that
    exited meanwhile, which the postmaster reaped) between `start()` and `stop()`."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._begin: dict[int, float] = {}
        self.cpu_s = 0.0

    def _snapshot(self) -> dict[int, float]:
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                text = (entry / "stat").read_text()
                fields = text[text.rfind(")") + 2 :].split()
                pid, ppid = int(entry.name), int(fields[1])
                if pid == self.pid or ppid == self.pid:
                    ticks = int(fields[11]) + int(fields[12])
                    if pid == self.pid:  # and its reaped children's
                        ticks += int(fields[13]) + int(fields[14])
                    found[pid] = ticks / CLK_TCK
        return found

    def start(self) -> ClusterCpu:
        self._begin = self._snapshot()
        return self

    def stop(self) -> float:
        end = self._snapshot()
        self.cpu_s = sum(cpu - self._begin.get(pid, 0.0) for pid, cpu in end.items())
        return self.cpu_s


def prepare(mastok: servers.Mastok, runs: int, blocks: int) -> list[Client]:
    """Import the design (admin API), then take each run's lock as a client does."""
    xml = design_xml(runs, blocks)
    with mastok.admin() as admin:
        answer = admin.post(
            "/api/import", content=xml, headers={"Content-Type": "application/xml"}, timeout=300
        )
        if answer.status_code != 200:
            raise RuntimeError(f"importing the design: {answer.status_code} {answer.text[:500]}")
    clients = []
    with httpx.Client(base_url=mastok.url, timeout=30) as http:
        for n in range(runs):
            answer = http.get(f"/api/run/{EXPERIMENT}/{run_id(n)}/lock")
            answer.raise_for_status()
            clients.append(Client(run_id(n), answer.json()["token"]))
    return clients


def resync(mastok: servers.Mastok, clients: list[Client]) -> None:
    """Each client's next trial, as the server has it (the run's current trial), once posts
    still in the server's hands are done: the same answers twice, a moment apart."""

    def positions(http: httpx.Client) -> list[int]:
        found = []
        for client in clients:
            answer = http.get(f"/api/run/{EXPERIMENT}/{client.run}/current_trial")
            answer.raise_for_status()
            trial = answer.json()
            found.append(trial["blockNumber"] * PER_BLOCK + trial["number"])
        return found

    with httpx.Client(base_url=mastok.url, timeout=30) as http:
        before = positions(http)
        for _ in range(50):
            time.sleep(0.2)
            now = positions(http)
            if now == before:
                break
            before = now
    for client, position in zip(clients, now, strict=True):
        client.position = position


def trials_done(mastok: servers.Mastok) -> int:
    with mastok.admin() as admin:
        answer = admin.get(f"/api/monitoring/experiments/{EXPERIMENT}")
        answer.raise_for_status()
        return sum(int(run["trials_done"]) for run in answer.json()["runs"])


def mastok_logging(
    ctx: Context,
    backend: str,
    levels: tuple[int, ...],
    seconds: float,
    turns: int,
    warm_up: float,
    export_sizes: tuple[int, ...],
    with_ceiling: bool,
) -> dict[str, Any]:
    """mastok on a fresh database of `backend` and, beside it, the bare POST ceiling, each
    level's legs in turns (`turns` of `seconds` each): each side's quickest turn is its figure."""
    ctx.log(
        f"logging API on {backend}"
        + (", in turns with the bare POST ceiling" if with_ceiling else "")
    )
    name = f"mastok-logging-{backend}"
    runs = max(levels)
    total = warm_up + seconds * turns * len(levels)
    per_connection = max(MAX_PER_CONNECTION, MAX_RATE / min(levels))
    blocks = math.ceil(per_connection * total / PER_BLOCK)
    out: dict[str, Any] = {"backend": backend, "runs": runs, "trials_per_run": blocks * PER_BLOCK}
    with database(ctx, backend, name) as (url, database_pid):
        mastok = servers.start_mastok(ctx.workdir, name, url, NO_OTREE)
        echo = servers.start_echo(ctx.workdir) if with_ceiling else None
        try:
            begin = time.monotonic()
            clients = prepare(mastok, runs, blocks)
            out["import_and_lock_s"] = round(time.monotonic() - begin, 2)
            out["levels"], out["ceiling"] = _turns(
                ctx, backend, mastok, echo, clients, levels, seconds, turns, warm_up, database_pid
            )
            acknowledged = sum(c.position for c in clients)
            stored = trials_done(mastok)
            out["trials_stored"] = stored
            # wrk stops with up to one post in flight a connection, which the server may store.
            out["trials_stored_unacknowledged"] = stored - acknowledged
            if not 0 <= stored - acknowledged <= runs:
                ctx.notes.append(
                    f"logging on {backend}: the server holds {stored} trials, clients got 200 "
                    f"for {acknowledged}"
                )
            if any(c.position >= blocks * PER_BLOCK for c in clients):
                ctx.notes.append(f"logging on {backend}: a run completed; make the runs longer")
        finally:
            if echo is not None:
                echo.stop()
            mastok.stop()
        if export_sizes:
            out["export"] = exports(ctx, backend, url, export_sizes)
    return out


def _turns(
    ctx: Context,
    backend: str,
    mastok: servers.Mastok,
    echo: servers.Server | None,
    clients: list[Client],
    levels: tuple[int, ...],
    seconds: float,
    turns: int,
    warm_up: float,
    database_pid: int | None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each level's figures for mastok and the ceiling: a warm-up of each, then the ceiling and
    mastok in turns, mastok's runs carrying on from where the server has them (`resync`: wrk
    stops with posts in flight, which the server may have stored though wrk never read the
    answer). The ceiling's legs post to the bare endpoint with runs of their own."""
    top = max(levels)
    bare = [Client(f"E{n}", "echo-token") for n in range(top)]
    if echo is not None:
        run_wrk(ctx, "wrk-ceiling-warm-up", echo.url, "echo", bare, warm_up, server=echo.pid)
    warm = f"wrk-{backend}-warm-up"
    run_wrk(ctx, warm, mastok.url, EXPERIMENT, clients[:top], warm_up, server=mastok.pid)
    mine, ceilings = [], []
    for level in levels:
        ours, theirs = [], []
        for turn in range(1, turns + 1):
            if echo is not None:
                leg = f"ceiling-{level}-turn-{turn}"
                theirs.append(_leg(ctx, leg, echo.url, "echo", bare[:level], seconds, echo.pid))
            resync(mastok, clients)
            leg = f"{backend}-{level}-turn-{turn}"
            ours.append(
                _leg(
                    ctx,
                    leg,
                    mastok.url,
                    EXPERIMENT,
                    clients[:level],
                    seconds,
                    mastok.pid,
                    database_pid,
                )
            )
        figures = _quickest_turn(ours)
        if theirs:
            ceiling = _quickest_turn(theirs)
            if ceiling["rate_per_s"] and figures["rate_per_s"]:
                figures["ceiling_ratio"] = round(figures["rate_per_s"] / ceiling["rate_per_s"], 3)
            ceilings.append(ceiling)
        mine.append(figures)
    return mine, ceilings


# -- the export --------------------------------------------------------------------------------


# Each export and its ceiling run this many times, in turns, and each side's quickest run is
# its figure: within one run of the bench this machine's speed moved 2x in minutes, and one
# export of 100,000 trials on SQLite read x1.75, x1.76 then x2.30 its ceiling over three full
# runs of the same code (bench/README.md, scenario 6).
EXPORT_TURNS = 3


def exports(ctx: Context, backend: str, url: str, sizes: tuple[int, ...]) -> list[dict[str, Any]]:
    """Experiments of `sizes` completed trials (5 events each), filled straight into the
    tables, then `python -m mastok export` (CSV) on each and the ceiling's export, one process
    each time, `EXPORT_TURNS` times in turns."""
    out = []
    for size in sizes:
        experiment = f"export_{size}"
        begin = time.monotonic()
        asyncio.run(fill(url, experiment, size))
        filled = time.monotonic() - begin
        mine, bare = [], []
        for _ in range(EXPORT_TURNS):
            mine.append(export_once(ctx, url, experiment, size))
            bare.append(export_once(ctx, url, experiment, size, program=EXPORT_CEILING))
        figures = _quickest(mine)
        figures["fill_s"] = round(filled, 2)
        figures["ceiling"] = _quickest(bare)
        ctx.log(
            f"  export of {size:,} trials on {backend}: {figures['seconds']} s (trials "
            f"{figures['trials_s']} s, events {figures['events_s']} s; all "
            f"{figures['all_seconds']}), peak RSS {figures['peak_rss_mib']} MiB (filled in "
            f"{filled:.1f} s); the bare driver and csv: {figures['ceiling']['seconds']} s (all "
            f"{figures['ceiling']['all_seconds']})"
        )
        out.append(figures)
    return out


def _quickest(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The quickest of the runs, with every run's time, and the highest peak RSS of them (the
    memory check stays as strict as one run's)."""
    figures = dict(min(runs, key=lambda run: run["seconds"]))
    figures["all_seconds"] = [run["seconds"] for run in runs]
    figures["peak_rss_mib"] = max(run["peak_rss_mib"] for run in runs)
    return figures


TRIALS_PER_BLOCK_EXPORTED = 200
BLOCKS_EXPORTED = 10


async def fill(url: str, experiment: str, size: int) -> None:
    """An experiment of `size` trials (runs of 2,000: 10 blocks of 200) imported by mastok's
    import, then every trial completed with 3 trial measures and 5 events of 3 measures
    (tests/lightmill/bulk.py's values) by the driver's bulk paths: executemany on SQLite,
    COPY on PostgreSQL."""
    from mastok.db import Database, async_url
    from mastok.lightmill.store import LightMillStore
    from tests.lightmill.bulk import big_design

    per_run = TRIALS_PER_BLOCK_EXPORTED * BLOCKS_EXPORTED
    design = big_design(
        experiment,
        runs=max(1, size // per_run),
        blocks=BLOCKS_EXPORTED,
        trials=TRIALS_PER_BLOCK_EXPORTED,
    )
    db = Database(async_url(url))
    try:
        await LightMillStore(db).import_design(design)
    finally:
        await db.close()
    if url.startswith("sqlite"):
        _fill_sqlite(url.split(":///", 1)[1], experiment)
    else:
        await _fill_postgres(url, experiment)


def _value_rows(
    measure: dict[str, int], trials: list[tuple[int, int]]
) -> list[tuple[str | None, str | None, int]]:
    """Each trial's measure values and its events' (with its id, for an UPDATE)."""
    from mastok.lightmill.measure_values import encode, encode_each
    from tests.lightmill.bulk import expected_event, expected_trial_measures

    return [
        (
            encode(measure, expected_trial_measures(position)),
            encode_each(measure, [expected_event(position, event) for event in range(EVENTS)]),
            trial_id,
        )
        for trial_id, position in trials
    ]


COMPLETE_TRIALS = (
    "UPDATE lm_trials SET completed_at = {now}, event_count = {events} WHERE run_id IN "
    "(SELECT id FROM lm_runs WHERE experiment_id = {xp})"
)
COMPLETE_RUNS = "UPDATE lm_runs SET completed_trials = trial_count WHERE experiment_id = {xp}"
XP = "SELECT id FROM lm_experiments WHERE code = {p}"
MEASURES = "SELECT code, id FROM lm_measures WHERE experiment_id = {p}"
TRIALS = (
    "SELECT id, position FROM lm_trials WHERE run_id IN "
    "(SELECT id FROM lm_runs WHERE experiment_id = {p})"
)


def _fill_sqlite(path: str, experiment: str) -> None:
    from tests.lightmill.bulk import COMPLETED_AT

    with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn, conn:
        (xp,) = conn.execute(XP.format(p="?"), (experiment,)).fetchone()
        measure = dict(conn.execute(MEASURES.format(p="?"), (xp,)).fetchall())
        trials = conn.execute(TRIALS.format(p="?"), (xp,)).fetchall()
        # As SQLAlchemy stores an aware datetime on SQLite.
        stamp = COMPLETED_AT.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        conn.execute(COMPLETE_TRIALS.format(now="?", events=EVENTS, xp=xp), (stamp,))
        conn.execute(COMPLETE_RUNS.format(xp=xp))
        conn.executemany(
            "UPDATE lm_trials SET measure_values = ?, event_values = ? WHERE id = ?",
            _value_rows(measure, trials),
        )


async def _fill_postgres(url: str, experiment: str) -> None:
    import asyncpg

    from tests.lightmill.bulk import COMPLETED_AT

    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            # Rows consistent by construction: no foreign key checks (a trigger a row) while
            # they load. The cluster is the benchmark's own; its user is a superuser.
            await conn.execute("SET LOCAL session_replication_role = replica")
            xp = await conn.fetchval(XP.format(p="$1"), experiment)
            measure = dict(await conn.fetch(MEASURES.format(p="$1"), xp))
            trials = [tuple(r) for r in await conn.fetch(TRIALS.format(p="$1"), xp)]
            await conn.execute(COMPLETE_TRIALS.format(now="$1", events=EVENTS, xp=xp), COMPLETED_AT)
            await conn.execute(COMPLETE_RUNS.format(xp=xp))
            rows = _value_rows(measure, trials)
            await conn.execute(
                "UPDATE lm_trials AS t SET measure_values = v.measure_values,"
                " event_values = v.event_values FROM unnest($1::text[], $2::text[], $3::integer[])"
                " AS v(measure_values, event_values, id) WHERE t.id = v.id",
                *(list(column) for column in zip(*rows, strict=True)),
            )
        await conn.execute("ANALYZE lm_trials")
    finally:
        await conn.close()


class PeakRss:
    """A process's peak resident memory, polled from /proc (VmHWM: the high-water mark of the
    memory it has since its exec; wait4's ru_maxrss would also count the memory its parent had
    when it forked, the harness's own)."""

    def __init__(self, pid: int, every: float = 0.01) -> None:
        self.pid = pid
        self.every = every
        self.kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        path = f"/proc/{self.pid}/status"
        while not self._stop.is_set():
            try:
                with open(path) as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            self.kib = max(self.kib, int(line.split()[1]))
                            break
            except (OSError, ValueError):
                return
            self._stop.wait(self.every)

    def start(self) -> PeakRss:
        self._thread.start()
        return self

    def stop(self) -> float:
        """The peak in MiB."""
        self._stop.set()
        self._thread.join(5)
        return round(self.kib / 1024, 1)


# The export's same-run ceiling: the same rows read with the bare driver, written with `csv`.
EXPORT_CEILING = "bench.export_ceiling"


def export_once(
    ctx: Context, url: str, experiment: str, size: int, program: str = "mastok"
) -> dict[str, Any]:
    """`python -m mastok export` (CSV) as people run it (or `program`, the ceiling): wall time
    to each file, and the process's peak RSS."""
    out_dir = ctx.workdir / f"export-{experiment}"
    shutil.rmtree(out_dir, ignore_errors=True)
    argv = [sys.executable, "-m", program]
    if program == "mastok":
        argv += ["export", "--experiment", experiment, "--output-dir", str(out_dir)]
        argv += ["--format", "csv", "--database", url]
    else:
        argv += [url, experiment, str(out_dir)]
    env = {**os.environ, "MASTOK_MODE": "TEST", "PYTHONUNBUFFERED": "1"}
    begin = time.monotonic()
    process = subprocess.Popen(
        argv,
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    marks: dict[str, float] = {}
    assert process.stdout is not None and process.stderr is not None
    # The last reading comes before the process exits: reaped, it leaves no /proc entry.
    peak = PeakRss(process.pid).start()
    try:
        for line in process.stdout:
            if line.startswith("wrote ") and line.rstrip().endswith("-trials.csv"):
                marks["trials"] = time.monotonic()
            elif line.startswith("wrote ") and line.rstrip().endswith("-events.csv"):
                marks["events"] = time.monotonic()
        # Waited for without reaping, so that the last reading sees the process at its end.
        os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
        end = time.monotonic()
        peak_mib = peak.stop()
        _, status, usage = os.wait4(process.pid, 0)
    except BaseException:
        process.kill()
        peak.stop()
        raise
    process.returncode = os.waitstatus_to_exitcode(status)
    errors = process.stderr.read()
    process.stdout.close()
    process.stderr.close()
    if process.returncode != 0 or len(marks) != 2:
        raise RuntimeError(f"{program} export failed ({process.returncode}): {errors[-2000:]}")
    trials_file = out_dir / f"{experiment}-trials.csv"
    events_file = out_dir / f"{experiment}-events.csv"
    rows = {"trials": _lines(trials_file) - 1, "events": _lines(events_file) - 1}
    if rows != {"trials": size, "events": size * EVENTS}:
        ctx.notes.append(f"{program} export of {experiment}: {rows} rows, expected {size} trials")
    figures = {
        "trials": size,
        "events": size * EVENTS,
        "rows": rows,
        "seconds": round(end - begin, 2),
        "trials_s": round(marks["trials"] - begin, 2),
        "events_s": round(marks["events"] - marks["trials"], 2),
        "peak_rss_mib": peak_mib,
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "file_mib": {
            "trials": round(trials_file.stat().st_size / 2**20, 1),
            "events": round(events_file.stat().st_size / 2**20, 1),
        },
    }
    shutil.rmtree(out_dir, ignore_errors=True)
    return figures


def _lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


# -- the scenario ------------------------------------------------------------------------------


def logging_api(
    ctx: Context,
    backends: tuple[str, ...] = ("sqlite", "postgresql"),
    levels: tuple[int, ...] = (16,),
    seconds: float = 5.0,
    turns: int = LOGGING_TURNS,
    warm_up: float = 3.0,
    export_sizes: tuple[int, ...] = (10_000, 100_000),
    with_ceiling: bool = True,
    two_processes: bool = True,
) -> dict[str, Any]:
    """Scenario 6: trial logging on each backend against the bare POST ceiling (in turns, legs
    of `seconds`), and the export's time and memory; with PostgreSQL and `two_processes`, a
    leader and a standby logging together against one process (bench/logging_pair.py)."""
    if not wrk_available():
        return {
            "status": "not run",
            "reason": "wrk is not installed (`make bench` installs it: scripts/install-wrk.sh)",
        }
    levels = tuple(sorted(set(levels)))
    out: dict[str, Any] = {
        "events_per_trial": EVENTS,
        "body": "5 trial measures (2 in a nested object), 5 events of 4 measures each",
    }
    for backend in backends:
        # The ceiling in turns with mastok: this machine's speed drifts by as much as the
        # target's margin within minutes (bench/README.md, scenario 6).
        out[backend] = mastok_logging(
            ctx, backend, levels, seconds, turns, warm_up, export_sizes, with_ceiling
        )
    if two_processes and "postgresql" in backends:
        from bench import logging_pair

        out["two_processes"] = logging_pair.two_processes(ctx, max(levels), seconds, warm_up)
    return out
