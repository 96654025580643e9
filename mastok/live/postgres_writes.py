"""The rooms' writes on PostgreSQL: a batch's, every room's, in one call of one function.

The same writes as `mastok.live.sqlite_writes`, with the same arguments: a row added on Land,
a move (Agree, a pool's start, a leave, a waiting limit lengthened), a session asked of oTree, a
session recorded, sessions ended. Here they only add to a `Call`: the batch's writes, in order,
as the database function `mastok_room_writes` (migrations 0016 and 0017) takes them, a JSON
array. `run` sends them in one statement, with the leader's term, which the function reads
first (with a share lock on its row, as `mastok.db.leader_term` needs); it answers with the ids
of the sessions recorded, in order.

One statement is its own transaction: nothing of the batch is written if any write fails, and a
passed term writes nothing. It replaced a BEGIN, the term's read, a statement or more a write and
a COMMIT, a round trip each: under load each round trip waited for mastok's busy loop, and the
time from a pool's last Agree to its Starting held two batches (the pool's start and the session
recorded) and oTree's answer between them (bench/README.md, scenario 1).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from mastok.db.engine import driver_connection
from mastok.db.leader_term import Fence, TermPassed
from mastok.live.events import RecordSession
from mastok.states import CampaignState, Outcome, Step

_RUN = "SELECT mastok_room_writes($1, $2::jsonb)"
TERM_PASSED = "MKTRM"  # the SQLSTATE the function raises when the term has passed
# A participant's row as the function takes it: the others are the write's time (`at`) or
# its params, sent as JSON text so that they are stored as SQLAlchemy stores them.
_ADDED = ("campaign_id", "token", "browser_id", "identity", "step", "outcome", "ended_at")


class Call:
    """The writes of one call, in order; `recorded`: how many sessions they record."""

    __slots__ = ("recorded", "writes")

    def __init__(self) -> None:
        self.writes: list[dict[str, Any]] = []
        self.recorded = 0


async def add_participant(call: Call, row: Mapping[str, Any]) -> None:
    """The participant's row (`row`: its columns by name; created and updated at once)."""
    params = None if row["params"] is None else json.dumps(row["params"])
    added = {column: row[column] for column in _ADDED}
    call.writes.append({"write": "add", "at": row["created_at"], "row": added, "params": params})


async def move(call: Call, tokens: Sequence[str], values: dict[str, Any], now: datetime) -> None:
    """UPDATE participants SET these columns (and updated_at) WHERE token IN (tokens)."""
    call.writes.append({"write": "move", "at": now, "tokens": tokens, "values": values})


async def ask(call: Call, campaign_id: int, number: int, now: datetime) -> None:
    """The number of the session about to be asked of oTree, written before it is asked."""
    call.writes.append({"write": "ask", "at": now, "campaign_id": campaign_id, "number": number})


async def record_session(
    call: Call, campaign_id: int, change: RecordSession, now: datetime
) -> None:
    """The session, each participant's code and URL, and the campaign's count (and state).
    Its id comes back from `run`, in the order of the sessions recorded."""
    session = change.session
    call.writes.append(
        {
            "write": "record",
            "at": now,
            "campaign_id": campaign_id,
            "number": change.number,
            "mastok_id": session.mastok_id,
            "otree_code": session.code,
            "admin_url": session.admin_url,
            "assignments": [
                {"token": token, "otree_code": code, "start_url": url}
                for token, code, url in change.assignments
            ],
            "step": Step.STARTED,
            "outcome": Outcome.STARTED,
            "state": CampaignState.COMPLETED if change.complete else None,
        }
    )
    call.recorded += 1


async def sessions_ended(
    call: Call, campaign_id: int, numbers: Sequence[int], now: datetime
) -> None:
    """These sessions (by number) finished now."""
    write = {"write": "ended", "at": now, "campaign_id": campaign_id, "numbers": numbers}
    call.writes.append(write)


async def run(connection: AsyncConnection, fence: Fence | None, call: Call) -> list[int]:
    """Write the call's writes, in the term of `fence` (any, without one): the ids of the
    sessions recorded. Raises TermPassed, writing nothing, if another process leads since."""
    driver = await driver_connection(connection)
    # The room's times are aware (UTC): the option keeps a naive one UTC, not the server's zone.
    writes = orjson.dumps(call.writes, option=orjson.OPT_NAIVE_UTC).decode()
    try:
        recorded: list[int] = await driver.fetchval(_RUN, fence and fence.term, writes)
    except asyncpg.PostgresError as error:
        if fence is None or error.sqlstate != TERM_PASSED:
            raise
        fence.superseded(fence.term, str(error))
        raise TermPassed(str(error)) from None
    return recorded
