"""Creating a campaign's oTree sessions, safely retried.

oTree has no idempotency key, but a session's label is free text and listed: each session is
labelled with its mastok id `mk:{namespace}:{n}`, and a retry (after a timeout, a crash or a
failed write on mastok's side) first claims a session already created under that label.

Listing oTree's sessions costs as much as oTree has sessions (every study's, for ever), so the
label is looked up only when a session of that number may exist: not when this process has just
created the campaign's previous session without a hitch.
"""

from __future__ import annotations

from mastok.db.tables import Campaign
from mastok.otree import OTreeClient, OTreeError, Session
from mastok.web.views import public_otree_url


class StartFailed(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SessionStarter:
    def __init__(self, otree: OTreeClient, public_url: str) -> None:
        self.otree = otree
        self.public_url = public_url.rstrip("/")
        # Campaign id -> the one session number this process knows was never asked of oTree:
        # the one after the last session it created or claimed. Anything else (the first start
        # after mastok started, a retry after a failure) looks the label up first.
        self._fresh: dict[int, int] = {}

    @staticmethod
    def mastok_id(campaign: Campaign, number: int) -> str:
        return f"mk:{campaign.namespace}:{number}"

    @classmethod
    def label(cls, campaign: Campaign, number: int) -> str:
        """The oTree label: the mastok id and the campaign's uid, unique to this campaign."""
        return f"{cls.mastok_id(campaign, number)}:{campaign.uid}"

    def start_url(self, participant_code: str) -> str:
        return f"{self.public_url}/InitializeParticipant/{participant_code}"

    def public_admin_url(self, admin_url: str) -> str:
        return public_otree_url(admin_url, self.public_url)

    async def start(self, campaign: Campaign, number: int) -> Session:
        """The oTree session numbered `number` for this campaign, created if need be."""
        label = self.label(campaign, number)
        fresh = self._fresh.pop(campaign.id, None) == number
        try:
            existing = None if fresh else await self.otree.find_session_by_label(label)
            if existing is not None:
                session = await self.otree.get_session(existing.code)
            else:
                session = await self.otree.create_session(
                    campaign.otree_config_name,
                    campaign.per_session,
                    label=label,
                    modified_config={"mastok_id": self.mastok_id(campaign, number)},
                )
        except OTreeError as error:
            raise StartFailed(error.message) from None
        if len(session.participants) < campaign.per_session:
            raise StartFailed(
                f"oTree session {session.code} ({label}) has {len(session.participants)} "
                f"participants, {campaign.per_session} expected"
            )
        # If recording it fails, the retry asks for `number` again, which is not fresh.
        self._fresh[campaign.id] = number + 1
        return session
