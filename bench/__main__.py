"""`python -m bench`: mastok's benchmarks (bench/README.md).

python -m bench all                                  # everything: bench/results/latest.*
python -m bench waiting_room --participants 1000     # one scenario on its own
python -m bench ceiling | holding | fanout | placement | restart | real_otree | logging_api
python -m bench attacks                              # /healthz under each attack
python -m bench live_stats                           # a campaign's figures at 100,000 visits
python -m bench failover --participants 1000         # the leader killed, back via the standby
python -m bench study --rates 0.04,0.1,0.5           # a simulated study: waits and timeouts
python -m bench compare --baseline b59efce           # waiting-room scenarios: baseline vs now
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

from bench import (
    attacks,
    compare,
    failover,
    live_stats,
    placement,
    procs,
    report,
    restart,
    scenarios,
    speed,
    study,
)
from bench.servers import node_available
from mastok.config import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "bench" / "results"
KEEP_RUNS = 3
NO_NODE = ("logging_api", "live_stats")  # scenarios without the Node load generator


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
    common.add_argument(
        "--quick", action="store_true", help="smaller loads (a smoke run, not for the record)"
    )
    sub = parser.add_subparsers(dest="scenario", required=True)
    run_all = sub.add_parser(
        "all", parents=[common], help="every scenario; writes bench/results/latest.{json,md,png}"
    )
    run_all.add_argument(
        "--out", type=Path, default=RESULTS, help="where latest.* go [bench/results]"
    )
    run_all.add_argument(
        "--baseline",
        metavar="REV",
        help="also rerun the waiting-room scenarios on commit REV's server (bench/compare.py)",
    )
    room = sub.add_parser(
        "waiting_room", parents=[common], help="1. join flows through to Starting (stub oTree)"
    )
    room.add_argument(
        "--participants",
        type=int,
        action="append",
        help="repeatable [100, 1000, 5000; --quick 100, 500]",
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
    hold.add_argument(
        "--sockets", type=int, action="append", help="repeatable [1000, 10000; --quick 500, 2000]"
    )
    hold.add_argument("--probes", type=int, help="[50; --quick 20]")
    fan = sub.add_parser(
        "fanout", parents=[common], help="4. Agree to the last supervisor's JoiningSize"
    )
    fan.add_argument("--supervisors", type=int, default=50)
    fan.add_argument("--changes", type=int, help="[320; --quick 80]")
    fan.add_argument(
        "--background-rate",
        type=float,
        default=25.0,
        help="participants/s churning through other campaigns [25]",
    )
    real = sub.add_parser(
        "real_otree", parents=[common], help="5. mastok's share of a real oTree session start"
    )
    real.add_argument("--participants", type=int, help="[200; --quick 40]")
    real.add_argument("--ramp-seconds", type=float, help="[20; --quick 8]")
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
        "--seconds",
        type=float,
        help="seconds a leg: each turn of mastok and the ceiling, each round of the pair "
        "[5; --quick 2]",
    )
    logging_api.add_argument(
        "--turns",
        type=int,
        help="mastok's legs and the ceiling's, in turns; each side's quickest is its figure "
        "[3; --quick 1]",
    )
    logging_api.add_argument("--warm-up", type=float, help="seconds [3; --quick 2]")
    logging_api.add_argument(
        "--export-trials",
        type=int,
        action="append",
        help="export an experiment of this many trials, repeatable [10000, 100000; --quick "
        "2000, 20000]",
    )
    logging_api.add_argument("--no-export", action="store_true", help="no export figures")
    logging_api.add_argument(
        "--no-ceiling", action="store_true", help="no bare POST ceiling (e.g. while profiling)"
    )
    logging_api.add_argument(
        "--no-two-processes",
        action="store_true",
        help="no leader-and-standby run on PostgreSQL",
    )
    place = sub.add_parser(
        "placement",
        parents=[common],
        help="7. placement latency with 500 supervisors watching, against none",
    )
    place.add_argument("--supervisors", type=int, help="[500]")
    place.add_argument("--participants", type=int, help="in each leg [300; --quick 120]")
    place.add_argument("--rounds", type=int, help="unwatched then watched legs [3; --quick 1]")
    place.add_argument("--rate", type=float, default=20.0, help="participants/s [20]")
    again = sub.add_parser(
        "restart",
        parents=[common],
        help="8. 20 campaigns' first sessions after a SIGKILL and restart (oTree: 1,500 sessions)",
    )
    again.add_argument("--campaigns", type=int, default=20)
    again.add_argument("--otree-sessions", type=int, default=1500, help="held by the stub [1500]")
    again.add_argument(
        "--list-ms-per-session",
        type=float,
        help="the stub's listing cost per session held, ms [1.0: oTree 6's]",
    )
    again.add_argument(
        "--deadline", type=float, help="seconds the participants wait after the restart [90]"
    )
    again.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    attacked = sub.add_parser(
        "attacks",
        parents=[common],
        help="9. /healthz latency under each attack of issue 13, against none",
    )
    attacked.add_argument("--seconds", type=float, help="each attack's length [12]")
    figures = sub.add_parser(
        "live_stats",
        parents=[common],
        help="10. a campaign's figures at 100,000 visits against a bare count(*) of them",
    )
    figures.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    figures.add_argument(
        "--visits", type=int, help="the campaign under test's visits [100000; --quick 20000]"
    )
    figures.add_argument(
        "--other-campaigns", type=int, default=live_stats.OTHER_CAMPAIGNS, help="[20]"
    )
    figures.add_argument(
        "--other-visits", type=int, help="visits of the other campaigns [2x --visits]"
    )
    figures.add_argument(
        "--repeats", type=int, default=live_stats.REPEATS, help="timings of each [15]"
    )
    taken_over = sub.add_parser(
        "failover",
        parents=[common],
        help="11. participants waiting on a killed leader, back in place through the standby",
    )
    taken_over.add_argument(
        "--participants", type=int, help="waiting on the leader [1000; --quick 200]"
    )
    taken_over.add_argument(
        "--retry-ms",
        type=float,
        default=failover.RETRY_MS,
        help="a participant's wait once every address failed, jittered 0.5x-1.5x [250]",
    )
    taken_over.add_argument(
        "--resume-within",
        type=float,
        default=failover.RESUME_WITHIN_S,
        help="seconds each participant tries to come back, from its drop [60]",
    )
    _study_parser(sub, common)
    versus = sub.add_parser(
        "compare",
        parents=[common],
        help="the waiting-room scenarios on a baseline commit's server and on this tree's",
    )
    versus.add_argument("--baseline", metavar="REV", required=True, help="e.g. b59efce")
    versus.add_argument(
        "scenarios",
        nargs="*",
        metavar="SCENARIO",
        help=f"any of {', '.join(compare.COMPARED)} [all of them]",
    )
    versus.add_argument(
        "--out", type=Path, default=RESULTS / "tmp", help="where compare.{json,md} go"
    )
    return parser


def _study_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    simulated = sub.add_parser(
        "study",
        parents=[common],
        help="12. a simulated study: Poisson arrivals, leavers, a waiting limit, a ready check",
    )
    simulated.add_argument(
        "--rates",
        type=_rates,
        help="arrivals a second into each campaign, comma-separated [0.04,0.1,0.5]",
    )
    simulated.add_argument("--seconds", type=float, help="arrivals for this long [120; --quick 60]")
    simulated.add_argument("--campaigns", type=int, help="campaigns per rate [6; --quick 2]")
    simulated.add_argument("--seed", type=int, default=study.SEED, help=f"[{study.SEED}]")
    simulated.add_argument(
        "--leave-share", type=float, default=study.LEAVE_SHARE, help="of arrivals [0.15]"
    )
    simulated.add_argument(
        "--silent-share",
        type=float,
        default=study.SILENT_SHARE,
        help="of arrivals who never answer a ReadyCheck [0.1]",
    )
    simulated.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")


def _rates(text: str) -> tuple[float, ...]:
    try:
        rates = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of rates: {text}") from None
    if not rates or min(rates) <= 0:
        raise argparse.ArgumentTypeError("rates are positive numbers")
    return rates


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Ctrl-C too, even when started with SIGINT ignored (as `cmd &` in a script does).
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop_on_signal)
    atexit.register(procs.stop_all)
    if args.scenario not in NO_NODE and not node_available():
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
    ctx.speed.append(speed.probe("start"))
    baseline = None
    try:
        if args.scenario == "compare":
            names = _compared(args.scenarios)
            figures, baseline = compare.compare(ctx, args.baseline, names, _runner(args.quick))
        elif args.scenario == "all":
            figures = run_all(ctx, args.quick)
            if args.baseline:
                names = list(compare.COMPARED)
                baseline = compare.baseline_only(ctx, args.baseline, names, _runner(args.quick))
        else:
            figures = run_one(ctx, args)
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
        "machine_speed": [*ctx.speed, speed.probe("end")],
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
    if baseline is not None:
        results["baseline"] = baseline
    if args.scenario == "compare":
        _write(results, args.out / "compare.json", args.out / "compare.md")
    elif args.scenario == "all":
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


def _write(results: dict[str, Any], json_path: Path, md_path: Path) -> None:
    report.write_json(results, json_path)
    md_path.write_text(report.markdown(results, None))
    print(report.side_by_side(results), end="")
    print(f"bench: wrote {json_path}, {md_path}", file=sys.stderr)


def _compared(names: list[str]) -> list[str]:
    unknown = [name for name in names if name not in compare.COMPARED]
    if unknown:
        raise SystemExit(
            f"bench compare: not a compared scenario: {', '.join(unknown)} (any of "
            f"{', '.join(compare.COMPARED)})"
        )
    return names or list(compare.COMPARED)


def _runner(quick: bool) -> compare.Runner:
    """How compare runs a scenario: as `python -m bench NAME [--quick]` with its options."""

    def run(ctx: scenarios.Context, name: str) -> dict[str, Any]:
        return run_one(ctx, scenario_args(name, quick, *compare.COMPARED[name]))

    return run


def _pick(value: Any, full: Any, quick: Any, is_quick: bool) -> Any:
    """An option's value: as given, else the full or the quick run's size."""
    if value is not None:
        return value
    return quick if is_quick else full


def run_one(ctx: scenarios.Context, args: argparse.Namespace) -> dict[str, Any]:
    """One scenario's figures, keyed as in a full run's results."""
    name, q = args.scenario, args.quick
    if q:
        ctx.flows = min(ctx.flows, 1000)
    if name == "waiting_room":
        backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
        counts = tuple(_pick(args.participants, (100, 1000, 5000), (100, 500), q))
        return {
            f"waiting_room_{backend}": scenarios.waiting_room(
                ctx, backend, counts, args.ramp_seconds, not args.no_saturation
            )
            for backend in backends
        }
    if name == "ceiling":
        return {name: scenarios.ceiling(ctx)}
    if name == "holding":
        levels = tuple(_pick(args.sockets, (1000, 10000), (500, 2000), q))
        return {name: scenarios.holding(ctx, levels, _pick(args.probes, 50, 20, q))}
    if name == "fanout":
        changes = _pick(args.changes, 320, 80, q)
        return {name: scenarios.fanout(ctx, args.supervisors, changes, args.background_rate)}
    if name == "placement":
        supervisors = args.supervisors or placement.SUPERVISORS
        count = _pick(args.participants, placement.PARTICIPANTS, 120, q)
        rounds = _pick(args.rounds, placement.ROUNDS, 1, q)
        return {name: placement.placement(ctx, supervisors, count, args.rate, rounds)}
    if name == "restart":
        deadline = _pick(args.deadline, restart.DEADLINE_S, 45.0, q)
        return {
            name: restart.restart(
                ctx,
                args.campaigns,
                args.otree_sessions,
                args.list_ms_per_session,
                deadline,
                args.backend,
            )
        }
    if name == "attacks":
        return {name: attacks.attacks(ctx, _pick(args.seconds, attacks.SECONDS, 11.0, q))}
    if name == "live_stats":
        visits = _pick(args.visits, live_stats.VISITS, 20_000, q)
        return {
            name: live_stats.live_stats(
                ctx,
                ("sqlite", "postgresql") if args.backend == "both" else (args.backend,),
                visits,
                args.other_campaigns,
                args.other_visits if args.other_visits is not None else 2 * visits,
                args.repeats,
            )
        }
    if name == "failover":
        count = _pick(args.participants, failover.PARTICIPANTS, 200, q)
        return {name: failover.failover(ctx, count, args.retry_ms, args.resume_within)}
    if name == "study":
        plan = study.Plan(
            rates=args.rates or study.RATES,
            campaigns=_pick(args.campaigns, study.CAMPAIGNS_PER_RATE, 2, q),
            seconds=_pick(args.seconds, study.SECONDS, 60.0, q),
            seed=args.seed,
            leave_share=args.leave_share,
            silent_share=args.silent_share,
        )
        return {name: study.study(ctx, plan, args.backend)}
    if name == "real_otree":
        count = _pick(args.participants, 200, 40, q)
        return {name: scenarios.real_otree(ctx, count, _pick(args.ramp_seconds, 20.0, 8.0, q))}
    from bench.logging_api import LOGGING_TURNS

    stores = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    sizes = tuple(_pick(args.export_trials, (10_000, 100_000), (2_000, 20_000), q))
    return {
        name: scenarios.logging_api(
            ctx,
            backends=stores,
            levels=tuple(args.connections or (16,)),
            seconds=_pick(args.seconds, 5.0, 2.0, q),
            turns=_pick(args.turns, LOGGING_TURNS, 1, q),
            warm_up=_pick(args.warm_up, 3.0, 2.0, q),
            export_sizes=() if args.no_export else sizes,
            with_ceiling=not args.no_ceiling,
            two_processes=not args.no_two_processes,
        )
    }


def scenario_args(name: str, quick: bool, *options: str) -> argparse.Namespace:
    """A scenario's options as `python -m bench NAME [--quick] OPTIONS` would have them."""
    return _parser().parse_args([name, *(["--quick"] if quick else []), *options])


def run_all(ctx: scenarios.Context, quick: bool = False) -> dict[str, Any]:
    """Every scenario, one after the other, each with its own servers, at the sizes each has
    when run alone (with `--quick`: the quick sizes)."""
    out: dict[str, Any] = {}
    scenarios.client_ceiling(ctx)
    out.update(run_one(ctx, scenario_args("waiting_room", quick, "--backend", "both")))
    # The ceiling's own mastok saturation run, between the echo app's and the work-equivalent
    # app's: each share's two rates measured within a minute, not minutes apart (this machine's
    # speed drifts that much: bench/README.md, scenario 2).
    ctx.speed.append(speed.probe("ceiling"))
    out["ceiling"] = scenarios.ceiling(ctx)
    for name in (
        "holding",
        "fanout",
        "real_otree",
        "logging_api",
        "placement",
        "restart",
        "attacks",
        "live_stats",
        "failover",
        "study",
    ):
        ctx.speed.append(speed.probe(name))
        out.update(run_one(ctx, scenario_args(name, quick)))
    return out


if __name__ == "__main__":
    sys.exit(main())
