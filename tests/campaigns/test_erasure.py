"""Erasing a campaign's identities (DELETE /api/campaigns/{namespace}/identities) leaves no
platform id in its participants' records, on both databases."""

from __future__ import annotations

import secrets

from sqlalchemy import select

from mastok.db import Database, async_url
from mastok.db.tables import Campaign, OTreeSession, Participant
from mastok.otree.urls import start_url
from tests.campaigns.factories import campaign_input
from tests.fixtures.app import ClientFactory

PID = "5f0aa1e2b3"


async def a_started_visit(database_url: str, namespace: str) -> None:
    db = Database(async_url(database_url))
    try:
        async with db.session() as session:
            campaign_id = await session.scalar(
                select(Campaign.id).where(Campaign.namespace == namespace)
            )
            assert campaign_id is not None
            record = OTreeSession(
                campaign_id=campaign_id, number=1, mastok_id="mk:x:1", otree_code="s1", size=2
            )
            session.add(record)
            await session.flush()
            session.add(
                Participant(
                    campaign_id=campaign_id,
                    token=secrets.token_hex(8),
                    browser_id="b1",
                    identity=PID,
                    params={"PROLIFIC_PID": PID},
                    step="started",
                    outcome="started",
                    session_id=record.id,
                    otree_code="p1",
                    start_url=start_url("https://otree.example", "p1", PID),
                )
            )
            await session.commit()
    finally:
        await db.close()


async def stored(database_url: str) -> list[str]:
    """Every participant row's values, as text."""
    db = Database(async_url(database_url))
    try:
        async with db.session() as session:
            rows = (await session.scalars(select(Participant))).all()
            columns = Participant.__table__.columns.keys()
            return [str(getattr(row, column)) for row in rows for column in columns]
    finally:
        await db.close()


async def test_erasing_leaves_no_identity_in_the_records(
    make_client: ClientFactory, database_url: str
) -> None:
    client = make_client()
    given = campaign_input("erased", identity_param="PROLIFIC_PID")
    assert client.post("/api/campaigns", json=given).status_code == 201
    await a_started_visit(database_url, "erased")
    assert any(PID in value for value in await stored(database_url))

    assert client.delete("/api/campaigns/erased/identities").json() == {"erased": 1}
    values = await stored(database_url)
    assert not [value for value in values if PID in value]
    # The start link still leads to the participant's oTree page (without its label).
    assert "https://otree.example/InitializeParticipant/p1" in values
