"""leader term: the number each new leader raises, checked by every write of the rooms

A leader whose lock's connection alone was ended could go on writing for up to a few seconds
while another process led (mastok/db/leader_term.py). The one row starts at 0.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 07:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "leader_term",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("term", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leader_term")),
    )
    op.bulk_insert(table, [{"id": 1, "term": 0}])


def downgrade() -> None:
    op.drop_table("leader_term")
