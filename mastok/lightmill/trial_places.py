"""Where posted trials sit in their design, read ahead of the posts and kept until posted.

A trial's place is what a post's batch needs of the design: its run, its block (measured
number, practice), its own id and position, and its factor values. A design never changes
once imported (an import refuses an id that exists, and nothing deletes one), so a place,
once read, holds for good. A miss reads the post's trial and the next `AHEAD - 1` of its run,
in one query: a client posts its run's trials in order, so one read serves a run's next posts,
and a batch of them (one post a run, each at its run's next trial) reads nothing. What does
change (the run's completed trials, its lock) is not read here: the batch's write checks it
(batch_write.py), and a post it does not move is recorded alone, with its precise answer.

The posts' keys come as one parameter (PostgreSQL: arrays, `unnest`; SQLite: a JSON array,
`json_each`), so the query's text is the same for every batch: prepared once by the driver,
and planned once by PostgreSQL (its CPU for the query went from 0.43-0.57 ms to 0.20-0.23 ms
a batch of 10 to 14 posts). Their keys as IN lists (SQLAlchemy's expanding parameters)
made a new text for each batch size, which SQLAlchemy rendered again for every batch and
PostgreSQL planned again: that rendering was 5% of mastok's time on a trial (py-spy, bench
scenario 6).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from typing import Any, NamedTuple

from sqlalchemy.ext.asyncio import AsyncConnection

from mastok.db.engine import driver_connection
from mastok.lightmill.trial_sql import PLACES_PG, PLACES_SQLITE

Key = tuple[str, str, int, int]  # experiment, run, block, trial: as the post's path names it

# A post's trial and the next 31 of its run: one read for 32 posts of a run.
AHEAD = 32
# Places kept at most: 1,024 runs logged at once, 32 places ahead each; about 0.8 KB a place
# with four factor values (0.4 KB of objects, the rest their texts), 26 MB at most. Past it,
# those kept are dropped and read again as posts need them.
LIMIT = 32_768


class Place(NamedTuple):
    """A trial's place in its design: what a post's batch writes by, and answers with."""

    run_pk: int
    experiment_pk: int
    measured_number: int | None
    practice: bool
    trial_pk: int
    position: int
    factor_values: dict[str, str]  # all that apply, in the factors' order


async def read_places(
    connection: AsyncConnection, keys: Sequence[Key], ahead: int = AHEAD
) -> dict[Key, Place]:
    """The places of these keys' trials and of the `ahead - 1` after each in its run; a key
    whose run, block or trial is not there has none. Straight from the driver: through
    SQLAlchemy, the result's set-up cost more than the query (4% of a trial on SQLite)."""
    driver = await driver_connection(connection)
    if connection.dialect.name == "postgresql":
        columns = zip(*keys, strict=True) if keys else ([], [], [], [])
        return places_of(await driver.fetch(PLACES_PG, *map(list, columns), ahead))
    return places_of(await driver.execute_fetchall(PLACES_SQLITE, (json.dumps(keys), ahead)))


def places_of(rows: Iterable[Sequence[Any]]) -> dict[Key, Place]:
    """Rows a trial's factor each (or one for a trial with none), by trial, its factors in
    order; a trial in two posts' windows comes twice."""
    places: dict[Key, Place] = {}
    for row in rows:
        key: Key = (row[0], row[1], row[2], row[3])
        place = places.get(key)
        if place is None:  # SQLite's booleans are integers
            place = Place(row[4], row[5], row[6], bool(row[7]), row[8], row[9], {})
            places[key] = place
        if row[10] is not None and row[11] is not None:
            place.factor_values[row[10]] = row[11]
    return places


# Reads the places of these keys' trials and `ahead - 1` after each: read_places' work.
Reader = Callable[[Sequence[Key], int], Awaitable[dict[Key, Place]]]


class TrialPlaces:
    """The places read and not posted yet, for a store's batches."""

    def __init__(self, ahead: int = AHEAD, limit: int = LIMIT) -> None:
        self._ahead = ahead
        self._limit = limit
        self._kept: dict[Key, Place] = {}

    async def find(self, connection: AsyncConnection, keys: Collection[Key]) -> dict[Key, Place]:
        """The places of those keys whose trials exist, reading those not kept (and ahead)."""

        async def read(missing: Sequence[Key], ahead: int) -> dict[Key, Place]:
            return await read_places(connection, missing, ahead)

        return await self.find_by(read, keys)

    async def find_by(self, reader: Reader, keys: Collection[Key]) -> dict[Key, Place]:
        """The same, read by `reader` (read_places without the connection)."""
        found = {key: place for key in keys if (place := self._kept.get(key)) is not None}
        missing = [key for key in keys if key not in found]
        if missing:
            read = await reader(missing, self._ahead)
            if len(self._kept) + len(read) > self._limit:
                self._kept.clear()
            self._kept.update(read)
            found.update((key, read[key]) for key in missing if key in read)
        return found

    def posted(self, key: Key) -> None:
        """Its trial is done: a post of it again is refused, and recorded alone to say so."""
        self._kept.pop(key, None)

    def __len__(self) -> int:
        return len(self._kept)
