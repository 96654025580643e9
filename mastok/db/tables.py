"""Tables. Alembic migrations (mastok/db/migrations) create them; keep both in step."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import false as sa_false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mastok.clock import utcnow
from mastok.states import CampaignState

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_uid() -> str:
    return secrets.token_hex(4)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace: Mapped[str] = mapped_column(String(128), unique=True)
    slug: Mapped[str] = mapped_column(String(128), unique=True)
    otree_config_name: Mapped[str] = mapped_column(String(255))
    per_session: Mapped[int] = mapped_column(Integer)
    join_once: Mapped[bool] = mapped_column(Boolean, default=False)
    show_nb_participants: Mapped[bool] = mapped_column(Boolean, default=True)
    max_sessions: Mapped[int] = mapped_column(Integer)
    concurrent_sessions: Mapped[int] = mapped_column(Integer)
    session_duration: Mapped[int] = mapped_column(Integer)
    waiting_limit: Mapped[int] = mapped_column(Integer)
    consent: Mapped[str] = mapped_column(Text)
    grouping: Mapped[str] = mapped_column(Text, default="")
    instructions: Mapped[str] = mapped_column(Text, default="")
    paused: Mapped[str] = mapped_column(Text, default="")
    completed: Mapped[str] = mapped_column(Text, default="")
    pending: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(16), default=CampaignState.PAUSED)
    started_sessions: Mapped[int] = mapped_column(Integer, default=0)
    uid: Mapped[str] = mapped_column(String(32), default=new_uid, server_default="")
    identity_param: Mapped[str] = mapped_column(String(64), default="", server_default="")
    capture_params: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    require_identity: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=sa_false()
    )
    exits: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")
    leave_after_seconds: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    ready_check_seconds: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # A participant of a live session on the same oTree page for longer is flagged (0: never).
    idle_flag_seconds: Mapped[int] = mapped_column(Integer, default=300, server_default="300")
    # The session number asked of oTree and not yet recorded (the waiting room's, not the admin's).
    session_asked: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # How many times its identities were erased: a running room that sees it grow forgets them.
    identity_erasures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class CampaignSlug(Base):
    """Every slug a campaign was given, its current one included. An old slug's links are out
    there (posted on a recruiting platform): they lead to its campaign for good, and no other
    campaign may take it."""

    __tablename__ = "campaign_slugs"

    slug: Mapped[str] = mapped_column(String(128), primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))


class OTreeSession(Base):
    """An oTree session mastok created for a campaign (`mastok_id` is also its oTree label)."""

    __tablename__ = "sessions"
    __table_args__ = (UniqueConstraint("campaign_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    mastok_id: Mapped[str] = mapped_column(String(160), unique=True)
    otree_code: Mapped[str] = mapped_column(String(64))
    admin_url: Mapped[str] = mapped_column(Text, default="")
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # When oTree showed every participant finished (it stopped counting as live then).
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class SessionPage(Base):
    """Where an oTree participant of a session is, as mastok last read it from oTree: its page
    index out of the session's pages, and when mastok saw that index change (oTree's export
    has no page times: idle times are counted from `changed_at`)."""

    __tablename__ = "session_pages"
    __table_args__ = (UniqueConstraint("session_id", "otree_code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    otree_code: Mapped[str] = mapped_column(String(64))
    page_index: Mapped[int] = mapped_column(Integer)
    page_count: Mapped[int] = mapped_column(Integer)
    finished: Mapped[bool] = mapped_column(Boolean)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Consent(Base):
    """A consent text as participants agreed to it, kept once by its hash (campaigns change)."""

    __tablename__ = "consents"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Participant(Base):
    """One visit to a campaign's room: live from Land on, then the record of how it went.

    `step` (a `mastok.states.Step`) is where they are: landed, agreed, joining, pending (the
    pools), started (in an oTree session) or left; `outcome` (a `mastok.states.Outcome`) how
    the visit ended. Pools are ordered by `queued_at` (when it first joined the pools in the
    visit, its group chosen again or not) then `id`.
    A visit turned away at once (a paused campaign, say) is a row that starts and ends left.
    """

    __tablename__ = "participants"
    __table_args__ = (
        Index("ix_participants_campaign_step", "campaign_id", "step"),
        Index("ix_participants_campaign_browser_id", "campaign_id", "browser_id"),
        Index("ix_participants_campaign_identity", "campaign_id", "identity"),
        Index("ix_participants_campaign_created_at", "campaign_id", "created_at"),
        Index("ix_participants_campaign_queued_at", "campaign_id", "queued_at"),
        Index("ix_participants_campaign_ended_at", "campaign_id", "ended_at"),
        Index("ix_participants_session_id", "session_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    token: Mapped[str] = mapped_column(String(64), unique=True)
    # The page's random id (a bearer secret: it unlocks the live redirect); None if it never landed.
    browser_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    identity: Mapped[str | None] = mapped_column(String(128), nullable=True)  # platform id
    params: Mapped[dict[str, str] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    step: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    consent_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    group_label: Mapped[str | None] = mapped_column(String(255), nullable=True)
    consented_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ready_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Its waiting limit from `queued_at` on, as its page was told it (the campaign's when it
    # entered the pools, or a longer one edited since); None: the campaign's (rows before 0015).
    waiting_limit_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    session_id: Mapped[int | None] = mapped_column(
        ForeignKey("sessions.id", ondelete="SET NULL"), nullable=True
    )
    otree_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    start_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class AuditEntry(Base):
    """One state-changing admin action (mastok.audit)."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    login: Mapped[str] = mapped_column(String(128))
    address: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(255))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)


class LeaderTerm(Base):
    """The leader's term (`mastok.db.leader_term`): one row, raised by each new leader."""

    __tablename__ = "leader_term"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    term: Mapped[int] = mapped_column(BigInteger)
