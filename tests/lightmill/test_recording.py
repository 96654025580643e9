"""recording.known_ids: a post's measure ids, when each is known at each level it is posted at."""

from __future__ import annotations

from mastok.lightmill.recording import MeasureRef, known_ids
from mastok.lightmill.results import TrialResults

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
