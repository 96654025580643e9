"""campaign_slugs: every slug a campaign was given, kept for it

A renamed campaign's old slug was free for another campaign to take, and the people following
the old link (posted on a recruiting platform) landed in that other study. Each campaign's slug
is kept here from now on (the current ones copied in), its old ones leading to it.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "campaign_slugs",
        sa.Column("slug", sa.String(length=128), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_slugs_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("slug", name=op.f("pk_campaign_slugs")),
    )
    op.execute("INSERT INTO campaign_slugs (slug, campaign_id) SELECT slug, id FROM campaigns")


def downgrade() -> None:
    op.drop_table("campaign_slugs")
