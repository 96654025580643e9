"""A local oTree server for `make dev` and the tests (facts: shared/otree-notes.md).

oTree lives in a virtual environment of its own (its pinned dependencies clash with mastok's):
`make otree-venv` creates `.venv-otree`, or `MASTOK_OTREE_VENV` names another one.

`LocalOTree` runs `otree prodserver HOST:PORT` in its own process group (oTree starts a second
process, the timeout worker, which must end with it) and waits until the REST API answers.

oTree's SQLite database is always the file `db.sqlite3` in its working directory: it reads
`DATABASE_URL` only to choose the kind of database, not the file. So when the data directory is
not the project directory, the project is copied into the data directory and oTree runs there.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx

from mastok.config import PROJECT_ROOT

DEMO_PROJECT = PROJECT_ROOT / "demo" / "otree"
DEFAULT_OTREE_VENV = PROJECT_ROOT / ".venv-otree"
OTREE_VENV_ENV = "MASTOK_OTREE_VENV"
AUTH_LEVELS = ("STUDY", "DEMO", "")
LOG_NAME = "otree.log"
DB_NAME = "db.sqlite3"

# Not copied from the project into a separate data directory.
_NOT_COPIED = shutil.ignore_patterns(
    "__pycache__", "*.pyc", "*.sqlite3", "*.log", "_static_root", ".git", "venv", ".venv*"
)


class LocalOTreeError(RuntimeError):
    """The local oTree cannot be started; the message says why and what to do."""


class OTreePortInUse(LocalOTreeError):
    """Something already listens on the port oTree was asked to use."""


def find_otree_venv() -> Path:
    """The virtual environment oTree is installed in: `$MASTOK_OTREE_VENV` or `.venv-otree`."""
    configured = os.environ.get(OTREE_VENV_ENV, "").strip()
    venv = Path(configured).expanduser() if configured else DEFAULT_OTREE_VENV
    if not (venv / "bin" / "otree").is_file():
        source = f"${OTREE_VENV_ENV}" if configured else "the default"
        raise LocalOTreeError(
            f"no oTree in {venv} ({source}: {venv / 'bin' / 'otree'} is missing): "
            f"run `make otree-venv`, or set {OTREE_VENV_ENV} to a virtual environment "
            "where otree==6.0.15 is installed"
        )
    return venv


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the system picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    """True when a server could listen on host:port (as uvicorn binds: with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def _group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs (zombies waiting to be reaped do not count)."""
    proc = Path("/proc")
    if proc.is_dir():
        for stat in proc.glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue
            # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
            fields = text[text.rfind(")") + 2 :].split()
            if len(fields) >= 3 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
                return True
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.rstrip().splitlines()[-lines:]) or "(empty log)"


class LocalOTree:
    """`otree prodserver` for one project on one port, started and stopped as a whole.

    Use as a context manager, or call `start()` and `stop()`.
    """

    def __init__(
        self,
        project_dir: Path,
        port: int,
        rest_key: str,
        admin_password: str = "admin",
        venv: Path | None = None,
        host: str = "127.0.0.1",
        auth_level: str = "STUDY",
        data_dir: Path | None = None,
        *,
        startup_timeout: float = 60.0,
        stop_timeout: float = 5.0,
    ) -> None:
        if auth_level not in AUTH_LEVELS:
            raise ValueError(f"auth_level must be one of {AUTH_LEVELS}, not {auth_level!r}")
        if auth_level and not rest_key:
            raise ValueError(f"auth level {auth_level} needs a REST key (oTree refuses all calls)")
        self.project_dir = Path(project_dir).resolve()
        self.port = port
        self.rest_key = rest_key
        self.admin_password = admin_password
        self.venv = venv
        self.host = host
        self.auth_level = auth_level
        self.data_dir = Path(data_dir).resolve() if data_dir is not None else self.project_dir
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        """oTree's own output (both processes), rewritten at each start."""
        return self.data_dir / LOG_NAME

    @property
    def db_path(self) -> Path:
        return self.data_dir / DB_NAME

    @property
    def pid(self) -> int | None:
        """The main oTree process, which leads the process group."""
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __repr__(self) -> str:
        return f"LocalOTree({str(self.project_dir)!r}, url={self.url!r}, pid={self.pid})"

    def __enter__(self) -> LocalOTree:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start oTree and return once its REST API answers; raise `LocalOTreeError` if not."""
        if self._process is not None:
            raise LocalOTreeError(f"oTree is already started ({self!r})")
        venv = Path(self.venv) if self.venv is not None else find_otree_venv()
        otree = venv / "bin" / "otree"
        if not otree.is_file():
            raise LocalOTreeError(f"{otree} is missing: run `make otree-venv`")
        if not (self.project_dir / "settings.py").is_file():
            raise LocalOTreeError(f"{self.project_dir} is not an oTree project (no settings.py)")
        if not port_is_free(self.host, self.port):
            raise OTreePortInUse(
                f"cannot start oTree on {self.host}:{self.port}: the port is already in use "
                "(another oTree still running? stop it or choose another port)"
            )
        self._prepare_data_dir()

        env = dict(os.environ)
        for name in ("PYTHONPATH", "PYTHONHOME", "PORT", OTREE_VENV_ENV):
            env.pop(name, None)
        env.update(
            PATH=os.pathsep.join([str(venv / "bin"), env.get("PATH", os.defpath)]),
            VIRTUAL_ENV=str(venv),
            OTREE_REST_KEY=self.rest_key,
            OTREE_ADMIN_PASSWORD=self.admin_password,
            OTREE_PRODUCTION="1",
            # oTree takes only the kind of database from this: the file is db.sqlite3 in cwd.
            DATABASE_URL=f"sqlite:///{self.db_path}",
            PYTHONUNBUFFERED="1",
        )
        if self.auth_level:
            env["OTREE_AUTH_LEVEL"] = self.auth_level
        else:
            env.pop("OTREE_AUTH_LEVEL", None)

        self._log = self.log_path.open("wb")
        try:
            self._process = subprocess.Popen(
                [str(otree), "prodserver", f"{self.host}:{self.port}"],
                cwd=self.data_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as error:
            self._close_log()
            raise LocalOTreeError(f"cannot run {otree}: {error}") from error
        atexit.register(self.stop)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """End oTree's whole process group: SIGTERM, then SIGKILL after `stop_timeout`."""
        process, self._process = self._process, None
        if process is None:
            return
        atexit.unregister(self.stop)
        pgid = process.pid  # start_new_session: the process leads its own group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while time.monotonic() < deadline:
            process.poll()  # reap the leader so it does not count as alive
            if not _group_alive(pgid):
                break
            time.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):  # SIGKILL cannot be ignored
            process.wait(timeout=self.stop_timeout)
        self._close_log()

    def _prepare_data_dir(self) -> None:
        if self.data_dir == self.project_dir:
            return
        if self.data_dir.is_relative_to(self.project_dir):
            raise LocalOTreeError(
                f"the data directory {self.data_dir} must be outside the project "
                f"{self.project_dir} (the project is copied into it)"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(self.project_dir, self.data_dir, ignore=_NOT_COPIED, dirs_exist_ok=True)

    def _wait_ready(self) -> None:
        assert self._process is not None
        probe_host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        probe = f"http://{probe_host}:{self.port}/api/otree_version"
        headers = {"otree-rest-key": self.rest_key}
        deadline = time.monotonic() + self.startup_timeout
        last = "no answer yet"
        with httpx.Client(timeout=2.0, trust_env=False) as http:
            while True:
                code = self._process.poll()
                if code is not None:
                    raise LocalOTreeError(
                        f"oTree exited with code {code} before answering on {self.url}; "
                        f"end of {self.log_path}:\n{_tail(self.log_path)}"
                    )
                try:
                    response = http.get(probe, headers=headers)
                except httpx.HTTPError as error:
                    last = str(error) or type(error).__name__
                else:
                    if response.status_code == 200 and self._process.poll() is None:
                        return
                    last = f"{response.status_code} {response.text[:200]}"
                if time.monotonic() >= deadline:
                    raise LocalOTreeError(
                        f"oTree did not answer on {probe} within {self.startup_timeout:g} s "
                        f"(last: {last}); end of {self.log_path}:\n{_tail(self.log_path)}"
                    )
                time.sleep(0.1)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
