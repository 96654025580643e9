"""How fast this machine runs Python right now: a fixed loop's CPU time, alone and two at once.

Every target is a ratio of two rates measured in the same run, because this machine's speed is
not its own: on this 2-core virtual machine a loop of 3,000,000 turns took 0.24 s of CPU one
minute and 0.43 s a few minutes later, and each of two run at once took up to 1.6 times one
alone. A share measured a few minutes after its ceiling moves with that drift, so the report
shows the probes taken at the run's start and end and before each scenario of a full run: a
reader sees how steady the machine was, and how much two busy processes slow each other (what
a leader and a standby on one machine get).

Each timing is a child process of its own (`python -c`), timed by its own CPU clock: the
harness's own threads do not count, and time spent waiting for a core does not either.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

LOOP = 2_000_000  # about 0.2 s of one core here
_CODE = f"""
import time
begin = time.process_time()
total = 0
for i in range({LOOP}):
    total += i * i % 7
print(time.process_time() - begin)
"""


def _started() -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", _CODE], stdout=subprocess.PIPE, text=True)


def _ms(child: subprocess.Popen[str]) -> float:
    try:
        out, _ = child.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        raise RuntimeError("the speed probe took over a minute") from None
    if child.returncode != 0:
        raise RuntimeError(f"the speed probe failed ({child.returncode})")
    return round(float(out) * 1000, 1)


def probe(at: str) -> dict[str, Any]:
    """The loop's CPU ms alone, then each of two at once; `at`: where in the run."""
    alone = _ms(_started())
    pair = [_started(), _started()]
    together = [_ms(child) for child in pair]
    return {"at": at, "time": time.strftime("%H:%M:%S"), "alone_ms": alone, "two_ms": together}


def summary(probes: list[dict[str, Any]]) -> str:
    """One line: the loop alone at its fastest and slowest, and two at once against alone."""
    alone = [p["alone_ms"] for p in probes]
    slowdown = [max(p["two_ms"]) / p["alone_ms"] for p in probes if p["alone_ms"]]
    return (
        f"a fixed Python loop ({LOOP:,} turns), CPU ms alone: {min(alone)} to {max(alone)} over "
        f"{len(probes)} probes (x{max(alone) / min(alone):.2f}); each of two at once: up to "
        f"x{max(slowdown):.2f} the one alone"
    )
