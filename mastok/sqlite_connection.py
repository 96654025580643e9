"""How every mastok SQLite connection is set up: its pragmas and how long it waits for a lock,
and a plain sqlite3 connection set up so (the SQLite worker process runs without SQLAlchemy)."""

from __future__ import annotations

import sqlite3

BUSY_TIMEOUT = 30  # seconds a statement waits for another connection's lock
PRAGMAS = ("PRAGMA foreign_keys=ON", "PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL")


def connect(path: str) -> sqlite3.Connection:
    """A connection that begins no transaction itself (`isolation_level=None`): its user
    says BEGIN and COMMIT."""
    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None)
    for pragma in PRAGMAS:
        connection.execute(pragma)
    return connection
