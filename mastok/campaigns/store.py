"""Reading and writing campaigns in the database."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Insert, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mastok.campaigns.markdown import consent_hash
from mastok.campaigns.rules import InvalidCampaign
from mastok.clock import utcnow
from mastok.db.tables import Campaign, CampaignSlug, Consent
from mastok.states import CampaignState

UNIQUE = ("namespace", "slug")
FORMER = "was {}'s slug: its old links lead there, so no other campaign may take it"


async def list_campaigns(session: AsyncSession) -> list[Campaign]:
    result = await session.scalars(select(Campaign).order_by(Campaign.created_at.desc()))
    return list(result)


async def get_campaign(
    session: AsyncSession, namespace: str, *, for_update: bool = False
) -> Campaign | None:
    """`for_update`: the row locked until the transaction ends (PostgreSQL; SQLite has no
    row locks and ignores it)."""
    query = select(Campaign).where(Campaign.namespace == namespace)
    return await session.scalar(query.with_for_update() if for_update else query)


async def get_campaign_by_slug(session: AsyncSession, slug: str) -> Campaign | None:
    """The campaign at `slug`, or the one it was the slug of (its old links lead there)."""
    campaign = await session.scalar(select(Campaign).where(Campaign.slug == slug))
    if campaign is not None:
        return campaign
    return await session.scalar(
        select(Campaign)
        .join(CampaignSlug, CampaignSlug.campaign_id == Campaign.id)
        .where(CampaignSlug.slug == slug)
    )


async def insert_campaign(session: AsyncSession, values: Mapping[str, Any]) -> Campaign:
    await _check_unique(session, values, exclude_id=None)
    campaign = Campaign(**values, state=CampaignState.PAUSED, started_sessions=0)
    session.add(campaign)
    await _keep_consent(session, campaign.consent)
    await _commit(session, values, campaign)
    return campaign


async def update_campaign(
    session: AsyncSession, campaign: Campaign, values: Mapping[str, Any]
) -> Campaign:
    await _check_unique(session, values, exclude_id=campaign.id)
    for key, value in values.items():
        setattr(campaign, key, value)
    await _keep_consent(session, campaign.consent)
    await _commit(session, values, campaign)
    return campaign


async def _check_unique(
    session: AsyncSession, values: Mapping[str, Any], exclude_id: int | None
) -> None:
    wanted = {key: values[key] for key in UNIQUE if key in values}
    if not wanted:
        return
    query = select(Campaign).where(or_(*(getattr(Campaign, k) == v for k, v in wanted.items())))
    if exclude_id is not None:
        query = query.where(Campaign.id != exclude_id)
    errors = {
        key: "is already used by another campaign"
        for other in await session.scalars(query)
        for key, value in wanted.items()
        if getattr(other, key) == value
    }
    if "slug" in wanted and "slug" not in errors:
        former = (
            select(Campaign.namespace)
            .join(CampaignSlug, CampaignSlug.campaign_id == Campaign.id)
            .where(CampaignSlug.slug == wanted["slug"])
        )
        if exclude_id is not None:
            former = former.where(Campaign.id != exclude_id)
        owner = await session.scalar(former)
        if owner is not None:
            errors["slug"] = FORMER.format(owner)
    if errors:
        raise InvalidCampaign(dict(sorted(errors.items())))


async def _commit(session: AsyncSession, values: Mapping[str, Any], campaign: Campaign) -> None:
    """Written with its slug kept for it. Another request may have taken a name between the
    check and the write: nothing is written then."""
    try:
        await session.flush()  # the campaign's id, for its slug
        kept = await session.get(CampaignSlug, campaign.slug)
        if kept is None:
            session.add(CampaignSlug(slug=campaign.slug, campaign_id=campaign.id))
        taken = kept is not None and kept.campaign_id != campaign.id
        if not taken:
            await session.commit()
    except IntegrityError:
        taken = True
    if taken:
        await session.rollback()
        raise InvalidCampaign(
            {key: "is already used by another campaign" for key in UNIQUE if key in values}
        ) from None


async def _keep_consent(session: AsyncSession, text: str) -> None:
    """Each version of a consent text once, by hash: visits say which one they agreed to."""
    row = {"hash": consent_hash(text), "text": text, "created_at": utcnow()}
    dialect = session.get_bind().dialect.name
    statement: Insert
    if dialect == "postgresql":
        statement = postgresql.insert(Consent).values(row).on_conflict_do_nothing()
    else:
        statement = sqlite.insert(Consent).values(row).on_conflict_do_nothing()
    await session.execute(statement)
