"""visits: platform identities, exits and ready checks; participants' records

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 19:40:00.000000
"""

import hashlib
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# What the participants' left_reason (a Disconnect reason) becomes as an outcome.
OUTCOMES = {
    "Paused": "paused",
    "Completed": "completed",
    "Full": "full",
    "LandingFailed": "landing_failed",
    "Timeout": "timeout",
    "Away": "away",
}


def upgrade() -> None:
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("identity_param", sa.String(length=64), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("capture_params", sa.JSON(), nullable=False, server_default="[]")
        )
        batch_op.add_column(
            sa.Column("require_identity", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("exits", sa.JSON(), nullable=False, server_default="{}"))
        batch_op.add_column(
            sa.Column("leave_after_seconds", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("ready_check_seconds", sa.Integer(), nullable=False, server_default="0")
        )
    op.create_table(
        "consents",
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("hash", name=op.f("pk_consents")),
    )
    _keep_current_consents()
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.drop_index("ix_participants_campaign_fingerprint")
        batch_op.alter_column(
            "fingerprint",
            new_column_name="browser_id",
            existing_type=sa.String(length=256),
            nullable=True,
        )
        batch_op.add_column(sa.Column("identity", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("params", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("outcome", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("consent_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("consented_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("ready_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.create_index(
            "ix_participants_campaign_browser_id", ["campaign_id", "browser_id"], unique=False
        )
        batch_op.create_index(
            "ix_participants_campaign_identity", ["campaign_id", "identity"], unique=False
        )
        batch_op.create_index(
            "ix_participants_campaign_created_at", ["campaign_id", "created_at"], unique=False
        )
    participants = sa.table(
        "participants",
        sa.column("step", sa.String),
        sa.column("left_reason", sa.String),
        sa.column("outcome", sa.String),
        sa.column("ended_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    op.execute(
        participants.update()
        .where(participants.c.step == "started")
        .values(outcome="started", ended_at=participants.c.updated_at)
    )
    for reason, outcome in OUTCOMES.items():
        op.execute(
            participants.update()
            .where(participants.c.step == "left", participants.c.left_reason == reason)
            .values(outcome=outcome, ended_at=participants.c.updated_at)
        )
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.drop_column("left_reason")


def _keep_current_consents() -> None:
    """Each campaign's consent as it is now, as the version its next visits agree to."""
    campaigns = sa.table("campaigns", sa.column("consent", sa.Text))
    consents = sa.table(
        "consents",
        sa.column("hash", sa.String),
        sa.column("text", sa.Text),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    texts = {row[0] for row in op.get_bind().execute(sa.select(campaigns.c.consent))}
    now = datetime.now(UTC)
    rows = [
        {"hash": hashlib.sha256(text.encode()).hexdigest(), "text": text, "created_at": now}
        for text in sorted(texts)
    ]
    if rows:
        op.bulk_insert(consents, rows)


def downgrade() -> None:
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("left_reason", sa.String(length=32), nullable=True))
    participants = sa.table(
        "participants", sa.column("outcome", sa.String), sa.column("left_reason", sa.String)
    )
    for reason, outcome in OUTCOMES.items():
        op.execute(
            participants.update()
            .where(participants.c.outcome == outcome)
            .values(left_reason=reason)
        )
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.drop_index("ix_participants_campaign_created_at")
        batch_op.drop_index("ix_participants_campaign_identity")
        batch_op.drop_index("ix_participants_campaign_browser_id")
        for column in (
            "ended_at",
            "ready_at",
            "consented_at",
            "consent_hash",
            "outcome",
            "params",
            "identity",
        ):
            batch_op.drop_column(column)
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.alter_column(
            "browser_id",
            new_column_name="fingerprint",
            existing_type=sa.String(length=256),
            nullable=False,
            server_default="",
        )
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.create_index(
            "ix_participants_campaign_fingerprint", ["campaign_id", "fingerprint"], unique=False
        )
    op.drop_table("consents")
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        for column in (
            "ready_check_seconds",
            "leave_after_seconds",
            "exits",
            "require_identity",
            "capture_params",
            "identity_param",
        ):
            batch_op.drop_column(column)
