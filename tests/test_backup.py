"""Backup and restore (mastok/backup.py, README "Backup and restore"): a server with a campaign,
a participant and a LightMill trial is backed up while it runs (SQLite: `mastok backup`;
PostgreSQL: the test cluster's real pg_dump), restored into a fresh database (a file copy;
pg_restore), and the restored database holds them all."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from mastok.backup import backup_sqlite
from mastok.db import Database, async_url
from mastok.db.tables import Campaign, Participant
from mastok.lightmill.tables import LMTrial
from tests.fixtures.live import ServerFactory, join
from tests.fixtures.postgres import PostgresServer
from tests.lightmill.helpers import imported, lock, post_trial
from tests.live.helpers import running_campaign

MASTOK = [sys.executable, "-m", "mastok"]


async def contents(url: str) -> dict[str, Any]:
    database = Database(async_url(url))
    try:
        async with database.session() as session:
            return {
                "campaigns": list(await session.scalars(select(Campaign.namespace))),
                "participants": list(await session.scalars(select(Participant.browser_id))),
                "trials done": await session.scalar(
                    select(func.count()).where(LMTrial.completed_at.is_not(None))
                ),
                "measures": list(
                    await session.scalars(
                        select(LMTrial.measure_values).where(LMTrial.measure_values.is_not(None))
                    )
                ),
                "schema": await session.scalar(text("select version_num from alembic_version")),
            }
    finally:
        await database.close()


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def backup_and_restore(url: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The README's commands; the restored database's URL."""
    if url.startswith("sqlite"):
        copy = tmp_path / "backup.sqlite3"
        done = run(*MASTOK, "backup", "--database", url, "--output", str(copy))
        assert f"up to {copy}" in done.stdout
        assert not copy.with_name(copy.name + ".part").exists()
        restored = tmp_path / "restored.sqlite3"
        shutil.copyfile(copy, restored)
        return f"sqlite:///{restored}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    dump = tmp_path / "mastok.dump"
    run("pg_dump", "--format=custom", "--file", str(dump), url)
    fresh = f"restored_{tmp_path.name}".lower().replace("-", "_")
    run("createdb", "-h", server.host, "-p", str(server.port), "-U", "postgres", fresh)
    restored = server.url(fresh)
    run("pg_restore", "--no-owner", "--dbname", restored, str(dump))
    return restored


async def test_a_restored_backup_holds_campaigns_participants_and_trials(
    make_server: ServerFactory, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    server = make_server()
    campaign = running_campaign(server, "kept")
    peer, _ = await join(server, campaign["slug"], "fp-kept")
    with server.admin() as client:
        imported(client)
        token = lock(client, "S0")
        posted = post_trial(client, "S0", 0, 0, token, {"trial": {"time": 1}})
        assert posted.status_code == 200, posted.text

    restored = backup_and_restore(server.settings.database_url, tmp_path, request)
    await peer.close()

    found = await contents(restored)
    assert found == await contents(server.settings.database_url)
    assert found["campaigns"] == ["kept"]
    assert found["participants"] == ["fp-kept"]
    assert found["trials done"] == 1
    assert len(found["measures"]) >= 1


def test_backup_refuses_postgresql_and_names_pg_dump() -> None:
    refused = subprocess.run(
        [*MASTOK, "backup", "--database", "postgresql://u@db.invalid/x", "--output", "x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    assert "pg_dump" in refused.stderr


def test_backup_of_a_missing_file_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "none.sqlite3"
    refused = subprocess.run(
        [*MASTOK, "backup", "--database", f"sqlite:///{missing}", "--output", "x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    assert f"no database at {missing}" in refused.stderr
    assert not missing.exists()


def readme_sqlite_restore() -> list[str]:
    """README's SQLite restore commands: its first block under "Backup and restore" but the
    backup itself."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("### Backup and restore", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line and not line.startswith("mastok ")]


def test_the_readme_restore_restores_the_backup_after_a_crash(tmp_path: Path) -> None:
    """mastok killed (or its machine down) leaves the database's WAL beside it: copied over the
    database, the backup must not get that WAL's pages on top of it."""
    served = tmp_path / "served"
    (served / "data").mkdir(parents=True)
    database = served / "data" / "mastok.sqlite3"
    with contextlib.closing(sqlite3.connect(database)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE t (x)")
        connection.execute("INSERT INTO t VALUES (1)")
        connection.commit()
    backup = tmp_path / "mastok-2025-01-31.sqlite3"
    backup_sqlite(database, backup)
    crashed = tmp_path / "crashed"
    with contextlib.closing(sqlite3.connect(database)) as connection:
        connection.execute("PRAGMA wal_autocheckpoint=0")
        connection.execute("CREATE TABLE later (y)")
        connection.executemany("INSERT INTO t VALUES (?)", [(n,) for n in range(2, 100)])
        connection.commit()
        shutil.copytree(served, crashed)  # the files as the killed process left them
    assert (crashed / "data" / "mastok.sqlite3-wal").exists()
    (crashed / "backups").mkdir()
    shutil.copyfile(backup, crashed / "backups" / backup.name)

    for command in readme_sqlite_restore():
        subprocess.run(["sh", "-c", command], cwd=crashed, check=True, timeout=30)

    restored = crashed / "data" / "mastok.sqlite3"
    with contextlib.closing(sqlite3.connect(restored)) as connection:
        tables = [name for (name,) in connection.execute("SELECT name FROM sqlite_master")]
        assert (tables, connection.execute("SELECT count(*) FROM t").fetchone()) == (["t"], (1,))
