"""lm_trials: pages filled to 10% by the import, so a trial completes where it was written

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 09:30:00.000000
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# The reasons are in tables.py (LM_TRIALS_FILLFACTOR). PostgreSQL only: SQLite has no such
# setting.
# Pages written before keep their packing; designs imported from now on get the room.
FILLFACTOR = 10


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE lm_trials SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE lm_trials RESET (fillfactor)")
