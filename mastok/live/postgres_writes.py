"""The room's writes of every participant on PostgreSQL, through SQLAlchemy Core.

The same four writes as `mastok.live.sqlite_writes`, with the same arguments: a row added on
Land, a move (Agree, a pool's start, a leave, a waiting limit lengthened), a session asked of
oTree and a session recorded. The statements are built once, with bound parameters (building
and keying a statement costs as much as running it); a move's, once for each set of columns it
assigns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Update, bindparam, insert, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mastok.db.tables import Campaign, OTreeSession, Participant
from mastok.live.events import RecordSession
from mastok.states import CampaignState, Outcome, Step

_ADD_PARTICIPANT = insert(Participant)
_ADD_SESSION = insert(OTreeSession).returning(OTreeSession.id)
_ASK = (
    update(Campaign)
    .where(Campaign.id == bindparam("asking_campaign"))
    .values(session_asked=bindparam("asked_number"), updated_at=bindparam("asked_at"))
)
_ASSIGN = (
    update(Participant)
    .where(Participant.token == bindparam("assigned_token"))
    .values(
        step=Step.STARTED,
        session_id=bindparam("assigned_session"),
        otree_code=bindparam("assigned_code"),
        start_url=bindparam("assigned_url"),
        outcome=Outcome.STARTED,
        ended_at=bindparam("assigned_at"),
        updated_at=bindparam("assigned_at"),
    )
)


async def add_participant(connection: AsyncConnection, row: Mapping[str, Any]) -> None:
    """The participant's row (`row`: its columns by name)."""
    await connection.execute(_ADD_PARTICIPANT, dict(row))


async def move(
    connection: AsyncConnection, tokens: Sequence[str], values: dict[str, Any], now: datetime
) -> None:
    """UPDATE participants SET these columns (and updated_at) WHERE token IN (tokens)."""
    parameters = {f"new_{column}": value for column, value in values.items()}
    parameters.update(tokens=list(tokens), new_updated_at=now)
    await connection.execute(_move(tuple(sorted(values))), parameters)


async def ask(connection: AsyncConnection, campaign_id: int, number: int, now: datetime) -> None:
    """The number of the session about to be asked of oTree, written before it is asked."""
    parameters = {"asking_campaign": campaign_id, "asked_number": number, "asked_at": now}
    await connection.execute(_ASK, parameters)


async def record_session(
    connection: AsyncConnection, campaign_id: int, change: RecordSession, now: datetime
) -> int:
    """The session, each participant's code and URL, and the campaign's count (and state).
    Returns the session's id."""
    session = change.session
    row = {
        "campaign_id": campaign_id,
        "created_at": now,
        "number": change.number,
        "mastok_id": session.mastok_id,
        "otree_code": session.code,
        "admin_url": session.admin_url,
        "size": len(change.assignments),
    }
    session_id = int((await connection.execute(_ADD_SESSION, row)).scalar_one())
    if change.assignments:
        await connection.execute(
            _ASSIGN,
            [
                {
                    "assigned_token": token,
                    "assigned_session": session_id,
                    "assigned_code": code,
                    "assigned_url": url,
                    "assigned_at": now,
                }
                for token, code, url in change.assignments
            ],
        )
    values: dict[str, Any] = {
        "started_sessions": Campaign.started_sessions + 1,
        "session_asked": None,  # recorded: no longer a number that may exist unrecorded
    }
    if change.complete:
        values["state"] = CampaignState.COMPLETED
    await connection.execute(update(Campaign).where(Campaign.id == campaign_id).values(values))
    return session_id


@lru_cache(maxsize=32)
def _move(columns: tuple[str, ...]) -> Update:
    values: dict[str, Any] = {column: bindparam(f"new_{column}") for column in columns}
    return (
        update(Participant)
        .where(Participant.token.in_(bindparam("tokens", expanding=True)))
        .values(**values, updated_at=bindparam("new_updated_at"))
    )
