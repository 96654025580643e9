"""participants: the waiting limit each visit's page was told

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04 09:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Written as a visit enters the pools and when an edit lengthens it: a room rebuilt (a
    # restart, a new leader) keeps it after the campaign's limit was shortened. Rows from
    # before (null) wait the campaign's limit, as they did.
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("waiting_limit_seconds", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.drop_column("waiting_limit_seconds")
