"""participants: an index on (campaign_id, ended_at)

A room rebuilt (at a restart, a new leader, each view a standby builds) reads its campaign's
visits ended within the resume grace (`mastok.live.records`): without it, every ended visit of
the campaign was read (a sequential scan on PostgreSQL, the whole `left` step on SQLite).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 09:00:00.000000
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.create_index(
            "ix_participants_campaign_ended_at", ["campaign_id", "ended_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.drop_index("ix_participants_campaign_ended_at")
