"""A consistent copy of a live SQLite database, through SQLite's online backup API.

`mastok backup` calls it while mastok may be serving from the same file: SQLite copies the
database as one snapshot (writers wait a moment, nothing is half-copied), into `FILE.part`,
renamed to `FILE` once complete. PostgreSQL has its own tools (README: "Backup and restore").
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

BUSY_TIMEOUT = 30.0  # seconds to wait for a writer to finish before copying


def backup_sqlite(source: Path, output: Path) -> None:
    """Copy the database at `source` to `output` (replaced if there) as one snapshot."""
    partial = output.with_name(output.name + ".part")
    partial.unlink(missing_ok=True)
    live = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT)
    try:
        copy = sqlite3.connect(partial)
        try:
            live.backup(copy)
        finally:
            copy.close()
        partial.replace(output)
    finally:
        live.close()
        partial.unlink(missing_ok=True)
