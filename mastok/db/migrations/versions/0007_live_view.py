"""live view: indexes for the campaign's figures, oTree progress, the idle flag

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("idle_flag_seconds", sa.Integer(), nullable=False, server_default="300")
        )
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.create_index(
            "ix_participants_campaign_queued_at", ["campaign_id", "queued_at"], unique=False
        )
        batch_op.create_index("ix_participants_session_id", ["session_id"], unique=False)
    op.create_table(
        "session_pages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("otree_code", sa.String(length=64), nullable=False),
        sa.Column("page_index", sa.Integer(), nullable=False),
        sa.Column("page_count", sa.Integer(), nullable=False),
        sa.Column("finished", sa.Boolean(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_session_pages_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_session_pages")),
        sa.UniqueConstraint("session_id", "otree_code", name="uq_session_pages_session_id"),
    )


def downgrade() -> None:
    op.drop_table("session_pages")
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.drop_index("ix_participants_session_id")
        batch_op.drop_index("ix_participants_campaign_queued_at")
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_column("finished_at")
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_column("idle_flag_seconds")
