"""A batch of trial posts checked and written together (mastok/lightmill/batch_read.py reads
what the checks need straight from the driver), on both backends: valid posts are recorded by
the batch, none of them left to be recorded alone, and answered as the API reads them back."""

from __future__ import annotations

from mastok.db.batches import ALONE
from mastok.lightmill.results import TrialResults
from mastok.lightmill.store import _Post, _Recorded
from tests.fixtures.app import ClientFactory, basic_auth
from tests.lightmill.helpers import XML, imported, in_app, lightmill, lock, post_trial


def test_valid_posts_are_recorded_by_their_batch(make_client: ClientFactory) -> None:
    client = make_client(authenticated=False)
    imported(client)
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
