"""The leader's term: a number each new leader raises, which every write of its rooms checks.

The leader lock (`leader_lock`) says who leads, but a leader learns that it lost the lock only
when it next checks it: a second later, or, when its lock's connection alone is cut off, after
the check's timeout (5 s). Meanwhile another process may lead, and both would write the same
rooms: a pool placed twice, two pools sent into one session. So a process that takes the lock
raises the term (`raise_term`, on the lock's connection, before it builds its rooms), and each
batch of the rooms' writes first reads the term with a share lock on its row, in the batch's
transaction (the database function of `mastok.live.postgres_writes`, given the `Fence`'s term).
A leader whose term has passed writes nothing more; since the rooms tell nobody of a change
before it is committed, nobody hears of it either. The row lock orders the two: the new
leader's raise waits for the transactions of the old one in flight, so the rooms it then builds
from the database hold every change the old leader told anyone of.

SQLite takes one process a file (`mastok.db.file_lock`): there is no term to check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

_RAISE = "UPDATE leader_term SET term = term + 1 WHERE id = 1 RETURNING term"

Superseded = Callable[[int, str], None]  # told the term that passed, and why


class TermPassed(Exception):
    """Another process took the leader lock since this one's term began: its writes are
    refused."""


async def raise_term(connection: asyncpg.Connection, within: float) -> int:
    """The next term (taken with the lock, on its connection). It waits for the transactions
    that hold the row (the rooms' writes of the term before, wherever they are)."""
    term = await connection.fetchval(_RAISE, timeout=within)
    if term is None:
        raise RuntimeError("leader_term has no row: is the database migrated?")
    return int(term)


@dataclass(frozen=True)
class Fence:
    """The term the rooms' writes are made in; `superseded` hears when it has passed (and
    why), from the write that found it so."""

    term: int
    superseded: Superseded
