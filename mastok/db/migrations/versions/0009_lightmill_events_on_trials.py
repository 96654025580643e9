"""lightmill: a trial's events' values on its row (one JSON array), no `lm_events`

Each event's row of `lm_events`, with its foreign key and its index entry, was about a third of
PostgreSQL's CPU a logged trial (mastok/lightmill/tables.py). A trial's events move onto its
row (`lm_trials.event_values`): an array of their stored objects in event order, null for an
event without values (mastok/lightmill/measure_values.py). Each object's text is kept as it was
stored. The upgrade goes a thousand trials at a time (their arrays built here: SQLite's
aggregates take no order before 3.44); the downgrade splits the arrays in SQL.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 17:00:00.000000
"""

from collections.abc import Sequence
from itertools import groupby

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TRIALS_AT_ONCE = 1000

_NEXT_TRIALS = sa.text(
    "SELECT DISTINCT trial_id FROM lm_events WHERE trial_id > :after ORDER BY trial_id LIMIT :limit"
)
_EVENTS = sa.text(
    "SELECT e.trial_id, t.event_count, e.number, e.measure_values FROM lm_events AS e"
    " JOIN lm_trials AS t ON t.id = e.trial_id"
    " WHERE e.trial_id > :after AND e.trial_id <= :last ORDER BY e.trial_id, e.number"
)
_SET = sa.text("UPDATE lm_trials SET event_values = :event_values WHERE id = :id")


def _array(count: int, events: Sequence[tuple[int, str]]) -> str:
    """The trial's `count` events as one JSON array of their stored texts (null: no values)."""
    texts = ["null"] * max(count, events[-1][0] + 1)
    for number, stored in events:
        texts[number] = stored
    return "[" + ",".join(texts) + "]"


def upgrade() -> None:
    with op.batch_alter_table("lm_trials", schema=None) as batch_op:
        batch_op.add_column(sa.Column("event_values", sa.Text(), nullable=True))
    bind = op.get_bind()
    after = -1
    while True:
        trials = bind.execute(_NEXT_TRIALS, {"after": after, "limit": TRIALS_AT_ONCE}).all()
        if not trials:
            break
        last = trials[-1][0]
        rows = bind.execute(_EVENTS, {"after": after, "last": last}).all()
        arrays = [
            {"id": trial_id, "event_values": _array(count, [(n, v) for _, _, n, v in events])}
            for (trial_id, count), events in groupby(rows, key=lambda row: (row[0], row[1]))
        ]
        bind.execute(_SET, arrays)
        after = last
    op.drop_table("lm_events")


def downgrade() -> None:
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
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "INSERT INTO lm_events (trial_id, number, measure_values)"
            " SELECT t.id, CAST(e.number AS INTEGER) - 1, CAST(e.value AS TEXT)"
            " FROM lm_trials AS t CROSS JOIN LATERAL"
            " json_array_elements(CAST(t.event_values AS JSON)) WITH ORDINALITY AS e(value, number)"
            " WHERE t.event_values IS NOT NULL AND json_typeof(e.value) = 'object'"
        )
    else:
        op.execute(
            "INSERT INTO lm_events (trial_id, number, measure_values)"
            " SELECT t.id, CAST(e.key AS INTEGER), e.value"
            " FROM lm_trials AS t, json_each(t.event_values) AS e"
            " WHERE t.event_values IS NOT NULL AND e.type = 'object'"
        )
    with op.batch_alter_table("lm_trials", schema=None) as batch_op:
        batch_op.drop_column("event_values")
