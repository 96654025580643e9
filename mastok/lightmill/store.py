"""LightMill's experiments, runs and results in mastok's database.

Every change is one transaction: a design is imported whole or not at all, a trial's results
and events are stored together with its completion, or nothing is. Locks carry a heartbeat: a
lock whose client has been silent for longer than the lock timeout counts as released; a run's
last trial releases its lock.

Trial posts are committed in batches (mastok/db/batches.py): a trial post is a few small
statements, and it is their number, not their size, that costs (a round trip each through
SQLAlchemy and the driver). A batch reads where its posts' trials sit in their design (kept
once read, and read ahead: trial_places.py), then writes them all: a run moves on only if it
is at its post's trial and locked with its token (batch_write.py). A post the batch cannot
take as it is (no such trial, a measure to register, a second post for the same run, one the
write refuses) is recorded alone, which gives its precise answer. On PostgreSQL a batch needs
no transaction of its own (autocommit): its one write is a single statement.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NamedTuple

from sqlalchemy import ColumnElement, and_, bindparam, case, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from mastok.clock import Clock, SystemClock, aware
from mastok.db import Database
from mastok.db.batches import ALONE, Batches, Leave
from mastok.lightmill import design as d
from mastok.lightmill import tables as t
from mastok.lightmill.batch_write import Checked, sqlite_stamp, stored_post, write_batch
from mastok.lightmill.errors import (
    CannotImportExperiment,
    ExperimentProgressError,
    LightMillError,
    NoAvailableRuns,
    RunAlreadyLocked,
    RunCompleted,
    RunNotLocked,
    TooManyMeasures,
    UnknownElement,
    WrongMeasureKey,
    WrongToken,
)
from mastok.lightmill.importing import analyze_imported, insert_design
from mastok.lightmill.locks import LockPolicy
from mastok.lightmill.measure_values import decode, decode_each, encode, encode_each
from mastok.lightmill.recording import (
    Measures,
    known_ids,
    measure_ids,
    read_measures,
)
from mastok.lightmill.results import TrialResults
from mastok.lightmill.sqlite_worker import SqliteWorker, WorkerUnavailable
from mastok.lightmill.trial_places import Key, Place, TrialPlaces
from mastok.tasks import Spawn

log = logging.getLogger("mastok.lightmill")

# One batch at a time: the posts that arrive while it is written make the next one bigger. Two
# at once (the next batch checked while the last one's inserts ran) paid off when a batch took
# 7 round trips; with 2 (autocommit, its connection kept while posts queue), one at a time
# costs about 6% less CPU a trial in mastok and 8% less in PostgreSQL at 16 clients (3 runs
# of each, in turns).
TRIAL_BATCHES = 1
# Turns of the loop a batch waits for posts already read to reach it (batches.py): with 3, a
# post's own share of a batch's fixed cost fell enough that a leader and a standby on one
# PostgreSQL logged 1.30-1.33x one process's trials, where they had logged 1.02-1.06x (the
# same machine, bench scenario 6). 2 turns gave nothing: a read post is queued two turns later.
TRIAL_GATHER_TURNS = 3


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


class TrialInfo(NamedTuple):
    """A trial as LightMill's API answers it. A named tuple: a frozen dataclass's `__init__`
    sets each of its ten fields through `object.__setattr__`, once a trial posted."""

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


# --- The store --------------------------------------------------------------------------------


class LightMillStore:
    """`clock`: what time locks, heartbeats, completions and imports are read and stamped at."""

    def __init__(
        self,
        db: Database,
        clock: Clock | None = None,
        spawn: Spawn | None = None,
        worker: SqliteWorker | None = None,
    ) -> None:
        """`worker`: on SQLite, the process that writes trial posts whose place and measures
        are known (sqlite_worker.py); the others, and all without one, are written here."""
        self.db = db
        self.clock = clock or SystemClock()
        # On PostgreSQL a batch's one write is a single statement (batch_write.py) and its
        # checks are only reads, which the write checks again: no BEGIN and COMMIT needed.
        self._batches: Batches[_Post, _Recorded] = Batches(
            db,
            self._record_batch,
            self._record,
            TRIAL_BATCHES,
            spawn,
            autocommit=not db.is_sqlite,
            gather_turns=TRIAL_GATHER_TURNS,
        )
        # Each experiment's measures as last read by a committed trial post (recording.py).
        self._measures: dict[int, Measures] = {}
        self._places = TrialPlaces()
        self._worker = worker
        self._stamp = sqlite_stamp(db.engine.dialect) if db.is_sqlite else None

    async def aclose(self) -> None:
        if self._worker is not None:
            await self._worker.aclose()

    # Experiments

    async def import_design(self, design: d.Design) -> None:
        """Store a parsed design in one transaction. Raises CannotImportExperiment."""
        try:
            async with self.db.session() as session, session.begin():
                if await _experiment_id(session, design.id) is not None:
                    raise CannotImportExperiment(f"experiment {design.id!r} already exists")
                await insert_design(session, design, self.clock.now())
        except IntegrityError:
            # Another import of the same id won the race.
            raise CannotImportExperiment(f"experiment {design.id!r} already exists") from None
        log.info("imported experiment %r (%d runs)", design.id, len(design.runs))
        if not self.db.is_sqlite:
            await self._analyze_imported()

    async def _analyze_imported(self) -> None:
        """The imported tables' statistics (importing.py): the design is stored whatever
        becomes of them, and autovacuum takes them in its time if this fails."""
        try:
            async with self.db.engine.begin() as connection:
                await analyze_imported(connection)
        except SQLAlchemyError as error:
            log.warning("imported tables not analyzed: %s", error)

    async def has_experiment(self, experiment: str) -> bool:
        async with self.db.session() as session:
            return await _experiment_id(session, experiment) is not None

    async def experiments(self) -> dict[str, str | None]:
        """`{id: name}` in import order."""
        async with self.db.session() as session:
            rows = await session.execute(
                select(t.LMExperiment.code, t.LMExperiment.name).order_by(t.LMExperiment.id)
            )
            return {code: name for code, name in rows}

    async def experiment(self, experiment: str) -> ExperimentInfo:
        async with self.db.session() as session:
            row = await session.scalar(
                select(t.LMExperiment).where(t.LMExperiment.code == experiment)
            )
            if row is None:
                raise _no_experiment(experiment)
            return await _experiment_info(session, row)

    # Runs and locks

    async def runs(self, experiment: str, policy: LockPolicy) -> list[RunInfo]:
        async with self.db.session() as session:
            xp_id = await _require_experiment(session, experiment)
            found = await session.scalars(
                select(t.LMRun).where(t.LMRun.experiment_id == xp_id).order_by(t.LMRun.position)
            )
            now = self.clock.now()
            return [_run_info(run, experiment, policy, now) for run in found]

    async def run(self, experiment: str, run: str, policy: LockPolicy) -> RunInfo:
        async with self.db.session() as session:
            row = await _require_run(session, experiment, run)
            return _run_info(row, experiment, policy, self.clock.now())

    async def available_run(self, experiment: str, policy: LockPolicy) -> RunInfo:
        """The first run no trial of which is done and nobody holds: never-locked runs first,
        then runs whose client went silent."""
        async with self.db.session() as session:
            xp_id = await _require_experiment(session, experiment)
            now = self.clock.now()
            row = await session.scalar(
                select(t.LMRun)
                .where(
                    t.LMRun.experiment_id == xp_id,
                    t.LMRun.completed_trials == 0,
                    t.LMRun.trial_count > 0,
                    policy.released(now),
                )
                .order_by(case((t.LMRun.lock_token.is_(None), 0), else_=1), t.LMRun.position)
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
            now = self.clock.now()
            token = secrets.token_hex(16)
            taking = _update(t.LMRun).where(t.LMRun.id == row.id)
            if not policy.unprotected:
                taking = taking.where(policy.released(now))
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
            await self._holding(session, experiment, run, token, policy, release=False)

    async def unlock(self, experiment: str, run: str, token: str, policy: LockPolicy) -> RunInfo:
        """Release the lock its holder names. Raises RunNotLocked, WrongToken."""
        async with self.db.session() as session, session.begin():
            row, now = await self._holding(session, experiment, run, token, policy, release=True)
            await session.refresh(row)
            return _run_info(row, experiment, policy, now)

    async def _holding(
        self,
        session: AsyncSession,
        experiment: str,
        run: str,
        token: str,
        policy: LockPolicy,
        *,
        release: bool,
    ) -> tuple[t.LMRun, datetime]:
        """The run whose lock the token holds, its lock released or its heartbeat refreshed, and
        the time of that. Raises RunNotLocked, WrongToken."""
        row = await _require_run(session, experiment, run)
        now = self.clock.now()
        _check_token(row, token, experiment, policy, now)
        result = await session.execute(
            _update(t.LMRun)
            .where(t.LMRun.id == row.id, t.LMRun.lock_token == token)
            .values(_RELEASED if release else {"heartbeat_at": now})
        )
        if _rowcount(result) != 1:
            raise _wrong_token(run, experiment)
        return row, now

    async def admin_unlock(self, experiment: str, run: str) -> bool:
        """Release a run's lock whoever holds it (the monitoring pages). False: it had none."""
        async with self.db.session() as session, session.begin():
            row = await _require_run(session, experiment, run)
            result = await session.execute(
                _update(t.LMRun)
                .where(t.LMRun.id == row.id, t.LMRun.lock_token.is_not(None))
                .values(_RELEASED)
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
                    select(t.LMBlock).where(t.LMBlock.run_id == row.id).order_by(t.LMBlock.number)
                )
            )
            block_values = await _block_values(session, [b.id for b in blocks])
            trials = list(
                await session.scalars(
                    select(t.LMTrial).where(t.LMTrial.run_id == row.id).order_by(t.LMTrial.position)
                )
            )
            trial_values = await _run_trial_values(session, row.id)
            by_block: dict[int, list[PlanTrial]] = defaultdict(list)
            for trial in trials:
                by_block[trial.block_id].append(
                    PlanTrial(
                        trial.number, trial_values.get(trial.id, {}), aware(trial.completed_at)
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
                select(t.LMTrial).where(
                    t.LMTrial.block_id == block_row.id, t.LMTrial.number == number
                )
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
                select(t.LMTrial).where(
                    t.LMTrial.run_id == row.id, t.LMTrial.position == row.completed_trials + ahead
                )
            )
            if trial is None:
                raise RunCompleted(f"the current trial is the last of run {run!r}")
            block = await session.get_one(t.LMBlock, trial.block_id)
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
        policy: LockPolicy | None = None,
        max_new_measures: int | None = None,
    ) -> TrialInfo:
        """Complete the run's current trial with its measures and events, in one transaction.

        The trial must exist whatever the token (UnknownElement, as LightMill answers). Then,
        with a `policy`, the post's token is checked, as `touch` checks it, and the post is a
        sign of life: the lock's heartbeat moves on with the trial, and also when the post is
        refused after its token was taken. Without one, the token must be the lock's. The run's
        last trial releases its lock, in the same statement.

        `max_new_measures`: how many measures clients may add to the experiment (None: any).

        Raises UnknownElement, RunNotLocked/WrongToken, ExperimentProgressError,
        WrongMeasureKey, TooManyMeasures.
        """
        post = _Post(
            experiment, run, block, number, results, fixed_measures, policy, max_new_measures
        )
        recorded = None
        if self._worker is not None:
            recorded = await self._record_by_worker(self._worker, post)
        try:
            if recorded is None:
                recorded = await self._batches.write(post)
        except (ExperimentProgressError, WrongMeasureKey, TooManyMeasures):
            if post.token_taken and policy is not None:
                with contextlib.suppress(LightMillError):
                    await self.touch(experiment, run, results.token, policy)
            raise
        if recorded.measures is not None:  # committed: what it read of them holds
            self._measures[recorded.experiment_pk] = recorded.measures
        return recorded.info

    async def _record_by_worker(self, worker: SqliteWorker, post: _Post) -> _Recorded | None:
        """The post written by the SQLite worker process; None for a post to write here (by
        the batches): one whose trial is not there, that names a measure or a level to
        register, that the write does not move, or any once the worker is gone."""
        assert self._stamp is not None  # a worker is SQLite's
        try:
            place = (await self._places.find_by(worker.places, [post.key])).get(post.key)
            if place is None:
                return None
            known = self._measures.get(place.experiment_pk)
            if known is None:  # read by the first post of the experiment written here
                return None
            ids = known_ids(known, post.results)
            if ids is None:
                return None
            now = self.clock.now()
            results = post.results
            checked = Checked(
                place.run_pk, place.position, results.token, place.trial_pk, ids, results
            )
            if not await worker.write(stored_post(checked), self._stamp(now)):
                return None
        except WorkerUnavailable:
            return None
        self._places.posted(post.key)
        return _Recorded(_recorded_info(post, place, ids, now), place.experiment_pk, known)

    async def _record_batch(
        self, connection: AsyncConnection, posts: Sequence[_Post]
    ) -> list[_Recorded | Literal[Leave.ALONE]]:
        """Posts' writes, one statement for all of them (SQLite: three), by their trials'
        places in the design (read ahead and kept: trial_places.py). ALONE for a post to
        record alone, where it gets its precise answer: one whose trial is not there, one
        that names a measure or a level to register, a second one for a run, one the write
        does not move (its run is not at its trial, or its token is not the lock's)."""
        now = self.clock.now()
        places = await self._places.find(connection, {post.key for post in posts})
        measures: dict[int, Measures] = {}
        taken: dict[int, tuple[_Post, Place, dict[str, int]]] = {}  # by run
        for post in posts:
            place = places.get(post.key)
            if place is None or place.run_pk in taken:
                continue
            known = measures.get(place.experiment_pk) or self._measures.get(place.experiment_pk)
            if known is None:
                known = await read_measures(connection, place.experiment_pk)
            measures[place.experiment_pk] = known
            ids = known_ids(known, post.results)
            if ids is None:  # new measures or levels
                continue
            taken[place.run_pk] = (post, place, ids)
        if not taken:
            return [ALONE] * len(posts)
        checked = [
            Checked(run_pk, place.position, post.results.token, place.trial_pk, ids, post.results)
            for run_pk, (post, place, ids) in taken.items()
        ]
        moved = await write_batch(connection, checked, now)
        recorded: dict[int, _Recorded] = {}
        for run_pk in moved:
            post, place, ids = taken[run_pk]
            self._places.posted(post.key)
            info = _recorded_info(post, place, ids, now)
            recorded[id(post)] = _Recorded(info, place.experiment_pk, measures[place.experiment_pk])
        return [recorded.get(id(post), ALONE) for post in posts]

    async def _record(self, connection: AsyncConnection, post: _Post) -> _Recorded:
        """A trial post's checks and writes, on the connection of its transaction."""
        experiment, run, block, number = post.experiment, post.run, post.block, post.number
        results = post.results
        post.token_taken = False
        found = (
            await connection.execute(
                _TRIAL_TO_RECORD,
                {"experiment": experiment, "run": run, "block": block, "trial": number},
            )
        ).one_or_none()
        if found is None:
            if await connection.scalar(_EXPERIMENT_PK, {"experiment": experiment}) is None:
                raise _no_experiment(experiment)
            raise UnknownElement(f"experiment {experiment!r} has no run {run!r}")
        if found.block_pk is None:
            raise UnknownElement(f"run {run!r} of {experiment!r} has no block {block}")
        if found.trial_pk is None:
            raise UnknownElement(
                f"block {block} of run {run!r} of {experiment!r} has no trial {number}"
            )
        now = self.clock.now()
        if post.policy is not None:
            _check_lock(
                found.lock_token,
                found.heartbeat_at,
                run,
                results.token,
                experiment,
                post.policy,
                now,
            )
            post.token_taken = True
        if found.completed_at is not None:
            raise ExperimentProgressError(
                f"trial {number} of block {block} of run {run!r} is already completed"
            )
        if found.position != found.completed_trials:
            current = await _current(connection, found.run_pk, found.completed_trials)
            raise ExperimentProgressError(
                f"trial {number} of block {block} of run {run!r} cannot be completed yet: "
                f"trials are completed in order and {current} comes first"
            )
        moved = await connection.execute(
            _MOVE_ON,
            {
                "run_pk": found.run_pk,
                "at_position": found.position,
                "token": results.token,
                "now": now,
            },
        )
        if _rowcount(moved) != 1:
            # Between the checks and now, another client took the lock or posted.
            token = await connection.scalar(_LOCK_TOKEN, {"run_pk": found.run_pk})
            if token != results.token:
                raise _wrong_token(run, experiment)
            raise ExperimentProgressError(
                f"trial {number} of block {block} of run {run!r} was completed meanwhile"
            )
        ids, measures = await measure_ids(
            connection,
            found.experiment_pk,
            experiment,
            results,
            post.fixed_measures,
            self._measures.get(found.experiment_pk),
            post.max_new_measures,
        )
        await connection.execute(
            _COMPLETE_TRIAL,
            {
                "trial_pk": found.trial_pk,
                "done_at": now,
                "events": len(results.events),
                "measure_values": encode(ids, results.trial),
                "event_values": encode_each(ids, results.events),
            },
        )
        factor_values = {
            factor: value
            for _, factor, value in await connection.execute(
                _TRIAL_FACTOR_VALUES, {"trial_pk": found.trial_pk}
            )
        }
        place = Place(
            found.run_pk,
            found.experiment_pk,
            found.measured_number,
            found.practice,
            found.trial_pk,
            found.position,
            factor_values,
        )
        return _Recorded(_recorded_info(post, place, ids, now), found.experiment_pk, measures)


def _recorded_info(post: _Post, place: Place, ids: Mapping[str, int], now: datetime) -> TrialInfo:
    trial = post.results.trial
    return TrialInfo(
        experiment_id=post.experiment,
        run_id=post.run,
        block_number=post.block,
        measured_block_number=place.measured_number,
        number=post.number,
        practice=place.practice,
        factor_values=place.factor_values,
        completed_at=now,
        # As stored, in the measures' order (as `trial` reads them back).
        measures={code: trial[code] for code in sorted(trial, key=ids.__getitem__)},
    )


@dataclass
class _Post:
    experiment: str
    run: str
    block: int
    number: int
    results: TrialResults
    fixed_measures: bool
    policy: LockPolicy | None
    max_new_measures: int | None = None
    token_taken: bool = False  # its token was checked and is the lock's

    @property
    def key(self) -> Key:
        return (self.experiment, self.run, self.block, self.number)


class _Recorded(NamedTuple):
    info: TrialInfo
    experiment_pk: int
    measures: Measures | None


# A trial post's statements, built once (building and keying a statement costs as much as
# running it). What the checks read of a trial's run (with its lock), block and trial:
_TRIAL_CHECKED = (
    t.LMRun.id.label("run_pk"),
    t.LMRun.experiment_id.label("experiment_pk"),
    t.LMRun.completed_trials,
    t.LMRun.lock_token,
    t.LMRun.heartbeat_at,
    t.LMBlock.measured_number,
    t.LMBlock.practice,
    t.LMTrial.id.label("trial_pk"),
    t.LMTrial.position,
    t.LMTrial.completed_at,
)
# One post's, in one query (outer joins: a block or trial that is not there is None).
_TRIAL_TO_RECORD = (
    select(*_TRIAL_CHECKED, t.LMBlock.id.label("block_pk"))
    .select_from(t.LMRun)
    .join(t.LMExperiment, t.LMRun.experiment_id == t.LMExperiment.id)
    .outerjoin(
        t.LMBlock, and_(t.LMBlock.run_id == t.LMRun.id, t.LMBlock.number == bindparam("block"))
    )
    .outerjoin(
        t.LMTrial, and_(t.LMTrial.block_id == t.LMBlock.id, t.LMTrial.number == bindparam("trial"))
    )
    .where(t.LMExperiment.code == bindparam("experiment"), t.LMRun.code == bindparam("run"))
)
_RELEASED = {"lock_token": None, "locked_at": None, "heartbeat_at": None}  # a run's lock, released


def _moved_on() -> dict[str, Any]:
    """A run's columns once its current trial is recorded (at the parameter `now`): one more
    trial done, a sign of life, and the lock released with the last trial (clients never
    unlock: a finished run would otherwise look held until its lock expired). SET reads the
    row as it was."""
    now = bindparam("now", type_=t.LMRun.heartbeat_at.type)
    finished = t.LMRun.completed_trials + 1 >= t.LMRun.trial_count
    return {
        "completed_trials": t.LMRun.completed_trials + 1,
        "heartbeat_at": case((finished, None), else_=now),
        "lock_token": case((finished, None), else_=t.LMRun.lock_token),
        "locked_at": case((finished, None), else_=t.LMRun.locked_at),
    }


_EXPERIMENT_PK = select(t.LMExperiment.id).where(t.LMExperiment.code == bindparam("experiment"))
_LOCK_TOKEN = select(t.LMRun.lock_token).where(t.LMRun.id == bindparam("run_pk"))
_MOVE_ON = (
    update(t.LMRun)
    .where(
        t.LMRun.id == bindparam("run_pk"),
        t.LMRun.completed_trials == bindparam("at_position"),
        t.LMRun.lock_token == bindparam("token"),
    )
    .values(_moved_on())
)
_COMPLETE_TRIAL = (
    update(t.LMTrial)
    .where(t.LMTrial.id == bindparam("trial_pk"))
    .values(
        completed_at=bindparam("done_at"),
        event_count=bindparam("events"),
        measure_values=bindparam("measure_values"),
        event_values=bindparam("event_values"),
    )
)


# --- Locating ---------------------------------------------------------------------------------


def _no_experiment(experiment: str) -> UnknownElement:
    return UnknownElement(f"there is no experiment {experiment!r}")


async def _experiment_id(session: AsyncSession, experiment: str) -> int | None:
    return await session.scalar(select(t.LMExperiment.id).where(t.LMExperiment.code == experiment))


async def _require_experiment(session: AsyncSession, experiment: str) -> int:
    xp_id = await _experiment_id(session, experiment)
    if xp_id is None:
        raise _no_experiment(experiment)
    return xp_id


async def _require_run(session: AsyncSession, experiment: str, run: str) -> t.LMRun:
    row = await session.scalar(
        select(t.LMRun)
        .join(t.LMExperiment)
        .where(t.LMExperiment.code == experiment, t.LMRun.code == run)
    )
    if row is None:
        await _require_experiment(session, experiment)
        raise UnknownElement(f"experiment {experiment!r} has no run {run!r}")
    return row


async def _require_block(
    session: AsyncSession, run: t.LMRun, experiment: str, number: int
) -> t.LMBlock:
    block = await session.scalar(
        select(t.LMBlock).where(t.LMBlock.run_id == run.id, t.LMBlock.number == number)
    )
    if block is None:
        raise UnknownElement(f"run {run.code!r} of {experiment!r} has no block {number}")
    return block


async def _current(connection: AsyncConnection, run_pk: int, position: int) -> str:
    row = (
        await connection.execute(
            select(t.LMBlock.number, t.LMTrial.number)
            .join(t.LMBlock, t.LMTrial.block_id == t.LMBlock.id)
            .where(t.LMTrial.run_id == run_pk, t.LMTrial.position == position)
        )
    ).one()
    return f"trial {row[1]} of block {row[0]}"


# --- Locks ------------------------------------------------------------------------------------


def _check_token(
    run: t.LMRun, token: str, experiment: str, policy: LockPolicy, now: datetime
) -> None:
    _check_lock(run.lock_token, run.heartbeat_at, run.code, token, experiment, policy, now)


def _check_lock(
    lock_token: str | None,
    heartbeat_at: datetime | None,
    run: str,
    token: str,
    experiment: str,
    policy: LockPolicy,
    now: datetime,
) -> None:
    """The holder's token is recognised even after its lock expired, until another client takes
    the run; anyone else is told the run is not locked, or locked by someone else."""
    # As bytes: compare_digest refuses text that is not ASCII, which a stranger may send.
    if lock_token is not None and secrets.compare_digest(lock_token.encode(), token.encode()):
        return
    if not policy.is_live(lock_token, heartbeat_at, now):
        raise RunNotLocked(
            f"run {run!r} of {experiment!r} is not locked: take its lock before writing"
        )
    raise _wrong_token(run, experiment)


def _wrong_token(run: str, experiment: str) -> WrongToken:
    return WrongToken(
        f"wrong token for run {run!r} of {experiment!r}: another client holds its lock"
    )


def _seconds_since(moment: datetime | None, now: datetime) -> str:
    moment = aware(moment)
    return "?" if moment is None else f"{(now - moment).total_seconds():.0f}"


def _update(table: type[Any]) -> Any:
    """An UPDATE that leaves the session's objects alone: the rows it matched are checked by
    their count, and naive SQLite datetimes cannot be compared in Python with aware ones."""
    return update(table).execution_options(synchronize_session=False)


def _rowcount(result: Any) -> int:
    return int(result.rowcount)


def _run_info(run: t.LMRun, experiment: str, policy: LockPolicy, now: datetime) -> RunInfo:
    return RunInfo(
        id=run.code,
        experiment_id=experiment,
        trial_count=run.trial_count,
        block_count=run.block_count,
        completed_trials=run.completed_trials,
        locked=policy.is_live(run.lock_token, run.heartbeat_at, now),
        heartbeat_at=aware(run.heartbeat_at),
    )


# --- Reading ----------------------------------------------------------------------------------


async def _experiment_info(session: AsyncSession, xp: t.LMExperiment) -> ExperimentInfo:
    factors = list(
        await session.scalars(
            select(t.LMFactor)
            .where(t.LMFactor.experiment_id == xp.id)
            .order_by(t.LMFactor.position)
        )
    )
    values: dict[int, list[t.LMFactorValue]] = defaultdict(list)
    for value in await session.scalars(
        select(t.LMFactorValue)
        .join(t.LMFactor)
        .where(t.LMFactor.experiment_id == xp.id)
        .order_by(t.LMFactorValue.factor_id, t.LMFactorValue.position)
    ):
        values[value.factor_id].append(value)
    measures = await session.scalars(
        select(t.LMMeasure).where(t.LMMeasure.experiment_id == xp.id).order_by(t.LMMeasure.id)
    )
    runs = await session.scalars(
        select(t.LMRun.code).where(t.LMRun.experiment_id == xp.id).order_by(t.LMRun.position)
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


def _block_info(block: t.LMBlock, values: dict[str, str]) -> BlockInfo:
    return BlockInfo(block.number, block.measured_number, block.practice, values, block.trial_count)


async def _block_values(
    session: AsyncSession, block_ids: Sequence[int]
) -> dict[int, dict[str, str]]:
    rows = await session.execute(
        select(t.LMBlockValue.block_id, t.LMFactor.code, t.LMFactorValue.code)
        .join(t.LMFactor, t.LMBlockValue.factor_id == t.LMFactor.id)
        .join(t.LMFactorValue, t.LMBlockValue.value_id == t.LMFactorValue.id)
        .where(t.LMBlockValue.block_id.in_(block_ids))
        .order_by(t.LMBlockValue.block_id, t.LMFactor.position)
    )
    found: dict[int, dict[str, str]] = defaultdict(dict)
    for block_id, factor, value in rows:
        found[block_id][factor] = value
    return found


def _trial_values_query(*where: ColumnElement[bool]) -> Any:
    return (
        select(t.LMTrialFactorValue.trial_id, t.LMFactor.code, t.LMFactorValue.code)
        .join(t.LMFactor, t.LMTrialFactorValue.factor_id == t.LMFactor.id)
        .join(t.LMFactorValue, t.LMTrialFactorValue.value_id == t.LMFactorValue.id)
        .where(*where)
        .order_by(t.LMTrialFactorValue.trial_id, t.LMFactor.position)
    )


_TRIAL_FACTOR_VALUES = _trial_values_query(t.LMTrialFactorValue.trial_id == bindparam("trial_pk"))


async def _run_trial_values(session: AsyncSession, run_id: int) -> dict[int, dict[str, str]]:
    query = _trial_values_query(
        t.LMTrialFactorValue.trial_id.in_(select(t.LMTrial.id).where(t.LMTrial.run_id == run_id))
    )
    found: dict[int, dict[str, str]] = defaultdict(dict)
    for trial_id, factor, value in await session.execute(query):
        found[trial_id][factor] = value
    return found


async def _trial_info(
    session: AsyncSession,
    experiment: str,
    run: str,
    block: t.LMBlock,
    trial: t.LMTrial,
    *,
    events: bool = False,
) -> TrialInfo:
    factor_values = {
        factor: value
        for _, factor, value in await session.execute(
            _trial_values_query(t.LMTrialFactorValue.trial_id == trial.id)
        )
    }
    stored = decode(trial.measure_values)
    codes = await _measure_codes(session, trial) if stored or (events and trial.event_count) else {}
    measures = {codes[pk]: value for pk, value in sorted(stored.items())}
    event_list = _events(trial, codes) if events else None
    return TrialInfo(
        experiment_id=experiment,
        run_id=run,
        block_number=block.number,
        measured_block_number=block.measured_number,
        number=trial.number,
        practice=block.practice,
        factor_values=factor_values,
        completed_at=aware(trial.completed_at),
        measures=measures,
        events=event_list,
    )


async def _measure_codes(session: AsyncSession, trial: t.LMTrial) -> dict[int, str]:
    """The codes of the measures of the trial's experiment, by id."""
    experiment_pk = select(t.LMRun.experiment_id).where(t.LMRun.id == trial.run_id)
    query = select(t.LMMeasure.id, t.LMMeasure.code).where(
        t.LMMeasure.experiment_id == experiment_pk.scalar_subquery()
    )
    return {pk: code for pk, code in await session.execute(query)}


def _events(trial: t.LMTrial, codes: Mapping[int, str]) -> list[dict[str, str]]:
    """The trial's events, each's values in the measures' order."""
    return [
        {codes[pk]: value for pk, value in sorted(values.items())}
        for values in decode_each(trial.event_values, trial.event_count)
    ]
