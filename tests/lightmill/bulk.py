"""Big experiments for the export's tests and benchmarks, built straight into the tables.

`big_design(...)` makes a design in memory (no XML); `store.import_design` stores it through
the import's bulk path; `fill_results(db, experiment, ...)` then completes every trial with
trial measures and events by bulk INSERTs, far faster than the API would.

Values are a function of the trial's place, so tests can check any cell:
`expected_trial_measures(...)`, `expected_event(...)`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mastok.db import Database
from mastok.lightmill import design as d
from mastok.lightmill.measure_values import encode, encode_each
from mastok.lightmill.tables import LMExperiment, LMMeasure, LMRun, LMTrial

COMPLETED_AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BATCH = 20_000
FACTORS = (
    d.Factor(
        "technique",
        "Technique",
        "String",
        "key",
        "Within Subject",
        (d.FactorValue("mouse", "Mouse"), d.FactorValue("touch", "Touch")),
        None,
    ),
    d.Factor(
        "size",
        "Size",
        "Integer",
        "key",
        "Within Subject",
        (d.FactorValue("small", None), d.FactorValue("large", None)),
        "large",
    ),
)
MEASURES = (
    d.Measure("time", "Time", "Integer", True, False),
    d.Measure("durations.reaction", "Reaction", "Integer", True, False),
    d.Measure("x", "X", "Float", False, True),
    d.Measure("y", "Y", "Float", False, True),
    d.Measure("hit", "Hit", "Boolean", True, True),
)


def technique(block: int) -> str:
    return "touch" if block % 2 else "mouse"


def size(trial: int) -> str:
    return "small" if trial % 3 == 0 else "large"


def big_design(
    experiment: str = "big", runs: int = 2, blocks: int = 50, trials: int = 1000
) -> d.Design:
    """`runs` runs of `blocks` blocks (the first a practice block) of `trials` trials."""

    def block(number: int) -> d.Block:
        own = {"technique": technique(number)}
        return d.Block(
            number=number,
            measured_number=None if number == 0 else number - 1,
            practice=number == 0,
            factor_values=own,
            trials=tuple(d.Trial(t, {**own, "size": size(t)}) for t in range(trials)),
        )

    run_blocks = tuple(block(b) for b in range(blocks))
    return d.Design(
        id=experiment,
        name=f"Big {experiment}",
        author="bench",
        description=None,
        factors=FACTORS,
        measures=MEASURES,
        runs=tuple(d.Run(f"R{r}", run_blocks) for r in range(runs)),
    )


def expected_trial_measures(position: int) -> dict[str, str]:
    return {"time": str(position), "durations.reaction": str(position % 400), "hit": "true"}


def expected_event(position: int, event: int) -> dict[str, str]:
    return {"x": f"{position}.{event}", "y": str(-event), "hit": "false"}


async def fill_results(db: Database, experiment: str, events: int = 3) -> None:
    """Complete every trial of the experiment, each with trial measures and `events` events."""
    async with db.session() as session, session.begin():
        xp = await session.scalar(select(LMExperiment.id).where(LMExperiment.code == experiment))
        measure = {
            code: pk
            for code, pk in await session.execute(
                select(LMMeasure.code, LMMeasure.id).where(LMMeasure.experiment_id == xp)
            )
        }
        run_ids = select(LMRun.id).where(LMRun.experiment_id == xp)
        await session.execute(
            update(LMTrial)
            .where(LMTrial.run_id.in_(run_ids))
            .values(completed_at=COMPLETED_AT, event_count=events)
        )
        await session.execute(
            update(LMRun)
            .where(LMRun.experiment_id == xp)
            .values(completed_trials=LMRun.trial_count)
        )
        trials = list(
            await session.execute(
                select(LMTrial.id, LMTrial.position).where(LMTrial.run_id.in_(run_ids))
            )
        )
        trial_rows: list[dict[str, Any]] = []
        for trial_id, position in trials:
            each = [expected_event(position, event) for event in range(events)]
            trial_rows.append(
                {
                    "pk": trial_id,
                    "stored": encode(measure, expected_trial_measures(position)),
                    "events": encode_each(measure, each),
                }
            )
            if len(trial_rows) >= BATCH:
                await _flush(session, trial_rows)
        await _flush(session, trial_rows)


async def _flush(session: AsyncSession, trial_rows: list[Any]) -> None:
    if trial_rows:
        # On the connection: Core's executemany (the session's would be ORM's bulk UPDATE).
        connection = await session.connection()
        await connection.execute(
            update(LMTrial)
            .where(LMTrial.id == bindparam("pk"))
            .values(measure_values=bindparam("stored"), event_values=bindparam("events")),
            trial_rows,
        )
    trial_rows.clear()
