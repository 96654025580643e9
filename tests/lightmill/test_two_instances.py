"""Two mastok instances on one PostgreSQL (a leader and a standby) serve one LightMill: a lock
taken through either holds through both, and a trial is stored once whichever instance its
posts reach."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from starlette.testclient import TestClient

from tests.fixtures.app import ClientFactory
from tests.lightmill.helpers import error, imported, lock, post_trial, row_counts, services

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
