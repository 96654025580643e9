"""The database's leader lock: a PostgreSQL session-level advisory lock on a connection of its own.

The connection is kept for the life of the process: while it lives, the lock is held; when the
process dies (SIGKILL included) PostgreSQL ends its session and the lock is free. So that a
leader whose machine or network died does not hold the lock for hours, the server is asked to
probe the connection (TCP keepalives, `tcp_user_timeout`, and `client_connection_check_interval`
where it has them), and the client's socket keeps TCP keepalives on too. The same connection
LISTENs for campaigns edited through other processes (`campaigns_channel`).

A standby waits for the lock in the database's own queue (`pg_advisory_lock`) rather than trying
it now and then: PostgreSQL hands a freed lock to the session that has waited longest, at the
moment it is freed. So the standby leads at once, before the dead leader's process, restarted by
its supervisor, comes back to try it.

On SQLite the process is always the leader (`EmbeddedLock`): one process a file, which
`mastok.db.file_lock` makes sure of.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any, Protocol

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from mastok.db.leader_term import raise_term

log = logging.getLogger("mastok.leader")

LEADER_KEY = 0x6D61_7374_6F6B_4C44  # "mastokLD": the key of the leader lock, one per database
CAMPAIGNS_CHANNEL = "mastok_campaigns"  # NOTIFY payload: the id of a campaign just edited
CONNECT_TIMEOUT = 5.0
QUERY_TIMEOUT = 5.0  # a check unanswered this long counts as a lost connection
# The server gives up on a silent lock connection after about 2 + 3 x 1 = 5 s, or 5 s of its
# data unacknowledged: a leader whose machine or network is gone frees the lock for the standby
# within seconds (a killed one frees it at once). The probes are answered by the leader's kernel,
# so a leader whose process is merely busy keeps the lock, however long that lasts.
SERVER_SETTINGS = {
    # A standby's wait in the lock's queue is as long as the leader lives: never cut short by a
    # timeout an administrator set for the database's ordinary queries.
    "statement_timeout": "0",
    "lock_timeout": "0",
    "tcp_keepalives_idle": "2",
    "tcp_keepalives_interval": "1",
    "tcp_keepalives_count": "3",
    "application_name": "mastok leader lock",
}
NEWER_SERVER_SETTINGS = {  # (version that has it, name, value)
    "tcp_user_timeout": (120000, "5000"),
    "client_connection_check_interval": (140000, "5000"),
}
KEEPALIVE_OPTIONS = (  # the client's own keepalives (Linux names; skipped where missing)
    ("TCP_KEEPIDLE", 2),
    ("TCP_KEEPINTVL", 1),
    ("TCP_KEEPCNT", 3),
)

# Who holds an advisory lock on a bigint key (its high and low 32 bits, `objsubid` 1).
HOLDER_SQL = """
SELECT pid FROM pg_locks
WHERE locktype = 'advisory' AND granted AND classid = $1 AND objid = $2 AND objsubid = 1
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""

NotifyListener = Callable[[int], None]


class LockUnreachable(Exception):
    """The database could not be asked."""


class LockDropped(Exception):
    """The lock's connection is gone: the lock may be anyone's now."""


class LeaderLock(Protocol):
    @property
    def term(self) -> int | None:
        """The leader's term taken with the lock (`mastok.db.leader_term`); None: no term to
        check (SQLite)."""
        ...

    async def try_acquire(self, queue: bool = False) -> bool:
        """Take the lock if free (False: someone else holds it). `queue`: if it is held, wait
        for it, ahead of any process that asks later (False if the wait was cut short).
        Raises LockUnreachable."""
        ...

    async def check(self) -> None:
        """While held: raises LockDropped if the connection is gone."""
        ...

    async def close(self) -> None:
        """Release the lock (closing its connection)."""
        ...


class EmbeddedLock:
    """SQLite: the process owns its file, so it always leads."""

    term = None

    async def try_acquire(self, queue: bool = False) -> bool:
        return True

    async def check(self) -> None:
        return None

    async def close(self) -> None:
        return None


def connect_options(engine: AsyncEngine) -> dict[str, Any]:
    """asyncpg.connect's arguments for the engine's database (SSL options included)."""
    _args, options = engine.dialect.create_connect_args(engine.url)
    options.pop("prepared_statement_cache_size", None)
    options.pop("prepared_statement_name_func", None)
    return dict(options)


class PostgresLock:
    """The advisory lock on a dedicated asyncpg connection; `on_notify` gets the campaign ids
    NOTIFYed while the lock is held."""

    def __init__(self, options: dict[str, Any], on_notify: NotifyListener) -> None:
        self.options = options
        self.on_notify = on_notify
        self._connection: asyncpg.Connection | None = None
        self._held = False
        self._former_pid: int | None = None  # our last lock session, perhaps not ended yet
        self.term: int | None = None

    @classmethod
    def for_engine(cls, engine: AsyncEngine, on_notify: NotifyListener) -> PostgresLock:
        return cls(connect_options(engine), on_notify)

    async def try_acquire(self, queue: bool = False) -> bool:
        connection = await self._connected()
        try:
            got = await connection.fetchval(
                "SELECT pg_try_advisory_lock($1)", LEADER_KEY, timeout=QUERY_TIMEOUT
            )
            if not got and await self._former_session_holds(connection):
                raise LockUnreachable("this process's former lock session has not ended yet")
            if not got and queue:
                got = await _wait_in_queue(connection)
            if got:
                self._held = True
                self.term = await raise_term(connection, QUERY_TIMEOUT)
                await connection.add_listener(CAMPAIGNS_CHANNEL, self._notified)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            self._drop()
            raise LockUnreachable(describe_error(error)) from None
        self._held = bool(got)
        return self._held

    async def _former_session_holds(self, connection: asyncpg.Connection) -> bool:
        """The lock is still held by the session this process lost (the server has not seen
        its socket close yet): not another process, so not a reason to stand by. It is ended,
        so that the next attempt gets the lock."""
        if self._former_pid is None:
            return False
        holder = await connection.fetchval(
            HOLDER_SQL, *_lock_ids(LEADER_KEY), timeout=QUERY_TIMEOUT
        )
        if holder != self._former_pid:
            return False
        with contextlib.suppress(asyncpg.PostgresError):
            await connection.fetchval(
                "SELECT pg_terminate_backend($1)", holder, timeout=QUERY_TIMEOUT
            )
        return True

    async def check(self) -> None:
        connection = self._connection
        if connection is None or connection.is_closed():
            self._drop()
            raise LockDropped("its connection closed")
        try:
            await connection.fetchval("SELECT 1", timeout=QUERY_TIMEOUT)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            self._drop()
            raise LockDropped(describe_error(error)) from None

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        self._held = False
        if connection is not None and not connection.is_closed():
            try:
                await asyncio.wait_for(connection.close(), QUERY_TIMEOUT)
            except Exception:
                connection.terminate()

    async def _connected(self) -> asyncpg.Connection:
        if self._connection is not None and not self._connection.is_closed():
            return self._connection
        try:
            connection = await asyncpg.connect(
                **self.options, timeout=CONNECT_TIMEOUT, server_settings=SERVER_SETTINGS
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            raise LockUnreachable(describe_error(error)) from None
        try:
            await _newer_settings(connection)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            connection.terminate()
            raise LockUnreachable(describe_error(error)) from None
        _client_keepalives(connection)
        self._connection = connection
        return connection

    def _drop(self) -> None:
        """Forget the connection, closing its socket: if the session lives on (a check that
        timed out), the server ends it and frees the lock as soon as it sees the socket close."""
        connection, self._connection = self._connection, None
        if connection is not None:
            if self._held:
                self._former_pid = connection.get_server_pid()
            connection.terminate()
        self._held = False

    def _notified(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        with contextlib.suppress(ValueError):
            self.on_notify(int(payload))


async def _wait_in_queue(connection: asyncpg.Connection) -> bool:
    """Wait for the lock behind those who asked before: True once it is this session's, False
    if the server cut the wait short (a query cancelled by an administrator). No client-side
    timeout: the wait lasts as long as the leader; a dead database or network ends it through
    the connection's keepalives."""
    try:
        await connection.execute("SELECT pg_advisory_lock($1)", LEADER_KEY)
    except (asyncpg.QueryCanceledError, asyncpg.LockNotAvailableError):
        return False
    return True


async def _newer_settings(connection: asyncpg.Connection) -> None:
    version = int(await connection.fetchval("SHOW server_version_num", timeout=QUERY_TIMEOUT))
    for name, (since, value) in NEWER_SERVER_SETTINGS.items():
        if version >= since:
            await connection.execute(
                "SELECT set_config($1, $2, false)", name, value, timeout=QUERY_TIMEOUT
            )


def _client_keepalives(connection: asyncpg.Connection) -> None:
    """TCP keepalives on the client's socket (asyncpg has no option for them)."""
    transport = getattr(connection, "_transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in KEEPALIVE_OPTIONS:
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


def _lock_ids(key: int) -> tuple[int, int]:
    return (key >> 32) & 0xFFFF_FFFF, key & 0xFFFF_FFFF


def describe_error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
