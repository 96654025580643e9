"""Creating a campaign's oTree sessions, safely retried.

oTree has no idempotency key, but a session's label is free text and listed: each session is
labelled with its mastok id `mk:{namespace}:{n}`, and a retry (after a timeout, a crash or a
failed write on mastok's side) first claims a session already created under that label.

Listing oTree's sessions costs as much as oTree has sessions (every study's, for ever), so the
label is looked up only when a session of that number may exist: when it was asked of oTree
before and not recorded (the room knows: it writes each number down before asking), and then
in a listing shared with every other campaign looking at the same time.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from mastok.db.tables import Campaign
from mastok.live.events import CreatedSession, Entrant
from mastok.otree import OTreeClient, OTreeError, OTreeUnreachable, Session, SessionSummary
from mastok.otree.labels import label, mastok_id
from mastok.otree.listing import SharedListing
from mastok.otree.urls import http_url, public_otree_url, start_url
from mastok.tasks import Spawn


class StartFailed(Exception):
    def __init__(self, message: str, unreachable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.unreachable = unreachable  # oTree did not answer (rather than answered no)


@dataclass(frozen=True, slots=True)
class StartSpec:
    """What creating a campaign's session needs to know of it (taken when the pool is set
    aside: an edit meanwhile applies to the next session)."""

    campaign_id: int
    namespace: str
    uid: str
    otree_config_name: str
    per_session: int

    @classmethod
    def of(cls, campaign: Campaign) -> StartSpec:
        return cls(
            campaign.id,
            campaign.namespace,
            campaign.uid,
            campaign.otree_config_name,
            campaign.per_session,
        )


class SessionStarter:
    def __init__(self, otree: OTreeClient, public_url: str, spawn: Spawn | None = None) -> None:
        self.otree = otree
        self.public_url = public_url.rstrip("/")
        self.listing = SharedListing(otree, spawn)

    async def otree_answers(self) -> bool:
        try:
            await self.otree.version()
        except OTreeError:
            return False
        return True

    async def start(
        self, spec: StartSpec, number: int, look_up: bool, entrants: tuple[Entrant, ...] = ()
    ) -> CreatedSession:
        """The oTree session numbered `number` for this campaign: claimed if `look_up` finds
        it, else created; each participant's vars set (the `entrants`, in participant order)
        before anyone is given its start URL."""
        if not http_url(self.public_url):
            raise StartFailed(
                "oTree's public URL (MASTOK_OTREE_PUBLIC_URL) is not an http(s) URL: "
                "participants would get start links that do not work"
            )
        name = label(spec.namespace, number, spec.uid)
        try:
            existing = await self._claimable(name, spec.per_session) if look_up else None
            if existing is not None:
                session = await self.otree.get_session(existing.code)
            else:
                session = await self.otree.create_session(
                    spec.otree_config_name,
                    spec.per_session,
                    label=name,
                    modified_config={"mastok_id": mastok_id(spec.namespace, number)},
                )
            codes = _seats(session, name, spec.per_session)
            await asyncio.gather(
                *(
                    self.otree.set_participant_vars(code, dict(entrant.vars))
                    for code, entrant in zip(codes, entrants, strict=False)
                    if entrant.vars
                )
            )
        except OTreeError as error:
            raise StartFailed(error.message, isinstance(error, OTreeUnreachable)) from None
        return CreatedSession(
            code=session.code,
            mastok_id=mastok_id(spec.namespace, number),
            admin_url=public_otree_url(session.admin_url, self.public_url),
            participants=tuple(
                (p.code, start_url(self.public_url, p.code, entrant.label))
                for p, entrant in zip(
                    session.participants, _padded(entrants, len(session.participants)), strict=True
                )
            ),
        )

    async def _claimable(self, name: str, size: int) -> SessionSummary | None:
        """The latest session labelled `name` that seats `size` and nobody has entered.

        One asked before an edit of per_session cannot seat this pool (a retry failed on it
        for ever, or sent the pool into a game waiting for players who never come). One that
        somebody entered was given out by another history of this campaign: a database
        restored from a backup, or copied, numbers its sessions again. Its start links were
        never sent from this one (they are sent only once the session is recorded), so
        claiming it would send the pool into other people's game. oTree lists its sessions
        oldest first."""
        sessions = await self.listing.sessions()
        for summary in reversed(sessions):
            seats = summary.label == name and _may_seat(summary, size)
            if seats and await self._unentered(summary.code):
                return summary
        return None

    async def _unentered(self, code: str) -> bool:
        """Nobody has opened a start link of session `code` (each participant on page 0)."""
        return all(p.index == 0 for p in await self.otree.session_progress(code))


def _may_seat(summary: SessionSummary, size: int) -> bool:
    """Whether a listed session may seat `size`: its size, or none listed (the session read
    in full is checked again, `_seats`: claiming it is no second session made)."""
    return summary.num_participants in (size, 0)


def _seats(session: Session, name: str, size: int) -> list[str]:
    """The session's participant codes, if each can be given to one person: at least `size`
    of them, none empty, none twice (two people would share one participant)."""
    codes = [p.code for p in session.participants]
    if len(codes) < size:
        raise StartFailed(
            f"oTree session {session.code} ({name}) has {len(codes)} participants, {size} expected"
        )
    if "" in codes or len(set(codes)) < len(codes):
        raise StartFailed(f"oTree session {session.code} ({name}) has unusable participant codes")
    return codes


def _padded(entrants: tuple[Entrant, ...], count: int) -> tuple[Entrant, ...]:
    """One entrant per participant (oTree's beyond the pool get no label and no vars)."""
    return (entrants + (Entrant(None, ()),) * count)[:count]
