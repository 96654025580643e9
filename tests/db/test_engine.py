"""Database URLs, engines and sessions on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from mastok.db.engine import (
    Database,
    DatabaseURLError,
    async_url,
    create_engine,
    driver_connection,
)
from mastok.db.migrate import migrate
from mastok.db.tables import Campaign

CREATED = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


@asynccontextmanager
async def opened(url: str) -> AsyncIterator[Database]:
    database = Database(async_url(url))
    try:
        yield database
    finally:
        await database.close()


def new_campaign(slug: str = "pilot", namespace: str = "pilot-ns") -> Campaign:
    """A campaign with only the fields that have no default."""
    return Campaign(
        namespace=namespace,
        slug=slug,
        otree_config_name="public_goods",
        per_session=3,
        max_sessions=5,
        concurrent_sessions=2,
        session_duration=900,
        waiting_limit=120,
        consent="I agree.",
        created_at=CREATED,
    )


async def add(url: str, *campaigns: Campaign) -> None:
    async with opened(url) as database, database.session() as session:
        session.add_all(campaigns)
        await session.commit()


async def read_campaigns(url: str) -> list[Campaign]:
    async with opened(url) as database, database.session() as session:
        return list((await session.scalars(select(Campaign).order_by(Campaign.id))).all())


# --- async_url -------------------------------------------------------------------------------


def test_empty_url_is_the_embedded_sqlite_file_by_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    url = async_url("", "data/mastok.sqlite3")

    assert url == f"sqlite+aiosqlite:///{tmp_path.resolve()}/data/mastok.sqlite3"
    assert Path(url.removeprefix("sqlite+aiosqlite:///")).is_absolute()


def test_empty_url_expands_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))

    assert (
        async_url("", "~/mastok.sqlite3")
        == f"sqlite+aiosqlite:///{tmp_path.resolve()}/mastok.sqlite3"
    )


@pytest.mark.parametrize(
    ("configured", "expected"),
    [
        ("postgres://u:pw@db:5432/mastok", "postgresql+asyncpg://u:pw@db:5432/mastok"),
        ("postgresql://u:pw@db/mastok", "postgresql+asyncpg://u:pw@db/mastok"),
        ("POSTGRESQL://u@db/mastok", "postgresql+asyncpg://u@db/mastok"),
        ("postgresql+asyncpg://u@db/mastok", "postgresql+asyncpg://u@db/mastok"),
        ("postgres://u@db/mastok?sslmode=require", "postgresql+asyncpg://u@db/mastok?ssl=require"),
        (
            "postgresql://u@db/mastok?application_name=mastok&sslmode=disable",
            "postgresql+asyncpg://u@db/mastok?application_name=mastok&ssl=disable",
        ),
        ("sqlite:////srv/mastok.sqlite3", "sqlite+aiosqlite:////srv/mastok.sqlite3"),
        ("sqlite+aiosqlite:////srv/m.sqlite3", "sqlite+aiosqlite:////srv/m.sqlite3"),
    ],
)
def test_configured_urls_use_the_async_drivers(configured: str, expected: str) -> None:
    assert async_url(configured) == expected


@pytest.mark.parametrize(
    ("configured", "message"),
    [
        ("mysql://u@db/mastok", r"unsupported database 'mysql': use postgres://, postgresql://"),
        ("oracle+cx://u@db/x", r"unsupported database 'oracle\+cx'"),
        ("db.example.org/mastok", r"not a database URL: 'db.example.org/mastok'"),
    ],
)
def test_unsupported_urls_are_refused_clearly(configured: str, message: str) -> None:
    with pytest.raises(DatabaseURLError, match=message):
        async_url(configured)


def test_a_url_error_is_a_value_error() -> None:
    assert issubclass(DatabaseURLError, ValueError)


# --- Engines ---------------------------------------------------------------------------------


async def test_a_campaign_is_written_and_read_back(database_url: str) -> None:
    await add(database_url, new_campaign())

    [campaign] = await read_campaigns(database_url)  # through a new engine

    assert (campaign.id, campaign.slug, campaign.namespace) == (1, "pilot", "pilot-ns")
    assert (campaign.per_session, campaign.max_sessions, campaign.waiting_limit) == (3, 5, 120)
    assert campaign.consent == "I agree."
    assert (campaign.join_once, campaign.show_nb_participants) == (False, True)
    assert (campaign.state, campaign.started_sessions, campaign.grouping) == ("Paused", 0, "")
    # SQLite gives naive datetimes back; every time mastok stores is UTC.
    assert campaign.created_at.replace(tzinfo=campaign.created_at.tzinfo or UTC) == CREATED


async def test_updated_at_moves_on_update(database_url: str) -> None:
    await add(database_url, new_campaign())
    async with opened(database_url) as database, database.session() as session:
        campaign = await session.scalar(select(Campaign))
        assert campaign is not None
        first = campaign.updated_at
        campaign.state = "Running"
        await session.commit()
        await session.refresh(campaign)

        assert campaign.state == "Running"
        assert campaign.updated_at > first


@pytest.mark.parametrize("field", ["slug", "namespace"])
async def test_slug_and_namespace_are_unique(database_url: str, field: str) -> None:
    first, second = new_campaign("one", "ns-one"), new_campaign("two", "ns-two")
    await add(database_url, first)
    setattr(second, field, getattr(first, field))

    with pytest.raises(IntegrityError):
        await add(database_url, second)
    assert [c.slug for c in await read_campaigns(database_url)] == ["one"]


async def test_database_knows_its_backend(database_url: str) -> None:
    async with opened(database_url) as database:
        assert database.is_sqlite == database_url.startswith("sqlite")


async def test_sqlite_connections_enforce_foreign_keys_and_use_wal(
    sqlite_database_url: str,
) -> None:
    async with opened(sqlite_database_url) as database, database.engine.connect() as connection:
        foreign_keys = await connection.scalar(text("PRAGMA foreign_keys"))
        journal_mode = await connection.scalar(text("PRAGMA journal_mode"))

    assert (foreign_keys, journal_mode) == (1, "wal")


async def test_postgresql_connections_never_compile_a_plan(postgres_database_url: str) -> None:
    """PostgreSQL's JIT compiles a plan whose estimated cost passes `jit_above_cost`: a trial's
    places read on a design just imported, before any ANALYZE, took 558 ms so (516 of them
    compiling), 4.5 ms without (lm_trials' pages filled to 10% make its rows guessed ten times
    too many)."""
    async with opened(postgres_database_url) as database, database.engine.connect() as connection:
        assert await connection.scalar(text("SHOW jit")) == "off"


async def test_sqlite_file_folder_is_created(tmp_path: Path) -> None:
    path = tmp_path / "not" / "yet" / "mastok.sqlite3"

    async with opened(f"sqlite:///{path}") as database:
        await migrate(database)

    assert path.is_file()


async def test_in_memory_sqlite_is_one_database_for_all_sessions() -> None:
    database = Database("sqlite+aiosqlite://")
    try:
        await migrate(database)
        async with database.session() as session:
            session.add(new_campaign())
            await session.commit()
        async with database.session() as session:
            assert [c.slug for c in await session.scalars(select(Campaign))] == ["pilot"]
    finally:
        await database.close()


async def test_a_failed_statement_does_not_name_its_values(tmp_path: Path) -> None:
    """Errors end up in the log: a browser id or platform identity must not be in them."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'e.sqlite3'}")
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE t (v TEXT UNIQUE)"))
            await connection.execute(text("INSERT INTO t VALUES (:v)"), {"v": "PROLIFIC-5f1e"})
        with pytest.raises(IntegrityError) as failed:
            async with engine.begin() as connection:
                await connection.execute(text("INSERT INTO t VALUES (:v)"), {"v": "PROLIFIC-5f1e"})
        assert "UNIQUE" in str(failed.value)
        assert "PROLIFIC-5f1e" not in str(failed.value)
    finally:
        await engine.dispose()


# --- driver_connection -----------------------------------------------------------------------


async def test_the_driver_connection_is_the_one_held_and_a_new_one_once_invalidated(
    database_url: str,
) -> None:
    async with opened(database_url) as database, database.engine.connect() as connection:
        held = (await connection.get_raw_connection()).driver_connection

        assert await driver_connection(connection) is held

        await connection.invalidate()
        fresh = await driver_connection(connection)
        assert fresh is not held
        assert fresh is (await connection.get_raw_connection()).driver_connection
        assert await connection.scalar(text("SELECT 1")) == 1
