"""Two mastok instances on one PostgreSQL (a leader and a standby) serve one LightMill: a lock
taken through either holds through both, and a trial is stored once whichever instance its
posts reach."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from mastok.db import Database, async_url
from mastok.lightmill.design import parse_design
from mastok.lightmill.locks import LockPolicy
from mastok.lightmill.service import LightMill
from mastok.lightmill.store import LightMillStore
from tests.fixtures.app import ClientFactory
from tests.lightmill.helpers import (
    design,
    error,
    imported,
    lock,
    post_trial,
    row_counts,
    services,
)

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

MEASURES = {"trial": {"time": 1}, "events": [{"x": 1.5}, {"x": 2.5}]}


@pytest.fixture
def pair(make_client: ClientFactory) -> tuple[TestClient, TestClient]:
    """The leader, then a standby, on one database, the design imported."""
    leader = make_client(authenticated=False)
    standby = make_client(authenticated=False)
    assert services(leader).leader.shown_role == "leader"
    assert services(standby).leader.shown_role == "standby"
    imported(leader)
    return leader, standby


def test_a_lock_taken_through_one_instance_holds_through_the_other(
    pair: tuple[TestClient, TestClient],
) -> None:
    leader, standby = pair
    token = lock(leader, "S0")

    error(standby.get("/api/run/pointing/S0/lock"), 405, "RunAlreadyLocked")
    error(post_trial(standby, "S0", 0, 0, "made-up", MEASURES), 405, "WrongToken")
    error(post_trial(standby, "S1", 0, 0, token, MEASURES), 405, "RunNotLocked")
    assert row_counts(standby)["trial values"] == 0

    assert post_trial(standby, "S0", 0, 0, token, MEASURES).status_code == 200
    again = post_trial(leader, "S0", 0, 0, token, MEASURES)
    assert again.status_code == 405, again.text
    assert again.json()["type"] == "ExperimentProgressError"
    assert post_trial(leader, "S0", 0, 1, token, MEASURES).status_code == 200
    counts = row_counts(leader)
    assert (counts["trial values"], counts["event values"]) == (2, 4)
    assert leader.get("/api/run/pointing/S0").json()["started"] is True


def test_the_same_trial_posted_through_both_at_once_is_stored_once(
    pair: tuple[TestClient, TestClient],
) -> None:
    leader, standby = pair
    token = lock(standby, "S0")
    start = threading.Barrier(2)

    def post(client: TestClient) -> httpx.Response:
        start.wait(timeout=30)
        return post_trial(client, "S0", 0, 0, token, MEASURES)

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(post, (leader, standby)))

    assert sorted(a.status_code for a in answers) == [200, 405]
    refused = next(a for a in answers if a.status_code == 405)
    assert refused.json()["type"] == "ExperimentProgressError"
    counts = row_counts(leader)
    assert (counts["trial values"], counts["event values"]) == (1, 2)
    assert leader.get("/api/run/pointing/S0/current_trial").json()["number"] == 1


async def test_both_starting_with_the_same_design_import_it_once_and_start(
    database_url: str,
) -> None:
    """`mastok serve --experiment-design` on the leader and the standby, started together: both
    find the experiment missing, one imports it, and the other starts all the same."""
    db = Database(async_url(database_url))
    try:
        both = [LightMill(LightMillStore(db), LockPolicy(600), fixed_measures=False) for _ in "ab"]
        looked = asyncio.Barrier(2)
        for lightmill in both:
            store = lightmill.store

            async def look_together(
                experiment: str, store: LightMillStore = store, has: Any = store.has_experiment
            ) -> bool:
                store.has_experiment = has  # type: ignore[method-assign]  # once
                found = await has(experiment)
                await looked.wait()  # each looked before either imports
                return bool(found)

            store.has_experiment = look_together  # type: ignore[method-assign]

        await asyncio.gather(
            *(lightmill.import_at_start(parse_design(design())) for lightmill in both)
        )

        assert list(await both[0].experiments()) == ["pointing"]
    finally:
        await db.close()
