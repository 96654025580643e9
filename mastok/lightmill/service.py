"""LightMill as mastok serves it: the store and the monitoring, with the server-wide flags from
the settings and the clock they read.

A design is parsed in a worker thread, one at a time: a large one neither stalls the event loop
(participants' sockets, `/healthz`) nor is held in memory several times over.
"""

from __future__ import annotations

import asyncio
import logging

from mastok.clock import Clock, SystemClock
from mastok.config import Settings
from mastok.db import Database
from mastok.lightmill.design import Design, DesignError, parse_design
from mastok.lightmill.errors import CannotImportExperiment
from mastok.lightmill.locks import LockPolicy
from mastok.lightmill.monitoring import Monitoring
from mastok.lightmill.results import TrialResults
from mastok.lightmill.sqlite_worker import SqliteWorker
from mastok.lightmill.store import (
    BlockInfo,
    ExperimentInfo,
    LightMillStore,
    Lock,
    PlanBlock,
    RunInfo,
    TrialInfo,
)
from mastok.metrics import Metrics
from mastok.tasks import Spawn

log = logging.getLogger("mastok.lightmill")


class LightMill:
    def __init__(
        self,
        store: LightMillStore,
        policy: LockPolicy,
        fixed_measures: bool,
        max_new_measures: int | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.policy = policy
        self.fixed_measures = fixed_measures
        self.max_new_measures = max_new_measures
        self.monitoring = Monitoring(store.db, policy, store.clock)
        self._parsing = asyncio.Lock()

    @classmethod
    def from_settings(
        cls,
        db: Database,
        settings: Settings,
        clock: Clock | None = None,
        spawn: Spawn | None = None,
        metrics: Metrics | None = None,
    ) -> LightMill:
        """`clock`: the time locks expire by and results are stamped with (tests set it);
        `spawn`: starts the trial writers' tasks (the app's task scope). On a SQLite file,
        trial posts go to a worker process unless `sqlite_trials_in_process` (sqlite_worker.py);
        `aclose` ends it."""
        policy = LockPolicy(settings.lock_timeout, unprotected=settings.unprotected_runs)
        path = db.sqlite_file
        worker = SqliteWorker(path) if path and not settings.sqlite_trials_in_process else None
        store = LightMillStore(db, clock or SystemClock(), spawn, worker)
        return cls(store, policy, settings.fixed_measures, settings.max_new_measures, metrics)

    async def aclose(self) -> None:
        await self.store.aclose()

    async def import_xml(self, data: bytes) -> ExperimentInfo:
        """Parse (in a worker thread) and store a TouchStone design. Raises
        CannotImportExperiment."""
        try:
            async with self._parsing:
                design = await asyncio.to_thread(parse_design, data)
        except DesignError as error:
            raise CannotImportExperiment(f"cannot read the design: {error}") from None
        await self.store.import_design(design)
        return await self.store.experiment(design.id)

    async def import_at_start(self, design: Design) -> None:
        """`mastok serve --experiment-design`: an experiment already there is left as it is,
        also when another instance (the leader or a standby, started together) imported it
        meanwhile."""
        if await self.store.has_experiment(design.id):
            log.info("experiment %r already imported: its design file is not read again", design.id)
            return
        try:
            await self.store.import_design(design)
        except CannotImportExperiment:
            if not await self.store.has_experiment(design.id):
                raise
            log.info("experiment %r imported meanwhile by another instance", design.id)

    async def experiments(self) -> dict[str, str | None]:
        return await self.store.experiments()

    async def experiment(self, experiment: str) -> ExperimentInfo:
        return await self.store.experiment(experiment)

    async def available_run(self, experiment: str) -> RunInfo:
        return await self.store.available_run(experiment, self.policy)

    # The client's reads: an element that is not there is UnknownElement whatever the token;
    # then a `token` (a call carrying it) keeps the run's lock alive, or fails if it is wrong.

    async def run(self, experiment: str, run: str, token: str | None = None) -> RunInfo:
        await self.touch(experiment, run, token)
        return await self.store.run(experiment, run, self.policy)

    async def lock(self, experiment: str, run: str) -> Lock:
        return await self.store.lock(experiment, run, self.policy)

    async def unlock(self, experiment: str, run: str, token: str) -> RunInfo:
        return await self.store.unlock(experiment, run, token, self.policy)

    async def touch(self, experiment: str, run: str, token: str | None) -> None:
        """A call carrying the run's token keeps its lock alive (and fails on a wrong one, or
        a run that is not there)."""
        if token is not None:
            await self.store.touch(experiment, run, token, self.policy)

    async def plan(self, experiment: str, run: str, token: str | None = None) -> list[PlanBlock]:
        await self.touch(experiment, run, token)
        return await self.store.plan(experiment, run)

    async def current_trial(self, experiment: str, run: str, token: str | None = None) -> TrialInfo:
        await self.touch(experiment, run, token)
        return await self.store.current_trial(experiment, run)

    async def next_trial(self, experiment: str, run: str, token: str | None = None) -> TrialInfo:
        await self.touch(experiment, run, token)
        return await self.store.current_trial(experiment, run, ahead=1)

    async def block(
        self, experiment: str, run: str, number: int, token: str | None = None
    ) -> BlockInfo:
        found = await self.store.block(experiment, run, number)
        await self.touch(experiment, run, token)
        return found

    async def trial(
        self, experiment: str, run: str, block: int, number: int, token: str | None = None
    ) -> TrialInfo:
        found = await self.store.trial(experiment, run, block, number, events=True)
        await self.touch(experiment, run, token)
        return found

    async def record_trial(
        self, experiment: str, run: str, block: int, number: int, results: TrialResults
    ) -> TrialInfo:
        recorded = await self.store.record_trial(
            experiment,
            run,
            block,
            number,
            results,
            fixed_measures=self.fixed_measures,
            policy=self.policy,
            max_new_measures=self.max_new_measures,
        )
        if self.metrics is not None:
            self.metrics.trial_recorded()
        return recorded
