"""The audit log: every state-changing admin action, with when, who, from where and what.

Campaigns created, edited or set Running/Paused/Completed (from a form, the API or the
supervise page's buttons), experiments imported, runs unlocked, identities erased. Written
once the action is done, read back newest first by `/audit` and `GET /api/audit`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select

from mastok.clock import Clock, iso
from mastok.db import Database
from mastok.db.tables import AuditEntry

MAX_DETAIL = 200  # characters of a changed value kept in the log (a consent can be long)


@dataclass(frozen=True, slots=True)
class Actor:
    login: str
    address: str


class AuditLog:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def record(
        self, actor: Actor, action: str, target: str, details: Mapping[str, Any] | None = None
    ) -> None:
        row = {
            "at": self.clock.now(),
            "login": actor.login,
            "address": actor.address,
            "action": action,
            "target": target,
            "details": dict(details or {}),
        }
        async with self.db.session() as session:
            await session.execute(insert(AuditEntry), row)
            await session.commit()

    async def page(self, limit: int, before: int | None = None) -> list[dict[str, Any]]:
        query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if before is not None:
            query = query.where(AuditEntry.id < before)
        async with self.db.session() as session:
            entries = list(await session.scalars(query))
        return [
            {
                "id": e.id,
                "at": iso(e.at),
                "login": e.login,
                "address": e.address,
                "action": e.action,
                "target": e.target,
                "details": e.details,
            }
            for e in entries
        ]


def changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """What an edit changed: {field: [old, new]}, long values shortened."""
    return {
        name: [_short(before.get(name)), _short(value)]
        for name, value in after.items()
        if before.get(name) != value
    }


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_DETAIL:
        return value[:MAX_DETAIL] + "…"
    return value
