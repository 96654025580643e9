"""The export's ceiling: an experiment's trials and events read with the bare driver (sqlite3,
asyncpg) and written with Python's `csv` module, in the same order and the same columns as
`mastok export` writes them (bench scenario 6).

    python -m bench.export_ceiling DATABASE_URL EXPERIMENT OUTPUT_DIR

Three ordered scans (trials with their measure values, their factor values, the trials with
events and their events' values), each streamed and merged trial by trial, each trial's values
parsed from their JSON object and its events' from their JSON array (orjson): the least a CSV
export of these tables can do, with no layer of mastok's between the driver and the file. It
prints `wrote PATH` after each file, as `mastok export` does, so the harness times both alike.
"""

from __future__ import annotations

import asyncio
import csv
import re
import sqlite3
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import orjson

_BY_TRIAL = (
    "JOIN lm_trials t ON t.id = x.trial_id JOIN lm_runs r ON r.id = t.run_id "
    "WHERE r.experiment_id = {xp} ORDER BY r.position, t.position"
)
TRIALS = (
    "SELECT t.id, r.code, b.number, b.measured_number, b.practice, t.number, t.completed_at, "
    "t.measure_values "
    "FROM lm_trials t JOIN lm_runs r ON r.id = t.run_id JOIN lm_blocks b ON b.id = t.block_id "
    "WHERE r.experiment_id = {xp} ORDER BY r.position, t.position"
)
FACTORS = (
    "SELECT x.trial_id, x.factor_id, v.code FROM lm_trial_factor_values x "
    "JOIN lm_factor_values v ON v.id = x.value_id " + _BY_TRIAL
)
EVENTS = (
    "SELECT t.event_values, r.code, b.number, b.measured_number, b.practice, t.number "
    "FROM lm_trials t JOIN lm_runs r ON r.id = t.run_id JOIN lm_blocks b ON b.id = t.block_id "
    "WHERE r.experiment_id = {xp} AND t.event_values IS NOT NULL "
    "ORDER BY r.position, t.position"
)


class Rows(Protocol):
    def __call__(self, query: str) -> AsyncIterator[tuple[Any, ...]]: ...


async def export(rows: Rows, experiment: str, out: Path) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", experiment):
        raise SystemExit(f"not an experiment id: {experiment!r}")
    xp = await _one(rows, f"SELECT id FROM lm_experiments WHERE code = '{experiment}'")
    factors = await _columns(rows, f"SELECT id, code FROM lm_factors WHERE experiment_id = {xp}")
    measures = "SELECT id, code FROM lm_measures WHERE experiment_id = {xp} AND {level}"
    trial_measures = await _columns(rows, measures.format(xp=xp, level="trial_level"))
    event_measures = await _columns(rows, measures.format(xp=xp, level="event_level"))
    keys = ["experimentId", "runId", "blockNumber", "measuredBlockNumber", "trialNumber"]
    keys.append("practice")
    path = out / f"{experiment}-trials.csv"
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow([*keys, "serverCompletionDate", *factors, *trial_measures])
        factor_rows = _Grouped(rows(FACTORS.format(xp=xp)))
        async for trial_id, run, block, measured, practice, number, done, stored in rows(
            TRIALS.format(xp=xp)
        ):
            factor_cells: list[Any] = [None] * len(factors)
            for _, factor, code in await factor_rows.of(trial_id):
                factor_cells[factors[factor]] = code
            measure_cells: list[Any] = [None] * len(trial_measures)
            if stored:
                for measure, value in orjson.loads(stored).items():
                    measure_cells[trial_measures.by_key[measure]] = value
            key = [experiment, run, block, measured, practice, number]
            writer.writerow([*key, _epoch_ms(done), *factor_cells, *measure_cells])
    print(f"wrote {path}", flush=True)
    path = out / f"{experiment}-events.csv"
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow([*keys, "eventNumber", *event_measures])
        columns = event_measures.by_key
        async for stored, *key in rows(EVENTS.format(xp=xp)):
            for number, values in enumerate(orjson.loads(stored)):
                cells: list[Any] = [None] * len(event_measures)
                for measure, value in (values or {}).items():
                    cells[columns[measure]] = value
                writer.writerow([experiment, *key, number, *cells])
    print(f"wrote {path}", flush=True)


class _Grouped:
    """The rows of an ordered scan, taken a trial at a time (rows start with the trial's id)."""

    def __init__(self, rows: AsyncIterator[tuple[Any, ...]]) -> None:
        self._rows = rows
        self._next: tuple[Any, ...] | None = None
        self._done = False

    async def of(self, trial_id: int) -> list[tuple[Any, ...]]:
        found = []
        while not self._done:
            if self._next is None:
                try:
                    self._next = await anext(self._rows)
                except StopAsyncIteration:
                    self._done = True
                    break
            if self._next[0] != trial_id:
                break
            found.append(self._next)
            self._next = None
        return found


async def _one(rows: Rows, query: str) -> Any:
    async for (value,) in rows(query):
        return value
    raise SystemExit(f"not found: {query}")


class _Columns(dict[int, int]):
    """Database id -> column index, iterating as the column names (by code, as the export)."""

    def __init__(self, codes: dict[int, str]) -> None:
        ordered = sorted(codes.items(), key=lambda item: item[1])
        super().__init__((pk, i) for i, (pk, _) in enumerate(ordered))
        self.names = [code for _, code in ordered]
        self.by_key = {str(pk): i for pk, i in self.items()}  # as stored values name them

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]
        return iter(self.names)


async def _columns(rows: Rows, query: str) -> _Columns:
    return _Columns({pk: code async for pk, code in rows(query)})


def _epoch_ms(moment: Any) -> int | None:
    if moment is None:
        return None
    if isinstance(moment, str):  # SQLite keeps times as text
        moment = datetime.fromisoformat(moment)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


@asynccontextmanager
async def _sqlite(path: str) -> AsyncIterator[Rows]:
    connection = sqlite3.connect(path)

    async def rows(query: str) -> AsyncIterator[tuple[Any, ...]]:
        for row in connection.cursor().execute(query):
            yield row

    try:
        yield rows
    finally:
        connection.close()


@asynccontextmanager
async def _postgresql(url: str) -> AsyncIterator[Rows]:
    # One connection per scan: the merges read three cursors side by side.
    connections: list[asyncpg.Connection] = []

    async def rows(query: str) -> AsyncIterator[tuple[Any, ...]]:
        connection = await asyncpg.connect(url)
        connections.append(connection)
        async with connection.transaction():
            async for record in connection.cursor(query, prefetch=2000):
                yield tuple(record)

    try:
        yield rows
    finally:
        for connection in connections:
            await connection.close()


def _connect(url: str) -> Any:
    if url.startswith("sqlite"):
        return _sqlite(url.split("///", 1)[1])
    return _postgresql(url.replace("postgresql+asyncpg://", "postgresql://"))


async def main(url: str, experiment: str, out: Path) -> None:
    async with _connect(url) as rows:
        await export(rows, experiment, out)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    Path(sys.argv[3]).mkdir(parents=True, exist_ok=True)
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
