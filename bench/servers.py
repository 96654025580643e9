"""The servers a benchmark runs against, each a real process of its own: mastok (`python -m mastok
serve`, on a SQLite file or a throwaway PostgreSQL), the stub oTree, the echo ceilings, a real
oTree behind a timing proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.procs import LOOPBACK, Child, free_port
from mastok.config import PROJECT_ROOT

NODE_DIR = PROJECT_ROOT / "bench" / "loadgen"
LOGIN = "bench"
PASSWORD = "bench-password"
OTREE_KEY = "bench-rest-key"

# What a real campaign shows: a consent with checkboxes, instructions, the other texts.
CONSENT = """\
## Consent to take part

You are invited to take part in a short online study on decision making. It takes about
fifteen minutes. Your answers are recorded anonymously and used for research only; you may
stop at any time without giving a reason.

- [ ] I am 18 or older
- [ ] I have read the information above
- [ ] I agree that my anonymous answers are used for research

[accept]I agree to take part[/accept]
"""
INSTRUCTIONS = """\
### Please wait

The study starts as soon as enough participants are here. **Keep this tab open**: you will be
taken to the study automatically.
"""
PENDING = "The waiting room is full: you will move up as soon as a place frees."
PAUSED = "The study is paused. Please come back later."
COMPLETED = "The study is complete. Thank you for your interest."


def _wait_healthy(url: str, child: Child, within: float = 60) -> None:
    # The test suite's own helper, reused.
    from tests.fixtures.processes import wait_until_healthy

    wait_until_healthy(url, child.process, child.log_tail, within=within)


def _wait_http(url: str, child: Child, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            pass
        if not child.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{child.name} did not start: {child.log_tail()}")
        time.sleep(0.05)


def _wait_line(child: Child, within: float = 30) -> None:
    """Wait for a child writing `ready` on stdout."""
    assert child.process.stdout is not None
    deadline = time.monotonic() + within
    os.set_blocking(child.process.stdout.fileno(), False)
    buffer = b""
    while b"ready" not in buffer:
        chunk = child.process.stdout.read()
        if chunk:
            buffer += chunk
        if not child.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{child.name} did not start: {child.log_tail()}")
        time.sleep(0.02)


def python_child(name: str, module: str, args: list[str], workdir: Path, **env: str) -> Child:
    environ = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    argv = [sys.executable, "-m", module, *args]
    return Child(name, argv, workdir / f"{name}.log", env=environ, cwd=PROJECT_ROOT)


# -- the stub oTree and the echo ceilings -----------------------------------------------------


@dataclass
class Server:
    child: Child
    port: int

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int:
        return self.child.pid

    def stop(self) -> None:
        self.child.stop()


def start_stub_otree(
    workdir: Path,
    name: str = "stub-otree",
    sessions: int = 0,
    list_ms_per_session: float | None = None,
) -> Server:
    """The stub oTree holding `sessions` of other studies; a listing costs
    `list_ms_per_session` a session held (None: the stub's default, oTree 6's)."""
    port = free_port()
    args = [str(port), "--sessions", str(sessions)]
    if list_ms_per_session is not None:
        args += ["--list-ms-per-session", str(list_ms_per_session)]
    child = python_child(name, "bench.stub_otree", args, workdir)
    server = Server(child, port)
    _wait_http(f"{server.url}/api/otree_version", child)
    return server


class JoinFloor(Server):
    """The join's work-equivalent app (bench/join_floor_app.py): any slug is a campaign."""

    @property
    def origin(self) -> str:
        return self.url

    @property
    def join_url(self) -> str:
        return f"ws://{LOOPBACK}:{self.port}/ws/join"

    def create_campaigns(self, prefix: str, count: int, **_: Any) -> list[str]:
        return [f"{prefix}{n}" for n in range(count)]


def start_join_floor(workdir: Path, database_url: str, otree_url: str) -> JoinFloor:
    port = free_port()
    args = [str(port), database_url, otree_url]
    child = python_child("join-floor", "bench.join_floor_app", args, workdir)
    server = JoinFloor(child, port)
    _wait_http(server.url, child)
    return server


def start_echo(workdir: Path) -> Server:
    port = free_port()
    child = python_child("echo-starlette", "bench.echo_app", [str(port)], workdir)
    server = Server(child, port)
    _wait_http(server.url, child)
    return server


def start_node_echo(workdir: Path) -> Server:
    port = free_port()
    child = Child(
        "echo-node",
        ["node", str(NODE_DIR / "echo_server.mjs"), str(port)],
        workdir / "echo-node.log",
        stdout_pipe=True,
    )
    _wait_line(child)
    return Server(child, port)


def start_otree_proxy(workdir: Path, target: str) -> Server:
    port = free_port()
    child = python_child("otree-proxy", "bench.otree_proxy", [str(port), target], workdir)
    server = Server(child, port)
    _wait_http(f"{server.url}/_bench/calls", child)
    return server


# -- PostgreSQL -------------------------------------------------------------------------------


class Postgres:
    """A throwaway PostgreSQL 15 cluster, started as the test suite starts its own
    (tests/fixtures/postgres.py: as the `postgres` user, on a free loopback port, in /dev/shm
    when it has room), with one fresh database per mastok run."""

    def __init__(self, workdir: Path) -> None:
        from tests.fixtures import postgres as pg

        self._pg = pg
        self.server = pg.PostgresServer(pg._make_folder(), workdir / "postgres.log")
        self._count = 0

    def start(self) -> None:
        self.server.watch()  # removes the cluster even if the harness is killed
        self._pg._start_server(self.server)

    def new_database(self) -> str:
        self._count += 1
        name = f"bench_{self._count}"

        async def create() -> None:
            import asyncpg

            admin = await asyncpg.connect(self.server.url("postgres"))
            try:
                await admin.execute(f'CREATE DATABASE "{name}"')
            finally:
                await admin.close()

        asyncio.run(create())
        return self.server.url(name)

    def settings(self) -> dict[str, str]:
        return {key: str(value) for key, value in self._pg.PG_SETTINGS.items()}

    def stop(self) -> None:
        self.server.stop()


@contextlib.contextmanager
def postgres(workdir: Path) -> Iterator[Postgres]:
    cluster = Postgres(workdir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


# -- mastok -----------------------------------------------------------------------------------


@dataclass
class Mastok:
    child: Child
    port: int
    database: str

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def origin(self) -> str:
        return self.url

    @property
    def pid(self) -> int:
        return self.child.pid

    @property
    def join_url(self) -> str:
        return f"ws://{LOOPBACK}:{self.port}/ws/join"

    @property
    def supervise_url(self) -> str:
        return f"ws://{LOOPBACK}:{self.port}/ws/campaigns/supervise"

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, auth=(LOGIN, PASSWORD), timeout=30)

    def create_campaigns(self, prefix: str, count: int, **fields: Any) -> list[str]:
        """`count` Running campaigns named `{prefix}{n}`; their slugs."""
        slugs = []
        with self.admin() as admin:
            for n in range(count):
                name = f"{prefix}{n}"
                body = {
                    "namespace": name,
                    "slug": name,
                    "otree_config_name": "bench",
                    "per_session": 4,
                    "max_sessions": 128,
                    "concurrent_sessions": 99,
                    "session_duration": 30,
                    "waiting_limit": 30,
                    "consent": CONSENT,
                    "instructions": INSTRUCTIONS,
                    "pending": PENDING,
                    "paused": PAUSED,
                    "completed": COMPLETED,
                    **fields,
                }
                answer = admin.post("/api/campaigns", json=body)
                if answer.status_code != 201:
                    raise RuntimeError(
                        f"creating campaign {name}: {answer.status_code} {answer.text}"
                    )
                answer = admin.patch(f"/api/campaigns/{name}", json={"state": "Running"})
                if answer.status_code != 200:
                    raise RuntimeError(
                        f"starting campaign {name}: {answer.status_code} {answer.text}"
                    )
                slugs.append(name)
        return slugs

    def stop(self) -> None:
        self.child.stop(timeout=15)

    def kill(self) -> None:
        """SIGKILL, as a crash: no shutdown, nothing flushed."""
        self.child.process.kill()
        self.child.process.wait(10)
        self.child.stop()


# Where `python -m mastok serve` runs from: this checkout, or a baseline's (bench/compare.py).
_server_root: Path = PROJECT_ROOT


@contextlib.contextmanager
def mastok_from(root: Path) -> Iterator[None]:
    """Meanwhile, every mastok started is the one in `root` (another checkout of the repository):
    its code, templates and config.yml; the harness, stub and clients stay this checkout's."""
    global _server_root
    previous, _server_root = _server_root, root
    try:
        yield
    finally:
        _server_root = previous


def start_mastok(
    workdir: Path,
    name: str,
    database_url: str,
    otree_api_url: str,
    otree_public_url: str | None = None,
    otree_key: str = OTREE_KEY,
    port: int | None = None,
    settings: dict[str, str] | None = None,
    python: str = sys.executable,
    within: float = 60,
) -> Mastok:
    """`python -m mastok serve` on a free loopback port (or `port`, to restart one), TEST mode,
    its own database; `settings` adds environment variables (`MASTOK_...`); `python`: what
    runs it (bench/instructions.py: a script running it under valgrind), answering `/healthz`
    `within` seconds."""
    port = port or free_port()
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "MASTOK_MODE": "TEST",
        "MASTOK_HOST": LOOPBACK,
        "MASTOK_PORT": str(port),
        "MASTOK_ORIGIN": f"http://{LOOPBACK}:{port}",
        "MASTOK_LOGIN": LOGIN,
        "MASTOK_PASSWORD": PASSWORD,
        "MASTOK_SECRET_KEY": secrets.token_urlsafe(32),
        "MASTOK_DATABASE_URL": database_url,
        "MASTOK_OTREE_API_URL": otree_api_url,
        "MASTOK_OTREE_PUBLIC_URL": otree_public_url or otree_api_url,
        "MASTOK_OTREE_API_KEY": otree_key,
        # Thousands of scripted participants share one loopback address (older revisions
        # measured as the baseline ignore variables they do not know).
        "MASTOK_SOCKETS_PER_ADDRESS": "1000000",
        "MASTOK_LANDINGS_PER_MINUTE": "100000000",
        "MASTOK_SOCKETS_PER_MINUTE": "100000000",
        **(settings or {}),
    }
    argv = [python, "-m", "mastok", "serve"]
    # `python -m` imports from the working directory first: the checkout in _server_root.
    child = Child(name, argv, workdir / f"{name}.log", env=env, cwd=_server_root)
    mastok = Mastok(child, port, "postgresql" if database_url.startswith("postgres") else "sqlite")
    _wait_healthy(mastok.url, child, within)
    return mastok


def sqlite_url(workdir: Path, name: str) -> str:
    path = workdir / f"{name}.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").unlink()
    return f"sqlite:///{path.resolve()}"


def campaigns_for(participants: int, per_session: int = 4, sessions_each: int = 96) -> int:
    """How many campaigns keep every pool clear of max_sessions (128) and of
    concurrent_sessions (99 live at once): at most `sessions_each` sessions each."""
    return max(1, math.ceil(participants / (per_session * sessions_each)))


def node_available() -> bool:
    try:
        subprocess.run(["node", "--version"], capture_output=True, check=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return (PROJECT_ROOT / "bench" / "node_modules" / "ws").is_dir()
