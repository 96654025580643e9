"""Alembic environment: runs on the connection mastok hands over, or on sqlalchemy.url."""

import asyncio

from alembic import context
from sqlalchemy import Connection

from mastok.db.engine import create_engine
from mastok.db.tables import Base
from mastok.lightmill import tables as lightmill_tables  # noqa: F401 (registers them)

target_metadata = Base.metadata


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_with_own_engine(url: str) -> None:
    engine = create_engine(url)
    async with engine.begin() as connection:
        await connection.run_sync(run_on)
    await engine.dispose()


connection = context.config.attributes.get("connection")
if connection is not None:
    run_on(connection)
else:
    asyncio.run(run_with_own_engine(context.config.get_main_option("sqlalchemy.url") or ""))
