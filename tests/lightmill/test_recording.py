"""recording.py: a post's measure ids, when each is known at each level it is posted at, and
the registering of new ones."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from mastok.db import Database, async_url
from mastok.lightmill import export, recording
from mastok.lightmill.design import parse_design
from mastok.lightmill.locks import LockPolicy
from mastok.lightmill.recording import MeasureRef, known_ids
from mastok.lightmill.results import TrialResults
from mastok.lightmill.store import LightMillStore
from tests.lightmill.helpers import design

KNOWN = {
    "rt": MeasureRef(1, trial_level=True, event_level=False),
    "x": MeasureRef(2, trial_level=False, event_level=True),
    "both": MeasureRef(3, trial_level=True, event_level=True),
}


def results(trial: dict[str, str], *events: dict[str, str]) -> TrialResults:
    return TrialResults(token="t", trial=trial, events=list(events))


def test_the_ids_of_measures_known_at_their_levels() -> None:
    posted = results({"rt": "1", "both": "2"}, {"x": "3", "both": "4"}, {"x": "5", "both": "6"})
    assert known_ids(KNOWN, posted) == {"rt": 1, "both": 3, "x": 2}
    assert known_ids(KNOWN, results({})) == {}


def test_none_for_a_measure_unknown_or_not_known_at_its_level() -> None:
    assert known_ids(KNOWN, results({"new": "1"})) is None
    assert known_ids(KNOWN, results({"x": "1"})) is None  # an event-level measure
    assert known_ids(KNOWN, results({}, {"rt": "1"})) is None  # a trial-level one


def test_each_event_is_checked_unless_it_names_the_measures_of_the_one_before() -> None:
    assert known_ids(KNOWN, results({}, {"x": "1"}, {"x": "2"}, {"x": "3", "rt": "4"})) is None
    assert known_ids(KNOWN, results({}, {"x": "1"}, {"x": "2", "new": "3"})) is None
    assert known_ids(KNOWN, results({}, {"x": "1"}, {}, {"x": "2"})) == {"x": 2}
    assert known_ids(KNOWN, results({}, {"x": "1"}, {"both": "2"})) == {"x": 2, "both": 3}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_measure_another_instance_registers_meanwhile_gains_this_posts_level(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two instances on one PostgreSQL register the same new measure at once, one at the trial
    level, the other at the event level: the measure is then at both, and the events' values
    are in the events file."""
    db = Database(async_url(database_url))
    try:
        here, there = LightMillStore(db), LightMillStore(db)
        await here.import_design(parse_design(design()))
        policy = LockPolicy(600)
        tokens = [(await here.lock("pointing", run, policy)).token for run in ("S0", "S1")]
        read = recording.read_measures
        registered_there = False

        async def read_then_the_other_registers(
            connection: AsyncConnection, experiment_id: int
        ) -> dict[str, MeasureRef]:
            nonlocal registered_there
            found = await read(connection, experiment_id)
            if not registered_there:  # the other instance's post commits between this read
                registered_there = True  # and this post's registration
                trial = TrialResults(tokens[1], {"pressure": "2"}, [])
                await there.record_trial("pointing", "S1", 0, 0, trial, fixed_measures=False)
            return found

        monkeypatch.setattr(recording, "read_measures", read_then_the_other_registers)
        event = TrialResults(tokens[0], {}, [{"pressure": "1"}])
        await here.record_trial("pointing", "S0", 0, 0, event, fixed_measures=False)

        assert registered_there
        measures = {m.id: m for m in (await here.experiment("pointing")).measures}
        assert (measures["pressure"].trial_level, measures["pressure"].event_level) == (True, True)
        out = io.StringIO()
        await export.write(db, "pointing", "events", out)
        rows = list(csv.DictReader(io.StringIO(out.getvalue())))
        assert [row["pressure"] for row in rows] == ["1"]
    finally:
        await db.close()
