"""One `mastok serve` per SQLite file: an `flock` on a file beside the database, for the life of
the process.

Not a pid file: the kernel drops the lock with the process however it ends (SIGKILL included),
so a killed mastok never blocks its own restart, whatever pid it had (1, in a container). The
file's text only says who holds the lock, for the message a second process gives.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import IO


class DatabaseInUse(Exception):
    """Another process serves this database; the message says which."""


def lock_path(database_file: Path) -> Path:
    return database_file.with_name(database_file.name + ".lock")


def hold(database_file: Path) -> IO[str]:
    """Lock the database for this process, or raise DatabaseInUse naming the holder. Keep the
    returned file open for as long as the process serves the database."""
    path = lock_path(database_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise DatabaseInUse(
            f"{database_file} is already served by {holder} (lock: {path}): "
            "stop it first, or use PostgreSQL to run several mastok processes"
        ) from None
    handle.seek(0)
    handle.truncate()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    command = " ".join(os.path.basename(arg) if i == 0 else arg for i, arg in enumerate(sys.argv))
    handle.write(
        f"mastok pid {os.getpid()} on {socket.gethostname()} since {started} ({command})\n"
    )
    handle.flush()
    return handle
