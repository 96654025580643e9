"""Trials' places read ahead of their posts (mastok/lightmill/trial_places.py), on both
backends: valid posts are recorded by their batch, none of them left to be recorded alone, and
answered as the API reads them back; a run's next posts read nothing; a post the batch's write
refuses, its place kept, gets its precise answer alone; the places kept stay bounded."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import pytest
from starlette.testclient import TestClient

from mastok.db.batches import ALONE
from mastok.lightmill.results import TrialResults
from mastok.lightmill.store import _Post, _Recorded
from mastok.lightmill.trial_places import Key, Place, Reader, TrialPlaces, read_places
from tests.fixtures.app import ClientFactory, basic_auth
from tests.lightmill.helpers import (
    XML,
    error,
    imported,
    in_app,
    lightmill,
    lock,
    post_trial,
    row_counts,
)

S0 = [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]  # run S0's trials in order (pointing.xml)
TIME = {"trial": {"time": 1}, "events": []}


@pytest.fixture(params=[False, True], ids=["default", "in-process"])
def client(make_client: ClientFactory, request: pytest.FixtureRequest) -> TestClient:
    """An anonymous client of an app with pointing.xml imported; on SQLite, trial posts
    written by the worker process (by default) or in the server's."""
    anonymous = make_client(authenticated=False, sqlite_trials_in_process=request.param)
    imported(anonymous)
    return anonymous


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[list[Key]]:
    """The keys of each read of places, whoever reads them (a batch, the SQLite worker)."""
    made: list[list[Key]] = []
    find_by = TrialPlaces.find_by

    async def counted(places: TrialPlaces, reader: Reader, keys: Collection[Key]) -> object:
        async def counting(missing: Sequence[Key], ahead: int) -> dict[Key, Place]:
            made.append(sorted(missing))
            return await reader(missing, ahead)

        return await find_by(places, counting, keys)

    monkeypatch.setattr(TrialPlaces, "find_by", counted)
    return made


def test_a_runs_next_posts_read_nothing_once_read_ahead(
    client: TestClient, reads: list[list[Key]]
) -> None:
    token = lock(client, "S0")

    for block, trial in S0:
        assert post_trial(client, "S0", block, trial, token, TIME).status_code == 200

    assert reads == [[("pointing", "S0", 0, 0)]]
    assert len(lightmill(client).store._places) == 0  # each place dropped once posted


def test_a_post_its_write_refuses_gets_its_precise_answer_and_the_places_stay(
    client: TestClient, reads: list[list[Key]]
) -> None:
    token = lock(client, "S0")
    assert post_trial(client, "S0", 0, 0, token, TIME).status_code == 200
    before = row_counts(client)

    wrong = post_trial(client, "S0", 0, 1, "made-up", TIME)
    ahead = post_trial(client, "S0", 1, 0, token, TIME)

    assert "wrong token for run 'S0'" in error(wrong, 405, "WrongToken")
    assert "cannot be completed yet" in error(ahead, 405, "ExperimentProgressError")
    assert row_counts(client) == before
    assert post_trial(client, "S0", 0, 1, token, TIME).status_code == 200
    assert reads == [[("pointing", "S0", 0, 0)]]


def places(client: TestClient, keys: list[Key], ahead: int) -> dict[Key, Place]:
    async def read() -> dict[Key, Place]:
        async with lightmill(client).store.db.engine.connect() as connection:
            return await read_places(connection, keys, ahead)

    return in_app(client, read)


def test_a_read_takes_the_trial_and_those_after_it_in_its_run_across_blocks(
    client: TestClient,
) -> None:
    found = places(client, [("pointing", "S0", 0, 1), ("pointing", "S9", 0, 0)], ahead=3)

    assert sorted(found) == [
        ("pointing", "S0", 0, 1),
        ("pointing", "S0", 1, 0),
        ("pointing", "S0", 1, 1),
    ]
    for (_, run, block, trial), place in found.items():
        stored = client.get(f"/api/trial/pointing/{run}/{block}/{trial}").json()
        assert list(place.factor_values.items()) == list(stored["factorValues"].items())
        assert place.practice is stored["practice"]
        assert place.measured_number == stored["measuredBlockNumber"]
    assert [p.position for p in found.values()] == [1, 2, 3]
    assert len({p.run_pk for p in found.values()}) == 1


def test_two_posts_of_a_run_read_at_once_give_each_trial_once(client: TestClient) -> None:
    found = places(client, [("pointing", "S0", 0, 0), ("pointing", "S0", 0, 1)], ahead=2)

    assert sorted(found) == [
        ("pointing", "S0", 0, 0),
        ("pointing", "S0", 0, 1),
        ("pointing", "S0", 1, 0),
    ]
    assert found[("pointing", "S0", 0, 1)].factor_values == {
        "technique": "mouse",
        "size": "small",
        "hand": "right",
        "distance": "far",
    }


def test_the_places_kept_stay_within_their_limit(client: TestClient) -> None:
    kept = TrialPlaces(ahead=6, limit=7)

    async def find(keys: list[Key]) -> dict[Key, Place]:
        async with lightmill(client).store.db.engine.connect() as connection:
            return await kept.find(connection, keys)

    first = in_app(client, find, [("pointing", "S0", 0, 0)])
    assert len(kept) == 6
    second = in_app(client, find, [("pointing", "S1", 0, 0)])  # S1 has 2: 8 > 7

    assert list(first) == [("pointing", "S0", 0, 0)]
    assert list(second) == [("pointing", "S1", 0, 0)]
    assert len(kept) == 2  # S0's dropped
    assert list(in_app(client, find, [("pointing", "S0", 0, 1)])) == [("pointing", "S0", 0, 1)]
    assert len(kept) == 2 + 5  # S0's from its second trial on


def test_valid_posts_are_recorded_by_their_batch(client: TestClient) -> None:
    s0, s1 = lock(client, "S0"), lock(client, "S1")
    assert post_trial(client, "S0", 0, 0, s0, {"trial": {"time": 1}}).status_code == 200
    service = lightmill(client)
    posts = [
        _Post("pointing", "S0", 0, 1, TrialResults(s0, {"time": "2"}, []), False, service.policy),
        _Post("pointing", "S1", 0, 0, TrialResults(s1, {"time": "3"}, []), False, service.policy),
        _Post("pointing", "S9", 0, 0, TrialResults(s1, {"time": "4"}, []), False, service.policy),
    ]

    async def record() -> list[_Recorded | object]:
        store = service.store
        async with store.db.engine.begin() as connection:
            return list(await store._record_batch(connection, posts))

    answers = in_app(client, record)

    assert answers[2] is ALONE  # no such run: recorded alone, it gets its precise error
    for answer, (run, number) in zip(answers[:2], [("S0", 1), ("S1", 0)], strict=True):
        assert isinstance(answer, _Recorded)
        stored = client.get(f"/api/trial/pointing/{run}/0/{number}").json()
        assert answer.info.factor_values == stored["factorValues"]
        assert answer.info.practice is stored["practice"]
        assert answer.info.measured_block_number == stored["measuredBlockNumber"]
        assert answer.info.measures == stored["measures"]


BARE = b"""<?xml version="1.0" encoding="UTF-8"?>
<experiment id="bare" name="Bare">
    <factor id="side" type="String"><value id="left"/><value id="right"/></factor>
    <factor id="color" type="String"><value id="red"/><value id="blue"/></factor>
    <measure id="time" type="Integer" log="ok"/>
    <run id="R0">
        <block class="Block" values="">
            <trial values=""/>
            <trial values="color=blue,side=right"/>
        </block>
    </run>
</experiment>
"""


def test_a_trial_without_factor_values_and_one_whose_values_come_in_another_order(
    make_client: ClientFactory,
) -> None:
    client = make_client(authenticated=False)
    imported = client.post("/api/import", content=BARE, headers={**basic_auth(), **XML})
    assert imported.status_code == 200, imported.text
    token = lock(client, "R0", "bare")
    service = lightmill(client)
    posts = [
        _Post("bare", "R0", 0, 0, TrialResults(token, {"time": "1"}, []), False, service.policy)
    ]

    async def record(posts: list[_Post]) -> list[_Recorded | object]:
        async with service.store.db.engine.begin() as connection:
            return list(await service.store._record_batch(connection, posts))

    [first] = in_app(client, lambda: record(posts))
    posts = [
        _Post("bare", "R0", 0, 1, TrialResults(token, {"time": "2"}, []), False, service.policy)
    ]
    [second] = in_app(client, lambda: record(posts))

    assert isinstance(first, _Recorded) and isinstance(second, _Recorded)
    assert first.info.factor_values == {}
    assert list(second.info.factor_values.items()) == [("side", "right"), ("color", "blue")]
    assert second.info.factor_values == client.get("/api/trial/bare/R0/0/1").json()["factorValues"]
