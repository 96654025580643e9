"""An experiment's trials and events, exported as CSV (LightMill's columns) or JSON Lines.

Trials file, one row per trial of every run (done or not), runs in design order, trials in run
order: `experimentId, runId, blockNumber, measuredBlockNumber, trialNumber, practice,
serverCompletionDate`, then the factor ids in alphabetical order (the trial's factor value ids),
then the trial-level measure ids in alphabetical order. A factor id that is also a fixed
column or a trial-level measure id becomes `_factor_{id}`; a measure id that is also a fixed
column or a factor id, `_measure_{id}` (then `_0`, `_1`, ... if that name is taken as well).

Events file, one row per event of every completed trial, in the same order, events in theirs:
the trial's keys (`experimentId` to `practice`), `eventNumber`, then the event-level measure ids
in alphabetical order (`_measure_{id}` when one is a fixed column).

Reading is flat in memory: each run is read in chunks of consecutive trial positions (the
`lm_trials (run_id, position)` index), with the trials' own measure values (their row's JSON
object), and each chunk's factor values by a range join on that index; the events' values,
on their trials' rows too, are read a part of a chunk at a time (about `CHUNK_EVENT_VALUES`
values each). So memory holds one chunk whatever the experiment's size, and rows are written
as soon as their chunk is read. These scans are the export's time: each is compiled once an
export (`_Reads`), they take the driver's rows (no SQLAlchemy Row), the database pivots the
factor values into one row per trial (up to `PIVOT_MEASURES` columns), and a trial's measure
values come as one object, its events' as one array of them, placed in their columns here.
Each chunk has its own short connection: a slow download holds no connection or transaction
between chunks. A row is consistent: a trial's values are on its row, read with its completion;
the columns are those of the export's start.

`write(db, experiment, kind, out)` writes either file (`kind`: "trials" or "events") to a text
file; `stream(db, experiment, kind)` yields the same text in pieces (the web download).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from operator import itemgetter
from typing import Any, Literal, NamedTuple, TextIO

import aiosqlite
import orjson
from sqlalchemy import ColumnElement, Executable, Select, bindparam, case, func, select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.compiler import SQLCompiler

from mastok.clock import aware
from mastok.db import Database
from mastok.db.engine import driver_connection
from mastok.lightmill import tables as t
from mastok.lightmill.errors import UnknownElement
from mastok.spreadsheet import FORMULA_STARTS, inert

FORMULA_FIRST = frozenset(start[0] for start in FORMULA_STARTS)
# A stored value (measure_values.py: a JSON object of texts, with or without PostgreSQL's
# spaces) that `inert` may change: one starting as FORMULA_STARTS do (a tab or a return
# escaped, short or as \u0009 and \u000d), other than a plain decimal number, which `inert`
# leaves as it is. Conservative: a value it matches is checked by `inert`, cell by cell.
_MAYBE_FORMULA = re.compile(
    r'":\s*"(?:[=@]|\\(?:[tr]|u000[9dD])|[-+](?!(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"))'
)

Format = Literal["csv", "json"]
FORMATS: tuple[Format, ...] = ("csv", "json")
Kind = Literal["trials", "events"]
KINDS: tuple[Kind, ...] = ("trials", "events")
SUFFIXES = {"csv": "csv", "json": "jsonl"}
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/x-ndjson"}

TRIAL_KEYS = (
    "experimentId",
    "runId",
    "blockNumber",
    "measuredBlockNumber",
    "trialNumber",
    "practice",
)
TRIAL_COLUMNS = (*TRIAL_KEYS, "serverCompletionDate")
EVENT_COLUMNS = (*TRIAL_KEYS, "eventNumber")

CHUNK_TRIALS = 2000  # trials read at once
CHUNK_EVENT_VALUES = 50_000  # event values read at once (a bigger single trial is read whole)
# Factor columns pivoted by the database at most, a row per trial: its
# pivot costs each value a test per column, as fast as Python's at 10 columns, 4 times slower
# at 100 (measured, SQLite); wider designs are pivoted in Python.
PIVOT_MEASURES = 16
FLUSH_CHARACTERS = 1 << 16  # text yielded at once by the streams


# --- Columns ----------------------------------------------------------------------------------


def column_names(
    fixed: Sequence[str], factors: Sequence[str], measures: Sequence[str]
) -> tuple[list[str], list[str]]:
    """The header names of the (sorted) factor and measure ids, after the fixed columns.

    A factor id clashing with a fixed column or a measure id is prefixed `_factor_`; a measure
    id clashing with a fixed column or a factor id, `_measure_`; a name still taken gets `_0`,
    `_1`, ... (as LightMill's `_get_free_name`).
    """
    used = set(fixed)
    clash_factor = set(fixed) | set(measures)
    clash_measure = set(fixed) | set(factors)

    def free(code: str, clashes: set[str], prefix: str) -> str:
        name = prefix + code if code in clashes else code
        found, number = name, 0
        while found in used:
            found = f"{name}_{number}"
            number += 1
        used.add(found)
        return found

    factor_names = [free(code, clash_factor, "_factor_") for code in factors]
    measure_names = [free(code, clash_measure, "_measure_") for code in measures]
    return factor_names, measure_names


# --- What is read -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRef:
    """A run as the export reads it: its row's primary key, its id, its number of trials."""

    id: int
    code: str
    trial_count: int


class MeasureColumns:
    """Stored measure values (measure_values.py) placed in the export's columns of a level.

    A stored object holding every column's measure is placed by one `itemgetter` call (50 ns
    for 3 columns); only one missing some is placed key by key (195 ns). Chosen by the order
    of the stored keys, the placing took 0.4 of the 0.6 µs an event's object cost (timeit)."""

    def __init__(self, measures: Sequence[int]) -> None:
        self.keys = tuple(str(pk) for pk in measures)  # as the stored objects name them
        self.empty: tuple[str | None, ...] = (None,) * len(measures)
        self._every = _getter(self.keys)

    def cells(self, stored: str | bytes | None) -> Sequence[str | None]:
        """The values in their columns (a measure registered after the export started, or of
        another level, has none)."""
        if not stored or not self.empty:
            return self.empty
        return self.placed(orjson.loads(stored))

    def placed(self, found: dict[str, str] | None) -> Sequence[str | None]:
        """A stored object's values, parsed, in their columns."""
        if not found or not self.empty:
            return self.empty
        try:
            cells: tuple[str | None, ...] = self._every(found)
        except KeyError:  # some measure without a value
            cells = tuple(map(found.get, self.keys))
        return cells


def _getter(keys: tuple[str, ...]) -> Callable[[dict[str, str]], tuple[str, ...]]:
    """The values of `keys` as a tuple, as `itemgetter` gives them for two keys or more."""
    if len(keys) == 1:
        return lambda found: (found[keys[0]],)
    return itemgetter(*keys) if keys else lambda found: ()


@dataclass(frozen=True)
class Layout:
    """An experiment's ids and the export's columns, read once at the start."""

    experiment: str
    experiment_pk: int
    factors: tuple[str, ...]  # factor ids, sorted
    trial_measures: tuple[str, ...]  # trial-level measure ids, sorted
    event_measures: tuple[str, ...]
    factor_column: dict[int, int]  # factor pk -> index in `factors`
    value_code: dict[int, str]  # factor value pk -> its id
    trial_measure_column: MeasureColumns  # stored values -> cells by `trial_measures`
    event_measure_column: MeasureColumns
    runs: tuple[RunRef, ...]
    reads: _Reads  # its scans, compiled once

    def trial_header(self) -> list[str]:
        factors, measures = column_names(TRIAL_COLUMNS, self.factors, self.trial_measures)
        return [*TRIAL_COLUMNS, *factors, *measures]

    def event_header(self) -> list[str]:
        _, measures = column_names(EVENT_COLUMNS, (), self.event_measures)
        return [*EVENT_COLUMNS, *measures]

    def run(self, code: str) -> RunRef:
        for run in self.runs:
            if run.code == code:
                return run
        raise UnknownElement(f"experiment {self.experiment!r} has no run {code!r}")


class TrialRow(NamedTuple):
    """A trial as the files and the monitoring page show it. A named tuple: a frozen
    dataclass's `__init__` sets each field through `object.__setattr__`, and building
    200,000 of them was 3% of an export of 100,000 trials (py-spy)."""

    id: int  # the row's primary key
    run: str
    position: int
    block: int
    measured_block: int | None
    number: int
    practice: bool
    completed_at: datetime | None
    factor_values: Sequence[str | None]  # by Layout.factors
    measures: Sequence[str | None]  # by Layout.trial_measures
    event_count: int


async def read_layout(db: Database, experiment: str) -> Layout:
    """Raises UnknownElement."""
    async with db.engine.connect() as conn:
        xp = await conn.scalar(select(t.LMExperiment.id).where(t.LMExperiment.code == experiment))
        if xp is None:
            raise UnknownElement(f"there is no experiment {experiment!r}")
        factors = sorted(
            (code, pk)
            for pk, code in await _rows(
                conn, select(t.LMFactor.id, t.LMFactor.code).where(t.LMFactor.experiment_id == xp)
            )
        )
        values = {
            pk: code
            for pk, code in await _rows(
                conn,
                select(t.LMFactorValue.id, t.LMFactorValue.code)
                .join(t.LMFactor, t.LMFactorValue.factor_id == t.LMFactor.id)
                .where(t.LMFactor.experiment_id == xp),
            )
        }
        measures = list(
            await _rows(
                conn,
                select(
                    t.LMMeasure.code,
                    t.LMMeasure.id,
                    t.LMMeasure.trial_level,
                    t.LMMeasure.event_level,
                ).where(t.LMMeasure.experiment_id == xp),
            )
        )
        trial_measures = sorted((code, pk) for code, pk, trial, _ in measures if trial)
        event_measures = sorted((code, pk) for code, pk, _, event in measures if event)
        runs = await _rows(
            conn,
            select(t.LMRun.id, t.LMRun.code, t.LMRun.trial_count)
            .where(t.LMRun.experiment_id == xp)
            .order_by(t.LMRun.position),
        )
        return Layout(
            experiment=experiment,
            experiment_pk=xp,
            factors=tuple(code for code, _ in factors),
            trial_measures=tuple(code for code, _ in trial_measures),
            event_measures=tuple(code for code, _ in event_measures),
            factor_column={pk: i for i, (_, pk) in enumerate(factors)},
            value_code=values,
            trial_measure_column=MeasureColumns([pk for _, pk in trial_measures]),
            event_measure_column=MeasureColumns([pk for _, pk in event_measures]),
            runs=tuple(RunRef(pk, code, count) for pk, code, count in runs),
            reads=_Reads(conn.dialect, {pk: i for i, (_, pk) in enumerate(factors)}),
        )


AnySelect = Select[*tuple[Any, ...]]


class _Read:
    """A scan compiled once for its export (its dialect and layout): its text and its
    parameters in the driver's order, run with each chunk's values. Built and compiled for
    each chunk, a scan cost about 0.5 ms, twice or three times a chunk."""

    def __init__(self, query: AnySelect, dialect: Dialect) -> None:
        compiled = query.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        self.query = query
        self.sql = str(compiled)
        self.names = tuple(compiled.positiontup or ())
        self.fixed = dict(compiled.params)  # what the query holds: a factor's pk, ...

    async def rows(self, conn: AsyncConnection, **values: Any) -> Sequence[Sequence[Any]]:
        """All the rows at once, straight from the driver (tuples, asyncpg Records): these
        scans read integer and text columns, which SQLAlchemy would pass through unchanged.
        Building its Row objects took 14% of the export's time (py-spy, 100,000 trials), and
        through its adapter each aiosqlite query is four round trips to the driver's thread,
        here one."""
        every = {**self.fixed, **values}
        params = [every[name] for name in self.names]
        driver = await driver_connection(conn)
        try:
            if isinstance(driver, aiosqlite.Connection):
                return list(await driver.execute_fetchall(self.sql, params))
            return await driver.fetch(self.sql, *params)
        except Exception:
            # Run again through SQLAlchemy (a read): a failure is then raised as everywhere else
            # (a DBAPIError, its parameters hidden), which the CLI and the web handle.
            return (await conn.execute(self.query, values)).all()


def _in_range() -> tuple[ColumnElement[bool], ...]:
    """A run's trials from position `start` (included) to `stop` (excluded)."""
    return (
        t.LMTrial.run_id == bindparam("run"),
        t.LMTrial.position >= bindparam("start"),
        t.LMTrial.position < bindparam("stop"),
    )


def _trial_scan(
    *more: InstrumentedAttribute[Any], where: tuple[ColumnElement[bool], ...] = ()
) -> AnySelect:
    """A run's trials in a range of positions, in order: their keys (id, position, block number,
    measured block number, practice, trial number), then `more`."""
    return (
        select(
            t.LMTrial.id,
            t.LMTrial.position,
            t.LMBlock.number,
            t.LMBlock.measured_number,
            t.LMBlock.practice,
            t.LMTrial.number,
            *more,
        )
        .join(t.LMBlock, t.LMTrial.block_id == t.LMBlock.id)
        .where(*_in_range(), *where)
        .order_by(t.LMTrial.position)
    )


class _Reads:
    """An export's scans, each compiled at its first use."""

    def __init__(self, dialect: Dialect, factor_column: Mapping[int, int]) -> None:
        self.dialect = dialect
        self.factor_column = factor_column
        self.pivoted = len(factor_column) <= PIVOT_MEASURES

    @cached_property
    def trials(self) -> _Read:
        """Trials with their keys, completion and measure values."""
        query = _trial_scan(t.LMTrial.completed_at, t.LMTrial.event_count, t.LMTrial.measure_values)
        return _Read(query, self.dialect)

    @cached_property
    def done_with_events(self) -> _Read:
        """The trials done with events, with their keys: the events file's."""
        done = (t.LMTrial.completed_at.is_not(None), t.LMTrial.event_count > 0)
        return _Read(_trial_scan(t.LMTrial.event_count, where=done), self.dialect)

    @cached_property
    def factor_values(self) -> _Read:
        """The trials' factor value pks, by trial position: a row per trial in the columns'
        order (the database's pivot) or, for a wide design, a row per value. The trials' ids
        also bound the side table's primary key scan (`lo`, `hi`): the position range alone
        leaves PostgreSQL's planner to hash whole tables. The join keeps the rows exact."""
        fv = t.LMTrialFactorValue
        where = (*_in_range(), fv.trial_id.between(bindparam("lo"), bindparam("hi")))
        query: AnySelect
        if self.pivoted:
            by_column = sorted((index, pk) for pk, index in self.factor_column.items())
            query = (
                select(
                    t.LMTrial.position,
                    *(func.max(case((fv.factor_id == pk, fv.value_id))) for _, pk in by_column),
                )
                .join(t.LMTrial, fv.trial_id == t.LMTrial.id)
                .where(*where)
                .group_by(t.LMTrial.position)
            )
        else:
            query = (
                select(t.LMTrial.position, fv.factor_id, fv.value_id)
                .join(t.LMTrial, fv.trial_id == t.LMTrial.id)
                .where(*where)
            )
        return _Read(query, self.dialect)

    @cached_property
    def event_values(self) -> _Read:
        """The events' stored values of the trials from position `first` to `last` (included)
        that have any."""
        return _Read(
            select(t.LMTrial.position, t.LMTrial.event_values).where(
                t.LMTrial.run_id == bindparam("run"),
                t.LMTrial.position >= bindparam("first"),
                t.LMTrial.position <= bindparam("last"),
                t.LMTrial.event_values.is_not(None),
            ),
            self.dialect,
        )


async def read_trials(
    conn: AsyncConnection, layout: Layout, run: RunRef, start: int, stop: int
) -> list[TrialRow]:
    """The run's trials at positions `start` (included) to `stop` (excluded), in order, with
    their factor values and, for those done, their measures and completion time."""
    where = {"run": run.id, "start": start, "stop": stop}
    trials = await layout.reads.trials.rows(conn, **where)
    if not trials:
        return []
    factor_values: Mapping[int, Sequence[str | None]] = {}
    if layout.factors:
        lo, hi = min(row[0] for row in trials), max(row[0] for row in trials)
        ids = await _factor_values(conn, layout, lo=lo, hi=hi, **where)
        codes = layout.value_code
        factor_values = {
            position: [None if pk is None else codes[pk] for pk in row]
            for position, row in ids.items()
        }
    no_factors: list[str | None] = [None] * len(layout.factors)
    no_measures: list[str | None] = [None] * len(layout.trial_measures)
    rows = []
    trial_measures = layout.trial_measure_column
    for (
        trial_id,
        position,
        block,
        measured,
        practice,
        number,
        completed_at,
        event_count,
        measure_values,
    ) in trials:
        done = completed_at is not None
        rows.append(
            TrialRow(  # by position: 0.23 µs, by keyword 0.59
                trial_id,
                run.code,
                position,
                block,
                measured,
                number,
                bool(practice),  # SQLite's driver gives 0 or 1
                _moment(completed_at),
                factor_values.get(position, no_factors),
                # Its row read at once: a trial done is done with its values.
                trial_measures.cells(measure_values) if done else no_measures,
                event_count if done else 0,
            )
        )
    return rows


async def read_done_with_events(
    conn: AsyncConnection, layout: Layout, run: RunRef, start: int, stop: int
) -> list[TrialRow]:
    """The run's trials done with events at positions `start` (included) to `stop`
    (excluded), in order, without their values (the events file's keys need none)."""
    no_factors: list[str | None] = [None] * len(layout.factors)
    no_measures: list[str | None] = [None] * len(layout.trial_measures)
    code = run.code
    return [
        TrialRow(
            trial_id,
            code,
            position,
            block,
            measured,
            number,
            bool(practice),
            None,
            no_factors,
            no_measures,
            event_count,
        )
        for trial_id, position, block, measured, practice, number, event_count in (
            await layout.reads.done_with_events.rows(conn, run=run.id, start=start, stop=stop)
        )
    ]


async def _factor_values(
    conn: AsyncConnection, layout: Layout, **where: int
) -> Mapping[int, Sequence[Any]]:
    """The trials' factor value pks by trial position, in the layout's factor columns."""
    reads = layout.reads
    rows = await reads.factor_values.rows(conn, **where)
    if reads.pivoted:
        return {row[0]: row[1:] for row in rows}
    columns = layout.factor_column
    cells: dict[int, list[Any]] = {}
    for position, pk, cell in rows:
        index = columns.get(pk)
        if index is None:  # registered after the export started
            continue
        found = cells.get(position)
        if found is None:
            found = cells[position] = [None] * len(columns)
        found[index] = cell
    return cells


EventValues = Mapping[int, str]  # trial position -> its events' stored values


async def read_event_values(
    conn: AsyncConnection, layout: Layout, run: RunRef, trials: Sequence[TrialRow]
) -> EventValues:
    """The event values of these consecutive trials of the run, done and with events: by trial,
    as stored (a trial whose events have no values has no entry)."""
    if not trials or not layout.event_measures:
        return {}
    rows = await layout.reads.event_values.rows(
        conn, run=run.id, first=trials[0].position, last=trials[-1].position
    )
    return {position: stored for position, stored in rows}


async def iter_trials(
    db: Database, layout: Layout, chunk: int = CHUNK_TRIALS
) -> AsyncIterator[list[TrialRow]]:
    """Every trial of the experiment, in order, a chunk at a time."""
    for run in layout.runs:
        for start in range(0, run.trial_count, chunk):
            async with db.engine.connect() as conn:
                rows = await read_trials(conn, layout, run, start, start + chunk)
            if rows:
                yield rows


async def iter_events(
    db: Database,
    layout: Layout,
    chunk: int = CHUNK_TRIALS,
    chunk_values: int = CHUNK_EVENT_VALUES,
) -> AsyncIterator[tuple[Sequence[TrialRow], EventValues]]:
    """Every trial with events of the experiment, in order, and their events' values, a chunk
    at a time: at most `chunk` trials, and about `chunk_values` event values unless one trial
    has more."""
    budget = max(chunk_values // max(len(layout.event_measures), 1), 1)
    for run in layout.runs:
        for start in range(0, run.trial_count, chunk):
            async with db.engine.connect() as conn:
                trials = await read_done_with_events(conn, layout, run, start, start + chunk)
                parts = list(_by_budget(trials, budget))
                # Most chunks are one part: read on the same connection (a checkout less).
                first = await read_event_values(conn, layout, run, parts[0]) if parts else {}
            if parts:
                yield parts[0], first
            for part in parts[1:]:
                async with db.engine.connect() as conn:
                    values = await read_event_values(conn, layout, run, part)
                yield part, values


def _by_budget(trials: Sequence[TrialRow], events: int) -> Iterable[Sequence[TrialRow]]:
    """Consecutive slices of the trials, about `events` events each (at least one trial
    each)."""
    part: list[TrialRow] = []
    count = 0
    for trial in trials:
        if part and count + trial.event_count > events:
            yield part
            part, count = [], 0
        part.append(trial)
        count += trial.event_count
    if part:
        yield part


async def _rows(conn: AsyncConnection, query: Executable) -> Sequence[Any]:
    """All the rows at once (fetching them one by one costs more than reading them)."""
    return (await conn.execute(query)).all()


def _moment(value: datetime | str | None) -> datetime | None:
    """A stored time as the driver gives it: SQLite's is text, UTC without its zone (as
    SQLAlchemy writes it), read here with its zone in one call, 0.1 µs (`aware`'s `replace`
    after took 0.8 µs more, once a trial)."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value + "+00:00")
        except ValueError:  # a text with a zone of its own
            return aware(datetime.fromisoformat(value))
    return aware(value)


# --- Cells ------------------------------------------------------------------------------------


def epoch_ms(moment: datetime | None) -> int | None:
    """As the API's `completionDate`: milliseconds since the epoch."""
    return None if moment is None else int(moment.timestamp() * 1000)


class _Buffer:
    """Text written, kept as its pieces until taken."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0

    def write(self, text: str) -> int:
        self.parts.append(text)
        self.size += len(text)
        return len(text)

    def take(self) -> str:
        text = "".join(self.parts)
        self.parts.clear()
        self.size = 0
        return text


class _Writer:
    """Rows to CSV or JSON Lines text, buffered.

    Rows are built of cells already in the format's form: a trial's key cells once per trial
    (`key`), text cells by `text`; the rest (ints, None) is the same in both formats."""

    def __init__(self, header: Sequence[str], format: Format) -> None:
        if format not in FORMATS:
            raise ValueError(f"unknown export format {format!r}: use csv or json")
        self.header = list(header)
        self.format = format
        self.buffer = _Buffer()
        self.csv = csv.writer(self.buffer, lineterminator="\n")
        self.json = json.JSONEncoder(ensure_ascii=False).encode  # as json.dumps would
        self._inert_keys: dict[str, Any] = {}  # an experiment's and its runs' ids, made inert
        if format == "csv":
            self.csv.writerow([inert(name) for name in self.header])

    def key(self, experiment: str, trial: TrialRow) -> list[Any]:
        """The trial's cells `experimentId` to `practice`."""
        if self.format == "json":
            return [*_keys(experiment, trial)]
        practice = "true" if trial.practice else "false"
        run, block, measured = self._inert_key(trial.run), trial.block, trial.measured_block
        return [self._inert_key(experiment), run, block, measured, trial.number, practice]

    def _inert_key(self, text: str) -> Any:
        # Asked twice a row with a handful of values: 0.4 s of 100,000 trials' export (cProfile).
        found = self._inert_keys.get(text)
        if found is None:
            found = self._inert_keys[text] = inert(text)
        return found

    def text(self, cells: Sequence[str | None]) -> Sequence[Any]:
        """Text cells (None: an empty cell)."""
        if self.format == "json":
            return cells
        # inert only for a cell that may need it: 60 ns a cell instead of 130 (most don't).
        return [
            cell if cell is None or cell[:1] not in FORMULA_FIRST else inert(cell) for cell in cells
        ]

    def measures(self, columns: MeasureColumns, stored: str | None) -> Sequence[Any]:
        """Stored measure values in their columns, as `text` makes them. Most stored objects
        hold no value a spreadsheet would run, and one search of their text (C) says so: the
        check a cell took a fifth of an events file's time (py-spy, 100,000 trials, where
        most events had a negative number: each went through `inert` and `float`)."""
        cells = columns.cells(stored)
        if self.format == "json" or not stored or not _MAYBE_FORMULA.search(stored):
            return cells
        return self.text(cells)

    def measures_each(
        self, columns: MeasureColumns, stored: str | None, count: int
    ) -> list[Sequence[Any]]:
        """A trial's `count` events' stored values (measure_values.encode_each) in their
        columns, an event's cells as `measures` makes them; one search for the trial's."""
        each = orjson.loads(stored)[:count] if stored else []
        rows = [columns.placed(found) for found in each]
        rows += [columns.empty] * (count - len(rows))
        if self.format == "json" or not stored or not _MAYBE_FORMULA.search(stored):
            return rows
        return [self.text(cells) for cells in rows]

    def rows(self, rows: Iterable[list[Any]]) -> None:
        if self.format == "csv":  # None is written as an empty cell
            self.csv.writerows(rows)
        else:
            header, encode = self.header, self.json
            self.buffer.write(
                "".join(encode(dict(zip(header, row, strict=True))) + "\n" for row in rows)
            )

    def size(self) -> int:
        return self.buffer.size

    def take(self) -> str:
        return self.buffer.take()


def _keys(experiment: str, trial: TrialRow) -> tuple[Any, ...]:
    return (
        experiment,
        trial.run,
        trial.block,
        trial.measured_block,
        trial.number,
        trial.practice,
    )


def trial_rows(writer: _Writer, experiment: str, trials: Iterable[TrialRow]) -> list[list[Any]]:
    return [
        [
            *writer.key(experiment, trial),
            epoch_ms(trial.completed_at),
            *writer.text(trial.factor_values),
            *writer.text(trial.measures),
        ]
        for trial in trials
    ]


def event_rows(
    writer: _Writer,
    experiment: str,
    trials: Iterable[TrialRow],
    values: EventValues,
    columns: MeasureColumns,
) -> list[list[Any]]:
    """One row per event of the trials, an event without values included, its values placed
    in `columns`."""
    rows: list[list[Any]] = []
    for trial in trials:
        key = writer.key(experiment, trial)
        each = writer.measures_each(columns, values.get(trial.position), trial.event_count)
        rows.extend([*key, number, *cells] for number, cells in enumerate(each))
    return rows


# --- Streams and files ------------------------------------------------------------------------


async def stream(
    db: Database,
    experiment: str,
    kind: Kind,
    format: Format = "csv",
    *,
    chunk: int = CHUNK_TRIALS,
) -> AsyncIterator[str]:
    """The trials or events file, in pieces of about 64 KiB. Raises UnknownElement (before any
    text)."""
    layout = await read_layout(db, experiment)
    if kind == "trials":
        writer = _Writer(layout.trial_header(), format)
        async for trials in iter_trials(db, layout, chunk):
            writer.rows(trial_rows(writer, experiment, trials))
            if writer.size() >= FLUSH_CHARACTERS:
                yield writer.take()
    else:
        writer = _Writer(layout.event_header(), format)
        columns = layout.event_measure_column
        async for done, values in iter_events(db, layout, chunk):
            writer.rows(event_rows(writer, experiment, done, values, columns))
            if writer.size() >= FLUSH_CHARACTERS:
                yield writer.take()
    yield writer.take()


async def write(
    db: Database,
    experiment: str,
    kind: Kind,
    out: TextIO,
    format: Format = "csv",
    *,
    chunk: int = CHUNK_TRIALS,
) -> None:
    """Write the experiment's trials or events file to `out` (a text file; open CSV files with
    `newline=""`). Raises UnknownElement."""
    async for text in stream(db, experiment, kind, format, chunk=chunk):
        out.write(text)


def file_name(experiment: str, kind: Kind, format: Format = "csv") -> str:
    """`{id}-trials.csv` or `{id}-events.csv` (`.jsonl` for JSON), the id's characters other
    than letters, digits, `.`, `_` and `-` replaced by `_`."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in experiment)
    safe = safe.lstrip(".") or "experiment"
    return f"{safe}-{kind}.{SUFFIXES[format]}"
