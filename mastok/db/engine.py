"""Engines and sessions for SQLite (embedded default) and PostgreSQL (asyncpg)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import StaticPool

from mastok.sqlite_connection import BUSY_TIMEOUT, PRAGMAS


class DatabaseURLError(ValueError):
    pass


def async_url(database_url: str, sqlite_path: str = "data/mastok.sqlite3") -> str:
    """The SQLAlchemy async URL for a configured database URL.

    Empty means the embedded SQLite file at `sqlite_path`; `postgres://` and `postgresql://`
    use asyncpg (libpq's `sslmode` becomes asyncpg's `ssl`).
    """
    if not database_url:
        path = Path(sqlite_path).expanduser().resolve()
        return f"sqlite+aiosqlite:///{path}"
    scheme, _, rest = database_url.partition("://")
    if not rest:
        raise DatabaseURLError(f"not a database URL: {database_url!r}")
    scheme = scheme.lower()
    if scheme in ("postgres", "postgresql", "postgresql+asyncpg"):
        return _asyncpg_query("postgresql+asyncpg://" + rest)
    if scheme in ("sqlite", "sqlite+aiosqlite"):
        return "sqlite+aiosqlite://" + rest
    raise DatabaseURLError(
        f"unsupported database {scheme!r}: use postgres://, postgresql:// or sqlite:///PATH"
    )


def _asyncpg_query(url: str) -> str:
    parts = urlsplit(url)
    query = [("ssl" if k == "sslmode" else k, v) for k, v in parse_qsl(parts.query)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def sqlite_file(url: str) -> str | None:
    """The file of a SQLite URL; None for any other URL, and for SQLite in memory."""
    if not url.startswith("sqlite") or ":memory:" in url or url.endswith("://"):
        return None
    return url.split(":///", 1)[1].split("?", 1)[0]


def create_engine(url: str) -> AsyncEngine:
    options: dict[str, Any] = {}
    if url.startswith("sqlite"):
        db_file = sqlite_file(url)
        if db_file is None:
            # One shared connection, or every session would see its own empty database.
            options["poolclass"] = StaticPool
        else:
            Path(db_file).parent.mkdir(parents=True, exist_ok=True)
        options["connect_args"] = {"timeout": BUSY_TIMEOUT}
    else:
        options["pool_pre_ping"] = True
        # No JIT: it compiles a plan once its estimated cost is high, and mastok's are the
        # quick lookups a participant or a trial makes. A design just imported has no
        # statistics yet, and a trial's places read was guessed costly enough: 558 ms a read,
        # 516 of them compiling, against 4.5 ms without (bench scenario 6, nineteenth round).
        options["connect_args"] = {"server_settings": {"jit": "off"}}
    # A failed statement's error names its SQL, not its values: they hold participants'
    # browser ids and platform identities, which never go to the log.
    engine = create_async_engine(url, hide_parameters=True, **options)
    if url.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


async def driver_connection(connection: AsyncConnection) -> Any:
    """The driver's own connection (aiosqlite's or asyncpg's) under SQLAlchemy's, in the
    transaction it began: for the statements that go straight to the driver. Read from the
    connection SQLAlchemy holds when it holds one: `get_raw_connection` crosses into a greenlet
    (two a batch of trial posts), which only a connection to establish again needs."""
    sync = connection.sync_connection
    if sync is not None and not sync.closed and not sync.invalidated:
        return sync.connection.driver_connection
    return (await connection.get_raw_connection()).driver_connection


class Database:
    """One engine and its session factory."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @property
    def sqlite_file(self) -> str | None:
        return sqlite_file(self.url)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session

    async def close(self) -> None:
        await self.engine.dispose()
