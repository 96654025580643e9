"""Apply the Alembic migrations (at start and by `mastok migrate`).

On PostgreSQL they run under a transaction-level advisory lock: processes starting together
on a fresh database take turns, and those after the first find the schema at its head.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, text

from mastok.db.engine import Database

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic is imported when a migration runs: it is 0.13 s of every `mastok` command that
# imports the database (`mastok export` among them) and only `serve` and `migrate` use it.

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_KEY = 0x6D61_7374_6F6B_4D47  # "mastokMG": the migrations' advisory lock


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def migrate(database: Database, revision: str = "head") -> None:
    """Bring the schema to `revision` on the database's own engine."""

    def upgrade(connection: Connection) -> None:
        from alembic import command

        config = alembic_config(database.url)
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with database.engine.connect() as connection:
        if database.is_sqlite:
            # SQLite alters a table by copying it to a new one and dropping the old: with
            # foreign keys enforced, dropping `campaigns` would delete every participant by
            # cascade. Off for the migration (outside its transaction, where SQLite reads it).
            await connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            await connection.commit()
        try:
            async with connection.begin():
                if not database.is_sqlite:  # held until this transaction ends
                    await connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_KEY}
                    )
                await connection.run_sync(upgrade)
        finally:
            if database.is_sqlite:
                await connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                await connection.commit()
