"""Resolving a trial post's measures: the ids of those it names, registering new ones.

Unknown measures are registered on the fly (type `unregistered`, at the level they were posted
at), as are new levels of known ones, unless the experiment's measures are fixed. Clients may add
at most `max_new` measures to an experiment (its design's do not count): a post that would
register more is refused (TooManyMeasures) and its transaction, with everything it wrote, rolled
back.

Everything here runs on the connection of the post's transaction (SQLAlchemy Core: a trial
post is a few statements on known ids, and an ORM session's bookkeeping cost more than they
did). An experiment's measures only ever grow (a code keeps its id and gains levels), so the
store keeps what it read of them, once committed, and reads them again only when a post names
a measure or a level it does not know.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import KeysView, Mapping
from dataclasses import dataclass

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert

from mastok.lightmill.errors import TooManyMeasures, WrongMeasureKey
from mastok.lightmill.results import TrialResults
from mastok.lightmill.tables import LMMeasure

log = logging.getLogger("mastok.lightmill")

UNREGISTERED = "unregistered"


@dataclass(frozen=True, slots=True)
class MeasureRef:
    id: int
    trial_level: bool
    event_level: bool
    registered: bool = True  # false: added by a client's post

    def at(self, level: str) -> bool:
        return self.trial_level if level == "trial" else self.event_level


Measures = Mapping[str, MeasureRef]  # an experiment's measures by code

_MEASURES = select(
    LMMeasure.code,
    LMMeasure.id,
    LMMeasure.trial_level,
    LMMeasure.event_level,
    LMMeasure.registered,
).where(LMMeasure.experiment_id == bindparam("experiment_id"))


async def read_measures(connection: AsyncConnection, experiment_id: int) -> dict[str, MeasureRef]:
    rows = await connection.execute(_MEASURES, {"experiment_id": experiment_id})
    return {
        code: MeasureRef(pk, trial, event, bool(registered))
        for code, pk, trial, event, registered in rows
    }


def wanted_levels(results: TrialResults) -> dict[str, set[str]]:
    wanted: dict[str, set[str]] = defaultdict(set)
    for code in results.trial:
        wanted[code].add("trial")
    for event in results.events:
        for code in event:
            wanted[code].add("event")
    return wanted


def known_ids(known: Measures, results: TrialResults) -> dict[str, int] | None:
    """The ids of the posted measures if every one is known at every level it is posted at;
    else None. In one pass, as each trial post asks (building `wanted_levels` first was 2.5%
    of the server's samples on PostgreSQL's trial posts, py-spy)."""
    ids = {}
    for code in results.trial:
        measure = known.get(code)
        if measure is None or not measure.trial_level:
            return None
        ids[code] = measure.id
    checked: KeysView[str] | None = None  # an event's measures, known at the event level
    for event in results.events:
        if checked is not None and event.keys() == checked:  # as most events are
            continue
        for code in event:
            measure = known.get(code)
            if measure is None or not measure.event_level:
                return None
            ids[code] = measure.id
        checked = event.keys()
    return ids


async def measure_ids(
    connection: AsyncConnection,
    experiment_id: int,
    experiment: str,
    results: TrialResults,
    fixed: bool,
    known: Measures | None = None,
    max_new: int | None = None,
) -> tuple[dict[str, int], Measures | None]:
    """The ids of the posted measures, registering new ones (or new levels) unless `fixed`;
    and the experiment's measures as this transaction sees them (None when it read none).
    `known`: what the caller already knows of them (read again when a measure or a level is
    not in it); `max_new`: how many measures clients may add to the experiment (None: no
    bound). Raises WrongMeasureKey, TooManyMeasures."""
    if known is not None:
        ids = known_ids(known, results)
        if ids is not None:
            return ids, known
    wanted = wanted_levels(results)
    if not wanted:
        return {}, known
    known = await read_measures(connection, experiment_id)
    ids = known_ids(known, results)
    if ids is not None:
        return ids, known
    missing = sorted(code for code in wanted if code not in known)
    lacking = _lacking(known, wanted)
    if fixed and missing:
        code = missing[0]
        level = "trial" if code in results.trial else "event"
        raise WrongMeasureKey(
            f"unknown {level} measure {code!r}: experiment {experiment!r} has fixed measures"
        )
    if fixed and lacking:
        code, levels = next(iter(lacking.items()))
        raise WrongMeasureKey(
            f"measure {code!r} of experiment {experiment!r} is not a {min(levels)}-level measure"
        )
    if missing and max_new is not None:
        added = sum(not measure.registered for measure in known.values())
        if added + len(missing) > max_new:
            raise TooManyMeasures(
                f"experiment {experiment!r} takes at most {max_new} measures besides its "
                f"design's; it has {added} and this post names {len(missing)} more "
                f"(first: {missing[0][:60]!r}): nothing of it was stored"
            )
    if missing:
        rows = [
            {
                "experiment_id": experiment_id,
                "code": code,
                "name": None,
                "type": UNREGISTERED,
                "trial_level": "trial" in wanted[code],
                "event_level": "event" in wanted[code],
                "registered": False,
            }
            for code in missing
        ]
        await connection.execute(
            _insert_ignoring_conflicts(connection, ["experiment_id", "code"]), rows
        )
        log.info("experiment %r: new measures registered: %s", experiment, ", ".join(missing))
        # A concurrent post (another instance's) may have registered some first, at its levels.
        known = await read_measures(connection, experiment_id)
        lacking = _lacking(known, wanted)
    for code, levels in lacking.items():
        await connection.execute(
            update(LMMeasure)
            .where(LMMeasure.id == known[code].id)
            .values({f"{level}_level": True for level in levels})
        )
        log.info("experiment %r: measure %r now also at the %s level", experiment, code, levels)
    known = await read_measures(connection, experiment_id)
    return {code: known[code].id for code in wanted}, known


def _lacking(known: Measures, wanted: Mapping[str, set[str]]) -> dict[str, set[str]]:
    """The levels each known measure is posted at and is not at yet (those lacking none left
    out)."""
    lacking = {
        code: {level for level in levels if not known[code].at(level)}
        for code, levels in sorted(wanted.items())
        if code in known
    }
    return {code: levels for code, levels in lacking.items() if levels}


def _insert_ignoring_conflicts(connection: AsyncConnection, keys: list[str]) -> Insert:
    """INSERT ... ON CONFLICT DO NOTHING: a concurrent post may register the same measure."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert(LMMeasure).on_conflict_do_nothing(index_elements=keys)
    return sqlite.insert(LMMeasure).on_conflict_do_nothing(index_elements=keys)
