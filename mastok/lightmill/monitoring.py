"""What the monitoring pages show: experiments' progress, runs' states and locks, a run's
trials, a trial's events. Read-only; the admin's unlock is the store's `admin_unlock`.

A run's lock is `locked`, `expired` or `unlocked` by the store's rule (locks.py), at the
clock's time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from mastok.clock import Clock, SystemClock, aware
from mastok.db import Database
from mastok.lightmill.errors import UnknownElement
from mastok.lightmill.export import Layout, TrialRow, read_layout, read_trials
from mastok.lightmill.locks import LockPolicy, LockState
from mastok.lightmill.tables import LMBlock, LMExperiment, LMRun, LMTrial

RUN_PAGE_SIZE = 500  # trials per page of a run


@dataclass(frozen=True)
class ExperimentSummary:
    id: str
    name: str | None
    author: str | None
    description: str | None
    imported_at: datetime | None
    runs: int
    runs_started: int
    runs_completed: int
    runs_locked: int
    trials: int
    trials_done: int


@dataclass(frozen=True)
class RunState:
    id: str
    trial_count: int
    block_count: int
    completed_trials: int
    lock: LockState
    locked_at: datetime | None
    heartbeat_at: datetime | None
    lock_expires_at: datetime | None  # heartbeat + timeout (past when expired)
    current_block: int | None  # the trial the run is at (None: completed)
    current_trial: int | None

    @property
    def status(self) -> str:
        if self.completed_trials >= self.trial_count:
            return "completed"
        return "started" if self.completed_trials > 0 else "unstarted"


@dataclass(frozen=True)
class RunTrials:
    """One page of a run's trials (positions `start` to `start + len(trials)`)."""

    layout: Layout
    run: RunState
    trials: list[TrialRow]
    page: int
    pages: int
    page_size: int


class Monitoring:
    def __init__(self, db: Database, policy: LockPolicy, clock: Clock | None = None) -> None:
        self.db = db
        self.policy = policy
        self.clock = clock or SystemClock()

    async def experiments(self) -> list[ExperimentSummary]:
        """Every experiment, in import order, with its runs' and trials' progress."""
        return await self._summaries()

    async def experiment(self, experiment: str) -> ExperimentSummary:
        """Raises UnknownElement."""
        found = await self._summaries(experiment)
        if not found:
            raise UnknownElement(f"there is no experiment {experiment!r}")
        return found[0]

    async def runs(self, experiment: str, run: str | None = None) -> list[RunState]:
        """The experiment's runs in design order (or only `run`). Raises UnknownElement."""
        now = self.clock.now()
        current = aliased(LMTrial)
        current_block = aliased(LMBlock)
        query = (
            select(
                LMRun.code,
                LMRun.trial_count,
                LMRun.block_count,
                LMRun.completed_trials,
                LMRun.lock_token,
                LMRun.locked_at,
                LMRun.heartbeat_at,
                current_block.number,
                current.number,
            )
            .join(LMExperiment, LMRun.experiment_id == LMExperiment.id)
            .outerjoin(
                current,
                and_(current.run_id == LMRun.id, current.position == LMRun.completed_trials),
            )
            .outerjoin(current_block, current.block_id == current_block.id)
            .where(LMExperiment.code == experiment)
            .order_by(LMRun.position)
        )
        if run is not None:
            query = query.where(LMRun.code == run)
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
            if not rows:
                await _require(conn, experiment)
                raise UnknownElement(f"experiment {experiment!r} has no run {run!r}")
        states = []
        for code, trials, blocks, done, token, locked_at, heartbeat, block, trial in rows:
            held = token is not None
            states.append(
                RunState(
                    id=code,
                    trial_count=trials,
                    block_count=blocks,
                    completed_trials=done,
                    lock=self.policy.state(token, heartbeat, now),
                    locked_at=aware(locked_at) if held else None,
                    heartbeat_at=aware(heartbeat) if held else None,
                    lock_expires_at=self.policy.expires_at(heartbeat) if held else None,
                    current_block=block,
                    current_trial=trial,
                )
            )
        return states

    async def run_trials(
        self, experiment: str, run: str, page: int = 1, page_size: int = RUN_PAGE_SIZE
    ) -> RunTrials:
        """One page (from 1) of the run's trials, done or not. Raises UnknownElement, also for
        a page past the last."""
        state = (await self.runs(experiment, run))[0]
        layout = await read_layout(self.db, experiment)
        pages = max(1, -(-state.trial_count // page_size))
        if not 1 <= page <= pages:
            raise UnknownElement(f"run {run!r} has {pages} page(s) of trials, not {page}")
        start = (page - 1) * page_size
        async with self.db.engine.connect() as conn:
            trials = await read_trials(conn, layout, layout.run(run), start, start + page_size)
        return RunTrials(layout, state, trials, page, pages, page_size)

    async def _summaries(self, experiment: str | None = None) -> list[ExperimentSummary]:
        completed = LMRun.completed_trials >= LMRun.trial_count
        started = LMRun.completed_trials > 0
        locked = self.policy.live(self.clock.now())
        query = (
            select(
                LMExperiment.code,
                LMExperiment.name,
                LMExperiment.author,
                LMExperiment.description,
                LMExperiment.imported_at,
                func.count(LMRun.id),
                _count_if(started),
                _count_if(completed),
                _count_if(locked),
                func.coalesce(func.sum(LMRun.trial_count), 0),
                func.coalesce(func.sum(LMRun.completed_trials), 0),
            )
            .outerjoin(LMRun, LMRun.experiment_id == LMExperiment.id)
            .group_by(LMExperiment.id)
            .order_by(LMExperiment.id)
        )
        if experiment is not None:
            query = query.where(LMExperiment.code == experiment)
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            ExperimentSummary(
                id=code,
                name=name,
                author=author,
                description=description,
                imported_at=aware(imported_at),
                runs=int(runs),
                runs_started=int(runs_started),
                runs_completed=int(runs_completed),
                runs_locked=int(runs_locked),
                trials=int(trials),
                trials_done=int(trials_done),
            )
            for (
                code,
                name,
                author,
                description,
                imported_at,
                runs,
                runs_started,
                runs_completed,
                runs_locked,
                trials,
                trials_done,
            ) in rows
        ]


async def _require(conn: AsyncConnection, experiment: str) -> None:
    found = await conn.scalar(select(LMExperiment.id).where(LMExperiment.code == experiment))
    if found is None:
        raise UnknownElement(f"there is no experiment {experiment!r}")


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)
