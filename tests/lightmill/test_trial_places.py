"""Trials' places read ahead of their posts (mastok/lightmill/trial_places.py), on both
backends: valid posts are recorded by their batch, none of them left to be recorded alone, and
answered as the API reads them back; a run's next posts read nothing; a post the batch's write
refuses, its place kept, gets its precise answer alone; the places kept stay bounded; on
PostgreSQL, the read is planned by the indexes with the tables' statistics and without."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from mastok.db import Database, async_url
from mastok.db.batches import ALONE
from mastok.db.engine import driver_connection
from mastok.lightmill.importing import insert_design
from mastok.lightmill.results import TrialResults
from mastok.lightmill.store import _Post, _Recorded
from mastok.lightmill.trial_places import AHEAD, Key, Place, Reader, TrialPlaces, read_places
from mastok.lightmill.trial_sql import PLACES_PG
from tests.fixtures.app import ClientFactory, basic_auth
from tests.lightmill import bulk
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


# The tables a places read joins, whose statistics PostgreSQL plans it by.
DESIGN_TABLES = ("lm_experiments", "lm_runs", "lm_blocks", "lm_trials", "lm_trial_factor_values")


async def test_postgresql_reads_places_by_index_before_and_after_analyze(
    postgres_database_url: str,
) -> None:
    """A design just imported has no statistics until autovacuum's ANALYZE: the read's plan
    then guessed, and hashed every trial's factor values (trial_sql.PLACES_PG). It stays a
    lookup by index for each run's next trials, with their statistics and without."""
    db = Database(async_url(postgres_database_url))
    try:
        async with db.engine.begin() as connection:  # autovacuum's ANALYZE must not come first
            for table in DESIGN_TABLES:
                await connection.execute(
                    text(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
                )
        await _a_big_design(db)
        keys = [("big", f"R{run}", 3, 17) for run in range(8)]

        fresh = await _plan(db, keys)
        async with db.engine.connect() as connection:
            await connection.execute(text(f"ANALYZE {', '.join(DESIGN_TABLES)}"))
            await connection.commit()
        analyzed = await _plan(db, keys)

        for plan in (fresh, analyzed):
            assert "Seq Scan on lm_trials" not in plan, plan
            assert "Seq Scan on lm_trial_factor_values" not in plan, plan
            assert "ix_lm_trials_run_position" in plan, plan  # a run's trials in order
            assert "pk_lm_trial_factor_values" in plan, plan  # a trial's factor values
        async with db.engine.connect() as connection:
            found = await read_places(connection, keys, AHEAD)
        first = 3 * TRIALS + 17
        for run in range(8):
            mine = sorted(p.position for (_, r, _, _), p in found.items() if r == f"R{run}")
            assert mine == list(range(first, first + AHEAD))
    finally:
        await db.close()


# What it takes for that plan: 680,000 trials (the bench's, scenario 6), a run's 40,000 as 200
# blocks of 200 (at 320,000 the guess was still an index's). The import's path would take
# a minute for them, so a design of one block a run is imported and the rest made in SQL.
# Its trials' factor values are the first of each factor: the read's plan does not read them.
RUNS, BLOCKS, TRIALS = 17, 200, 200
_MORE_BLOCKS = """
INSERT INTO lm_blocks (run_id, number, measured_number, practice, trial_count)
SELECT r.id, n, n - 1, false, :trials FROM lm_runs AS r, generate_series(1, :blocks - 1) AS n
"""
_MORE_TRIALS = """
INSERT INTO lm_trials (run_id, block_id, position, number, event_count)
SELECT b.run_id, b.id, b.number * :trials + n, n, 0
FROM lm_blocks AS b, generate_series(0, :trials - 1) AS n WHERE b.number > 0
"""
_THEIR_VALUES = """
INSERT INTO lm_trial_factor_values (trial_id, factor_id, value_id)
SELECT t.id, f.id, (SELECT min(v.id) FROM lm_factor_values AS v WHERE v.factor_id = f.id)
FROM lm_trials AS t JOIN lm_blocks AS b ON b.id = t.block_id, lm_factors AS f
WHERE b.number > 0
"""


async def _a_big_design(db: Database) -> None:
    async with db.session() as session, session.begin():
        design = bulk.big_design("big", runs=RUNS, blocks=1, trials=TRIALS)
        await insert_design(session, design, bulk.COMPLETED_AT)
        sizes = {"blocks": BLOCKS, "trials": TRIALS}
        # Without the foreign keys' checks, a row at a time: these rows are made to match.
        await session.execute(text("SET LOCAL session_replication_role = replica"))
        for statement in (_MORE_BLOCKS, _MORE_TRIALS, _THEIR_VALUES):
            await session.execute(text(statement), sizes)


async def _plan(db: Database, keys: list[Key]) -> str:
    """PostgreSQL's plan for the places of these keys' trials, as a batch reads them."""
    async with db.engine.connect() as connection:
        driver = await driver_connection(connection)
        columns = [list(column) for column in zip(*keys, strict=True)]
        rows = await driver.fetch(f"EXPLAIN {PLACES_PG}", *columns, AHEAD)
        return "\n".join(row[0] for row in rows)
