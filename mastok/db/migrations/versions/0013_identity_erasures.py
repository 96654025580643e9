"""campaigns: how many times a campaign's identities were erased

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 12:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Counted up in the erasure's transaction: the campaign's running room (told of the change,
    # as of an edit, from whichever process erased) forgets the identities it remembers.
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("identity_erasures", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_column("identity_erasures")
