"""Tables. Alembic migrations (mastok/db/migrations) create them; keep both in step."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Boolean, DateTime, Integer, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


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
    show_nb_participants: Mapped[bool] = mapped_column(Boolean, default=False)
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
    state: Mapped[str] = mapped_column(String(16), default="Paused")
    started_sessions: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
