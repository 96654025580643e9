"""What the waiting room writes down: participants as they move, sessions as they start."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update

from mastok.db import Database
from mastok.db.tables import Campaign, OTreeSession, Participant, utcnow

WAITING_STEPS = ("landed", "agreed", "joining", "pending")


class Records:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add_participant(self, campaign_id: int, token: str, fingerprint: str) -> int:
        async with self.db.session() as session:
            result = await session.execute(
                insert(Participant)
                .values(
                    campaign_id=campaign_id,
                    token=token,
                    fingerprint=fingerprint,
                    step="landed",
                    created_at=utcnow(),
                    updated_at=utcnow(),
                )
                .returning(Participant.id)
            )
            participant_id = result.scalar_one()
            await session.commit()
        return participant_id

    async def move(self, participant_ids: Sequence[int], **values: Any) -> None:
        if not participant_ids:
            return
        async with self.db.session() as session:
            await session.execute(
                update(Participant)
                .where(Participant.id.in_(participant_ids))
                .values(**values, updated_at=utcnow())
            )
            await session.commit()

    async def waiting(self, campaign_id: int) -> list[Participant]:
        """Everyone in the room, in pool order."""
        async with self.db.session() as session:
            found = await session.scalars(
                select(Participant)
                .where(Participant.campaign_id == campaign_id)
                .where(Participant.step.in_(WAITING_STEPS))
                .order_by(Participant.queued_at, Participant.id)
            )
            return list(found)

    async def campaigns_with_waiting(self) -> list[int]:
        async with self.db.session() as session:
            found = await session.scalars(
                select(Participant.campaign_id)
                .where(Participant.step.in_(WAITING_STEPS))
                .distinct()
            )
            return list(found)

    async def has_participated(self, campaign_id: int, fingerprint: str) -> bool:
        async with self.db.session() as session:
            found = await session.scalar(
                select(Participant.id)
                .where(Participant.campaign_id == campaign_id)
                .where(Participant.fingerprint == fingerprint)
                .where(Participant.step == "started")
                .limit(1)
            )
        return found is not None

    async def live_start_url(
        self, campaign_id: int, fingerprint: str, since: datetime
    ) -> str | None:
        """The start URL of this fingerprint's participation in a session created after `since`."""
        async with self.db.session() as session:
            return await session.scalar(
                select(Participant.start_url)
                .join(OTreeSession, Participant.session_id == OTreeSession.id)
                .where(Participant.campaign_id == campaign_id)
                .where(Participant.fingerprint == fingerprint)
                .where(Participant.step == "started")
                .where(OTreeSession.created_at > since)
                .order_by(OTreeSession.created_at.desc())
                .limit(1)
            )

    async def started_by_token(self, campaign_id: int, token: str) -> Participant | None:
        async with self.db.session() as session:
            return await session.scalar(
                select(Participant)
                .where(Participant.campaign_id == campaign_id)
                .where(Participant.token == token)
                .where(Participant.step == "started")
            )

    async def live_session_times(self, campaign_id: int, since: datetime) -> list[datetime]:
        async with self.db.session() as session:
            found = await session.scalars(
                select(OTreeSession.created_at)
                .where(OTreeSession.campaign_id == campaign_id)
                .where(OTreeSession.created_at > since)
            )
            return list(found)

    async def sessions(self, campaign_id: int) -> list[OTreeSession]:
        async with self.db.session() as session:
            found = await session.scalars(
                select(OTreeSession)
                .where(OTreeSession.campaign_id == campaign_id)
                .order_by(OTreeSession.number.desc())
            )
            return list(found)

    async def participant_codes(self, session_id: int) -> list[str]:
        async with self.db.session() as session:
            found = await session.scalars(
                select(Participant.otree_code)
                .where(Participant.session_id == session_id)
                .order_by(Participant.otree_code)
            )
            return [code for code in found if code]

    async def record_start(
        self,
        campaign: Campaign,
        session_row: dict[str, Any],
        assignments: Sequence[tuple[int, str, str]],
        complete: bool,
    ) -> OTreeSession:
        """In one transaction: the session, each participant's code and URL, the campaign's count.

        `assignments` are (participant id, oTree participant code, start URL).
        """
        now = utcnow()
        async with self.db.session() as session:
            record = OTreeSession(campaign_id=campaign.id, created_at=now, **session_row)
            session.add(record)
            await session.flush()
            for participant_id, code, url in assignments:
                await session.execute(
                    update(Participant)
                    .where(Participant.id == participant_id)
                    .values(
                        step="started",
                        session_id=record.id,
                        otree_code=code,
                        start_url=url,
                        updated_at=now,
                    )
                )
            values: dict[str, Any] = {"started_sessions": Campaign.started_sessions + 1}
            if complete:
                values["state"] = "Completed"
            await session.execute(update(Campaign).where(Campaign.id == campaign.id).values(values))
            await session.commit()
            return record

    async def set_state(self, campaign_id: int, state: str) -> None:
        async with self.db.session() as session:
            await session.execute(
                update(Campaign).where(Campaign.id == campaign_id).values(state=state)
            )
            await session.commit()


def live_since(now: datetime, duration_minutes: int) -> datetime:
    return now - timedelta(minutes=duration_minutes)
