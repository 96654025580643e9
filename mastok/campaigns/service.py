"""Campaign administration: the rules, oTree's configs and the store, in one place for the
admin pages and the JSON API."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mastok.campaigns import rules, store, visits
from mastok.campaigns.rules import InvalidCampaign
from mastok.clock import iso
from mastok.db import Database
from mastok.db.tables import Campaign
from mastok.otree import OTreeClient, OTreeError, SessionConfig

ChangeListener = Callable[[Campaign], Awaitable[None]]
STALE = (
    "was changed since this form was opened (by another admin, or its room completed it): "
    "reload the page and make your changes again"
)


class CampaignNotFound(LookupError):
    pass


@dataclass(frozen=True)
class Edit:
    """A campaign edited: its fields as the edit found them (read in its transaction), and
    the campaign as it left it."""

    before: dict[str, Any]
    campaign: Campaign

    @property
    def after(self) -> dict[str, Any]:
        return CampaignService.as_fields(self.campaign)


class CampaignService:
    def __init__(self, db: Database, otree: OTreeClient, share_url_base: str) -> None:
        self.db = db
        self.otree = otree
        self.share_url_base = share_url_base
        self._listeners: list[ChangeListener] = []
        self._one_edit_at_a_time = asyncio.Lock()

    def on_change(self, listener: ChangeListener) -> None:
        """Call `listener` with every campaign after it is created or edited."""
        self._listeners.append(listener)

    async def all(self) -> list[Campaign]:
        async with self.db.session() as session:
            return await store.list_campaigns(session)

    async def get(self, namespace: str) -> Campaign:
        async with self.db.session() as session:
            campaign = await store.get_campaign(session, namespace)
        if campaign is None:
            raise CampaignNotFound(namespace)
        return campaign

    async def get_by_id(self, campaign_id: int) -> Campaign | None:
        async with self.db.session() as session:
            return await session.get(Campaign, campaign_id)

    async def get_by_slug(self, slug: str) -> Campaign | None:
        async with self.db.session() as session:
            return await store.get_campaign_by_slug(session, slug)

    async def create(self, raw: Mapping[str, Any]) -> Campaign:
        values = rules.validate_new(raw).model_dump()
        await self._check_config_exists(values["otree_config_name"])
        async with self.db.session() as session:
            campaign = await store.insert_campaign(session, values)
        await self._changed(campaign)
        return campaign

    async def update(
        self, namespace: str, changes: Mapping[str, Any], version: str | None = None
    ) -> Edit:
        """Apply `changes`; with `version` (an edit form's), only to the campaign it was read
        from: a form saves every field, and would undo a change saved since it was opened.

        The campaign is read, checked and written by one edit at a time (its row locked on
        PostgreSQL, this process's edits in turn on SQLite, one process a file): two edits
        each valid alone must not together break a rule (Running with no session left)."""
        async with self._one_edit_at_a_time, self.db.session() as session:
            campaign = await store.get_campaign(session, namespace, for_update=True)
            if campaign is None:
                raise CampaignNotFound(namespace)
            if version is not None and version != self.version(campaign):
                raise InvalidCampaign({"campaign": STALE})
            before = self.as_fields(campaign)
            values = rules.validate_update(before, changes).model_dump()
            campaign = await store.update_campaign(session, campaign, values)
        await self._changed(campaign)
        return Edit(before, campaign)

    async def erase_identities(self, campaign: Campaign) -> int:
        """`visits.erase_identities`, then the campaign's room is told, as of an edit: it
        forgets the identities it remembers too."""
        erased = await visits.erase_identities(self.db, campaign)
        changed = await self.get_by_id(campaign.id)
        if changed is not None:
            await self._changed(changed)
        return erased

    async def _check_config_exists(self, name: str) -> None:
        """Reject a config oTree doesn't have; when oTree can't be asked, trust the admin."""
        try:
            configs = await self.otree.list_configs()
        except OTreeError:
            return
        if name not in {config.name for config in configs}:
            known = ", ".join(sorted(config.name for config in configs)) or "none"
            raise InvalidCampaign(
                {"otree_config_name": f"oTree has no session config {name!r} (it has: {known})"}
            )

    async def otree_configs(self) -> list[SessionConfig]:
        return await self.otree.list_configs()

    async def _changed(self, campaign: Campaign) -> None:
        for listener in self._listeners:
            await listener(campaign)

    @staticmethod
    def as_fields(campaign: Campaign) -> dict[str, Any]:
        """The campaign's fields as the rules name them."""
        names = set(rules.CampaignUpdate.model_fields) | set(rules.IMMUTABLE)
        names |= {"started_sessions"}
        return {name: getattr(campaign, name) for name in sorted(names)}

    @classmethod
    def version(cls, campaign: Campaign) -> str:
        """The campaign's fields as an admin sets them (and its state), hashed: the room's
        count of sessions started changes it not."""
        fields = cls.as_fields(campaign)
        del fields["started_sessions"]
        text = json.dumps(fields, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def share_url(self, campaign: Campaign) -> str:
        return self.share_url_base + campaign.slug

    def to_json(self, campaign: Campaign) -> dict[str, Any]:
        return {
            **self.as_fields(campaign),
            "uid": campaign.uid,
            "share_url": self.share_url(campaign),
            "created_at": iso(campaign.created_at),
            "updated_at": iso(campaign.updated_at),
        }
