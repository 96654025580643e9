"""Child processes of the benchmark: started with a raised open-files limit, tied to the harness
(they get SIGTERM if it dies), measured from /proc, and always stopped.

Every process started here is registered; `stop_all()` (run at exit and on Ctrl-C) stops those
still running, by their own process id, never by name.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

LOOPBACK = "127.0.0.1"
# Client sockets are spread over these source addresses (all loopback): each has its own
# ephemeral ports, so TIME_WAIT from earlier runs never runs a client out of them.
CLIENT_ADDRESSES = [f"127.0.0.{n}" for n in range(2, 10)]
OPEN_FILES = 65536
_PR_SET_PDEATHSIG = 1
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")
_running: list[Child] = []


def raise_open_files(wanted: int = OPEN_FILES) -> int:
    """Raise this process's open-files limit as far as allowed; the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        with contextlib.suppress(ValueError, OSError):  # only root may raise the hard limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _child_setup() -> None:  # pragma: no cover - runs in the child between fork and exec
    raise_open_files()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


@dataclass
class Usage:
    """CPU seconds (user + system) and resident memory of one process, read from /proc."""

    cpu_s: float
    rss_bytes: int


def usage(pid: int) -> Usage:
    with open(f"/proc/{pid}/statm") as f:
        rss = int(f.read().split()[1]) * _PAGE
    return Usage(_cpu_s(f"/proc/{pid}/stat"), rss)


def _cpu_s(stat_path: str) -> float:
    """User and system CPU seconds of a `stat` file (a process's, or one of its threads')."""
    with open(stat_path) as f:
        text = f.read()
    fields = text[text.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def thread_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of the process, by thread id (the main thread's is `pid`)."""
    found = {}
    for entry in os.scandir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            found[int(entry.name)] = _cpu_s(f"{entry.path}/stat")
    return found


def preemptions(pid: int) -> int:
    """How often the scheduler has taken the CPU from the process's threads while they could
    still run (their involuntary context switches), from /proc."""
    found = 0
    for entry in os.scandir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError), open(f"{entry.path}/status") as f:
            for line in f:
                if line.startswith("nonvoluntary_ctxt_switches:"):
                    found += int(line.split()[1])
    return found


def child_pids(pid: int) -> list[int]:
    """The process's own children (not theirs), from each process's parent in /proc."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):  # a process that ended meanwhile
                with open(f"{entry.path}/stat") as f:
                    text = f.read()
                if int(text[text.rfind(")") + 2 :].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


class Child:
    """One child process; its output goes to a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        stdin: int | None = subprocess.DEVNULL,
        stdout_pipe: bool = False,
    ) -> None:
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] = log_path.open("wb")
        self.process = subprocess.Popen(
            list(argv),
            env=env,
            cwd=cwd,
            stdin=stdin,
            stdout=subprocess.PIPE if stdout_pipe else self._log,
            stderr=self._log,
            preexec_fn=_child_setup,
            # Its own session: a Ctrl-C reaches the harness, which stops it in order.
            start_new_session=True,
        )
        _running.append(self)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def usage(self) -> Usage:
        return usage(self.pid)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; the exit code."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(5)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._log.close()
        if self in _running:
            _running.remove(self)
        return self.process.returncode


def stop_all() -> None:
    for child in reversed(list(_running)):
        child.stop(timeout=5)


@contextlib.contextmanager
def running(child: Child) -> Iterator[Child]:
    try:
        yield child
    finally:
        child.stop()


class CpuMeter:
    """CPU used by some processes between `start()` and `stop()`, as a share of one core; for
    the process named by `start(threads_of=...)` also its main thread's (an asyncio server's
    event loop), its other threads' together (a database driver's, say) and its child
    processes' (mastok's SQLite worker), which count in its own: they do its work."""

    def __init__(self, **pids: int) -> None:
        self.pids = pids
        self.threads_of: str | None = None
        self._begin: dict[str, float] = {}
        self._threads_begin: dict[int, float] = {}
        self._children_begin: dict[int, float] = {}
        self._t0 = 0.0
        self.cpu_s: dict[str, float] = {}
        self.threads_cpu_s: dict[str, float] = {}
        self.seconds = 0.0

    def start(self, threads_of: str | None = None) -> CpuMeter:
        self._t0 = time.monotonic()
        self._begin = {name: usage(pid).cpu_s for name, pid in self.pids.items()}
        self.threads_of = threads_of
        if threads_of is not None:
            self._threads_begin = thread_cpu_s(self.pids[threads_of])
            self._children_begin = self._children_cpu_s(self.pids[threads_of])
        return self

    @staticmethod
    def _children_cpu_s(pid: int) -> dict[int, float]:
        found = {}
        for child in child_pids(pid):
            with contextlib.suppress(OSError):
                found[child] = usage(child).cpu_s
        return found

    def stop(self) -> dict[str, float]:
        self.seconds = time.monotonic() - self._t0
        for name, pid in self.pids.items():
            with contextlib.suppress(OSError):
                self.cpu_s[name] = usage(pid).cpu_s - self._begin[name]
        if self.threads_of is not None:
            pid = self.pids[self.threads_of]
            with contextlib.suppress(OSError):
                spent = {
                    tid: cpu - self._threads_begin.get(tid, 0.0)
                    for tid, cpu in thread_cpu_s(pid).items()
                }
                main = spent.pop(pid, 0.0)
                children = sum(
                    cpu - self._children_begin.get(child, 0.0)
                    for child, cpu in self._children_cpu_s(pid).items()
                )
                self.threads_cpu_s = {
                    "main": main,
                    "others": sum(spent.values()),
                    "children": children,
                }
                self.cpu_s[self.threads_of] += children
        return self.cpu_s

    def thread_shares(self) -> dict[str, float]:
        """`threads_of`'s main thread, its other threads and its child processes (those that
        ended before `stop()` not counted), in CPU seconds per wall second."""
        return {name: round(cpu / self.seconds, 3) for name, cpu in self.threads_cpu_s.items()}

    def shares(self) -> dict[str, float]:
        """CPU seconds per wall second: 1.0 is one core busy all the time."""
        return {name: round(cpu / self.seconds, 3) for name, cpu in self.cpu_s.items()}
