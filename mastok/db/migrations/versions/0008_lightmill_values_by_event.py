"""lightmill: measure values stored a trial and an event at a time (one JSON object each)

A trial's values move onto its row (`lm_trials.measure_values`), an event's into one row of
`lm_events`: a row a value cost PostgreSQL two foreign-key checks a value (mastok/lightmill/
tables.py). The objects are built by each database's JSON aggregate; the downgrade takes them
apart again.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 08:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _aggregate() -> str:
    """The dialect's JSON object of a group's (measure id, value) rows, as text."""
    if op.get_bind().dialect.name == "postgresql":
        return "CAST(json_object_agg(CAST(measure_id AS TEXT), value) AS TEXT)"
    return "json_group_object(CAST(measure_id AS TEXT), value)"


def _pairs(column: str) -> str:
    """The dialect's (key, value text) rows of the JSON object in `column`."""
    if op.get_bind().dialect.name == "postgresql":
        return f"json_each_text(CAST({column} AS JSON))"
    return f"json_each({column})"


def upgrade() -> None:
    with op.batch_alter_table("lm_trials", schema=None) as batch_op:
        batch_op.add_column(sa.Column("measure_values", sa.Text(), nullable=True))
    op.create_table(
        "lm_events",
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("measure_values", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["trial_id"],
            ["lm_trials.id"],
            name=op.f("fk_lm_events_trial_id_lm_trials"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("trial_id", "number", name=op.f("pk_lm_events")),
        sqlite_with_rowid=False,
    )
    aggregate = _aggregate()
    op.execute(
        f"UPDATE lm_trials SET measure_values = (SELECT {aggregate} FROM lm_trial_measure_values"
        " AS v WHERE v.trial_id = lm_trials.id)"
        " WHERE id IN (SELECT trial_id FROM lm_trial_measure_values)"
    )
    op.execute(
        "INSERT INTO lm_events (trial_id, number, measure_values)"
        f" SELECT trial_id, event_number, {aggregate} FROM lm_event_measure_values"
        " GROUP BY trial_id, event_number"
    )
    op.drop_table("lm_trial_measure_values")
    op.drop_table("lm_event_measure_values")


def downgrade() -> None:
    op.create_table(
        "lm_event_measure_values",
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("event_number", sa.Integer(), nullable=False),
        sa.Column("measure_id", sa.Integer(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["measure_id"],
            ["lm_measures.id"],
            name=op.f("fk_lm_event_measure_values_measure_id_lm_measures"),
        ),
        sa.ForeignKeyConstraint(
            ["trial_id"],
            ["lm_trials.id"],
            name=op.f("fk_lm_event_measure_values_trial_id_lm_trials"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "trial_id", "event_number", "measure_id", name=op.f("pk_lm_event_measure_values")
        ),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "lm_trial_measure_values",
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("measure_id", sa.Integer(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["measure_id"],
            ["lm_measures.id"],
            name=op.f("fk_lm_trial_measure_values_measure_id_lm_measures"),
        ),
        sa.ForeignKeyConstraint(
            ["trial_id"],
            ["lm_trials.id"],
            name=op.f("fk_lm_trial_measure_values_trial_id_lm_trials"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("trial_id", "measure_id", name=op.f("pk_lm_trial_measure_values")),
        sqlite_with_rowid=False,
    )
    op.execute(
        "INSERT INTO lm_trial_measure_values (trial_id, measure_id, value)"
        " SELECT t.id, CAST(j.key AS INTEGER), j.value"
        f" FROM lm_trials AS t, {_pairs('t.measure_values')} AS j"
        " WHERE t.measure_values IS NOT NULL"
    )
    op.execute(
        "INSERT INTO lm_event_measure_values (trial_id, event_number, measure_id, value)"
        " SELECT e.trial_id, e.number, CAST(j.key AS INTEGER), j.value"
        f" FROM lm_events AS e, {_pairs('e.measure_values')} AS j"
    )
    op.drop_table("lm_events")
    with op.batch_alter_table("lm_trials", schema=None) as batch_op:
        batch_op.drop_column("measure_values")
