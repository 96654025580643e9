"""Before and after in one session: the waiting-room scenarios on a baseline commit's server and
on this tree's, driven by this harness on this machine, one after the other.

The baseline is checked out (detached) in a git worktree under bench/results/tmp/ and served from
there: `python -m mastok serve`, run with the worktree as its working directory, imports the
baseline's mastok, migrations, templates and config.yml (`servers.mastok_from`). Everything else
is this checkout's: the harness, the scenarios and their sizes, the stub oTree, the load
generator, the .venv. Both sides get the same load, measured the same way, and the new scenarios
run on the baseline too. A baseline whose server does not take this harness (its settings, admin
API or frames) shows as a failed scenario, not as figures.

Each scenario runs on the baseline, then at once on this tree, so that both see the machine in
the same state; the targets of both are set side by side (report.side_by_side).
"""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import report, scenarios, servers
from bench.scenarios import Context
from mastok.config import PROJECT_ROOT

TMP = PROJECT_ROOT / "bench" / "results" / "tmp"
# The scenarios compared (their order) and the options each runs with, as in `python -m bench
# all`: the waiting room on both databases (the ceiling is taken from its SQLite saturation run).
COMPARED: dict[str, tuple[str, ...]] = {
    "waiting_room": ("--backend", "both"),
    "holding": (),
    "fanout": (),
    "placement": (),
    "restart": (),
}
Runner = Callable[[Context, str], dict[str, Any]]


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def worktree(rev: str) -> tuple[Path, str]:
    """A detached worktree of `rev` under bench/results/tmp/ (reused when it is already there,
    at that commit and unmodified); its path and full commit."""
    commit = _git("rev-parse", "--verify", f"{rev}^{{commit}}")
    path = TMP / f"baseline-{commit[:12]}"
    if path.exists():
        head = _git("-C", str(path), "rev-parse", "HEAD")
        if head == commit and not _git("-C", str(path), "status", "--porcelain"):
            return path, commit
        _git("worktree", "remove", "--force", str(path))
    _git("worktree", "prune")
    TMP.mkdir(parents=True, exist_ok=True)
    _git("worktree", "add", "--detach", str(path), commit)
    return path, commit


def compare(
    ctx: Context, rev: str, names: list[str], run: Runner
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each of `names` on the baseline's server, then on this tree's: this tree's figures, and
    the baseline's (with its commit and targets)."""
    root, commit = worktree(rev)
    base_ctx = _baseline_context(ctx)
    now: dict[str, Any] = {}
    base: dict[str, Any] = {}
    failed: dict[str, str] = {}
    for name in names:
        ctx.log(f"compare: {name} on the baseline's server ({commit[:9]})")
        base.update(_on_baseline(base_ctx, root, name, run, failed))
        ctx.log(f"compare: {name} on this tree's server")
        now.update(with_ceiling(ctx, run(ctx, name)))
    return now, _baseline(rev, commit, root, base, base_ctx, failed)


def baseline_only(ctx: Context, rev: str, names: list[str], run: Runner) -> dict[str, Any]:
    """Each of `names` on the baseline's server (after a full run of this tree's)."""
    root, commit = worktree(rev)
    base_ctx = _baseline_context(ctx)
    base: dict[str, Any] = {}
    failed: dict[str, str] = {}
    for name in names:
        ctx.log(f"baseline: {name} on the baseline's server ({commit[:9]})")
        base.update(_on_baseline(base_ctx, root, name, run, failed))
    return _baseline(rev, commit, root, base, base_ctx, failed)


def _baseline_context(ctx: Context) -> Context:
    """The same settings (and the client's ceiling, measured once), its own logs and notes."""
    scenarios.client_ceiling(ctx)
    workdir = ctx.workdir / "baseline"
    workdir.mkdir(parents=True, exist_ok=True)
    return dataclasses.replace(ctx, workdir=workdir, notes=[])


def _on_baseline(
    ctx: Context, root: Path, name: str, run: Runner, failed: dict[str, str]
) -> dict[str, Any]:
    try:
        with servers.mastok_from(root):
            return with_ceiling(ctx, run(ctx, name))
    except (RuntimeError, OSError, KeyError, ValueError) as error:
        ctx.log(f"  the baseline failed {name}: {error}")
        failed[name] = str(error)[:500]
        return {}


def with_ceiling(ctx: Context, figures: dict[str, Any]) -> dict[str, Any]:
    """The join-flow target needs the echo ceiling beside the SQLite saturation run."""
    saturation = figures.get("waiting_room_sqlite", {}).get("saturation")
    if saturation:
        figures["ceiling"] = scenarios.ceiling(ctx, saturation)
    return figures


def _baseline(
    rev: str,
    commit: str,
    root: Path,
    figures: dict[str, Any],
    ctx: Context,
    failed: dict[str, str],
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "rev": rev,
        "commit": commit,
        "worktree": str(root),
        "scenarios": figures,
        "failed": failed,
        "notes": ctx.notes,
    }
    out["targets"] = report.targets(out)
    return out
