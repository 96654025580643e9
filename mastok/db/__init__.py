"""The database: tables, engines and sessions, and the Alembic migrations that shape it."""

from mastok.db.engine import Database, async_url
from mastok.db.migrate import migrate

__all__ = ["Database", "async_url", "migrate"]
