"""Running the Node load generator (bench/loadgen/client.mjs) from Python: one process per job,
its own CPU reported with its results, always stopped."""

from __future__ import annotations

import itertools
import json
import os
import select
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.procs import CLIENT_ADDRESSES, Child
from bench.servers import NODE_DIR

_jobs = itertools.count(1)


def _job_file(workdir: Path, job: dict[str, Any]) -> tuple[Path, Path]:
    n = next(_jobs)
    path = workdir / f"job-{n:03d}-{job['kind']}.json"
    out = workdir / f"job-{n:03d}-{job['kind']}.out.json"
    job = {
        "local_addresses": CLIENT_ADDRESSES,
        **job,
        "out": str(out),
        "run_id": f"{n}-{time.time()}",
    }
    path.write_text(json.dumps(job))
    return path, out


def start(workdir: Path, job: dict[str, Any], interactive: bool = False) -> tuple[Child, Path]:
    path, out = _job_file(workdir, job)
    child = Child(
        f"loadgen-{path.stem}",
        ["node", str(NODE_DIR / "client.mjs"), str(path)],
        workdir / f"{path.stem}.log",
        stdin=subprocess.PIPE if interactive else subprocess.DEVNULL,
        stdout_pipe=interactive,
    )
    return child, out


def finish(child: Child, out: Path, timeout: float) -> dict[str, Any]:
    try:
        child.process.wait(timeout)
    except subprocess.TimeoutExpired:
        child.stop()
        raise RuntimeError(f"load generator still running after {timeout:.0f} s") from None
    code = child.stop()
    if code != 0 or not out.exists():
        raise RuntimeError(f"load generator failed (exit {code}): {child.log_tail()}")
    return dict(json.loads(out.read_text()))


def run(workdir: Path, job: dict[str, Any], timeout: float = 300) -> dict[str, Any]:
    """Run one job to its end; its result (with the client's own `cpu` and `wall_ms`)."""
    job = {"deadline_s": timeout - 5, **job}
    child, out = start(workdir, job)
    return finish(child, out, timeout)


def run_many(
    workdir: Path, job: dict[str, Any], clients: int = 1, timeout: float = 300
) -> dict[str, Any]:
    """Run one job shared by `clients` processes (same schedule, participants dealt out by
    index); their records merged, their CPU added up."""
    if clients <= 1:
        return run(workdir, job, timeout)
    t0 = time.time() * 1000 + 1000  # a common start a second from now, once all are up
    started = [
        start(
            workdir, {"deadline_s": timeout - 5, **job, "clients": clients, "client": k, "t0": t0}
        )
        for k in range(clients)
    ]
    results = []
    try:
        for child, out in started:
            results.append(finish(child, out, timeout))
    finally:
        for child, _ in started:
            child.stop()
    merged: dict[str, Any] = {
        "kind": job["kind"],
        "t0": min(r.get("t0", t0) for r in results),
        "wall_ms": max(r["wall_ms"] for r in results),
        "cpu": {key: sum(r["cpu"][key] for r in results) for key in ("user_ms", "system_ms")},
        "clients": clients,
        "records": sorted((rec for r in results for rec in r["records"]), key=lambda x: x["i"]),
    }
    return merged


def client_share(result: dict[str, Any]) -> float:
    """The load generator's CPU over its wall time (1.0: one core busy), all its processes."""
    cpu = result["cpu"]["user_ms"] + result["cpu"]["system_ms"]
    return round(cpu / max(result["wall_ms"], 1), 3)


class Holder:
    """A `hold` job: participants who join and stay, opened and closed on command."""

    def __init__(self, workdir: Path, job: dict[str, Any], deadline: float = 600) -> None:
        self.child, self.out = start(workdir, {"kind": "hold", "deadline_s": deadline, **job}, True)
        assert self.child.process.stdout is not None
        os.set_blocking(self.child.process.stdout.fileno(), False)
        self._buffer = b""

    def command(self, cmd: dict[str, Any], timeout: float = 300) -> dict[str, Any]:
        process = self.child.process
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write((json.dumps(cmd) + "\n").encode())
        process.stdin.flush()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not self.child.alive():
                raise RuntimeError(f"hold job: no answer to {cmd}: {self.child.log_tail()}")
            ready, _, _ = select.select([process.stdout], [], [], min(left, 1.0))
            if ready:
                chunk = process.stdout.read()
                if chunk:
                    self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return dict(json.loads(line))

    def close(self) -> dict[str, Any]:
        try:
            return self.command({"cmd": "close"}, timeout=30)
        finally:
            self.child.stop()
