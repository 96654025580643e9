"""LightMill's experiments, runs and results in mastok's database.

Every change is one transaction: a design is imported whole or not at all, a trial's results
and events are stored together with its completion, or nothing is. Locks carry a heartbeat: a
lock whose client has been silent for longer than the lock timeout counts as released.
"""

from __future__ import annotations

import logging
import secrets
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, case, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mastok.db import Database
from mastok.db.tables import utcnow
from mastok.lightmill import design as d
from mastok.lightmill.errors import (
    CannotImportExperiment,
    ExperimentProgressError,
    NoAvailableRuns,
    RunAlreadyLocked,
    RunCompleted,
    RunNotLocked,
    UnknownElement,
    WrongToken,
)
from mastok.lightmill.importing import insert_design
from mastok.lightmill.recording import insert_results, measure_ids
from mastok.lightmill.results import TrialResults
from mastok.lightmill.tables import (
    LMBlock,
    LMBlockValue,
    LMEventMeasureValue,
    LMExperiment,
    LMFactor,
    LMFactorValue,
    LMMeasure,
    LMRun,
    LMTrial,
    LMTrialFactorValue,
    LMTrialMeasureValue,
)

log = logging.getLogger("mastok.lightmill")


# --- What the store answers -------------------------------------------------------------------


@dataclass(frozen=True)
class ExperimentInfo:
    id: str
    name: str | None
    author: str | None
    description: str | None
    factors: tuple[d.Factor, ...]
    measures: tuple[d.Measure, ...]
    runs: tuple[str, ...]


@dataclass(frozen=True)
class RunInfo:
    id: str
    experiment_id: str
    trial_count: int
    block_count: int
    completed_trials: int
    locked: bool
    heartbeat_at: datetime | None

    @property
    def completed(self) -> bool:
        return self.completed_trials >= self.trial_count

    @property
    def started(self) -> bool:
        return self.completed_trials > 0

    @property
    def status(self) -> str:
        return "completed" if self.completed else "started" if self.started else "unstarted"


@dataclass(frozen=True)
class Lock:
    token: str
    run_id: str
    experiment_id: str


@dataclass(frozen=True)
class BlockInfo:
    number: int
    measured_number: int | None
    practice: bool
    factor_values: dict[str, str]  # the block's own
    trial_count: int


@dataclass(frozen=True)
class TrialInfo:
    experiment_id: str
    run_id: str
    block_number: int
    measured_block_number: int | None
    number: int
    practice: bool
    factor_values: dict[str, str]  # all that apply
    completed_at: datetime | None
    measures: dict[str, str]
    events: list[dict[str, str]] | None = None  # only when asked for


@dataclass(frozen=True)
class PlanBlock:
    block: BlockInfo
    trials: list[PlanTrial]


@dataclass(frozen=True)
class PlanTrial:
    number: int
    factor_values: dict[str, str]
    completed_at: datetime | None


@dataclass(frozen=True)
class LockPolicy:
    """`timeout`: seconds of silence after which a lock counts as released; `unprotected`: any
    client may take a locked run over."""

    timeout: float
    unprotected: bool = False

    def cutoff(self, now: datetime) -> datetime:
        return now - timedelta(seconds=self.timeout)


def as_utc(moment: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes back; every time mastok stores is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


# --- The store --------------------------------------------------------------------------------


class LightMillStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # Experiments

    async def import_design(self, design: d.Design) -> None:
        """Store a parsed design in one transaction. Raises CannotImportExperiment."""
        try:
            async with self.db.session() as session, session.begin():
                if await _experiment_id(session, design.id) is not None:
                    raise CannotImportExperiment(f"experiment {design.id!r} already exists")
                await insert_design(session, design)
        except IntegrityError:
            # Another import of the same id won the race.
            raise CannotImportExperiment(f"experiment {design.id!r} already exists") from None
        log.info("imported experiment %r (%d runs)", design.id, len(design.runs))

    async def has_experiment(self, experiment: str) -> bool:
        async with self.db.session() as session:
            return await _experiment_id(session, experiment) is not None

    async def experiments(self) -> dict[str, str | None]:
        """`{id: name}` in import order."""
        async with self.db.session() as session:
            rows = await session.execute(
                select(LMExperiment.code, LMExperiment.name).order_by(LMExperiment.id)
            )
            return {code: name for code, name in rows}

    async def experiment(self, experiment: str) -> ExperimentInfo:
        async with self.db.session() as session:
            row = await session.scalar(select(LMExperiment).where(LMExperiment.code == experiment))
            if row is None:
                raise _no_experiment(experiment)
            return await _experiment_info(session, row)

    # Runs and locks

    async def runs(self, experiment: str, policy: LockPolicy) -> list[RunInfo]:
        async with self.db.session() as session:
            xp_id = await _require_experiment(session, experiment)
            found = await session.scalars(
                select(LMRun).where(LMRun.experiment_id == xp_id).order_by(LMRun.position)
            )
            now = utcnow()
            return [_run_info(run, experiment, policy, now) for run in found]

    async def run(self, experiment: str, run: str, policy: LockPolicy) -> RunInfo:
        async with self.db.session() as session:
            row = await _require_run(session, experiment, run)
            return _run_info(row, experiment, policy, utcnow())

    async def available_run(self, experiment: str, policy: LockPolicy) -> RunInfo:
        """The first run no trial of which is done and nobody holds: never-locked runs first,
        then runs whose client went silent."""
        async with self.db.session() as session:
            xp_id = await _require_experiment(session, experiment)
            now = utcnow()
            row = await session.scalar(
                select(LMRun)
                .where(
                    LMRun.experiment_id == xp_id,
                    LMRun.completed_trials == 0,
                    LMRun.trial_count > 0,
                    _lock_released(policy, now),
                )
                .order_by(case((LMRun.lock_token.is_(None), 0), else_=1), LMRun.position)
                .limit(1)
            )
            if row is None:
                raise NoAvailableRuns(
                    f"experiment {experiment!r} has no run left to give: every run is started, "
                    "completed or locked"
                )
            return _run_info(row, experiment, policy, now)

    async def lock(self, experiment: str, run: str, policy: LockPolicy) -> Lock:
        """Take the run's lock with a new token. Raises RunAlreadyLocked."""
        async with self.db.session() as session, session.begin():
            row = await _require_run(session, experiment, run)
            previous, heartbeat = row.lock_token, row.heartbeat_at
            now = utcnow()
            token = secrets.token_hex(16)
            taking = _update(LMRun).where(LMRun.id == row.id)
            if not policy.unprotected:
                taking = taking.where(_lock_released(policy, now))
            result = await session.execute(
                taking.values(lock_token=token, locked_at=now, heartbeat_at=now)
            )
            if _rowcount(result) != 1:
                silent = _seconds_since(heartbeat, now)
                raise RunAlreadyLocked(
                    f"run {run!r} of {experiment!r} is already locked (its client was last heard "
                    f"from {silent} s ago; a lock is released after {policy.timeout:g} s of "
                    "silence)"
                )
        if previous is not None:
            log.warning(
                "run %r of %r: lock taken over (previous client silent for %s s)",
                run,
                experiment,
                _seconds_since(heartbeat, now),
            )
        return Lock(token, run, experiment)

    async def touch(self, experiment: str, run: str, token: str, policy: LockPolicy) -> None:
        """Check the token and refresh the lock's heartbeat. Raises RunNotLocked, WrongToken."""
        async with self.db.session() as session, session.begin():
            row = await _require_run(session, experiment, run)
            now = utcnow()
            _check_token(row, token, experiment, policy, now)
            result = await session.execute(
                _update(LMRun)
                .where(LMRun.id == row.id, LMRun.lock_token == token)
                .values(heartbeat_at=now)
            )
            if _rowcount(result) != 1:
                raise _wrong_token(run, experiment)

    async def unlock(self, experiment: str, run: str, token: str, policy: LockPolicy) -> RunInfo:
        """Release the lock its holder names. Raises RunNotLocked, WrongToken."""
        async with self.db.session() as session, session.begin():
            row = await _require_run(session, experiment, run)
            now = utcnow()
            _check_token(row, token, experiment, policy, now)
            result = await session.execute(
                _update(LMRun)
                .where(LMRun.id == row.id, LMRun.lock_token == token)
                .values(lock_token=None, locked_at=None, heartbeat_at=None)
            )
            if _rowcount(result) != 1:
                raise _wrong_token(run, experiment)
            await session.refresh(row)
            return _run_info(row, experiment, policy, now)

    async def admin_unlock(self, experiment: str, run: str) -> bool:
        """Release a run's lock whoever holds it (the monitoring pages). False: it had none."""
        async with self.db.session() as session, session.begin():
            row = await _require_run(session, experiment, run)
            result = await session.execute(
                _update(LMRun)
                .where(LMRun.id == row.id, LMRun.lock_token.is_not(None))
                .values(lock_token=None, locked_at=None, heartbeat_at=None)
            )
        released = _rowcount(result) == 1
        if released:
            log.info("run %r of %r unlocked by an admin", run, experiment)
        return released

    # Plan, blocks, trials

    async def plan(self, experiment: str, run: str) -> list[PlanBlock]:
        async with self.db.session() as session:
            row = await _require_run(session, experiment, run)
            blocks = list(
                await session.scalars(
                    select(LMBlock).where(LMBlock.run_id == row.id).order_by(LMBlock.number)
                )
            )
            block_values = await _block_values(session, [b.id for b in blocks])
            trials = list(
                await session.scalars(
                    select(LMTrial).where(LMTrial.run_id == row.id).order_by(LMTrial.position)
                )
            )
            trial_values = await _run_trial_values(session, row.id)
            by_block: dict[int, list[PlanTrial]] = defaultdict(list)
            for trial in trials:
                by_block[trial.block_id].append(
                    PlanTrial(
                        trial.number, trial_values.get(trial.id, {}), as_utc(trial.completed_at)
                    )
                )
            return [
                PlanBlock(_block_info(b, block_values.get(b.id, {})), by_block[b.id])
                for b in blocks
            ]

    async def block(self, experiment: str, run: str, number: int) -> BlockInfo:
        async with self.db.session() as session:
            row = await _require_run(session, experiment, run)
            block = await _require_block(session, row, experiment, number)
            values = await _block_values(session, [block.id])
            return _block_info(block, values.get(block.id, {}))

    async def trial(
        self, experiment: str, run: str, block: int, number: int, *, events: bool = False
    ) -> TrialInfo:
        async with self.db.session() as session:
            run_row = await _require_run(session, experiment, run)
            block_row = await _require_block(session, run_row, experiment, block)
            trial = await session.scalar(
                select(LMTrial).where(LMTrial.block_id == block_row.id, LMTrial.number == number)
            )
            if trial is None:
                raise UnknownElement(
                    f"block {block} of run {run!r} of {experiment!r} has no trial {number}"
                )
            return await _trial_info(session, experiment, run, block_row, trial, events=events)

    async def current_trial(self, experiment: str, run: str, *, ahead: int = 0) -> TrialInfo:
        """The run's first trial not done yet (`ahead=1`: the one after it)."""
        async with self.db.session() as session:
            row = await _require_run(session, experiment, run)
            if row.completed_trials >= row.trial_count:
                raise RunCompleted(f"run {run!r} of {experiment!r} is completed")
            trial = await session.scalar(
                select(LMTrial).where(
                    LMTrial.run_id == row.id, LMTrial.position == row.completed_trials + ahead
                )
            )
            if trial is None:
                raise RunCompleted(f"the current trial is the last of run {run!r}")
            block = await session.get_one(LMBlock, trial.block_id)
            return await _trial_info(session, experiment, run, block, trial)

    async def record_trial(
        self,
        experiment: str,
        run: str,
        block: int,
        number: int,
        results: TrialResults,
        *,
        fixed_measures: bool,
    ) -> TrialInfo:
        """Complete the run's current trial with its measures and events, in one transaction.

        Raises UnknownElement, RunNotLocked/WrongToken (the lock was lost since it was checked),
        ExperimentProgressError, WrongMeasureKey.
        """
        async with self.db.session() as session, session.begin():
            run_row = await _require_run(session, experiment, run)
            block_row = await _require_block(session, run_row, experiment, block)
            trial = await session.scalar(
                select(LMTrial).where(LMTrial.block_id == block_row.id, LMTrial.number == number)
            )
            if trial is None:
                raise UnknownElement(
                    f"block {block} of run {run!r} of {experiment!r} has no trial {number}"
                )
            if trial.completed_at is not None:
                raise ExperimentProgressError(
                    f"trial {number} of block {block} of run {run!r} is already completed"
                )
            if trial.position != run_row.completed_trials:
                raise ExperimentProgressError(
                    f"trial {number} of block {block} of run {run!r} cannot be completed yet: "
                    f"trials are completed in order and {await _current(session, run_row)} "
                    "comes first"
                )
            now = utcnow()
            moved = await session.execute(
                _update(LMRun)
                .where(
                    LMRun.id == run_row.id,
                    LMRun.completed_trials == trial.position,
                    LMRun.lock_token == results.token,
                )
                .values(completed_trials=LMRun.completed_trials + 1, heartbeat_at=now)
            )
            if _rowcount(moved) != 1:
                # Between the checks and now, another client took the lock or posted.
                token = await session.scalar(select(LMRun.lock_token).where(LMRun.id == run_row.id))
                if token != results.token:
                    raise _wrong_token(run, experiment)
                raise ExperimentProgressError(
                    f"trial {number} of block {block} of run {run!r} was completed meanwhile"
                )
            ids = await measure_ids(
                session, run_row.experiment_id, experiment, results, fixed_measures
            )
            trial.completed_at = now
            trial.event_count = len(results.events)
            await insert_results(session, trial.id, ids, results)
        async with self.db.session() as session:
            return await _trial_info(session, experiment, run, block_row, trial)


# --- Locating ---------------------------------------------------------------------------------


def _no_experiment(experiment: str) -> UnknownElement:
    return UnknownElement(f"there is no experiment {experiment!r}")


async def _experiment_id(session: AsyncSession, experiment: str) -> int | None:
    return await session.scalar(select(LMExperiment.id).where(LMExperiment.code == experiment))


async def _require_experiment(session: AsyncSession, experiment: str) -> int:
    xp_id = await _experiment_id(session, experiment)
    if xp_id is None:
        raise _no_experiment(experiment)
    return xp_id


async def _require_run(session: AsyncSession, experiment: str, run: str) -> LMRun:
    row = await session.scalar(
        select(LMRun).join(LMExperiment).where(LMExperiment.code == experiment, LMRun.code == run)
    )
    if row is None:
        await _require_experiment(session, experiment)
        raise UnknownElement(f"experiment {experiment!r} has no run {run!r}")
    return row


async def _require_block(
    session: AsyncSession, run: LMRun, experiment: str, number: int
) -> LMBlock:
    block = await session.scalar(
        select(LMBlock).where(LMBlock.run_id == run.id, LMBlock.number == number)
    )
    if block is None:
        raise UnknownElement(f"run {run.code!r} of {experiment!r} has no block {number}")
    return block


async def _current(session: AsyncSession, run: LMRun) -> str:
    row = (
        await session.execute(
            select(LMBlock.number, LMTrial.number)
            .join(LMBlock, LMTrial.block_id == LMBlock.id)
            .where(LMTrial.run_id == run.id, LMTrial.position == run.completed_trials)
        )
    ).one()
    return f"trial {row[1]} of block {row[0]}"


# --- Locks ------------------------------------------------------------------------------------


def _lock_released(policy: LockPolicy, now: datetime) -> ColumnElement[bool]:
    return or_(LMRun.lock_token.is_(None), LMRun.heartbeat_at < policy.cutoff(now))


def _lock_is_live(run: LMRun, policy: LockPolicy, now: datetime) -> bool:
    heartbeat = as_utc(run.heartbeat_at)
    return run.lock_token is not None and heartbeat is not None and heartbeat >= policy.cutoff(now)


def _check_token(
    run: LMRun, token: str, experiment: str, policy: LockPolicy, now: datetime
) -> None:
    """The holder's token is recognised even after its lock expired, until another client takes
    the run; anyone else is told the run is not locked, or locked by someone else."""
    if run.lock_token is not None and secrets.compare_digest(run.lock_token, token):
        return
    if not _lock_is_live(run, policy, now):
        raise RunNotLocked(
            f"run {run.code!r} of {experiment!r} is not locked: take its lock before writing"
        )
    raise _wrong_token(run.code, experiment)


def _wrong_token(run: str, experiment: str) -> WrongToken:
    return WrongToken(
        f"wrong token for run {run!r} of {experiment!r}: another client holds its lock"
    )


def _seconds_since(moment: datetime | None, now: datetime) -> str:
    moment = as_utc(moment)
    return "?" if moment is None else f"{(now - moment).total_seconds():.0f}"


def _update(table: type[Any]) -> Any:
    """An UPDATE that leaves the session's objects alone: the rows it matched are checked by
    their count, and naive SQLite datetimes cannot be compared in Python with aware ones."""
    return update(table).execution_options(synchronize_session=False)


def _rowcount(result: Any) -> int:
    return int(result.rowcount)


def _run_info(run: LMRun, experiment: str, policy: LockPolicy, now: datetime) -> RunInfo:
    return RunInfo(
        id=run.code,
        experiment_id=experiment,
        trial_count=run.trial_count,
        block_count=run.block_count,
        completed_trials=run.completed_trials,
        locked=_lock_is_live(run, policy, now),
        heartbeat_at=as_utc(run.heartbeat_at),
    )


# --- Reading ----------------------------------------------------------------------------------


async def _experiment_info(session: AsyncSession, xp: LMExperiment) -> ExperimentInfo:
    factors = list(
        await session.scalars(
            select(LMFactor).where(LMFactor.experiment_id == xp.id).order_by(LMFactor.position)
        )
    )
    values: dict[int, list[LMFactorValue]] = defaultdict(list)
    for value in await session.scalars(
        select(LMFactorValue)
        .join(LMFactor)
        .where(LMFactor.experiment_id == xp.id)
        .order_by(LMFactorValue.factor_id, LMFactorValue.position)
    ):
        values[value.factor_id].append(value)
    measures = await session.scalars(
        select(LMMeasure).where(LMMeasure.experiment_id == xp.id).order_by(LMMeasure.id)
    )
    runs = await session.scalars(
        select(LMRun.code).where(LMRun.experiment_id == xp.id).order_by(LMRun.position)
    )
    return ExperimentInfo(
        id=xp.code,
        name=xp.name,
        author=xp.author,
        description=xp.description,
        factors=tuple(
            d.Factor(
                id=f.code,
                name=f.name,
                type=f.type,
                kind=f.kind,
                tag=f.tag,
                values=tuple(d.FactorValue(v.code, v.name) for v in values[f.id]),
                default=next((v.code for v in values[f.id] if v.is_default), None),
            )
            for f in factors
        ),
        measures=tuple(
            d.Measure(m.code, m.name, m.type, m.trial_level, m.event_level) for m in measures
        ),
        runs=tuple(runs),
    )


def _block_info(block: LMBlock, values: dict[str, str]) -> BlockInfo:
    return BlockInfo(block.number, block.measured_number, block.practice, values, block.trial_count)


async def _block_values(
    session: AsyncSession, block_ids: Sequence[int]
) -> dict[int, dict[str, str]]:
    rows = await session.execute(
        select(LMBlockValue.block_id, LMFactor.code, LMFactorValue.code)
        .join(LMFactor, LMBlockValue.factor_id == LMFactor.id)
        .join(LMFactorValue, LMBlockValue.value_id == LMFactorValue.id)
        .where(LMBlockValue.block_id.in_(block_ids))
        .order_by(LMBlockValue.block_id, LMFactor.position)
    )
    found: dict[int, dict[str, str]] = defaultdict(dict)
    for block_id, factor, value in rows:
        found[block_id][factor] = value
    return found


def _trial_values_query(*where: ColumnElement[bool]) -> Any:
    return (
        select(LMTrialFactorValue.trial_id, LMFactor.code, LMFactorValue.code)
        .join(LMFactor, LMTrialFactorValue.factor_id == LMFactor.id)
        .join(LMFactorValue, LMTrialFactorValue.value_id == LMFactorValue.id)
        .where(*where)
        .order_by(LMTrialFactorValue.trial_id, LMFactor.position)
    )


async def _run_trial_values(session: AsyncSession, run_id: int) -> dict[int, dict[str, str]]:
    query = _trial_values_query(
        LMTrialFactorValue.trial_id.in_(select(LMTrial.id).where(LMTrial.run_id == run_id))
    )
    found: dict[int, dict[str, str]] = defaultdict(dict)
    for trial_id, factor, value in await session.execute(query):
        found[trial_id][factor] = value
    return found


async def _trial_info(
    session: AsyncSession,
    experiment: str,
    run: str,
    block: LMBlock,
    trial: LMTrial,
    *,
    events: bool = False,
) -> TrialInfo:
    factor_values = {
        factor: value
        for _, factor, value in await session.execute(
            _trial_values_query(LMTrialFactorValue.trial_id == trial.id)
        )
    }
    measures = {
        code: value
        for code, value in await session.execute(
            select(LMMeasure.code, LMTrialMeasureValue.value)
            .join(LMMeasure, LMTrialMeasureValue.measure_id == LMMeasure.id)
            .where(LMTrialMeasureValue.trial_id == trial.id)
            .order_by(LMMeasure.id)
        )
    }
    event_list = await _events(session, trial) if events else None
    return TrialInfo(
        experiment_id=experiment,
        run_id=run,
        block_number=block.number,
        measured_block_number=block.measured_number,
        number=trial.number,
        practice=block.practice,
        factor_values=factor_values,
        completed_at=as_utc(trial.completed_at),
        measures=measures,
        events=event_list,
    )


async def _events(session: AsyncSession, trial: LMTrial) -> list[dict[str, str]]:
    events: list[dict[str, str]] = [{} for _ in range(trial.event_count)]
    for number, code, value in await session.execute(
        select(LMEventMeasureValue.event_number, LMMeasure.code, LMEventMeasureValue.value)
        .join(LMMeasure, LMEventMeasureValue.measure_id == LMMeasure.id)
        .where(LMEventMeasureValue.trial_id == trial.id)
        .order_by(LMEventMeasureValue.event_number, LMMeasure.id)
    ):
        events[number][code] = value
    return events
