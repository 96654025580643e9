"""A campaign's waiting room as rules with no I/O: an event and the time in, effects out.

Everything that decides who waits where, who is told what and when a session starts lives
here, and nothing else does: docs/protocol.md is this module in words. The room does no I/O:
no socket, no database, no oTree, no clock, no asyncio. Its driver (`runner.py`) feeds it one
event at a time with the time (`handle(event, now)`), writes the `Persist` effects it returns
in one transaction, then carries out the others (frames, closes, a session to create). If the
writes fail, the driver calls `rollback()` and the room is as it was before the event;
otherwise it calls `commit()`.

The events, effects and the campaign as the room sees it are in `events.py`. Each group has a
joining pool and a pending pool: lists in arrival order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from mastok.campaigns.exits import fill_url
from mastok.live.events import (
    CLOSED_ON_LEAVING,
    DEFAULT_GROUP,
    AddParticipant,
    Ask,
    Closed,
    Conn,
    Consented,
    CreatedSession,
    CreateSession,
    Disconnect,
    Edited,
    Effect,
    Entrant,
    Event,
    Kept,
    Leave,
    Lengthened,
    MarkReady,
    Move,
    Notify,
    Opened,
    OTreeAnswers,
    Params,
    Rebuilt,
    Received,
    RecordSession,
    RoomCampaign,
    Rules,
    Send,
    SendAll,
    SessionCreated,
    SessionFailed,
    SessionsEnded,
    SessionsFinished,
    Tick,
    View,
)
from mastok.live.journal import Journal
from mastok.live.protocol import MAX_FINGERPRINT, MAX_PARAM, Kind, Reason, redirect
from mastok.otree.urls import unlabelled
from mastok.states import CampaignState, Outcome, RoomState, Step

RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 60.0)
# The Disconnect each way of ending sends (a redirect sends its URL; someone away, nothing).
REASONS = {
    Outcome.STARTED: Reason.START,
    Outcome.TIMEOUT: Reason.TIMEOUT,
    Outcome.FULL: Reason.FULL,
    Outcome.PAUSED: Reason.PAUSED,
    Outcome.COMPLETED: Reason.COMPLETED,
    Outcome.REJECTED: Reason.LANDING_FAILED,  # as Go Mastok tells join_once refusals
    Outcome.LEFT: Reason.LEFT,
    Outcome.NOT_READY: Reason.NOT_READY,
    Outcome.MISSING_ID: Reason.MISSING_ID,
    Outcome.LANDING_FAILED: Reason.LANDING_FAILED,
    Outcome.AWAY: Reason.AWAY,
}
# The visits a campaign's end ends, by their outcome; read the other way, each end's outcome.
CAMPAIGN_ENDS = {Outcome.PAUSED: CampaignState.PAUSED, Outcome.COMPLETED: CampaignState.COMPLETED}
END_OUTCOMES = {state: outcome for outcome, state in CAMPAIGN_ENDS.items()}


def key_of(identity: str | None, browser_id: str | None) -> str:
    """Who someone is to join_once and live redirects: its platform identity if it came with
    one, else its browser id (prefixed: one can never pass for the other)."""
    return f"id:{identity}" if identity else f"browser:{browser_id or ''}"


def ids_of(members: Iterable[Member]) -> dict[str, tuple[str, ...]]:
    """The members' tokens by who they are (`key_of`), each key's in the members' order."""
    ids: dict[str, tuple[str, ...]] = {}
    for member in members:
        ids[member.key] = (*ids.get(member.key, ()), member.token)
    return ids


def is_identity_key(key: str) -> bool:
    """Whether a `key_of` is a platform identity's (else a browser id's)."""
    return key.startswith("id:")


# -- the room's state ------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class Member:
    """A participant in the room, from Land until its session starts or it leaves."""

    token: str
    browser_id: str
    step: Step
    seq: int  # arrival order in the room (the order in which they are told things)
    order: int = 0  # arrival order in the pools
    group: str | None = None
    conn: Conn | None = None
    away_until: datetime | None = None  # away (its socket closed): its place is kept until then
    waiting_since: datetime | None = None  # since it first entered the pools in this visit
    limit: timedelta = timedelta(0)  # its waiting limit from then, as its page was told it
    # In a pool set aside for its ready check or its session: out of the joining pool, kept
    # whatever happens to its socket until the session is recorded (or fails, and it goes back).
    reserved: bool = False
    ready: bool = False  # answered the ready check in progress
    identity: str | None = None  # its platform id
    params: Params = ()  # the query parameters its campaign captures
    consent_hash: str = ""  # the consent its page was shown: the one its Agree agrees to

    @property
    def key(self) -> str:
        return key_of(self.identity, self.browser_id)


@dataclass(frozen=True, slots=True)
class Starting:
    number: int
    members: tuple[Member, ...]


@dataclass(frozen=True, slots=True)
class Arrival:
    """A socket that has not landed yet: when it opened, and its URL's parameters."""

    opened_at: datetime
    params: Params = ()


@dataclass(frozen=True, slots=True)
class Check:
    """A full pool asked whether its members are there, until `deadline`."""

    members: tuple[Member, ...]
    deadline: datetime


@dataclass(frozen=True, slots=True)
class Retry:
    attempt: int
    at: datetime


@dataclass(frozen=True, slots=True)
class Past:
    """Someone's participation in a started session: for join_once and live redirects."""

    start_url: str
    started_at: datetime
    browser: str = ""  # `key_of` its browser id alone: its key once identities are erased


@dataclass(frozen=True, slots=True)
class Ended:
    """A visit that ended while its page was away: told if the page comes back by `until`."""

    outcome: Outcome
    params: Params
    until: datetime


@dataclass(frozen=True, slots=True)
class Waiting:
    """A participant the database has in the room (to restore it)."""

    token: str
    browser_id: str
    step: Step
    group: str | None
    queued_at: datetime | None
    identity: str | None = None
    params: Params = ()
    # Its waiting limit, as its page was told it (None: the campaign's).
    limit: timedelta | None = None


@dataclass(frozen=True, slots=True)
class Started:
    """A participant the database has in a started session (to restore it)."""

    token: str
    key: str  # `key_of` its identity and browser id
    start_url: str
    started_at: datetime
    browser: str = ""  # `key_of` its browser id alone


@dataclass(frozen=True, slots=True)
class Ending:
    """A visit the database has ended lately (to tell its page if it comes back)."""

    token: str
    outcome: Outcome
    params: Params
    ended_at: datetime


@dataclass(eq=False)
class Room:
    campaign: RoomCampaign
    rules: Rules
    new_token: Callable[[], str]
    members: dict[str, Member] = field(default_factory=dict)  # by token
    ids: dict[str, tuple[str, ...]] = field(default_factory=dict)  # key -> tokens
    sockets: dict[Conn, str | None] = field(default_factory=dict)  # -> token (None: not landed)
    arrivals: dict[Conn, Arrival] = field(default_factory=dict)  # sockets not landed
    joining: dict[str, list[Member]] = field(default_factory=dict)  # by group, arrival order
    pending: dict[str, list[Member]] = field(default_factory=dict)
    check: Check | None = None
    starting: Starting | None = None
    retry: Retry | None = None
    unavailable: bool = False
    deferred: RoomCampaign | None = None  # an edit waiting for the session being created
    asked: int | None = None  # the session number asked of oTree and not recorded yet
    # Sessions counting as live, by number: when each started. One stops counting at
    # session_duration, or earlier when oTree shows all its participants finished.
    live_sessions: dict[int, datetime] = field(default_factory=dict)
    past: dict[str, Past] = field(default_factory=dict)  # by key, the latest
    # Tokens of those whose session is live: a page that comes back gets its start URL.
    started_tokens: dict[str, Past] = field(default_factory=dict)
    # Tokens of those whose visit ended while they were away: a page that comes back gets its exit.
    ended_tokens: dict[str, Ended] = field(default_factory=dict)
    next_order: int = 0
    journal: Journal = field(default_factory=Journal)

    @classmethod
    def restore(
        cls,
        campaign: RoomCampaign,
        rules: Rules,
        new_token: Callable[[], str],
        waiting: Iterable[Waiting],
        started: Iterable[Started],
        live_sessions: Mapping[int, datetime],
        now: datetime,
        asked: int | None = None,
        ended: Iterable[Ending] = (),
    ) -> Room:
        """The room as the database has it (`waiting` in pool order); everyone is away until
        they come back, and the pages of visits `ended` within the grace are told if they do."""
        room = cls(campaign, rules, new_token, live_sessions=dict(live_sessions), asked=asked)
        for row in waiting:
            room.next_order += 1
            member = Member(
                row.token,
                row.browser_id,
                row.step,
                room.next_order,
                room.next_order,
                row.group,
                identity=row.identity,
                params=row.params,
            )
            member.away_until, member.waiting_since = now + rules.grace, row.queued_at
            member.limit = campaign.waiting_limit if row.limit is None else row.limit
            room.members[member.token] = member
            if row.step in (Step.JOINING, Step.PENDING) and row.group is not None:
                pools = room.joining if row.step == Step.JOINING else room.pending
                pools.setdefault(row.group, []).append(member)
        room.ids = ids_of(room.members.values())
        for past in started:
            room._remember(
                past.token, past.key, Past(past.start_url, past.started_at, past.browser)
            )
        for visit in ended:
            until = visit.ended_at + rules.grace
            room.ended_tokens[visit.token] = Ended(visit.outcome, visit.params, until)
        room.journal.commit()
        return room

    def _remember(self, token: str, key: str, past: Past) -> None:
        known = self.past.get(key)
        if known is None or known.started_at <= past.started_at:
            self.journal.put(self.past, key, past)
        self.journal.put(self.started_tokens, token, past)

    # -- the driver's side -------------------------------------------------------------------

    def handle(self, event: Event, now: datetime) -> list[Effect]:
        """The effects of `event` at `now`: call `commit()` once its `Persist` effects are
        written, `rollback()` if they could not be."""
        return _Turn(self, now).handle(event)

    def commit(self) -> None:
        self.journal.commit()

    def rollback(self, to: int = 0) -> None:
        """Back to the last commit, or to `to` (a `mark()` taken since)."""
        self.journal.rollback(to)

    def mark(self) -> int:
        """Where the room's changes since the last commit stand, for `rollback(to=...)`."""
        return len(self.journal)

    def view(self, now: datetime) -> View:
        return View(self.supervisor_state(now), self.joining_size(), self.pending_size())

    def kept(self, conn: Conn) -> Kept:
        """What this room knew of a socket, for the room rebuilt when the leader lock is
        taken back (this one halted, its sockets kept)."""
        token = self.sockets.get(conn)
        member = self.members.get(token) if token is not None else None
        arrival = self.arrivals.get(conn)
        params = member.params if member is not None else arrival.params if arrival else ()
        return Kept(conn, params, token)

    # -- what the room looks like ------------------------------------------------------------

    def pool(self, pools: dict[str, list[Member]], group: str) -> list[Member]:
        found = pools.get(group)
        if found is None:
            found = pools[group] = []  # an empty pool: no state, nothing to undo
        return found

    def live_count(self, now: datetime) -> int:
        since = now - self.campaign.session_duration
        starts = self.live_sessions.values()
        # Ended sessions leave at the next tick: between ticks none has ended, almost always.
        # `min` walks them in C; the count in Python took 235 steps a participant over 380
        # join flows into one campaign (cProfile), every turn asking the room's state.
        if not starts or min(starts) > since:
            return len(starts)
        return sum(1 for started in starts if started > since)

    def is_busy(self, now: datetime) -> bool:
        starting = 1 if self.starting is not None or self.check is not None else 0
        return self.live_count(now) + starting >= self.campaign.concurrent_sessions

    def public_state(self, now: datetime) -> RoomState:
        if self.campaign.state != CampaignState.RUNNING:
            return RoomState(self.campaign.state)
        return RoomState.BUSY if self.is_busy(now) else RoomState.RUNNING

    def supervisor_state(self, now: datetime) -> RoomState:
        if self.campaign.state == CampaignState.RUNNING and self.unavailable:
            return RoomState.UNAVAILABLE
        return self.public_state(now)

    def joining_size(self) -> str:
        count = sum(len(pool) for pool in self.joining.values())
        return f"{count}/{self.campaign.per_session}"

    def pending_size(self) -> str:
        count = sum(len(pool) for pool in self.pending.values())
        bound = sum(self.campaign.pending_bound(size) for _, size in self.campaign.groups)
        return f"{count}/{bound}"

    def presence(self) -> dict[str, bool]:
        """Whether each member (by token) is connected now, or away."""
        return {token: member.conn is not None for token, member in self.members.items()}

    def full_size(self) -> str:
        return f"{self.campaign.per_session}/{self.campaign.per_session}"

    def snapshot(self) -> dict[str, Any]:
        """Everything the room holds, as plain values (tests compare them)."""
        return {
            "campaign": self.campaign,
            "members": {token: _member_state(m) for token, m in self.members.items()},
            "ids": dict(self.ids),
            "sockets": dict(self.sockets),
            "arrivals": dict(self.arrivals),
            "check": None
            if self.check is None
            else ([m.token for m in self.check.members], self.check.deadline),
            "joining": {g: [m.token for m in pool] for g, pool in self.joining.items() if pool},
            "pending": {g: [m.token for m in pool] for g, pool in self.pending.items() if pool},
            "starting": None
            if self.starting is None
            else (self.starting.number, [m.token for m in self.starting.members]),
            "retry": self.retry,
            "unavailable": self.unavailable,
            "deferred": self.deferred,
            "asked": self.asked,
            "live_sessions": dict(self.live_sessions),
            "past": dict(self.past),
            "started_tokens": dict(self.started_tokens),
            "ended_tokens": dict(self.ended_tokens),
            "next_order": self.next_order,
        }


def _member_state(member: Member) -> tuple[Any, ...]:
    return (
        member.browser_id,
        member.identity,
        member.params,
        member.ready,
        member.step,
        member.seq,
        member.order,
        member.group,
        member.conn,
        member.away_until,
        member.waiting_since,
        member.limit,
        member.reserved,
        member.consent_hash,
    )


class _Turn:
    """One event's handling: the rules, the changes (through the room's journal), the effects."""

    def __init__(self, room: Room, now: datetime) -> None:
        self.room = room
        self.now = now
        self.journal = room.journal
        self.effects: list[Effect] = []

    @property
    def campaign(self) -> RoomCampaign:
        return self.room.campaign

    def handle(self, event: Event) -> list[Effect]:
        if not isinstance(event, Tick) and self.check_overdue():
            self.tick()  # that tick first: the event's effects are those it has after it
        match event:
            case Opened(conn, query):
                self.opened(conn, query)
            case Kept(conn, query, token):
                self.kept(conn, query, token)
            case Received(conn, kind, payload):
                self.received(conn, kind, payload)
            case Closed(conn, code):
                self.closed(conn, code)
            case Tick():
                self.tick()
            case Edited(campaign):
                self.edited(campaign)
            case Rebuilt():
                self.rebuilt()
            case SessionCreated(number, session):
                self.session_created(number, session)
            case SessionFailed(number, message, source):
                self.session_failed(number, message, source)
            case OTreeAnswers():
                self.otree_answers()
            case SessionsFinished(numbers):
                self.sessions_finished(numbers)
        return self.effects

    # -- telling -----------------------------------------------------------------------------

    def send(self, conn: Conn, kind: Kind, payload: Any = None) -> None:
        self.effects.append(Send(conn, kind, payload))

    def error(self, conn: Conn, message: str) -> None:
        self.send(conn, Kind.ERROR, message)

    def drop(self, conn: Conn, reason: str) -> None:
        """Disconnect a socket that has no place in the room (any more)."""
        self.journal.pop(self.room.sockets, conn)
        self.journal.pop(self.room.arrivals, conn)
        self.effects.append(Disconnect(conn, reason))

    def end_visit(self, conn: Conn, outcome: Outcome, params: Params, reason: str = "") -> None:
        """The visit on `conn` ends: its exit if the campaign gives one, then Disconnect."""
        exit_ = self.campaign.exit_for(outcome)
        if exit_ is not None:
            self.send(conn, Kind.EXIT, self.exit_payload(outcome, params))
        self.drop(conn, reason or REASONS[outcome])

    def exit_payload(self, outcome: Outcome, params: Params) -> dict[str, Any]:
        exit_ = self.campaign.exit_for(outcome)
        code = exit_.code if exit_ else None
        url = exit_.url if exit_ else None
        if url is not None:
            url = fill_url(url, {**dict(params), "code": code or "", "outcome": outcome})
        return {"outcome": outcome, "code": code, "url": url}

    def turn_away(
        self, conn: Conn, outcome: Outcome, browser_id: str | None = None, reason: str = ""
    ) -> None:
        """A socket with no member ends its visit at once: written down, told, closed."""
        params = self.params_of(conn)
        identity = self.identity_in(params)
        token = self.room.new_token()
        self.effects.append(AddParticipant(token, browser_id, identity, params, outcome))
        self.end_visit(conn, outcome, params, reason)

    def send_end(self, conn: Conn, state: CampaignState, params: Params | None) -> None:
        """The campaign's Paused or Completed text; the visit ends that way (`params`: its
        visit's, None for a socket with no visit: one is written down, ended)."""
        texts = self.campaign.texts
        text = texts.paused if state == CampaignState.PAUSED else texts.completed
        self.send(conn, Kind(state.value), text)
        outcome = END_OUTCOMES[state]
        if params is None:
            self.turn_away(conn, outcome)
        else:
            self.end_visit(conn, outcome, params)

    def params_of(self, conn: Conn) -> Params:
        arrival = self.room.arrivals.get(conn)
        return arrival.params if arrival is not None else ()

    def identity_in(self, params: Params) -> str | None:
        name = self.campaign.identity_param
        return dict(params).get(name) if name else None

    def declared(self, query: Params) -> Params:
        """The campaign's parameters in a socket's query: bounded, printable, others ignored."""
        given = dict(query)
        kept = []
        for name in self.campaign.declared_params:
            value = given.get(name, "").strip()
            if value and len(value) <= MAX_PARAM and value.isprintable():
                kept.append((name, value))
        return tuple(kept)

    def send_step(self, member: Member) -> None:
        """What a member sees of where it is (on entering a step, or on coming back)."""
        conn = member.conn
        if conn is None:
            return
        campaign = self.campaign
        if member.step == Step.LANDED:
            self.send_consent(member)
        elif member.step == Step.AGREED and campaign.grouping is not None:
            self.send(conn, Kind.GROUPING, campaign.grouping)
        elif member.step == Step.JOINING:
            self.send(conn, Kind.INSTRUCTIONS, campaign.texts.instructions)
            size = self.room.full_size() if member.reserved else self.room.joining_size()
            self.send(conn, Kind.JOINING_SIZE, size)
            self.send_waiting(member)
            check = self.room.check
            if check is not None and member in check.members:  # answered or not: a new page
                self.send(conn, Kind.READY_CHECK, _seconds(check.deadline - self.now))
        elif member.step == Step.PENDING:
            self.send(conn, Kind.PENDING, campaign.texts.pending)
            self.send_waiting(member)

    def send_consent(self, member: Member) -> None:
        if member.conn is not None:
            self.journal.set(member, "consent_hash", self.campaign.consent_hash)
            self.send(member.conn, Kind.CONSENT, self.campaign.texts.consent)

    def send_waiting(self, member: Member) -> None:
        """How long the member has waited, its limit, and when it may leave."""
        if member.conn is None or member.waiting_since is None:
            return
        campaign = self.campaign
        payload = {
            "waited": _seconds(self.now - member.waiting_since),
            "limit": _seconds(member.limit),
            "leave_after": _seconds(campaign.leave_after),
        }
        self.send(member.conn, Kind.WAITING, payload)

    def tell_joining_sizes(self, told: Sequence[Member] = ()) -> None:
        """JoiningSize to everyone present in the joining pools, but those just `told` (as
        in Go Mastok, whatever `show_nb_participants`: the page decides what to show)."""
        conns = tuple(
            member.conn
            for pool in self.room.joining.values()
            for member in pool
            if member.conn is not None and member not in told
        )
        if conns:
            self.effects.append(SendAll(conns, Kind.JOINING_SIZE, self.room.joining_size()))

    def tell_pool_full(self, pool: Sequence[Member], told: Sequence[Member] = ()) -> None:
        """A reserved pool's members see it full (they are out of the joining pool now)."""
        conns = tuple(m.conn for m in pool if m.conn is not None and m not in told)
        if conns:
            self.effects.append(SendAll(conns, Kind.JOINING_SIZE, self.room.full_size()))

    # -- participants ------------------------------------------------------------------------

    def opened(self, conn: Conn, query: Params) -> None:
        params = self.declared(query)
        self.journal.put(self.room.arrivals, conn, Arrival(self.now, params))
        state = self.room.public_state(self.now)
        ended = state in (RoomState.PAUSED, RoomState.COMPLETED)
        if ended and not self.pages_to_come_back():
            self.send_end(conn, CampaignState(state.value), None)
            return
        if not ended and self.campaign.require_identity and self.identity_in(params) is None:
            self.turn_away(conn, Outcome.MISSING_ID)
            return
        self.journal.put(self.room.sockets, conn, None)
        self.send(conn, Kind.STATE, state)

    def pages_to_come_back(self) -> bool:
        """Whether a page may come back, in a campaign paused or completed since, for what it
        is owed: its live session's start URL (with its token, or landing as the same person),
        its place in the pool whose session is being created, or the ending of a visit that
        ended while it was away (its own exit, not the pause's)."""
        if self.room.starting is not None:
            return True
        if any(ended.until > self.now for ended in self.room.ended_tokens.values()):
            return True
        since = self.now - self.campaign.session_duration
        return any(past.started_at > since for past in self.room.started_tokens.values())

    def end_if_not_running(self, conn: Conn) -> bool:
        """A socket kept open in a paused or completed campaign for someone coming back to its
        session, and not for that: the campaign's end. False while it runs."""
        state = self.room.public_state(self.now)
        if state not in (RoomState.PAUSED, RoomState.COMPLETED):
            return False
        self.send_end(conn, CampaignState(state.value), None)
        return True

    def kept(self, conn: Conn, query: Params, token: str | None) -> None:
        """Its member's place again, on the same socket, as if the page had come back with its
        token (no State first: the page would answer it with a Resume of its own). Without a
        member (never landed, or gone meanwhile), or with the campaign not running, it is a
        socket just opened: the page lands, resumes or is told, as after a reconnection."""
        member = self.room.members.get(token) if token is not None else None
        if member is None and token is not None and self.started(conn, token):
            return  # recorded before its pool was told (the lock lost): told now
        ended = self.room.ended_tokens.get(token) if token is not None else None
        if token is not None and ended is not None and ended.outcome in CAMPAIGN_ENDS:
            # Its visit ended with the campaign while the lock was lost (the room rebuilt
            # ended it): told as those present then were, in the same visit.
            self.journal.pop(self.room.ended_tokens, token)
            self.send_end(conn, CAMPAIGN_ENDS[ended.outcome], ended.params)
            return
        state = self.room.public_state(self.now)
        closed = state in (RoomState.PAUSED, RoomState.COMPLETED)
        if member is None or (closed and not member.reserved):  # a pool being started: its place
            self.opened(conn, query)
            return
        if member.conn is not None and member.conn != conn:
            self.drop(member.conn, Reason.REPLACED)
        self.come_back(conn, member)

    def received(self, conn: Conn, kind: str, payload: Any) -> None:
        if conn not in self.room.sockets:
            return  # dropped meanwhile
        if kind == Kind.LAND:
            self.land(conn, payload)
        elif kind == Kind.RESUME:
            self.resume(conn, payload)
        elif kind == Kind.AGREE:
            self.agree(conn)
        elif kind == Kind.CONNECT:
            self.connect(conn, payload)
        elif kind == Kind.LEAVE:
            self.leave_on_request(conn)
        elif kind == Kind.READY:
            self.ready(conn)
        else:
            self.error(conn, f"participants cannot send {kind!r}")

    def member_of(self, conn: Conn) -> Member | None:
        token = self.room.sockets.get(conn)
        return None if token is None else self.room.members.get(token)

    def land(self, conn: Conn, payload: Any) -> None:
        if self.room.sockets[conn] is not None:
            self.error(conn, "already landed")
            return
        if not isinstance(payload, str) or not payload.strip() or len(payload) > MAX_FINGERPRINT:
            self.turn_away(conn, Outcome.LANDING_FAILED)
            return
        browser_id = payload.strip()
        params = self.params_of(conn)
        identity = self.identity_in(params)
        key = key_of(identity, browser_id)
        past = self.room.past.get(key)
        if (
            past is not None
            and self.room.rules.live_redirect
            and past.started_at > self.now - self.campaign.session_duration
        ):
            self.turn_away(conn, Outcome.REDIRECTED, browser_id, redirect(past.start_url))
            return
        same = [self.room.members[token] for token in self.room.ids.get(key, ())]
        away = [m for m in same if m.conn is None]
        # In a campaign paused or completed, a place in the pool being started is all there is.
        if not any(m.reserved for m in away) and self.end_if_not_running(conn):
            return
        taken = any(m.conn is not None for m in same)  # not to be taken over
        if self.campaign.join_once and (past is not None or taken):
            self.turn_away(conn, Outcome.REJECTED, browser_id)
            return
        if away:  # a page that lost its token (Go Mastok's never keeps one): its place back,
            # its seat in a pool being started first (else the newest)
            self.journal.pop(self.room.arrivals, conn)
            self.come_back(conn, max(away, key=_reserved_then_seq))
            return
        token = self.room.new_token()
        self.journal.set(self.room, "next_order", self.room.next_order + 1)
        member = Member(
            token,
            browser_id,
            Step.LANDED,
            seq=self.room.next_order,
            conn=conn,
            identity=identity,
            params=params,
        )
        self.add_member(member)
        self.journal.pop(self.room.arrivals, conn)
        self.journal.put(self.room.sockets, conn, token)
        self.effects.append(AddParticipant(token, browser_id, identity, params))
        self.send(conn, Kind.RESUME, token)
        self.send_consent(member)

    def add_member(self, member: Member) -> None:
        self.journal.put(self.room.members, member.token, member)
        tokens = self.room.ids.get(member.key, ())
        self.journal.put(self.room.ids, member.key, (*tokens, member.token))

    def forget_member(self, member: Member) -> None:
        self.journal.pop(self.room.members, member.token)
        tokens = tuple(t for t in self.room.ids.get(member.key, ()) if t != member.token)
        if tokens:
            self.journal.put(self.room.ids, member.key, tokens)
        else:
            self.journal.pop(self.room.ids, member.key)

    def resume(self, conn: Conn, token: Any) -> None:
        if self.room.sockets[conn] is not None:
            self.error(conn, "already landed")
            return
        member = self.room.members.get(token) if isinstance(token, str) else None
        ended = self.room.ended_tokens.get(token) if isinstance(token, str) else None
        if ended is not None:
            self.journal.pop(self.room.ended_tokens, token)
            self.end_visit(conn, ended.outcome, ended.params)
            return
        if member is None:
            if isinstance(token, str) and self.started(conn, token):
                return
            if not self.end_if_not_running(conn):
                self.error(conn, "unknown or expired resume token: Land again")
            return
        if member.conn is not None and member.conn != conn:
            self.drop(member.conn, Reason.REPLACED)
        self.journal.pop(self.room.arrivals, conn)
        self.come_back(conn, member)

    def started(self, conn: Conn, token: str) -> bool:
        """If `token`'s session is live (started while its page was away, or before its pool
        was told), its start URL on `conn`, which is then done; False if it has none."""
        past = self.room.started_tokens.get(token)
        if past is None or past.started_at <= self.now - self.campaign.session_duration:
            return False
        self.send(conn, Kind.STARTING, past.start_url)
        self.drop(conn, Reason.START)
        return True

    def come_back(self, conn: Conn, member: Member) -> None:
        """The member's place, back on this socket: where it was, and a pool may be ready."""
        self.journal.set(member, "conn", conn)
        self.journal.set(member, "away_until", None)
        self.journal.put(self.room.sockets, conn, member.token)
        self.send(conn, Kind.RESUME, member.token)
        self.send_step(member)
        self.start_sessions()

    def agree(self, conn: Conn) -> None:
        member = self.member_of(conn)
        if member is None or member.step != Step.LANDED:
            self.error(conn, "Agree comes once, after Land")
            return
        shown = member.consent_hash or self.campaign.consent_hash
        self.effects.append(Consented(member.token, shown))
        if self.campaign.grouping is None:
            self.enter_room(member, DEFAULT_GROUP)
            return
        self.journal.set(member, "step", Step.AGREED)
        self.effects.append(Move((member.token,), Step.AGREED))
        self.send(conn, Kind.GROUPING, self.campaign.grouping)

    def connect(self, conn: Conn, label: Any) -> None:
        member = self.member_of(conn)
        if member is None or member.step != Step.AGREED or self.campaign.grouping is None:
            self.error(conn, "Connect comes once, after Agree and Grouping")
            return
        if not isinstance(label, str) or label not in self.campaign.labels:
            self.error(conn, "Connect needs one of the Grouping labels")
            return
        self.enter_room(member, label)

    def enter_room(self, member: Member, group: str) -> None:
        """Into the group's joining pool if there is room, else pending, else out (Full)."""
        size = dict(self.campaign.groups)[group]
        joining = self.room.pool(self.room.joining, group)
        pending = self.room.pool(self.room.pending, group)
        if len(joining) < size and not self.room.is_busy(self.now):
            step, pool = Step.JOINING, joining
        elif len(pending) < self.campaign.pending_bound(size):
            step, pool = Step.PENDING, pending
        else:
            self.leave([member], Outcome.FULL)
            return
        self.start_waiting(member)
        self.journal.set(member, "group", group)
        self.journal.set(member, "step", step)
        self.queue(pool, member)
        queued_at, limit = member.waiting_since, member.limit
        self.effects.append(Move((member.token,), step, group, queued_at, limit))
        reserved = self.reserve()  # first, so that its members are told the pool is full once
        self.send_step(member)
        if step == Step.JOINING:
            self.tell_joining_sizes(told=[member])
        if reserved:
            self.tell_pool_full(reserved, told=[member])
            self.ask_ready(reserved, told=[member])
            self.promote()

    def start_waiting(self, member: Member) -> None:
        """A member's wait and its place in line begin when it first enters the pools in its
        visit: one that chooses again (its group gone) keeps both, its limit counting on."""
        if member.waiting_since is not None:
            return
        self.journal.set(self.room, "next_order", self.room.next_order + 1)
        self.journal.set(member, "order", self.room.next_order)
        self.journal.set(member, "waiting_since", self.now)
        self.journal.set(member, "limit", self.campaign.waiting_limit)

    def queue(self, pool: list[Member], member: Member) -> None:
        """Into `pool` at its place in line: last, but for one that chose again."""
        if pool and pool[-1].order > member.order:
            self.journal.replace(pool, sorted([*pool, member], key=_order))
        else:
            self.journal.append(pool, member)

    def closed(self, conn: Conn, code: int | None) -> None:
        if conn not in self.room.sockets:
            return
        token = self.journal.pop(self.room.sockets, conn)
        self.journal.pop(self.room.arrivals, conn)
        member = None if token is None else self.room.members.get(token)
        if member is not None and member.conn == conn:
            rules = self.room.rules
            # Closed by the page on leaving (a reload, mostly): a short grace. Anything else
            # (a drop, a tab sent to the background on a phone) may come back later.
            grace = rules.left_grace if code == CLOSED_ON_LEAVING else rules.grace
            self.journal.set(member, "conn", None)
            self.journal.set(member, "away_until", self.now + grace)

    def leave(self, leaving: Sequence[Member], outcome: Outcome) -> None:
        """Out of the room for good: recorded, and told if present. The pools do not move up
        here: the caller moves them once everyone leaving has left."""
        if not leaving:
            return
        gone = {id(member) for member in leaving}
        for member in leaving:
            self.forget_member(member)
            if member.conn is not None:
                self.end_visit(member.conn, outcome, member.params)
            elif outcome != Outcome.AWAY:  # one away loses its place silently
                until = self.now + self.room.rules.grace
                ended = Ended(outcome, member.params, until)
                self.journal.put(self.room.ended_tokens, member.token, ended)
        for pools in (self.room.joining, self.room.pending):
            for pool in pools.values():
                if any(id(member) in gone for member in pool):
                    self.journal.replace(pool, [m for m in pool if id(m) not in gone])
        self.effects.append(Leave(tuple(m.token for m in leaving), outcome))

    def leave_on_request(self, conn: Conn) -> None:
        """The Leave frame: the visit ends `left`, once the campaign's leave_after has passed
        in the pools; a pool being asked whether it is ready goes back without the leaver."""
        member = self.member_of(conn)
        if member is None:
            self.error(conn, "Leave comes after Land")
            return
        if self.room.starting is not None and member in self.room.starting.members:
            self.error(conn, "your session is being created: wait for Starting")
            return
        after = self.campaign.leave_after
        if after and (member.waiting_since is None or self.now - member.waiting_since < after):
            self.error(conn, f"Leave comes after {_seconds(after)} seconds of waiting")
            return
        check = self.room.check
        if check is not None and member in check.members:
            self.journal.set(self.room, "check", None)
            self.leave([member], Outcome.LEFT)
            self.back_within_pools([m for m in check.members if m is not member])
        else:
            self.leave([member], Outcome.LEFT)
            self.tell_joining_sizes()
        self.promote()
        self.start_sessions()

    def ready(self, conn: Conn) -> None:
        member = self.member_of(conn)
        check = self.room.check
        if member is None or check is None or member not in check.members:
            self.error(conn, "Ready answers a ReadyCheck")
            return
        if member.ready:
            return  # a page that came back and is asked again: answered already
        self.journal.set(member, "ready", True)
        self.effects.append(MarkReady(member.token))
        if all(m.ready for m in check.members):
            self.journal.set(self.room, "check", None)
            self.begin_start(list(check.members))

    def check_overdue(self) -> bool:
        """Whether the tick would end the ready check now (its deadline has passed, or a member
        has waited its limit) and has yet to come: an event handled now must not act on it."""
        check = self.room.check
        if check is None:
            return False
        return self.now >= check.deadline or bool(_past_limit(check.members, self.now))

    def check_expired(self) -> None:
        """Those who did not answer the ready check in time end `not_ready` (`timeout` if
        their limit passed first: the tick may come after both); the others go back ahead of
        newcomers (and are asked again when their pool is full again)."""
        check = self.room.check
        if check is None or self.now < check.deadline:
            return
        self.journal.set(self.room, "check", None)
        silent = [m for m in check.members if not m.ready]
        late = _past_limit(silent, check.deadline)
        self.leave(late, Outcome.TIMEOUT)
        self.leave([m for m in silent if m not in late], Outcome.NOT_READY)
        self.back_within_pools([m for m in check.members if m.ready])

    def check_timed_out(self) -> None:
        """Members of the ready check who have waited their limit end `timeout` now, not when
        the check ends (up to its length later); the others go back, as when one leaves."""
        check = self.room.check
        if check is None:
            return
        late = _past_limit(check.members, self.now)
        if not late:
            return
        self.journal.set(self.room, "check", None)
        self.leave(late, Outcome.TIMEOUT)
        self.back_within_pools([m for m in check.members if all(m is not x for x in late)])

    def cancel_check(self) -> None:
        """An edit while a pool is asked: the pool goes back, nobody is held against it."""
        check = self.room.check
        if check is not None:
            self.journal.set(self.room, "check", None)
            self.back_within_pools(check.members)

    # -- pools and sessions ------------------------------------------------------------------

    def promote(self) -> None:
        """Fill the joining pools from the pending pools, first come first served."""
        if self.room.is_busy(self.now) or self.campaign.state != CampaignState.RUNNING:
            return
        moved: list[Member] = []
        for group, size in self.campaign.groups:
            joining = self.room.pool(self.room.joining, group)
            pending = self.room.pool(self.room.pending, group)
            rising = pending[: max(size - len(joining), 0)]
            if not rising:
                continue
            self.journal.replace(pending, pending[len(rising) :])
            for member in rising:
                self.journal.set(member, "step", Step.JOINING)
                self.journal.append(joining, member)
            moved.extend(rising)
        if not moved:
            return
        self.effects.append(Move(tuple(m.token for m in moved), Step.JOINING))
        for member in moved:
            self.send_step(member)
        self.tell_joining_sizes(told=moved)

    def ready_pool(self) -> list[Member] | None:
        """Every group's joining pool, full with members present; None if not ready."""
        pool = self.full_pool()
        if pool is None or any(m.conn is None for m in pool):
            return None
        return pool

    def full_pool(self) -> list[Member] | None:
        """Each group's first members in its joining pool, its size of them; None if a group
        has fewer."""
        chosen: list[Member] = []
        for group, size in self.campaign.groups:
            joining = self.room.joining.get(group, [])[:size]
            if len(joining) < size:
                return None
            chosen.extend(joining)
        return chosen

    def may_start(self) -> bool:
        """Whether a full pool may be set aside for the next session now."""
        room = self.room
        return (
            room.starting is None
            and room.check is None
            and room.deferred is None
            and self.campaign.state == CampaignState.RUNNING
            # An edit may lower max_sessions to the sessions started, the campaign Running.
            and self.campaign.started_sessions < self.campaign.max_sessions
            and (room.retry is None or self.now >= room.retry.at)
            and not room.is_busy(self.now)
        )

    def start_sessions(self) -> None:
        """If a pool is ready and may start, set it aside and have its session created; the
        pending pools then move up into the places it left. Its members have seen it full
        since it filled (each change of the joining pools is told), so the pool is not told
        its size again (in bench scenario 2, 1.3 frames a participant were that)."""
        reserved = self.reserve()
        if reserved:
            self.ask_ready(reserved)
            self.promote()

    def ask_ready(self, pool: Sequence[Member], told: Sequence[Member] = ()) -> None:
        """A pool set aside for a ready check is asked whether it is ready."""
        check = self.room.check
        if check is None:
            return
        seconds = _seconds(check.deadline - self.now)
        conns = tuple(m.conn for m in check.members if m.conn is not None and m not in told)
        if conns:
            self.effects.append(SendAll(conns, Kind.READY_CHECK, seconds))

    def reserve(self) -> list[Member]:
        """Set a ready pool aside, if one may start, to ask whether it is ready or to have
        its session created: the pool, or [] (telling its members is the caller's)."""
        if not self.may_start():
            return []
        pool = self.ready_pool()
        if pool is None:
            return []
        self.set_aside(pool)
        if self.campaign.ready_check:
            for member in pool:
                self.journal.set(member, "ready", False)
            deadline = self.now + self.campaign.ready_check
            self.journal.set(self.room, "check", Check(tuple(pool), deadline))
        else:
            self.begin_start(pool)
        return pool

    def set_aside(self, pool: Sequence[Member]) -> None:
        """Out of the joining pools, kept for its ready check or its session."""
        for group, _ in self.campaign.groups:
            joining = self.room.joining[group]
            self.journal.replace(joining, [m for m in joining if m not in pool])
        for member in pool:
            self.journal.set(member, "reserved", True)

    def begin_start(self, pool: Sequence[Member]) -> None:
        """Have the next session created for `pool` (set aside, and ready if asked)."""
        number = self.campaign.started_sessions + 1
        self.journal.set(self.room, "starting", Starting(number, tuple(pool)))
        # Asked before (a failure, a timeout, a crash): oTree may have it, look it up first.
        look_up = self.room.asked == number
        if not look_up:
            self.journal.set(self.room, "asked", number)
            self.effects.append(Ask(number))
        entrants = tuple(self.entrant(member) for member in pool)
        self.effects.append(CreateSession(number, look_up, entrants))

    def entrant(self, member: Member) -> Entrant:
        """What oTree is told of a member before it is sent there."""
        waited = self.now - member.waiting_since if member.waiting_since else timedelta(0)
        values: list[tuple[str, Any]] = [
            ("mastok_group", member.group or DEFAULT_GROUP),
            ("mastok_waited_seconds", _seconds(waited)),
            *member.params,
        ]
        if self.campaign.exit_for(Outcome.STARTED) is not None:
            exit_ = self.exit_payload(Outcome.STARTED, member.params)
            values += [("mastok_exit_code", exit_["code"]), ("mastok_exit_url", exit_["url"])]
        return Entrant(member.identity, tuple(values))

    def session_created(self, number: int, session: CreatedSession) -> None:
        starting = self.room.starting
        if starting is None or starting.number != number:
            return  # not the start in flight (cannot happen: the driver reports each once)
        pool = starting.members
        self.journal.set(self.room, "starting", None)
        self.journal.set(self.room, "retry", None)
        self.journal.set(self.room, "unavailable", False)
        self.journal.set(self.room, "asked", None)
        complete = number >= self.campaign.max_sessions
        assignments = tuple(
            (member.token, code, url)
            for member, (code, url) in zip(pool, session.participants, strict=False)
        )
        self.effects.append(RecordSession(number, session, assignments, complete))
        self.journal.set(self.room, "campaign", replace(self.campaign, started_sessions=number))
        self.journal.put(self.room.live_sessions, number, self.now)
        for member, (_, _, url) in zip(pool, assignments, strict=False):
            self.journal.set(member, "reserved", False)
            browser = key_of(None, member.browser_id)
            self.room._remember(member.token, member.key, Past(url, self.now, browser))
            self.forget_member(member)
            if member.conn is not None:
                self.send(member.conn, Kind.STARTING, url)
                self.drop(member.conn, Reason.START)
        self.effects.append(
            Notify(
                Kind.SESSION_START,
                self.session_start(session, assignments),
            )
        )
        if complete:
            self.journal.set(
                self.room, "campaign", replace(self.campaign, state=CampaignState.COMPLETED)
            )
            self.end_everyone(CampaignState.COMPLETED)
        self.after_start()

    def session_start(
        self, session: CreatedSession, assignments: Sequence[tuple[str, str, str]]
    ) -> dict[str, Any]:
        """SessionStart's payload: mastok's keys, then Go Mastok's session record (its `ID`
        and `CampaignID`, the database's, are added once the session is written)."""
        created_at = self.now.isoformat()
        return {
            "code": session.code,
            "mastok_id": session.mastok_id,
            "size": len(assignments),
            "admin_url": session.admin_url,
            "participant_codes": [code for _, code, _ in assignments],
            "created_at": created_at,
            "CreatedAt": created_at,
            "UpdatedAt": created_at,
            "LaunchedAt": created_at,
            "Duration": int(self.campaign.session_duration.total_seconds() // 60),
            "Code": session.code,
            "OtreeId": session.mastok_id,
            "Size": len(assignments),
            "AdminUrl": session.admin_url,
        }

    def session_failed(self, number: int, message: str, source: str) -> None:
        starting = self.room.starting
        if starting is None or starting.number != number:
            return
        self.journal.set(self.room, "starting", None)
        attempt = self.room.retry.attempt + 1 if self.room.retry else 1
        delay = RETRY_DELAYS[min(attempt - 1, len(RETRY_DELAYS) - 1)]
        self.journal.set(self.room, "retry", Retry(attempt, self.now + timedelta(seconds=delay)))
        self.journal.set(self.room, "unavailable", True)
        self.effects.append(Notify(Kind.ERROR, f"{source} session creation failed: {message}"))
        self.back_within_pools(starting.members)
        self.after_start()

    def back_within_pools(self, pool: Sequence[Member]) -> None:
        """A pool whose session failed goes back to the joining pools, ahead of those who
        joined meanwhile: anyone beyond a pool's size waits in the pending pool again."""
        over: list[Member] = []
        for member in pool:
            self.journal.set(member, "reserved", False)
        for group, size in self.campaign.groups:
            joining = self.room.pool(self.room.joining, group)
            back = sorted([m for m in pool if m.group == group] + joining, key=_order)
            self.journal.replace(joining, back[:size])
            over.extend(back[size:])
        if not over:
            self.tell_joining_sizes()
            return
        for member in over:
            self.journal.set(member, "step", Step.PENDING)
            pending = self.room.pool(self.room.pending, member.group or DEFAULT_GROUP)
            self.journal.replace(pending, sorted([*pending, member], key=_order))
        self.effects.append(Move(tuple(m.token for m in over), Step.PENDING))
        for member in over:
            self.send_step(member)
        self.tell_joining_sizes()

    def after_start(self) -> None:
        """Once the start in flight is settled: the edit that waited for it, then the pools."""
        deferred = self.room.deferred
        if deferred is not None:
            self.journal.set(self.room, "deferred", None)
            self.apply_edit(deferred)
        if self.campaign.state != CampaignState.RUNNING and self.room.members:
            # A start a rebuilt room resumed in a campaign paused or completed, and failed: its
            # pool ends as the edit that waited for it would have ended it.
            self.end_everyone(self.campaign.state)
        self.promote()
        self.start_sessions()

    def otree_answers(self) -> None:
        retry = self.room.retry
        if retry is not None and retry.at > self.now:
            self.journal.set(self.room, "retry", replace(retry, at=self.now))
            self.start_sessions()

    def sessions_finished(self, numbers: Sequence[int]) -> None:
        """oTree shows every participant of these sessions finished: they stop counting as
        live at once (Busy may end, the pending pools move up, a pool may start)."""
        ending = tuple(n for n in sorted(set(numbers)) if n in self.room.live_sessions)
        if not ending:
            return
        for number in ending:
            self.journal.pop(self.room.live_sessions, number)
        self.effects.append(SessionsEnded(ending))
        self.promote()
        self.start_sessions()

    # -- edits and the clock -----------------------------------------------------------------

    def edited(self, campaign: RoomCampaign) -> None:
        """Applied at once, or when the session being created is recorded: its pool was
        promised a session."""
        if self.room.starting is not None:
            self.journal.set(self.room, "deferred", campaign)
            return
        self.cancel_check()
        self.apply_edit(campaign)
        self.promote()
        self.start_sessions()

    def rebuilt(self) -> None:
        """The room as the database has it, its campaign perhaps edited while no room ran
        (through a standby between two leaders, or mastok killed before the room wrote what
        the edit did): whoever waits in a group that is gone chooses again, and in a campaign
        paused or completed everyone's visit ends, as after an edit here (their pages told if
        they come back within the grace: one visit each), but the pool whose session was being
        created: an edit waits for that session, so its pool gets it."""
        if self.campaign.state != CampaignState.RUNNING:
            self.resume_start()
            if self.room.members:
                self.end_everyone(self.campaign.state)
            return
        self.lengthen_limits()  # the pages, all away, are told when they come back
        self.regroup()
        self.promote()
        self.start_sessions()

    def resume_start(self) -> None:
        """The session being created when the room stopped (its number asked of oTree, not
        recorded) is created again, found by its label if oTree made it, for its pool as the
        database has it: each group's first members in its joining pool, as it was set aside.
        Its members are away, and their places kept as a pool being started keeps them: in a
        campaign paused or completed nobody could take the place of one who did not come back.
        """
        if self.room.asked != self.campaign.started_sessions + 1:
            return
        pool = self.full_pool()
        if pool is not None:
            self.set_aside(pool)
            self.begin_start(pool)

    def apply_edit(self, campaign: RoomCampaign) -> None:
        before = self.campaign
        previous = before.state
        # Read before sessions this room started meanwhile: the room's count is the newer, and
        # if the room completed the campaign meanwhile, it stays Completed (the database too).
        stale = campaign.started_sessions < self.campaign.started_sessions
        started = max(campaign.started_sessions, self.campaign.started_sessions)
        if stale and previous == CampaignState.COMPLETED and started >= campaign.max_sessions:
            campaign = replace(campaign, state=CampaignState.COMPLETED)
        campaign = replace(campaign, started_sessions=started)
        # Likewise the count of erasures: a read from before an erasure does not undo it.
        erasures = max(campaign.identity_erasures, before.identity_erasures)
        campaign = replace(campaign, identity_erasures=erasures)
        resized = campaign.per_session != self.campaign.per_session
        self.journal.set(self.room, "campaign", campaign)
        if erasures > before.identity_erasures:
            self.forget_identities()
        if campaign.state != previous and campaign.state != CampaignState.RUNNING:
            self.end_everyone(campaign.state)
            return
        if campaign.grouping != before.grouping:
            self.regroup()
        if resized:
            self.tell_joining_sizes()
        self.lengthen_waits(before)

    def lengthen_waits(self, before: RoomCampaign) -> None:
        """After an edit of waiting_limit, whoever waits keeps the longer of its limit and the
        new one (a shorter limit is for newcomers: no page's countdown is cut short); an edit
        of leave_after applies at once. The pages whose figures changed get Waiting again."""
        campaign = self.campaign
        new_leave_after = campaign.leave_after != before.leave_after
        if campaign.waiting_limit == before.waiting_limit and not new_leave_after:
            return
        longer = {member.token for member in self.lengthen_limits()}
        for member in sorted(self.room.members.values(), key=_seq):
            told = member.token in longer or new_leave_after
            if told and member.step in (Step.JOINING, Step.PENDING):
                self.send_waiting(member)

    def lengthen_limits(self) -> list[Member]:
        """Whoever waits under a shorter limit than the campaign's gets the campaign's, written
        down with it (a room rebuilt keeps it, whatever the campaign's limit then): those
        lengthened."""
        limit = self.campaign.waiting_limit
        longer = [
            m
            for m in sorted(self.room.members.values(), key=_seq)
            if m.waiting_since is not None and limit > m.limit
        ]
        for member in longer:
            self.journal.set(member, "limit", limit)
        if longer:
            self.effects.append(Lengthened(tuple(m.token for m in longer), limit))
        return longer

    def forget_identities(self) -> None:
        """The campaign's identities were erased from its records (refused while anyone is in
        the room): the room forgets those it keeps for pages that come back, as a room rebuilt
        from the records would. A session's people are known by their browser id alone (live
        redirects and join_once), their start links lose its label, and visits ended while
        away end without their captured parameters."""
        room = self.room
        past: dict[str, Past] = {}
        for key, known in room.past.items():
            if is_identity_key(key):
                key, known = known.browser, replace(known, start_url=unlabelled(known.start_url))
            if key and (key not in past or past[key].started_at <= known.started_at):
                past[key] = known
        self.journal.set(room, "past", past)
        started = {
            token: replace(p, start_url=unlabelled(p.start_url))
            for token, p in room.started_tokens.items()
        }
        self.journal.set(room, "started_tokens", started)
        ended = {token: replace(e, params=()) for token, e in room.ended_tokens.items()}
        self.journal.set(room, "ended_tokens", ended)

    def regroup(self) -> None:
        """After an edit of the grouping, whoever waits in a group that is gone chooses again,
        as does whoever was choosing (its page shows the old question); with no grouping left,
        they enter the single group."""
        labels = set(self.campaign.labels)
        gone: list[Member] = []
        for pools in (self.room.joining, self.room.pending):
            for group, pool in pools.items():
                if group not in labels and pool:
                    gone.extend(pool)
                    self.journal.replace(pool, [])
        for member in gone:
            self.journal.set(member, "step", Step.AGREED)
        if gone:
            self.effects.append(Move(tuple(m.token for m in sorted(gone, key=_seq)), Step.AGREED))
        choosing = sorted(
            (m for m in self.room.members.values() if m.step == Step.AGREED), key=_seq
        )
        for member in choosing:
            if self.campaign.grouping is None:
                self.enter_room(member, DEFAULT_GROUP)
            else:
                self.send_step(member)

    def end_everyone(self, state: CampaignState) -> None:
        """Everyone's socket gets the campaign's message, and everyone leaves but the pool
        whose session is being created (the session promised to it is on its way)."""
        starting = self.room.starting
        promised = starting.members if starting is not None else ()
        for conn in sorted(self.room.sockets):
            member = self.member_of(conn)
            if member is None or member not in promised:
                self.send_end(conn, state, member.params if member is not None else None)
        sockets = {m.conn: m.token for m in promised if m.conn is not None}
        self.journal.set(self.room, "sockets", sockets)
        self.journal.set(self.room, "arrivals", {})
        outcome = END_OUTCOMES[state]
        until = self.now + self.room.rules.grace
        ending = sorted((m for m in self.room.members.values() if m not in promised), key=_seq)
        for member in ending:
            if member.conn is None:  # told if its page comes back within the grace
                ended = Ended(outcome, member.params, until)
                self.journal.put(self.room.ended_tokens, member.token, ended)
        leaving = tuple(m.token for m in ending)
        self.journal.set(self.room, "members", {m.token: m for m in promised})
        self.journal.set(self.room, "ids", ids_of(promised))
        self.journal.set(self.room, "joining", {})
        self.journal.set(self.room, "pending", {})
        self.journal.set(self.room, "check", None)
        if leaving:
            self.effects.append(Leave(leaving, outcome))

    def tick(self) -> None:
        """Places held too long by people away, and people who waited too long, expire; ended
        sessions are forgotten; a retry whose pool has changed is dropped."""
        room = self.room
        away = sorted(
            (
                m
                for m in room.members.values()
                if not m.reserved and m.away_until is not None and m.away_until <= self.now
            ),
            key=_seq,
        )
        self.leave(away, Outcome.AWAY)
        # A check that is over first (who did not answer ends not_ready, the others are back in
        # the pools), then whoever waited its limit, in a check or not.
        self.check_expired()
        self.check_timed_out()
        timed_out = sorted(
            _past_limit((m for m in room.members.values() if not m.reserved), self.now), key=_seq
        )
        self.leave(timed_out, Outcome.TIMEOUT)
        if away or timed_out:
            self.tell_joining_sizes()
        silent_since = self.now - room.rules.land_within
        for conn, arrival in sorted(room.arrivals.items()):
            if arrival.opened_at <= silent_since and room.sockets.get(conn, "") is None:
                self.drop(conn, Reason.LANDING_FAILED)  # never said who it is: no visit
        since = self.now - self.campaign.session_duration
        if any(started <= since for started in room.live_sessions.values()):
            ongoing = {n: t for n, t in room.live_sessions.items() if t > since}
            self.journal.set(room, "live_sessions", ongoing)
        if any(past.started_at <= since for past in room.started_tokens.values()):
            # Their sessions are over: their tokens no longer open anything.
            live = {t: past for t, past in room.started_tokens.items() if past.started_at > since}
            self.journal.set(room, "started_tokens", live)
        if any(ended.until <= self.now for ended in room.ended_tokens.values()):
            kept = {t: ended for t, ended in room.ended_tokens.items() if ended.until > self.now}
            self.journal.set(room, "ended_tokens", kept)
        retry = room.retry
        # A retry that is due whose pool changed since: start when a pool is full again.
        if (
            retry is not None
            and self.now >= retry.at
            and room.starting is None
            and self.ready_pool() is None
        ):
            self.journal.set(room, "retry", None)
            self.journal.set(room, "unavailable", False)
        self.promote()
        self.start_sessions()


def _seconds(span: timedelta) -> int:
    return max(int(span.total_seconds()), 0)


def _order(member: Member) -> int:
    return member.order


def _past_limit(members: Iterable[Member], at: datetime) -> list[Member]:
    """Those of `members` whose waiting limit has passed at `at`."""
    return [m for m in members if m.waiting_since and m.waiting_since + m.limit < at]


def _seq(member: Member) -> int:
    return member.seq


def _reserved_then_seq(member: Member) -> tuple[bool, int]:
    return member.reserved, member.seq
