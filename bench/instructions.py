"""Instructions mastok's process runs a LightMill trial post, counted by valgrind's callgrind.

A before and after that this machine's noise cannot blur: the bare POST app's legs read 3,229
to 8,225 trials/s within an hour here, and up to half again within one run (bench/README.md,
scenario 6's fourteenth round), so a change of a few percent on the trial path could not be
told from the machine's drift. Instructions can: the same posts on the same code count within
1% from one run to the next.

mastok runs under callgrind with instrumentation off (its start and the import of the design
are not counted), 16 clients each post `WARM_UP` trials of their run, then instrumentation goes
on (`callgrind_control -i on`) for `posts` more each, sent as bench/wrk/trials.lua sends them
(the same bodies, one connection a client, the next post when the last one answers), and off
again. A post-by-post client in this process, not wrk: wrk runs for a time, this for a count.
Under callgrind mastok is about 20 times slower, so its batches are fuller than at full speed:
the count compares codes, it is not what a post costs at full speed. PostgreSQL's backends'
CPU over the same posts is reported beside it. On SQLite, the posts the worker process writes
(mastok/lightmill/sqlite_worker.py) cost it instructions this does not count: valgrind does not
follow the processes mastok starts.

`--join`: the same for a participant's join flow (bench scenario 2's, the stub oTree; SQLite
unless `--backend postgresql`):
`JOIN_WARM_UP` flows not counted, then `flows` counted, `JOIN_CONCURRENCY` at a time (or
`--concurrency`: scenario 2's saturation run has 100) in a closed loop, four to a session, each
through to Starting; the campaigns are made before counting. Its count moves by up to 2% from
one run to the next: the room's ticks and oTree's progress reads come by the clock, so a slower
run makes more of them a participant. A change must count well past that to be told. Counted,
mastok runs tens of times slower than it serves, and the clock's work weighs as much more:
over 2,400 flows, 100 at a time, the progress poller's reads (at most 10 a second,
`mastok/live/progress.py`) were 5% of the opcodes counted, where a saturation run makes one
read for every 40 to 50 participants.

    .venv/bin/python -m bench.instructions --backend postgresql --posts 100
    .venv/bin/python -m bench.instructions --baseline e2e762c      # that commit's server too
    .venv/bin/python -m bench.instructions --join --flows 200

`--opcodes`: the Python opcodes mastok's event loop's thread runs instead, counted by a trace
function (bench/counting/sitecustomize.py) over the same work, reported by module beside the
total: where callgrind's count cannot say which Python code ran, and cProfile's and py-spy's
times move with the machine. Needs no valgrind; C functions' work is not counted.

    .venv/bin/python -m bench.instructions --join --opcodes --baseline 9a4b48e

Needs valgrind (`apt-get install valgrind`) unless `--opcodes`; `make bench` does not
install it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench import compare, loadgen, logging_api, procs, scenarios, servers
from bench.logging_api import EXPERIMENT, NO_OTREE, PER_BLOCK, Client
from bench.scenarios import Context

CLIENTS = 16  # as scenario 6's wrk connections
WARM_UP = 40  # posts a client makes before counting: the places read ahead, the statements prepared
STARTING_S = 600.0  # a bound on mastok's start under valgrind (a few seconds uninstrumented)
JOIN_WARM_UP = 40  # flows before counting: ten sessions
JOIN_CONCURRENCY = 8  # participants at a time: two sessions' worth
JOIN_TIMEOUT_S = 1800.0
COUNTING = Path(__file__).parent / "counting"  # the servers' sitecustomize (`--opcodes`)
SHOWN_MODULES = 15
_LENGTH = re.compile(rb"(?i)\r\ncontent-length: *(\d+)")


@dataclass(frozen=True)
class Count:
    backend: str
    trials: int  # or participants' join flows
    instructions: int  # or Python opcodes (`--opcodes`)
    database_cpu_s: float | None
    what: str = "trial"
    by_module: dict[str, int] | None = None  # the opcodes of each module (`--opcodes`)

    @property
    def per_trial(self) -> float:
        return self.instructions / self.trials


def trial_body(token: str, n: int) -> bytes:
    """The body bench/wrk/trials.lua posts for the trial at position `n`."""
    kinds = ("down", "move", "move", "move", "up")
    events = ",".join(
        f'{{"t":{e * 37 + n % 11},"x":{412.5 + 3.75 * e + n % 17:.2f},'
        f'"y":{288.25 - 2.5 * e - n % 13:.2f},"type":"{kinds[e]}"}}'
        for e in range(5)
    )
    hit = "false" if n % 7 == 0 else "true"
    return (
        f'{{"token":"{token}","measures":{{"trial":{{"time":{620 + n % 389},'
        f'"durations":{{"reaction":{210 + n % 97},"movement":{410 + n % 293}}},'
        f'"hit":{hit},"errors":{n % 3}}},"events":[{events}]}}}}'
    ).encode()


async def _post_in_order(port: int, client: Client, count: int) -> None:
    """`count` posts of the client's run from its next trial, each once the last one answered."""
    reader, writer = await asyncio.open_connection(servers.LOOPBACK, port)
    try:
        for position in range(client.position, client.position + count):
            block, number = divmod(position, PER_BLOCK)
            body = trial_body(client.token, position)
            writer.write(
                f"POST /api/trial/{EXPERIMENT}/{client.run}/{block}/{number} HTTP/1.1\r\n"
                "Host: bench\r\nContent-Type: text/plain;charset=UTF-8\r\n"
                "Origin: https://experiments.example.org\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            head = await reader.readuntil(b"\r\n\r\n")
            length = _LENGTH.search(head)
            answer = await reader.readexactly(int(length.group(1)) if length else 0)
            if not head.startswith(b"HTTP/1.1 200 "):
                raise RuntimeError(
                    f"trial {position} of {client.run}: {head[:40]!r} {answer[:200]!r}"
                )
        client.position += count
    finally:
        writer.close()


def post_trials(port: int, clients: list[Client], count: int) -> None:
    async def all_of_them() -> None:
        await asyncio.gather(*(_post_in_order(port, client, count) for client in clients))

    asyncio.run(all_of_them())


def backends_cpu_s(database: str) -> float:
    """CPU seconds of the PostgreSQL backends connected to `database` (not the cluster's
    background processes, which run on their own timers)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if title.startswith("postgres:") and f" {database} " in title:
                total += procs.usage(int(entry.name)).cpu_s
        except (OSError, UnicodeDecodeError):
            continue  # a process that ended meanwhile
    return total


def count(workdir: Path, backend: str, posts: int, opcodes: bool = False) -> Count:
    """Instructions (or opcodes) of mastok's process over `posts` trial posts of each client
    (module docstring), on a fresh database of `backend`."""
    with _mastok_counted(workdir, backend, NO_OTREE, opcodes) as (mastok, counted):
        clients = logging_api.prepare(mastok, CLIENTS, blocks_for(WARM_UP + posts))
        post_trials(mastok.port, clients, WARM_UP)
        total, by_module, database_cpu = counted(lambda: post_trials(mastok.port, clients, posts))
    return Count(backend, CLIENTS * posts, total, database_cpu, by_module=by_module)


def count_join(
    workdir: Path,
    backend: str,
    flows: int,
    opcodes: bool = False,
    concurrency: int = JOIN_CONCURRENCY,
) -> Count:
    """Instructions (or opcodes) of mastok's process over `flows` join flows (module
    docstring)."""
    stub = servers.start_stub_otree(workdir, "instructions-stub-otree")
    try:
        with _mastok_counted(workdir, backend, stub.url, opcodes) as (mastok, counted):
            _joins(workdir, mastok, _campaigns(mastok, JOIN_WARM_UP), JOIN_WARM_UP)
            slugs = _campaigns(mastok, flows)  # not counted: a join does not make its campaign
            total, by_module, database_cpu = counted(
                lambda: _joins(workdir, mastok, slugs, flows, concurrency)
            )
    finally:
        stub.stop()
    return Count(backend, flows, total, database_cpu, "participant's join", by_module)


Counted = tuple[int, dict[str, int] | None, float | None]  # the total, by module, the database
Counter = Callable[[Callable[[], None]], Counted]


@contextlib.contextmanager
def _mastok_counted(
    workdir: Path, backend: str, otree_url: str, opcodes: bool = False
) -> Iterator[tuple[servers.Mastok, Counter]]:
    """mastok under callgrind (or tracing its opcodes) on a fresh database of `backend`, and
    what counts the instructions (or opcodes) it runs while some work is done, with its
    PostgreSQL backends' CPU."""
    ctx = Context(workdir=workdir, verbose=False)
    traced = workdir / "opcodes"
    with logging_api.database(ctx, backend, "instructions") as (url, _):
        if opcodes:
            settings = {"PYTHONPATH": str(COUNTING), "BENCH_OPCODES_DIR": str(traced)}
            mastok = servers.start_mastok(
                workdir, "instructions", url, otree_url, settings=settings
            )
        else:
            wrapper = str(_under_callgrind(workdir))
            mastok = servers.start_mastok(
                workdir, "instructions", url, otree_url, python=wrapper, within=STARTING_S
            )
        database = url.rsplit("/", 1)[1].split("?")[0] if backend == "postgresql" else None

        def counted(work: Callable[[], None]) -> Counted:
            cpu_before = backends_cpu_s(database) if database else 0.0
            if opcodes:
                by_module = _opcodes_counted(traced, mastok.pid, work)
                total = sum(by_module.values())
            else:
                total, by_module = _counted(workdir, mastok.pid, work), None
            return total, by_module, backends_cpu_s(database) - cpu_before if database else None

        try:
            yield mastok, counted
        finally:
            mastok.stop()


def _campaigns(mastok: servers.Mastok, flows: int) -> list[str]:
    """Campaigns of their own for `flows` participants (each within its sessions at once, as
    scenario 2's)."""
    return mastok.create_campaigns(f"j{time.monotonic_ns()}_", servers.campaigns_for(flows))


def _joins(
    workdir: Path,
    mastok: servers.Mastok,
    slugs: list[str],
    flows: int,
    at_once: int = JOIN_CONCURRENCY,
) -> None:
    """`flows` participants through to Starting, into the campaigns `slugs`, `at_once` at a
    time."""
    # Enough people at once that some campaign always fills a session (as scenario 2's).
    concurrency = max(at_once, (scenarios.PER_SESSION - 1) * len(slugs) + 1)
    job = scenarios.join_job(
        mastok,
        slugs,
        flows,
        {"mode": "closed", "concurrency": concurrency},
        group=scenarios.PER_SESSION,
        flow_timeout_s=JOIN_TIMEOUT_S,
        deflate=True,
    )
    result = loadgen.run(workdir, job, timeout=JOIN_TIMEOUT_S)
    started = [r for r in result["records"] if r.get("reason") == "Start"]
    if len(started) != flows:
        raise RuntimeError(f"{len(started)} of {flows} join flows reached Starting")


def _under_callgrind(workdir: Path) -> Path:
    """A script running Python under callgrind, instrumentation off until it is turned on."""
    wrapper = workdir / "python-under-callgrind"
    wrapper.write_text(
        "#!/bin/sh\nexec valgrind --tool=callgrind --instr-atstart=no "
        f'--callgrind-out-file={workdir / "callgrind.out"} {sys.executable} "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


def blocks_for(trials: int) -> int:
    return -(-trials // PER_BLOCK)


def _counted(workdir: Path, pid: int, work: Callable[[], None]) -> int:
    """Instructions process `pid` (under `_under_callgrind`) runs while `work` is done."""
    _callgrind("-i", "on", pid)
    work()
    _callgrind("-i", "off", pid)
    _callgrind("-d", pid)
    return max(_totals(dump) for dump in workdir.glob("callgrind.out*"))


def _opcodes_counted(directory: Path, pid: int, work: Callable[[], None]) -> dict[str, int]:
    """The Python opcodes process `pid` (tracing on SIGUSR1: bench/counting/sitecustomize.py)
    runs while `work` is done, by module."""
    dump = directory / f"opcodes.{pid}.json"
    os.kill(pid, signal.SIGUSR1)
    time.sleep(0.5)  # the handler runs once the loop runs Python: uvicorn's wakes every 0.1 s
    work()
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 60
    while not dump.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"mastok wrote no opcode counts in {directory}")
        time.sleep(0.1)
    by_module: dict[str, int] = {}
    for where, (ran, _calls) in json.loads(dump.read_text()).items():
        module = _module(where.split(":", 1)[0])
        by_module[module] = by_module.get(module, 0) + ran
    return by_module


def _module(filename: str) -> str:
    """A file as a module to report: `mastok/live/room.py`, a package's name (`aiohttp`) or the
    standard library's module (`asyncio`)."""
    parts = Path(filename).parts
    if "site-packages" in parts:
        return Path(parts[parts.index("site-packages") + 1]).stem
    if "mastok" in parts:
        return "/".join(parts[len(parts) - 1 - parts[::-1].index("mastok") :])
    python = [i for i, part in enumerate(parts) if re.fullmatch(r"python3\.\d+", part)]
    if python and python[-1] + 1 < len(parts):
        return Path(parts[python[-1] + 1]).stem
    return filename


def _callgrind(*args: str | int) -> None:
    subprocess.run(["callgrind_control", *map(str, args)], check=True, capture_output=True)


def _totals(dump: Path) -> int:
    for line in dump.read_text(errors="replace").splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    return 0


def _line(label: str, counted: Count) -> str:
    database = ""
    if counted.database_cpu_s is not None:
        per_trial = 1e6 * counted.database_cpu_s / counted.trials
        database = f", PostgreSQL's backends {per_trial:.0f} µs CPU a {counted.what}"
    unit = "instructions" if counted.by_module is None else "Python opcodes"
    line = (
        f"{label}: {counted.per_trial:,.0f} {unit} a {counted.what} "
        f"({counted.trials} of them, {counted.backend}){database}"
    )
    if counted.by_module is not None:
        largest = sorted(counted.by_module.items(), key=lambda item: -item[1])[:SHOWN_MODULES]
        line += "".join(f"\n  {ran / counted.trials:9,.0f}  {module}" for module, ran in largest)
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument(
        "--backend",
        choices=["postgresql", "sqlite"],
        help="the database [postgresql; sqlite with --join]",
    )
    parser.add_argument("--posts", type=int, default=100, help="counted posts a client [100]")
    parser.add_argument("--runs", type=int, default=2, help="counts of each code [2]")
    parser.add_argument("--join", action="store_true", help="participants' join flows instead")
    parser.add_argument("--flows", type=int, default=200, help="counted join flows [200]")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=JOIN_CONCURRENCY,
        help=f"join flows at a time [{JOIN_CONCURRENCY}]",
    )
    parser.add_argument("--baseline", metavar="REV", help="count that commit's server too")
    parser.add_argument(
        "--opcodes", action="store_true", help="Python opcodes by module, not instructions"
    )
    args = parser.parse_args(argv)
    needs_valgrind = not args.opcodes
    if needs_valgrind and (
        shutil.which("valgrind") is None or shutil.which("callgrind_control") is None
    ):
        print("bench.instructions: needs valgrind (callgrind_control)", file=sys.stderr)
        return 2
    sides: list[tuple[str, Path | None]] = [("this tree", None)]
    root: Path | None
    if args.baseline:
        root, commit = compare.worktree(args.baseline)
        sides.insert(0, (f"baseline {commit[:9]}", root))
    for run in range(args.runs):
        for label, root in sides:  # in turns, as every comparison of the bench
            with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp:
                started = time.monotonic()
                with servers.mastok_from(root) if root else contextlib.nullcontext():
                    if args.join:
                        backend = args.backend or "sqlite"
                        counted = count_join(
                            Path(tmp), backend, args.flows, args.opcodes, args.concurrency
                        )
                    else:
                        backend = args.backend or "postgresql"
                        counted = count(Path(tmp), backend, args.posts, args.opcodes)
            print(f"{_line(label, counted)}; run {run + 1} took {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
