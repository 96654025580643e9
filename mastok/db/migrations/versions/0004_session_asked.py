"""campaigns: the session number asked of oTree and not yet recorded

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 16:40:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Written before oTree is asked to create a campaign's session, cleared when the session is
    # recorded: only a number still asked after a crash or a failure may exist in oTree, so only
    # it is looked up by label (listing every oTree session) before it is created.
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("session_asked", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_column("session_asked")
