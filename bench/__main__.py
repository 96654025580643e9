"""`python -m bench`: mastok's benchmarks (bench/README.md).

python -m bench all                                  # everything: bench/results/latest.*
python -m bench waiting_room --participants 1000     # one scenario on its own
python -m bench ceiling | holding | fanout | real_otree | logging_api
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from bench import procs, report, scenarios
from bench.servers import node_available
from mastok.config import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "bench" / "results"
KEEP_RUNS = 3


def _stop_on_signal(signum: int, _frame: Any) -> NoReturn:
    # Unwinds as Ctrl-C does: every `finally` stops what it started.
    raise KeyboardInterrupt(f"signal {signum}")


def _workdir(name: str) -> Path:
    tmp = RESULTS / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    runs = sorted(p for p in tmp.iterdir() if p.is_dir() and p.name.startswith("run-"))
    for old in runs[: max(0, len(runs) - KEEP_RUNS + 1)]:
        shutil.rmtree(old, ignore_errors=True)
    path = tmp / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{name}"
    path.mkdir()
    return path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--clients", type=int, default=1, help="load generator processes [1]")
    common.add_argument(
        "--concurrency", type=int, default=100, help="closed-loop flows at a time [100]"
    )
    common.add_argument(
        "--flows", type=int, default=2400, help="flows in a closed-loop (saturation) run [2400]"
    )
    common.add_argument(
        "--no-deflate",
        action="store_true",
        help="clients do not offer permessage-deflate (browsers do)",
    )
    common.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    sub = parser.add_subparsers(dest="scenario", required=True)
    run_all = sub.add_parser(
        "all", parents=[common], help="every scenario; writes bench/results/latest.{json,md,png}"
    )
    run_all.add_argument(
        "--quick", action="store_true", help="smaller loads (a smoke run, not for the record)"
    )
    run_all.add_argument(
        "--out", type=Path, default=RESULTS, help="where latest.* go [bench/results]"
    )
    room = sub.add_parser(
        "waiting_room", parents=[common], help="1. join flows through to Starting (stub oTree)"
    )
    room.add_argument(
        "--participants", type=int, action="append", help="repeatable [100, 1000, 5000]"
    )
    room.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="sqlite")
    room.add_argument(
        "--ramp-seconds", type=float, default=10.0, help="length of the arrival ramp [10]"
    )
    room.add_argument("--no-saturation", action="store_true", help="ramps only, no closed-loop run")
    sub.add_parser(
        "ceiling", parents=[common], help="2. mastok's join-flow rate against a bare echo app"
    )
    hold = sub.add_parser(
        "holding",
        parents=[common],
        help="3. memory per idle waiting participant, newcomers' Consent wait",
    )
    hold.add_argument("--sockets", type=int, action="append", help="repeatable [1000, 10000]")
    hold.add_argument("--probes", type=int, default=50)
    fan = sub.add_parser(
        "fanout", parents=[common], help="4. Agree to the last supervisor's JoiningSize"
    )
    fan.add_argument("--supervisors", type=int, default=50)
    fan.add_argument("--changes", type=int, default=320)
    fan.add_argument(
        "--background-rate",
        type=float,
        default=25.0,
        help="participants/s churning through other campaigns [25]",
    )
    real = sub.add_parser(
        "real_otree", parents=[common], help="5. mastok's share of a real oTree session start"
    )
    real.add_argument("--participants", type=int, default=200)
    real.add_argument("--ramp-seconds", type=float, default=20.0)
    logging_api = sub.add_parser(
        "logging_api",
        parents=[common],
        help="6. LightMill's trial logging (wrk) against a bare POST ceiling; the export",
    )
    logging_api.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    logging_api.add_argument(
        "--connections",
        type=int,
        action="append",
        help="wrk connections (clients, each with its own run), repeatable [16]",
    )
    logging_api.add_argument(
        "--seconds", type=float, default=10.0, help="measured seconds per level [10]"
    )
    logging_api.add_argument("--warm-up", type=float, default=3.0, help="seconds [3]")
    logging_api.add_argument(
        "--export-trials",
        type=int,
        action="append",
        help="export an experiment of this many trials, repeatable [10000, 100000]",
    )
    logging_api.add_argument("--no-export", action="store_true", help="no export figures")
    logging_api.add_argument(
        "--no-ceiling", action="store_true", help="no bare POST ceiling (e.g. while profiling)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Ctrl-C too, even when started with SIGINT ignored (as `cmd &` in a script does).
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop_on_signal)
    atexit.register(procs.stop_all)
    if args.scenario != "logging_api" and not node_available():
        print(
            "bench: needs node and bench/node_modules/ws: run `make bench` (or `npm ci --prefix "
            "bench`)",
            file=sys.stderr,
        )
        return 2
    procs.raise_open_files()
    workdir = _workdir(args.scenario)
    ctx = scenarios.Context(
        workdir,
        clients=args.clients,
        concurrency=args.concurrency,
        flows=args.flows,
        deflate=not args.no_deflate,
        verbose=not args.quiet,
    )
    started = time.time()
    load_before = [round(x, 2) for x in os.getloadavg()]
    try:
        figures = run_all(ctx, args.quick) if args.scenario == "all" else run_one(ctx, args)
    except KeyboardInterrupt:
        print("bench: interrupted; servers and clients stopped", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
    results = {
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "load_average": {"before": load_before, "after": [round(x, 2) for x in os.getloadavg()]},
        "machine": report.machine(),
        "git": report.git(),
        "settings": {
            "client": "Node ws, permessage-deflate " + ("on" if ctx.deflate else "off"),
            "client_processes": ctx.clients,
            "concurrency": ctx.concurrency,
            "flows": ctx.flows,
        },
        "client_ceiling": ctx.client_ceiling,
        "scenarios": figures,
        "notes": ctx.notes,
    }
    results["targets"] = report.targets(results)
    if args.scenario == "all":
        out: Path = args.out
        chart_ok = report.chart(results, out / "latest.png")
        report.write_json(results, out / "latest.json")
        (out / "latest.md").write_text(report.markdown(results, "latest.png" if chart_ok else None))
        print(
            f"bench: wrote {out / 'latest.json'}, {out / 'latest.md'}"
            + (f", {out / 'latest.png'}" if chart_ok else "")
        )
    else:
        path = RESULTS / "tmp" / f"{args.scenario}.json"
        report.write_json(results, path)
        print(report.markdown(results, None))
        print(f"bench: wrote {path}", file=sys.stderr)
    return 0


def run_one(ctx: scenarios.Context, args: argparse.Namespace) -> dict[str, Any]:
    """One scenario's figures, keyed as in a full run's results."""
    name = args.scenario
    if name == "waiting_room":
        backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
        counts = tuple(args.participants or (100, 1000, 5000))
        return {
            f"waiting_room_{backend}": scenarios.waiting_room(
                ctx, backend, counts, args.ramp_seconds, not args.no_saturation
            )
            for backend in backends
        }
    if name == "ceiling":
        return {name: scenarios.ceiling(ctx)}
    if name == "holding":
        return {name: scenarios.holding(ctx, tuple(args.sockets or (1000, 10000)), args.probes)}
    if name == "fanout":
        return {name: scenarios.fanout(ctx, args.supervisors, args.changes, args.background_rate)}
    if name == "real_otree":
        return {name: scenarios.real_otree(ctx, args.participants, args.ramp_seconds)}
    stores = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    sizes = () if args.no_export else tuple(args.export_trials or (10_000, 100_000))
    return {
        name: scenarios.logging_api(
            ctx,
            backends=stores,
            levels=tuple(args.connections or (16,)),
            seconds=args.seconds,
            warm_up=args.warm_up,
            export_sizes=sizes,
            with_ceiling=not args.no_ceiling,
        )
    }


def run_all(ctx: scenarios.Context, quick: bool = False) -> dict[str, Any]:
    """Every scenario, one after the other, each with its own servers."""
    counts = (100, 500) if quick else (100, 1000, 5000)
    if quick:
        ctx.flows = min(ctx.flows, 1000)
    out: dict[str, Any] = {}
    scenarios.client_ceiling(ctx)
    out["waiting_room_sqlite"] = scenarios.waiting_room(ctx, "sqlite", counts)
    out["waiting_room_postgresql"] = scenarios.waiting_room(ctx, "postgresql", counts)
    # Same run, same client: the echo ceiling right after mastok's saturation run on SQLite.
    out["ceiling"] = scenarios.ceiling(ctx, out["waiting_room_sqlite"]["saturation"])
    out["holding"] = scenarios.holding(
        ctx, (500, 2000) if quick else (1000, 10000), 20 if quick else 50
    )
    out["fanout"] = scenarios.fanout(ctx, changes=80 if quick else 320)
    out["real_otree"] = scenarios.real_otree(ctx, 40 if quick else 200, 8 if quick else 20)
    out["logging_api"] = (
        scenarios.logging_api(ctx, seconds=4, warm_up=2, export_sizes=(2_000, 20_000))
        if quick
        else scenarios.logging_api(ctx)
    )
    return out


if __name__ == "__main__":
    sys.exit(main())
