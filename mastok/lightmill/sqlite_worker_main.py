"""The SQLite worker process: trials' places read and trial posts written in batches, on a
connection of its own, for one mastok server (sqlite_worker.py starts it and speaks to it).

`python -m mastok.lightmill.sqlite_worker_main PATH`. It reads a JSON array a line:
`["places", id, keys, ahead]` (keys as a JSON text, as trial_places reads them) and
`["write", id, stamp, *StoredPost]`. For each turn of what it has read it writes one line, a
JSON array of `[id, answer]`: a read's rows (null if it failed), and for each write whether its
run moved on (false also when its batch failed: the server then records that post itself, with
its precise answer); and `[0, text]` for what went wrong, which the server logs. A turn's writes
are one transaction, one post a run (another for the same run waits for the next turn). It ends
when its input does, once what it read is done; Ctrl-C at a terminal is its server's to handle.

It imports neither SQLAlchemy nor the server: it starts in a few tens of milliseconds.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
from typing import Any

import orjson

from mastok.lightmill import sqlite_batch
from mastok.lightmill.sqlite_batch import StoredPost
from mastok.lightmill.trial_sql import PLACES_SQLITE
from mastok.sqlite_connection import connect

READ_SIZE = 1 << 20
ERRORS = 0  # the id of a turn's answers that are errors to log (messages count from 1)
Answer = list[Any]  # [id, answer]
Write = tuple[int, str, StoredPost]  # its message's id, its stamp, the post


def serve(connection: sqlite3.Connection, incoming: int, outgoing: int) -> None:
    """Turn after turn until `incoming` ends: what has come answered in one line."""
    partial = b""
    waiting: list[Write] = []  # writes for a run already in the last batch
    ended = False
    while not ended or waiting:
        data = b"" if ended else _read(incoming, wait=not waiting)
        if data is None:
            ended = True
            data = b""
        *lines, partial = (partial + data).split(b"\n")
        answers: list[Answer] = []
        writes = waiting
        for line in lines:
            message = orjson.loads(line)
            if message[0] == "places":
                answers += _places(connection, message[1], message[2], message[3])
            else:
                writes.append((message[1], message[2], StoredPost(*message[3:])))
        batch, waiting = _one_a_run(writes)
        answers += _write(connection, batch)
        if answers:
            _write_all(outgoing, orjson.dumps(answers) + b"\n")


def _one_a_run(writes: list[Write]) -> tuple[list[Write], list[Write]]:
    """This turn's batch, the first write for each run, and those that wait for the next."""
    batch: dict[int, Write] = {}
    waiting = []
    for write in writes:
        if write[2].run_pk in batch:
            waiting.append(write)
        else:
            batch[write[2].run_pk] = write
    return list(batch.values()), waiting


def _read(incoming: int, wait: bool) -> bytes | None:
    """What has come (waiting for some if `wait`); None once the input has ended."""
    os.set_blocking(incoming, wait)
    try:
        data = os.read(incoming, READ_SIZE)
    except BlockingIOError:
        return b""
    return data or None


def _places(connection: sqlite3.Connection, ident: int, keys: str, ahead: int) -> list[Answer]:
    try:
        return [[ident, connection.execute(PLACES_SQLITE, (keys, ahead)).fetchall()]]
    except sqlite3.Error as error:
        return [[ident, None], [ERRORS, f"reading trials' places failed: {error}"]]


def _write(connection: sqlite3.Connection, batch: list[Write]) -> list[Answer]:
    if not batch:
        return []
    try:
        moved = sqlite_batch.write(connection, [(post, stamp) for _, stamp, post in batch])
    except sqlite3.Error as error:
        failed = f"a batch of {len(batch)} posts failed, the server writes them: {error}"
        return [[ident, False] for ident, _, _ in batch] + [[ERRORS, failed]]
    return [[ident, post.run_pk in moved] for ident, _, post in batch]


def _write_all(outgoing: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(outgoing, view) :]


def main(path: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(connect(path), sys.stdin.fileno(), sys.stdout.fileno())


if __name__ == "__main__":
    main(sys.argv[1])
