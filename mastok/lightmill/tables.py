"""LightMill's tables (prefix `lm_`), on mastok's metadata so the migrations see them.

Shaped for the export: a run's trials are read in order from one index (`run_id`, `position`),
and each trial's factor values sit in a narrow table keyed by the trial first, so a streamed
export walks trials in order and range-scans the side table along its primary key, with no
sort. On SQLite that narrow table is WITHOUT ROWID, so the primary key is the table itself.
Strings written by the design (ids, names) are stored once, in the small tables; the big ones
hold integers and the measured text.

Measured values are stored on the trial's row, written by the UPDATE that completes it: its
own as one JSON text keyed by measure id, its events' as one JSON array of such objects
(measure_values.py). A row a value cost PostgreSQL two foreign-key checks a value, about 25
values a trial: its CPU for a batch's write went from 0.27 to 0.055 ms a trial with a row a
trial and a row an event (5 events of 4 measures and 5 trial measures; bench/README.md,
scenario 6). The events' rows, each with its foreign key and its index entry, were then a
third of PostgreSQL's CPU a trial; on the trial's row they cost none. A measure id in a value
is one of the trial's experiment's measures (the write paths resolve it there), which are
never deleted but with the experiment.

A run's trials complete strictly in order, so `lm_runs.completed_trials` is also the position
of its current trial; the trial POST moves it on with a conditional UPDATE, which keeps two
posts from completing the same trial.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from mastok.db.tables import Base

ID_LENGTH = 255
WITHOUT_ROWID = {"sqlite_with_rowid": False}


class LMExperiment(Base):
    __tablename__ = "lm_experiments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(ID_LENGTH), unique=True)  # LightMill's `id`
    name: Mapped[str | None] = mapped_column(Text, nullable=True)
    author: Mapped[str | None] = mapped_column(Text, nullable=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # the store's clock


class LMFactor(Base):
    __tablename__ = "lm_factors"
    __table_args__ = (Index("ix_lm_factors_experiment_code", "experiment_id", "code", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("lm_experiments.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)  # document order
    code: Mapped[str] = mapped_column(String(ID_LENGTH))
    name: Mapped[str | None] = mapped_column(Text, nullable=True)
    type: Mapped[str | None] = mapped_column(Text, nullable=True)
    kind: Mapped[str | None] = mapped_column(Text, nullable=True)
    tag: Mapped[str | None] = mapped_column(Text, nullable=True)


class LMFactorValue(Base):
    __tablename__ = "lm_factor_values"
    __table_args__ = (Index("ix_lm_factor_values_factor_code", "factor_id", "code", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    factor_id: Mapped[int] = mapped_column(ForeignKey("lm_factors.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    code: Mapped[str] = mapped_column(String(ID_LENGTH))
    name: Mapped[str | None] = mapped_column(Text, nullable=True)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)


class LMMeasure(Base):
    """A measure of the design, or one a client posted first (type `unregistered`)."""

    __tablename__ = "lm_measures"
    __table_args__ = (
        Index("ix_lm_measures_experiment_code", "experiment_id", "code", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("lm_experiments.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(ID_LENGTH))
    name: Mapped[str | None] = mapped_column(Text, nullable=True)
    type: Mapped[str | None] = mapped_column(Text, nullable=True)
    trial_level: Mapped[bool] = mapped_column(Boolean)
    event_level: Mapped[bool] = mapped_column(Boolean)
    registered: Mapped[bool] = mapped_column(Boolean)  # false: added by a client's post


class LMRun(Base):
    __tablename__ = "lm_runs"
    __table_args__ = (
        Index("ix_lm_runs_experiment_code", "experiment_id", "code", unique=True),
        Index("ix_lm_runs_experiment_position", "experiment_id", "position", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("lm_experiments.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    code: Mapped[str] = mapped_column(String(ID_LENGTH))
    trial_count: Mapped[int] = mapped_column(Integer)
    block_count: Mapped[int] = mapped_column(Integer)
    completed_trials: Mapped[int] = mapped_column(Integer, default=0)
    lock_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    locked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class LMBlock(Base):
    __tablename__ = "lm_blocks"
    __table_args__ = (Index("ix_lm_blocks_run_number", "run_id", "number", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("lm_runs.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    measured_number: Mapped[int | None] = mapped_column(Integer, nullable=True)  # practice: NULL
    practice: Mapped[bool] = mapped_column(Boolean)
    trial_count: Mapped[int] = mapped_column(Integer)


class LMBlockValue(Base):
    """A block's own factor values, as its `values` attribute gave them."""

    __tablename__ = "lm_block_values"
    __table_args__ = (WITHOUT_ROWID,)

    block_id: Mapped[int] = mapped_column(
        ForeignKey("lm_blocks.id", ondelete="CASCADE"), primary_key=True
    )
    factor_id: Mapped[int] = mapped_column(ForeignKey("lm_factors.id"), primary_key=True)
    value_id: Mapped[int] = mapped_column(ForeignKey("lm_factor_values.id"))


# A trial's row is written twice: by its design's import (about 60 bytes) and once by the
# UPDATE that completes it with its values (about 400 bytes for 5 trial measures and 5 events
# of 4, as bench scenario 6 posts). On PostgreSQL that UPDATE writes a new version of the row;
# on a page with room for it, it is a heap-only tuple (HOT) update, which adds nothing to the
# table's three indexes. The import packed its pages full, so most completions (95 of 120 in
# tests/lightmill/test_trial_pages.py) moved the trial to another page and added an entry to
# each index. At 10% (PostgreSQL's least) an imported page holds about 13 trials, which still
# fit beside their old versions once completed at up to about 550 bytes each; larger ones are
# stored as before, moving. A completed design takes about half again the room it would
# packed, about what it took before, when the moved trials left their imported pages behind.
LM_TRIALS_FILLFACTOR = 10


class LMTrial(Base):
    """`position` numbers the run's trials from 0 across blocks; `number` within the block."""

    __tablename__ = "lm_trials"
    __table_args__ = (
        Index("ix_lm_trials_run_position", "run_id", "position", unique=True),
        Index("ix_lm_trials_block_number", "block_id", "number", unique=True),
        {"postgresql_with": {"fillfactor": LM_TRIALS_FILLFACTOR}},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("lm_runs.id", ondelete="CASCADE"))
    block_id: Mapped[int] = mapped_column(ForeignKey("lm_blocks.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    number: Mapped[int] = mapped_column(Integer)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    event_count: Mapped[int] = mapped_column(Integer, default=0)  # events are 0..count-1
    # The trial-level measures' values (measure_values.py); NULL: none, or not done.
    measure_values: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Its events' values, an element an event (measure_values.py); NULL: none, or not done.
    event_values: Mapped[str | None] = mapped_column(Text, nullable=True)


class LMTrialFactorValue(Base):
    """Every factor value that applies to a trial: defaults < block < trial, resolved once."""

    __tablename__ = "lm_trial_factor_values"
    __table_args__ = (WITHOUT_ROWID,)

    trial_id: Mapped[int] = mapped_column(
        ForeignKey("lm_trials.id", ondelete="CASCADE"), primary_key=True
    )
    factor_id: Mapped[int] = mapped_column(ForeignKey("lm_factors.id"), primary_key=True)
    value_id: Mapped[int] = mapped_column(ForeignKey("lm_factor_values.id"))
