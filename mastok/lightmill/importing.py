"""Writing a parsed design's rows, one table at a time.

Each table gets one bulk INSERT (executemany), then its new ids are read back by their natural
key in one SELECT: RETURNING ids in parameter order makes SQLite insert row by row, which turns
a 100,000-trial design into minutes. On PostgreSQL the tables filled are then analyzed
(`analyze_imported`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Executable, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from mastok.lightmill import design as d
from mastok.lightmill import tables as t

# The tables an import fills: all of LightMill's.
IMPORTED = (
    t.LMExperiment,
    t.LMFactor,
    t.LMFactorValue,
    t.LMMeasure,
    t.LMRun,
    t.LMBlock,
    t.LMBlockValue,
    t.LMTrial,
    t.LMTrialFactorValue,
)


async def analyze_imported(connection: AsyncConnection) -> None:
    """The planner's statistics of the tables an import filled, taken now (PostgreSQL). Until
    autovacuum's next pass (up to a minute later, and it has other tables to see to) the
    planner knows nothing of the rows, and the trial write's plan read `lm_runs` whole: at
    3,000 runs a batch of 8 took PostgreSQL 0.47 ms, against 0.04 ms by the runs' primary key
    once analyzed (EXPLAIN ANALYZE). ANALYZE reads at most 30,000 rows of a table (at the
    default statistics target), however large the design."""
    names = ", ".join(table.__tablename__ for table in IMPORTED)
    await connection.execute(text(f"ANALYZE {names}"))


async def insert_design(session: AsyncSession, design: d.Design, imported_at: datetime) -> None:
    xp_id = await session.scalar(
        insert(t.LMExperiment)
        .values(
            code=design.id,
            name=design.name,
            author=design.author,
            description=design.description,
            imported_at=imported_at,
        )
        .returning(t.LMExperiment.id)
    )
    assert xp_id is not None

    await _insert(
        session, t.LMFactor, (_factor_row(xp_id, i, f) for i, f in enumerate(design.factors))
    )
    factor_id: dict[str, int] = await _ids(
        session, select(t.LMFactor.code, t.LMFactor.id).where(t.LMFactor.experiment_id == xp_id)
    )
    await _insert(
        session,
        t.LMFactorValue,
        (
            {
                "factor_id": factor_id[f.id],
                "position": position,
                "code": v.id,
                "name": v.name,
                "is_default": v.id == f.default,
            }
            for f in design.factors
            for position, v in enumerate(f.values)
        ),
    )
    value_id: dict[tuple[int, str], int] = await _ids(
        session,
        select(t.LMFactorValue.factor_id, t.LMFactorValue.code, t.LMFactorValue.id)
        .join(t.LMFactor)
        .where(t.LMFactor.experiment_id == xp_id),
    )

    def pairs(values: Mapping[str, str]) -> Iterable[tuple[int, int]]:
        for factor, value in values.items():
            yield factor_id[factor], value_id[(factor_id[factor], value)]

    await _insert(session, t.LMMeasure, (_measure_row(xp_id, m) for m in design.measures))
    await _insert(session, t.LMRun, (_run_row(xp_id, i, r) for i, r in enumerate(design.runs)))
    run_id: dict[str, int] = await _ids(
        session, select(t.LMRun.code, t.LMRun.id).where(t.LMRun.experiment_id == xp_id)
    )
    runs = [(run_id[r.id], r) for r in design.runs]
    await _insert(
        session,
        t.LMBlock,
        (
            {
                "run_id": run,
                "number": b.number,
                "measured_number": b.measured_number,
                "practice": b.practice,
                "trial_count": len(b.trials),
            }
            for run, r in runs
            for b in r.blocks
        ),
    )
    of_experiment = t.LMRun.experiment_id == xp_id
    block_id: dict[tuple[int, int], int] = await _ids(
        session,
        select(t.LMBlock.run_id, t.LMBlock.number, t.LMBlock.id).join(t.LMRun).where(of_experiment),
    )
    await _insert(
        session,
        t.LMBlockValue,
        (
            {"block_id": block_id[(run, b.number)], "factor_id": f, "value_id": v}
            for run, r in runs
            for b in r.blocks
            for f, v in pairs(b.factor_values)
        ),
    )
    placed = list(_placed_trials(runs))
    await _insert(
        session,
        t.LMTrial,
        (
            {
                "run_id": run,
                "block_id": block_id[(run, block)],
                "position": position,
                "number": trial.number,
                "completed_at": None,
                "event_count": 0,
            }
            for run, block, position, trial in placed
        ),
    )
    trial_id: dict[tuple[int, int], int] = await _ids(
        session,
        select(t.LMTrial.run_id, t.LMTrial.position, t.LMTrial.id)
        .join(t.LMRun)
        .where(of_experiment),
    )
    await _insert(
        session,
        t.LMTrialFactorValue,
        (
            {"trial_id": trial_id[(run, position)], "factor_id": f, "value_id": v}
            for run, _, position, trial in placed
            for f, v in pairs(trial.factor_values)
        ),
    )


def _placed_trials(runs: Sequence[tuple[int, d.Run]]) -> Iterable[tuple[int, int, int, d.Trial]]:
    """(run id, block number, position in the run, trial) for every trial."""
    for run, r in runs:
        position = 0
        for b in r.blocks:
            for trial in b.trials:
                yield run, b.number, position, trial
                position += 1


def _in_design(xp_id: int, position: int, code: str) -> dict[str, Any]:
    """A factor's or a run's place: its experiment, its position in the design, its id."""
    return {"experiment_id": xp_id, "position": position, "code": code}


def _factor_row(xp_id: int, position: int, f: d.Factor) -> dict[str, Any]:
    return {
        **_in_design(xp_id, position, f.id),
        "name": f.name,
        "type": f.type,
        "kind": f.kind,
        "tag": f.tag,
    }


def _measure_row(xp_id: int, m: d.Measure) -> dict[str, Any]:
    return {
        "experiment_id": xp_id,
        "code": m.id,
        "name": m.name,
        "type": m.type,
        "trial_level": m.trial_level,
        "event_level": m.event_level,
        "registered": True,
    }


def _run_row(xp_id: int, position: int, r: d.Run) -> dict[str, Any]:
    return {
        **_in_design(xp_id, position, r.id),
        "trial_count": r.trial_count,
        "block_count": len(r.blocks),
        "completed_trials": 0,
    }


async def _insert(session: AsyncSession, table: type[Any], rows: Iterable[dict[str, Any]]) -> None:
    found = list(rows)
    if found:
        await session.execute(insert(table), found)


async def _ids(session: AsyncSession, query: Executable) -> dict[Any, int]:
    """`{key: id}` from rows `(key, id)` or `(key part, key part, id)`."""
    found: dict[Any, int] = {}
    for *key, id_ in await session.execute(query):
        found[key[0] if len(key) == 1 else tuple(key)] = id_
    return found
