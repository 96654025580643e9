"""Driving the waiting room's core by hand: a campaign, a clock, events in, frames out.

`RoomHarness.do(event)` handles the event, then checks that rolling it back restores the room
exactly (and that handling it again gives the same effects) before committing it: every test
of the core also tests that an event whose writes failed changes nothing.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from mastok.live.events import (
    Closed,
    Conn,
    CreatedSession,
    CreateSession,
    Disconnect,
    Effect,
    Event,
    Notify,
    Opened,
    Received,
    RoomCampaign,
    Rules,
    Send,
    SendAll,
    SessionCreated,
    Texts,
    Tick,
)
from mastok.live.room import Room
from mastok.states import CampaignState

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
# The Waiting frame of someone who just joined the pools (the harness' 5 minutes' limit).
WAITING_0 = ("Waiting", {"waited": 0, "limit": 300, "leave_after": 0})
TEXTS = Texts("<p>consent</p>", "<p>wait</p>", "<p>pending</p>", "<p>paused</p>", "<p>done</p>")


def campaign(**changes: Any) -> RoomCampaign:
    """A Running campaign: sessions of 2, 3 at most, 1 at a time, 30 min long, 5 min wait."""
    groups = changes.pop("groups", None)
    per_session = changes.get("per_session", 2)
    base = RoomCampaign(
        namespace="ns",
        state=CampaignState.RUNNING,
        per_session=per_session,
        max_sessions=3,
        concurrent_sessions=1,
        session_duration=timedelta(minutes=30),
        waiting_limit=timedelta(minutes=5),
        join_once=False,
        started_sessions=0,
        groups=(("default", per_session),),
        grouping=None,
        texts=TEXTS,
    )
    if groups is not None:
        changes["groups"] = groups
        changes["grouping"] = "\n".join(
            ["Q?", *(f"{label}:{size}" for label, size in groups), "Go"]
        )
    return replace(base, **changes)


def session(number: int, size: int = 2) -> CreatedSession:
    codes = [f"s{number}p{i}" for i in range(1, size + 1)]
    return CreatedSession(
        code=f"sess{number}",
        mastok_id=f"mk:ns:{number}",
        admin_url=f"http://otree/SessionStartLinks/sess{number}",
        participants=tuple((code, f"http://otree/InitializeParticipant/{code}") for code in codes),
    )


class RoomHarness:
    def __init__(
        self,
        room_campaign: RoomCampaign | None = None,
        grace: float = 30,
        live_redirect: bool = True,
        room: Room | None = None,
    ) -> None:
        self.minted = 0
        self.room = room or Room(
            room_campaign or campaign(),
            Rules(timedelta(seconds=grace), live_redirect),
            self._mint,
        )
        self.room.new_token = self._mint
        self.now = T0
        self.next_conn = 0
        self.log: list[Effect] = []

    def _mint(self) -> str:
        self.minted += 1
        return f"tok{self.minted}"

    # -- events ------------------------------------------------------------------------------

    def do(self, event: Event) -> list[Effect]:
        before, minted = self.room.snapshot(), self.minted
        effects = self.room.handle(event, self.now)
        self.room.rollback()
        assert self.room.snapshot() == before, f"rolling back {event} left the room changed"
        self.minted = minted
        again = self.room.handle(event, self.now)
        assert again == effects, f"{event} handled twice gave different effects"
        self.room.commit()
        self.log.extend(effects)
        return effects

    def later(self, **delta: float) -> None:
        self.now += timedelta(**delta)

    def tick(self, **delta: float) -> list[Effect]:
        self.later(**delta)
        return self.do(Tick())

    def open(self, **query: str) -> Conn:
        """A socket opens, its URL's query parameters (but the slug) given by name."""
        self.next_conn += 1
        self.do(Opened(self.next_conn, tuple(query.items())))
        return self.next_conn

    def send(self, conn: Conn, kind: str, payload: Any = None) -> list[Effect]:
        return self.do(Received(conn, kind, payload))

    def close(self, conn: Conn, code: int | None = 1006) -> list[Effect]:
        """The socket closes: by default dropped (1006), as a connection that is lost."""
        return self.do(Closed(conn, code))

    def land(self, fingerprint: str = "", **query: str) -> tuple[Conn, str]:
        """A new participant up to the consent: (its socket, its token)."""
        conn = self.open(**query)
        self.send(conn, "Land", fingerprint or f"fp{conn}")
        token = self.room.sockets[conn]
        assert token is not None, self.frames(conn)
        return conn, token

    def agree(self, fingerprint: str = "", **query: str) -> tuple[Conn, str]:
        conn, token = self.land(fingerprint, **query)
        self.send(conn, "Agree")
        return conn, token

    def created(self, number: int) -> list[Effect]:
        size = self.room.campaign.per_session
        return self.do(SessionCreated(number, session(number, size)))

    # -- what was said -----------------------------------------------------------------------

    def frames(self, conn: Conn, effects: list[Effect] | None = None) -> list[tuple[str, Any]]:
        """The frames `conn` got (from `effects`, or all so far), a Disconnect as its reason."""
        found: list[tuple[str, Any]] = []
        for effect in self.log if effects is None else effects:
            sent = isinstance(effect, Send) and effect.conn == conn
            if sent or (isinstance(effect, SendAll) and conn in effect.conns):
                found.append((effect.kind, effect.payload))
            elif isinstance(effect, Disconnect) and effect.conn == conn:
                found.append(("Disconnect", effect.reason))
        return found

    def kinds(self, conn: Conn, effects: list[Effect] | None = None) -> list[str]:
        return [kind for kind, _ in self.frames(conn, effects)]

    def last(self, conn: Conn) -> tuple[str, Any]:
        """The last frame `conn` got but `Waiting` (the time waited that follows each view)."""
        return [frame for frame in self.frames(conn) if frame[0] != "Waiting"][-1]

    def notes(self, effects: list[Effect] | None = None) -> list[tuple[str, Any]]:
        return [
            (e.kind, e.payload)
            for e in (self.log if effects is None else effects)
            if isinstance(e, Notify)
        ]

    def of(self, kind: type, effects: list[Effect] | None = None) -> list[Any]:
        return [e for e in (self.log if effects is None else effects) if isinstance(e, kind)]

    def creations(self, effects: list[Effect] | None = None) -> list[tuple[int, bool]]:
        """The sessions asked for: (number, look_up)."""
        return [(e.number, e.look_up) for e in self.of(CreateSession, effects)]

    def joining(self) -> list[str]:
        return [m.token for pool in self.room.joining.values() for m in pool]

    def pending(self) -> list[str]:
        return [m.token for pool in self.room.pending.values() for m in pool]
