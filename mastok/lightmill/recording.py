"""Storing a trial's results: the measures they name, then their values.

Unknown measures are registered on the fly (type `unregistered`, at the level they were posted
at), as are new levels of known ones, unless the experiment's measures are fixed.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Insert

from mastok.lightmill.errors import WrongMeasureKey
from mastok.lightmill.results import TrialResults
from mastok.lightmill.tables import LMEventMeasureValue, LMMeasure, LMTrialMeasureValue

log = logging.getLogger("mastok.lightmill")

UNREGISTERED = "unregistered"


async def measure_ids(
    session: AsyncSession,
    experiment_id: int,
    experiment: str,
    results: TrialResults,
    fixed: bool,
) -> dict[str, int]:
    """The ids of the posted measures, registering new ones (or new levels) unless `fixed`."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for code in results.trial:
        wanted[code].add("trial")
    for event in results.events:
        for code in event:
            wanted[code].add("event")
    if not wanted:
        return {}
    known = {
        m.code: m
        for m in await session.scalars(
            select(LMMeasure).where(LMMeasure.experiment_id == experiment_id)
        )
    }
    missing = sorted(code for code in wanted if code not in known)
    lacking = {
        code: {level for level in levels if not getattr(known[code], f"{level}_level")}
        for code, levels in sorted(wanted.items())
        if code in known
    }
    lacking = {code: levels for code, levels in lacking.items() if levels}
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
        await session.execute(
            await _insert_ignoring_conflicts(session, LMMeasure, ["experiment_id", "code"]), rows
        )
        log.info("experiment %r: new measures registered: %s", experiment, ", ".join(missing))
    for code, levels in lacking.items():
        await session.execute(
            update(LMMeasure)
            .execution_options(synchronize_session=False)
            .where(LMMeasure.id == known[code].id)
            .values({f"{level}_level": True for level in levels})
        )
        log.info("experiment %r: measure %r now also at the %s level", experiment, code, levels)
    ids = {code: m.id for code, m in known.items()}
    if missing:
        added = await session.execute(
            select(LMMeasure.code, LMMeasure.id).where(
                LMMeasure.experiment_id == experiment_id, LMMeasure.code.in_(missing)
            )
        )
        ids.update({code: id_ for code, id_ in added})
    return ids


async def _insert_ignoring_conflicts(
    session: AsyncSession, table: type[Any], keys: list[str]
) -> Insert:
    """INSERT ... ON CONFLICT DO NOTHING: a concurrent post may register the same measure."""
    if (await session.connection()).dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=keys)
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=keys)


async def insert_results(
    session: AsyncSession, trial_id: int, ids: Mapping[str, int], results: TrialResults
) -> None:
    trial_rows = [
        {"trial_id": trial_id, "measure_id": ids[code], "value": value}
        for code, value in results.trial.items()
    ]
    event_rows = [
        {"trial_id": trial_id, "event_number": n, "measure_id": ids[code], "value": value}
        for n, event in enumerate(results.events)
        for code, value in event.items()
    ]
    if trial_rows:
        await session.execute(insert(LMTrialMeasureValue), trial_rows)
    if event_rows:
        await session.execute(insert(LMEventMeasureValue), event_rows)
