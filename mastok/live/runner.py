"""A campaign's live waiting room: who is here, in which pool, and when a session starts.

One runner per campaign. Every event (a socket arriving or leaving, a frame, a tick of the
clock, an edit of the campaign) is handled under the runner's lock, so the room changes one
event at a time; each change is written to the database before anyone is told, and the runner
can be rebuilt from the database (`Runner.restore`). Sockets are never awaited: frames are
queued on each `Connection`.

oTree is not called under the lock: a full pool is reserved (its members leave the joining
pool, which newcomers fill meanwhile) and one task per campaign creates its session, then takes
the lock to record it and tell everyone. Sessions of a campaign still start one at a time, in
number order; an edit of the campaign waits for the start in flight.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from mastok.campaigns.grouping import Grouping, parse_grouping
from mastok.campaigns.markdown import render, render_consent
from mastok.db.tables import Campaign, OTreeSession, utcnow
from mastok.live.connection import Connection
from mastok.live.lock import RoomLock
from mastok.live.protocol import MAX_FINGERPRINT, Frame, encode
from mastok.live.records import Records, live_since
from mastok.live.starter import SessionStarter, StartFailed
from mastok.otree import Session

log = logging.getLogger("mastok.live")

DEFAULT_GROUP = "default"
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 60.0)


@dataclass(eq=False, slots=True)
class Member:
    """A participant in the room (from Land until Start or leaving)."""

    id: int
    token: str
    fingerprint: str
    step: str
    group: str | None = None
    order: float = 0.0
    connection: Connection | None = None
    away_since: float | None = None
    waiting_since: datetime | None = None
    # In a pool whose oTree session is being created: out of the joining pool, kept whatever
    # happens to its socket until the start is recorded (or fails and it moves back).
    starting: bool = False

    @property
    def present(self) -> bool:
        return self.connection is not None


@dataclass(eq=False, slots=True)
class Visitor:
    """A participant socket, before or after it became a member."""

    connection: Connection
    member: Member | None = None
    resuming: bool = False


@dataclass
class RoomSettings:
    grace: float
    live_redirect: bool


@dataclass
class _Retry:
    attempt: int = 0
    at: float = 0.0


@dataclass
class Runner:
    campaign: Campaign
    records: Records
    starter: SessionStarter
    settings: RoomSettings
    members: dict[str, Member] = field(default_factory=dict)
    visitors: set[Visitor] = field(default_factory=set)
    supervisors: set[Connection] = field(default_factory=set)
    live_sessions: list[datetime] = field(default_factory=list)
    # Fingerprints that started a session of this campaign (only this runner starts them):
    # anyone else landing is neither redirected nor turned away, with no database read.
    started: set[str] = field(default_factory=set)
    lock: RoomLock = field(default_factory=RoomLock)
    unavailable: bool = False
    _retry: _Retry | None = None
    _starting: asyncio.Task[None] | None = None  # the session start in flight, if any
    _edits_waiting: int = 0  # edits waiting for that start: no new start begins meanwhile
    _order: float = 0.0
    # The JoiningSize and PendingSize every supervisor was last sent: only changes are sent.
    _told_sizes: tuple[str, str] | None = None

    # -- building ---------------------------------------------------------------------------

    @classmethod
    async def restore(
        cls, campaign: Campaign, records: Records, starter: SessionStarter, settings: RoomSettings
    ) -> Runner:
        """The room as the database has it; everyone is away until they resume."""
        runner = cls(campaign, records, starter, settings)
        now = time.monotonic()
        for row in await records.waiting(campaign.id):
            runner._order += 1
            member = Member(row.id, row.token, row.fingerprint, row.step, row.group_label)
            member.order, member.away_since = runner._order, now
            member.waiting_since = _aware(row.queued_at) if row.queued_at else None
            runner.members[member.token] = member
        runner.live_sessions = await records.live_session_times(
            campaign.id, live_since(utcnow(), campaign.session_duration)
        )
        runner.started = await records.started_fingerprints(campaign.id)
        return runner

    @property
    def grouping(self) -> Grouping | None:
        return parse_grouping(self.campaign.grouping)

    # -- derived state ----------------------------------------------------------------------

    def group_sizes(self) -> dict[str, int]:
        grouping = self.grouping
        if grouping is None:
            return {DEFAULT_GROUP: self.campaign.per_session}
        return {group.label: group.size for group in grouping.groups}

    def pool(self, step: str, group: str | None = None) -> list[Member]:
        found = [m for m in self.members.values() if m.step == step and not m.starting]
        if group is not None:
            found = [m for m in found if m.group == group]
        return sorted(found, key=lambda m: m.order)

    def pending_bound(self, group_size: int) -> int:
        return group_size * (self.campaign.max_sessions - self.campaign.started_sessions + 1)

    def is_busy(self) -> bool:
        self._forget_ended_sessions()
        starting = 1 if self._starting is not None else 0
        return len(self.live_sessions) + starting >= self.campaign.concurrent_sessions

    def _forget_ended_sessions(self) -> None:
        since = live_since(utcnow(), self.campaign.session_duration)
        self.live_sessions = [t for t in self.live_sessions if _aware(t) > since]

    def public_state(self) -> str:
        if self.campaign.state != "Running":
            return self.campaign.state
        return "Busy" if self.is_busy() else "Running"

    def supervisor_state(self) -> str:
        if self.campaign.state == "Running" and self.unavailable:
            return "Unavailable"
        return self.public_state()

    def joining_size(self) -> str:
        return f"{len(self.pool('joining'))}/{self.campaign.per_session}"

    def pending_size(self) -> str:
        bound = sum(self.pending_bound(size) for size in self.group_sizes().values())
        return f"{len(self.pool('pending'))}/{bound}"

    # -- participants -----------------------------------------------------------------------

    async def participant_arrives(self, connection: Connection) -> Visitor | None:
        async with self.lock:
            state = self.public_state()
            if state in ("Paused", "Completed"):
                self._send_end(connection, state)
                return None
            visitor = Visitor(connection)
            self.visitors.add(visitor)
            connection.send("State", state)
            return visitor

    async def participant_frame(self, visitor: Visitor, frame: Frame) -> None:
        async with self.lock:
            if visitor not in self.visitors:
                return
            handler = {
                "Land": self._land,
                "Resume": self._resume,
                "Agree": self._agree,
                "Connect": self._connect,
            }.get(frame.kind)
            if handler is None:
                visitor.connection.send("Error", f"participants cannot send {frame.kind!r}")
                return
            try:
                await handler(visitor, frame.payload)
            except Exception:
                # Never let one frame take the room down; the database is still the truth.
                log.exception("%s: %s failed", self.campaign.namespace, frame.kind)
                visitor.connection.send("Error", "mastok could not handle that: please retry")

    async def participant_leaves(self, visitor: Visitor) -> None:
        async with self.lock:
            self.visitors.discard(visitor)
            member = visitor.member
            if member is not None and member.connection is visitor.connection:
                member.connection = None
                member.away_since = time.monotonic()
                self._tell_supervisors_sizes()

    async def _land(self, visitor: Visitor, payload: Any) -> None:
        connection = visitor.connection
        if visitor.member is not None:
            connection.send("Error", "already landed")
            return
        if not isinstance(payload, str) or not payload.strip() or len(payload) > MAX_FINGERPRINT:
            self._drop(visitor, "LandingFailed")
            return
        fingerprint = payload.strip()
        campaign = self.campaign
        started_before = fingerprint in self.started
        if self.settings.live_redirect and started_before:
            since = live_since(utcnow(), campaign.session_duration)
            url = await self.records.live_start_url(campaign.id, fingerprint, since)
            if url:
                self._drop(visitor, f"Redirect:{url}")
                return
        if campaign.join_once and (
            started_before or any(m.fingerprint == fingerprint for m in self.members.values())
        ):
            self._drop(visitor, "LandingFailed")
            return
        token = secrets.token_urlsafe(24)
        participant_id = await self.records.add_participant(campaign.id, token, fingerprint)
        member = Member(participant_id, token, fingerprint, "landed", connection=connection)
        self.members[token] = member
        visitor.member = member
        connection.send("Resume", token)
        connection.send("Consent", render_consent(campaign.consent))

    async def _resume(self, visitor: Visitor, payload: Any) -> None:
        connection = visitor.connection
        if visitor.member is not None:
            connection.send("Error", "already landed")
            return
        member = self.members.get(payload) if isinstance(payload, str) else None
        if member is None:
            await self._resume_started(visitor, payload)
            return
        if member.connection is not None and member.connection is not connection:
            member.connection.disconnect("Replaced")
        member.connection, member.away_since = connection, None
        visitor.member = member
        connection.send("Resume", member.token)
        self._send_step(member)
        self._tell_supervisors_sizes()
        await self._start_sessions()

    async def _resume_started(self, visitor: Visitor, token: Any) -> None:
        started = None
        if isinstance(token, str) and token:
            started = await self.records.started_by_token(self.campaign.id, token)
        if started is not None and started.start_url:
            visitor.connection.send("Starting", started.start_url)
            self._drop(visitor, "Start")
            return
        visitor.connection.send("Error", "unknown or expired resume token: Land again")

    def _send_step(self, member: Member) -> None:
        connection = member.connection
        if connection is None:
            return
        campaign = self.campaign
        if member.step == "landed":
            connection.send("Consent", render_consent(campaign.consent))
        elif member.step == "agreed" and self.grouping is not None:
            connection.send("Grouping", self.grouping.as_payload())
        elif member.step == "joining":
            connection.send("Instructions", render(campaign.instructions))
            if campaign.show_nb_participants:
                size = self._full_size() if member.starting else self.joining_size()
                connection.send("JoiningSize", size)
        elif member.step == "pending":
            connection.send("Pending", render(campaign.pending))

    async def _agree(self, visitor: Visitor, payload: Any) -> None:
        member = visitor.member
        if member is None or member.step != "landed":
            visitor.connection.send("Error", "Agree comes once, after Land")
            return
        grouping = self.grouping
        if grouping is None:
            await self._enter_room(member, DEFAULT_GROUP)
            return
        member.step = "agreed"
        await self.records.move([member.id], step="agreed")
        visitor.connection.send("Grouping", grouping.as_payload())

    async def _connect(self, visitor: Visitor, payload: Any) -> None:
        member = visitor.member
        grouping = self.grouping
        if member is None or member.step != "agreed" or grouping is None:
            visitor.connection.send("Error", "Connect comes once, after Agree and Grouping")
            return
        if not isinstance(payload, str) or payload not in grouping.labels:
            visitor.connection.send("Error", "Connect needs one of the Grouping labels")
            return
        await self._enter_room(member, payload)

    async def _enter_room(self, member: Member, group: str) -> None:
        """Into the group's joining pool if there is room, else pending, else away."""
        size = self.group_sizes()[group]
        self._order += 1
        member.group, member.order = group, self._order
        if len(self.pool("joining", group)) < size and not self.is_busy():
            member.step = "joining"
        elif len(self.pool("pending", group)) < self.pending_bound(size):
            member.step = "pending"
        else:
            await self._leave(member, "Full")
            return
        member.waiting_since = utcnow()
        # If this fills the pool, oTree creates its session while the move is written (the
        # start is recorded under the lock, so after it).
        reserved = self._reserve_ready_pool()
        await self.records.move(
            [member.id], step=member.step, group_label=group, queued_at=member.waiting_since
        )
        self._send_step(member)
        if member.step == "joining":
            self._tell_joining_sizes(told=[member])
        self._tell_pool_full(reserved, told=[member])
        self._tell_supervisors_sizes()
        if reserved:  # the places it left in the joining pools
            await self._promote()

    async def _leave(self, member: Member, reason: str) -> None:
        """Out of the room for good: recorded, told (if present), and the pools move up."""
        self.members.pop(member.token, None)
        await self.records.move([member.id], step="left", left_reason=reason)
        if member.connection is not None:
            member.connection.disconnect(reason)
            self.visitors = {v for v in self.visitors if v.connection is not member.connection}

    def _drop(self, visitor: Visitor, reason: str) -> None:
        self.visitors.discard(visitor)
        visitor.connection.disconnect(reason)

    def _send_end(self, connection: Connection, state: str) -> None:
        text = self.campaign.paused if state == "Paused" else self.campaign.completed
        connection.send(state, render(text))
        connection.disconnect(state)

    # -- pools and sessions -----------------------------------------------------------------

    async def _promote(self) -> None:
        """Fill joining pools from the pending pools, first come first served."""
        if self.is_busy() or self.campaign.state != "Running":
            return
        moved = []
        for group, size in self.group_sizes().items():
            room = size - len(self.pool("joining", group))
            for member in self.pool("pending", group)[: max(room, 0)]:
                member.step = "joining"
                moved.append(member)
        if not moved:
            return
        await self.records.move([m.id for m in moved], step="joining")
        for member in moved:
            self._send_step(member)
        self._tell_joining_sizes(told=moved)
        self._tell_supervisors_sizes()

    def _ready_pool(self) -> list[Member] | None:
        """Every group's joining pool, full with members present; None if not ready."""
        chosen: list[Member] = []
        for group, size in self.group_sizes().items():
            joining = self.pool("joining", group)
            if len(joining) < size or not all(m.present for m in joining[:size]):
                return None
            chosen.extend(joining[:size])
        return chosen

    async def _start_sessions(self) -> None:
        """Start the session of a ready pool, if one is and no start is in flight, and move
        pending people up into the places it left."""
        reserved = self._reserve_ready_pool()
        if reserved:
            self._tell_pool_full(reserved)
            await self._promote()

    def _reserve_ready_pool(self) -> list[Member]:
        """Reserve a ready pool and create its session in a task of its own; the pool, or []
        if none may start now."""
        retry = self._retry
        if (
            self._starting is not None
            or self._edits_waiting
            or self.campaign.state != "Running"
            or (retry is not None and time.monotonic() < retry.at)
            or self.is_busy()
        ):
            return []
        pool = self._ready_pool()
        if pool is None:
            return []
        number = self.campaign.started_sessions + 1
        for member in pool:
            member.starting = True
        self._starting = asyncio.create_task(
            self._start(pool, number), name=f"mastok start {self.campaign.namespace} {number}"
        )
        return pool

    async def _start(self, pool: list[Member], number: int) -> None:
        """Create the session (without the lock), then record it and tell everyone."""
        outcome: Session | str
        try:
            outcome = await self.starter.start(self.campaign, number)
        except StartFailed as failure:
            outcome = failure.message
        except Exception as error:  # a bug must not strand the pool: it is retried
            log.exception("%s: starting session %s failed", self.campaign.namespace, number)
            outcome = f"unexpected error: {error!r}"
        async with self.lock.first():  # its pool has waited for oTree: not for the queue too
            self._starting = None
            for member in pool:
                member.starting = False
            try:
                if isinstance(outcome, str):
                    self._schedule_retry(outcome)
                    await self._back_within_pools()
                elif not await self._record_started(pool, outcome, number):
                    await self._back_within_pools()
                await self._promote()
                await self._start_sessions()
            except Exception:  # the database is still the truth; the clock tries again
                log.exception("%s: after starting session %s", self.campaign.namespace, number)

    async def drain(self) -> None:
        """Wait for the session start in flight, if any (at shutdown, between edits)."""
        while (task := self._starting) is not None:
            await asyncio.wait([task])

    async def _back_within_pools(self) -> None:
        """After a failed start its pool is back in the joining pools, ahead of those who
        joined meanwhile: any beyond a pool's size wait in the pending pool again."""
        over: list[Member] = []
        for group, size in self.group_sizes().items():
            over.extend(self.pool("joining", group)[size:])
        if not over:
            return
        for member in over:
            member.step = "pending"
        await self.records.move([m.id for m in over], step="pending")
        for member in over:
            self._send_step(member)
        self._tell_joining_sizes()
        self._tell_supervisors_sizes()

    async def _record_started(self, pool: list[Member], session: Session, number: int) -> bool:
        """Write the started session down, then send its pool to oTree; False if the write
        failed (a retry claims the session by its label)."""
        campaign = self.campaign
        if self._retry is not None or self.unavailable:
            self._retry, self.unavailable = None, False
            self._tell_supervisors_state()
        urls = [self.starter.start_url(p.code) for p in session.participants]
        assignments = [
            (member.id, participant.code, url)
            for member, participant, url in zip(pool, session.participants, urls, strict=False)
        ]
        complete = number >= campaign.max_sessions
        try:
            record = await self._record_start(session, assignments, number, complete)
        except SQLAlchemyError as error:
            log.exception("%s: recording session %s failed", campaign.namespace, session.code)
            self._schedule_retry(f"could not record session {session.code}: {error}", "mastok")
            return False
        campaign.started_sessions = number
        self.live_sessions.append(record.created_at)
        self.started.update(member.fingerprint for member in pool)
        for member, url in zip(pool, urls, strict=False):
            self.members.pop(member.token, None)
            if member.connection is not None:
                member.connection.send("Starting", url)
                member.connection.disconnect("Start")
                self.visitors = {v for v in self.visitors if v.member is not member}
        self._tell_supervisors(
            "SessionStart",
            {
                "code": session.code,
                "mastok_id": record.mastok_id,
                "size": len(pool),
                "admin_url": record.admin_url,
                "participant_codes": [code for _, code, _ in assignments],
                "created_at": _aware(record.created_at).isoformat(),
            },
        )
        log.info("%s: started oTree session %s (%s)", campaign.namespace, session.code, number)
        if complete:
            campaign.state = "Completed"
            self._end_everyone("Completed")
            await self._forget_everyone("Completed")
        self._tell_joining_sizes()
        self._tell_supervisors_sizes()
        self._tell_supervisors_state()
        return True

    async def _record_start(
        self,
        session: Session,
        assignments: list[tuple[int, str, str]],
        number: int,
        complete: bool,
    ) -> OTreeSession:
        campaign = self.campaign
        return await self.records.record_start(
            campaign,
            {
                "number": number,
                "mastok_id": self.starter.mastok_id(campaign, number),
                "otree_code": session.code,
                "admin_url": self.starter.public_admin_url(session.admin_url),
                "size": len(assignments),
            },
            assignments,
            complete,
        )

    def _schedule_retry(self, message: str, failed: str = "oTree") -> None:
        attempt = self._retry.attempt + 1 if self._retry else 1
        delay = RETRY_DELAYS[min(attempt - 1, len(RETRY_DELAYS) - 1)]
        self._retry = _Retry(attempt, time.monotonic() + delay)
        self.unavailable = True
        text = f"{failed} session creation failed: {message}"
        log.warning("%s: %s", self.campaign.namespace, text)
        self._tell_supervisors_state()
        self._tell_supervisors("Error", text)

    # -- the clock --------------------------------------------------------------------------

    async def tick(self) -> None:
        """Expire places held too long by absent people; follow the end of live sessions;
        retry a failed session creation when its time has come."""
        async with self.lock:
            now = time.monotonic()
            was_busy = len(self.live_sessions) >= self.campaign.concurrent_sessions
            expired = [
                m
                for m in self.members.values()
                if m.away_since is not None
                and now - m.away_since >= self.settings.grace
                and not m.starting
            ]
            for member in expired:
                await self._leave(member, "Away")
            waited_too_long = self._waited_too_long()
            for member in waited_too_long:
                await self._leave(member, "Timeout")
            expired += waited_too_long
            if expired:
                self._tell_joining_sizes()
                self._tell_supervisors_sizes()
            if was_busy:  # the database may know better (e.g. a session's time was edited)
                self.live_sessions = await self.records.live_session_times(
                    self.campaign.id, live_since(utcnow(), self.campaign.session_duration)
                )
                if not self.is_busy():
                    self._tell_supervisors_state()
            retry = self._retry
            # A retry that is due whose pool changed since: start when a pool is full again.
            if (
                retry is not None
                and now >= retry.at
                and self._starting is None
                and self._ready_pool() is None
            ):
                self._retry, self.unavailable = None, False
                self._tell_supervisors_state()
            await self._promote()
            await self._start_sessions()

    def _waited_too_long(self) -> list[Member]:
        """People in the pools for longer than the campaign's waiting limit."""
        limit = utcnow() - timedelta(minutes=self.campaign.waiting_limit)
        return [
            m
            for m in self.members.values()
            if m.waiting_since is not None and m.waiting_since < limit and not m.starting
        ]

    # -- supervisors and edits --------------------------------------------------------------

    async def supervisor_arrives(self, connection: Connection) -> None:
        async with self.lock:
            self.supervisors.add(connection)
            sizes = (self.joining_size(), self.pending_size())
            connection.send("State", self.supervisor_state())
            connection.send("JoiningSize", sizes[0])
            connection.send("PendingSize", sizes[1])
            # The others were told every change while there were any: they know these too.
            self._told_sizes = sizes

    async def supervisor_leaves(self, connection: Connection) -> None:
        async with self.lock:
            self.supervisors.discard(connection)

    async def campaign_changed(self, campaign: Campaign) -> None:
        """An admin edited the campaign (state included): apply it to the room, once the
        session start in flight (if any) is recorded: its pool was promised a session."""
        self._edits_waiting += 1
        try:
            await self.drain()
            async with self.lock:
                previous = self.campaign.state
                # Read before sessions this runner started meanwhile: keep the runner's count.
                campaign.started_sessions = max(
                    campaign.started_sessions, self.campaign.started_sessions
                )
                self.campaign = campaign
                if campaign.state != previous and campaign.state in ("Paused", "Completed"):
                    self._end_everyone(campaign.state)
                    await self._forget_everyone(campaign.state)
                self._tell_supervisors_state()
                self._tell_supervisors_sizes()
        finally:
            self._edits_waiting -= 1
        async with self.lock:
            await self._promote()
            await self._start_sessions()

    def _end_everyone(self, state: str) -> None:
        for visitor in list(self.visitors):
            self._send_end(visitor.connection, state)
        self.visitors.clear()

    async def _forget_everyone(self, reason: str) -> None:
        leaving = list(self.members.values())
        self.members.clear()
        await self.records.move([m.id for m in leaving], step="left", left_reason=reason)

    # -- telling people ---------------------------------------------------------------------

    def _tell_joining_sizes(self, told: Sequence[Member] = ()) -> None:
        """JoiningSize to the joining pool, but those just `told` by `_send_step`."""
        if not self.campaign.show_nb_participants:
            return
        text = encode("JoiningSize", self.joining_size())
        for member in self.pool("joining"):
            if member.connection is not None and member not in told:
                member.connection.send_text(text)

    def _full_size(self) -> str:
        return f"{self.campaign.per_session}/{self.campaign.per_session}"

    def _tell_pool_full(self, pool: Sequence[Member], told: Sequence[Member] = ()) -> None:
        """A reserved pool's members see it full (they are no longer in the joining pool)."""
        if not self.campaign.show_nb_participants or not pool:
            return
        text = encode("JoiningSize", self._full_size())
        for member in pool:
            if member.connection is not None and member not in told:
                member.connection.send_text(text)

    def _tell_supervisors_sizes(self) -> None:
        """The pool sizes to every supervisor, those that changed since they were last told
        (someone leaving a started session, say, changes nothing)."""
        if not self.supervisors:
            return
        joining, pending = self.joining_size(), self.pending_size()
        told_joining, told_pending = self._told_sizes or ("", "")
        if joining != told_joining:
            self._tell_supervisors("JoiningSize", joining)
        if pending != told_pending:
            self._tell_supervisors("PendingSize", pending)
        self._told_sizes = (joining, pending)

    def _tell_supervisors_state(self) -> None:
        self._tell_supervisors("State", self.supervisor_state())

    def _tell_supervisors(self, kind: str, payload: Any) -> None:
        if not self.supervisors:
            return
        text = encode(kind, payload)
        for connection in self.supervisors:
            connection.send_text(text)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
