"""What the waiting room hears and says: its campaign, its events and its effects.

`room.py` holds the rules that turn one into the other; `runner.py` feeds the events in and
carries the effects out. Sockets are numbers the runner gives (`Conn`); participants are known
by their resume token.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from mastok.campaigns.grouping import parse_grouping
from mastok.campaigns.markdown import consent_hash, render, render_consent
from mastok.db.tables import Campaign
from mastok.live.protocol import Kind
from mastok.states import CampaignState, Outcome, RoomState, Step

Conn = int
DEFAULT_GROUP = "default"
Params = tuple[tuple[str, str], ...]  # query parameters, in the campaign's order


# -- what the room knows of its campaign -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Texts:
    """The campaign's texts as participants see them (HTML, rendered once per edit)."""

    consent: str
    instructions: str
    pending: str
    paused: str
    completed: str


@dataclass(frozen=True, slots=True)
class Exit:
    """What a campaign gives a visit that ends a given way (either may be None)."""

    code: str | None
    url: str | None  # may hold placeholders: {code}, {outcome}, captured parameters


@dataclass(frozen=True, slots=True)
class RoomCampaign:
    namespace: str
    state: CampaignState
    per_session: int
    max_sessions: int
    concurrent_sessions: int
    session_duration: timedelta
    waiting_limit: timedelta
    join_once: bool
    started_sessions: int
    groups: tuple[tuple[str, int], ...]  # (label, size): the default group without a grouping
    grouping: str | None  # the Grouping frame's payload: the grouping's text, as in Go Mastok
    texts: Texts
    consent_hash: str = ""
    identity_param: str = ""  # the query parameter holding the platform id ("": none)
    capture_params: tuple[str, ...] = ()
    require_identity: bool = False
    exits: tuple[tuple[Outcome, Exit], ...] = ()
    leave_after: timedelta = timedelta(0)
    ready_check: timedelta = timedelta(0)  # 0: no ready check
    identity_erasures: int = 0  # the campaign's identities erased so many times

    @classmethod
    def of(cls, campaign: Campaign) -> RoomCampaign:
        grouping = parse_grouping(campaign.grouping or "")
        groups = (
            tuple((g.label, g.size) for g in grouping.groups)
            if grouping
            else ((DEFAULT_GROUP, campaign.per_session),)
        )
        return cls(
            namespace=campaign.namespace,
            state=CampaignState(campaign.state),
            per_session=campaign.per_session,
            max_sessions=campaign.max_sessions,
            concurrent_sessions=campaign.concurrent_sessions,
            session_duration=timedelta(minutes=campaign.session_duration),
            waiting_limit=timedelta(minutes=campaign.waiting_limit),
            join_once=bool(campaign.join_once),
            started_sessions=campaign.started_sessions,
            groups=groups,
            grouping=grouping.as_text() if grouping else None,
            texts=Texts(
                consent=render_consent(campaign.consent),
                instructions=render(campaign.instructions),
                pending=render(campaign.pending),
                paused=render(campaign.paused),
                completed=render(campaign.completed),
            ),
            consent_hash=consent_hash(campaign.consent),
            identity_param=campaign.identity_param or "",
            capture_params=tuple(campaign.capture_params or ()),
            require_identity=bool(campaign.require_identity),
            exits=tuple(
                (Outcome(outcome), Exit(exit_.get("code"), exit_.get("url")))
                for outcome, exit_ in (campaign.exits or {}).items()
            ),
            leave_after=timedelta(seconds=campaign.leave_after_seconds or 0),
            ready_check=timedelta(seconds=campaign.ready_check_seconds or 0),
            identity_erasures=campaign.identity_erasures or 0,
        )

    @property
    def declared_params(self) -> tuple[str, ...]:
        """The query parameters recorded with a visit: the identity's, then those captured."""
        return tuple(dict.fromkeys(n for n in (self.identity_param, *self.capture_params) if n))

    def exit_for(self, outcome: Outcome) -> Exit | None:
        return dict(self.exits).get(outcome)

    @property
    def labels(self) -> list[str]:
        return [label for label, _ in self.groups]

    def pending_bound(self, group_size: int) -> int:
        """As in Mastok: a group's pending pool holds enough for every session left, and one."""
        return group_size * (self.max_sessions - self.started_sessions + 1)


@dataclass(frozen=True, slots=True)
class Rules:
    """The room's settings that are not the campaign's."""

    grace: timedelta  # how long a participant whose socket dropped keeps its place
    live_redirect: bool  # send people back to their live oTree session
    left_grace: timedelta = timedelta(seconds=3)  # the same after its page closed on leaving
    land_within: timedelta = timedelta(seconds=30)  # a socket that says nothing is closed


# -- events ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Opened:
    """A participant socket was accepted, with its URL's query parameters (bounded by the
    socket layer; the room keeps those its campaign declares)."""

    conn: Conn
    query: Params = ()


@dataclass(frozen=True, slots=True)
class Kept:
    """A participant socket kept open while this process took the leader lock back: the room
    was rebuilt from the database, and the socket comes into it with what the room before knew
    of it (its parameters, and its member's resume token if it had landed)."""

    conn: Conn
    query: Params = ()
    token: str | None = None


@dataclass(frozen=True, slots=True)
class Received:
    """A well-formed frame from a participant socket."""

    conn: Conn
    kind: str
    payload: Any = None


CLOSED_ON_LEAVING = 1000  # the close code mastok's join page sends when the person leaves it


@dataclass(frozen=True, slots=True)
class Closed:
    """A participant socket closed (or was closed), with the close code it got if any."""

    conn: Conn
    code: int | None = None


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed: places held too long expire, live sessions end, retries come due."""


@dataclass(frozen=True, slots=True)
class Edited:
    """An admin changed the campaign (its state included); the database has it already."""

    campaign: RoomCampaign


@dataclass(frozen=True, slots=True)
class Rebuilt:
    """The room was just built from the database (its first event): the campaign may have
    been edited while no room ran (through a standby, the leader dead), unseen by its people."""


@dataclass(frozen=True, slots=True)
class CreatedSession:
    code: str
    mastok_id: str
    admin_url: str
    participants: tuple[tuple[str, str], ...]  # (oTree participant code, start URL)


@dataclass(frozen=True, slots=True)
class SessionCreated:
    number: int
    session: CreatedSession


@dataclass(frozen=True, slots=True)
class SessionFailed:
    number: int
    message: str
    source: str = "oTree"  # what failed: oTree, or mastok recording the session


@dataclass(frozen=True, slots=True)
class OTreeAnswers:
    """oTree answered again while a failed creation waits for its retry: retry now."""


@dataclass(frozen=True, slots=True)
class SessionsFinished:
    """oTree shows every participant of these sessions (by number) finished."""

    numbers: tuple[int, ...]


Event = (
    Opened
    | Kept
    | Received
    | Closed
    | Tick
    | Edited
    | Rebuilt
    | SessionCreated
    | SessionFailed
    | OTreeAnswers
    | SessionsFinished
)


# -- effects ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    conn: Conn
    kind: Kind
    payload: Any = None


@dataclass(frozen=True, slots=True)
class SendAll:
    """The same frame to several sockets (encoded once)."""

    conns: tuple[Conn, ...]
    kind: Kind
    payload: Any = None


@dataclass(frozen=True, slots=True)
class Disconnect:
    """`Disconnect` with the reason, then close the socket."""

    conn: Conn
    reason: str


@dataclass(frozen=True, slots=True)
class Notify:
    """A frame for every supervisor (their State and sizes follow `Room.view()`)."""

    kind: Kind
    payload: Any = None


@dataclass(frozen=True, slots=True)
class Entrant:
    """What oTree learns of a member: its participant label and its participant vars."""

    label: str | None
    vars: tuple[tuple[str, Any], ...]


@dataclass(frozen=True, slots=True)
class CreateSession:
    """Create the campaign's oTree session `number`, or claim it if `look_up` (it may exist:
    it was asked of oTree before), with the `entrants` in participant order; report back with
    `SessionCreated` or `SessionFailed`."""

    number: int
    look_up: bool = False
    entrants: tuple[Entrant, ...] = ()


@dataclass(frozen=True, slots=True)
class Ask:
    """Session `number` is about to be asked of oTree (until it is recorded, it may exist)."""

    number: int


@dataclass(frozen=True, slots=True)
class AddParticipant:
    """A new visit; one turned away at once is written ended, with its `outcome`."""

    token: str
    browser_id: str | None
    identity: str | None = None
    params: Params = ()
    outcome: Outcome | None = None


@dataclass(frozen=True, slots=True)
class Consented:
    """The participant agreed to this version of the consent."""

    token: str
    consent_hash: str


@dataclass(frozen=True, slots=True)
class MarkReady:
    """The participant answered the ready check."""

    token: str


@dataclass(frozen=True, slots=True)
class Move:
    """Participants to another step (`group`, `queued_at` and the waiting `limit` set on
    entering the pools)."""

    tokens: tuple[str, ...]
    step: Step
    group: str | None = None
    queued_at: datetime | None = None
    limit: timedelta | None = None


@dataclass(frozen=True, slots=True)
class Lengthened:
    """These members' waiting limit is now `limit` (the campaign's, longer than theirs)."""

    tokens: tuple[str, ...]
    limit: timedelta


@dataclass(frozen=True, slots=True)
class Leave:
    """The visits end, all the same way."""

    tokens: tuple[str, ...]
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class RecordSession:
    """The session, each member's participant (token, code, start URL), the campaign's count
    of started sessions, and Completed if it is the last."""

    number: int
    session: CreatedSession
    assignments: tuple[tuple[str, str, str], ...]
    complete: bool


@dataclass(frozen=True, slots=True)
class SessionsEnded:
    """These sessions (by number) finished before their time: they no longer count as live."""

    numbers: tuple[int, ...]


Persist = (
    Ask
    | AddParticipant
    | Consented
    | MarkReady
    | Move
    | Lengthened
    | Leave
    | RecordSession
    | SessionsEnded
)
Effect = Send | SendAll | Disconnect | Notify | CreateSession | Persist
PERSIST = (
    Ask,
    AddParticipant,
    Consented,
    MarkReady,
    Move,
    Lengthened,
    Leave,
    RecordSession,
    SessionsEnded,
)


@dataclass(frozen=True, slots=True)
class View:
    """What supervisors see of the room at any moment."""

    state: RoomState
    joining: str
    pending: str
