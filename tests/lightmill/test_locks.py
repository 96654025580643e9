"""Run locks: one client at a time, tokens checked, and no run stranded by a vanished client."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from starlette.testclient import TestClient

from tests.fixtures.app import ClientFactory
from tests.lightmill.helpers import (
    TEXT,
    age_lock,
    error,
    imported,
    in_app,
    lightmill,
    lock,
    post_trial,
    row_counts,
)


@pytest.fixture
def anonymous(make_client: ClientFactory) -> TestClient:
    client = make_client(authenticated=False)
    imported(client)
    return client


def unlock(client: TestClient, run: str, token: str) -> httpx.Response:
    return client.post(
        f"/api/run/pointing/{run}/unlock", content=json.dumps({"token": token}), headers=TEXT
    )


def test_a_locked_run_cannot_be_locked_again(anonymous: TestClient) -> None:
    lock(anonymous, "S0")

    again = anonymous.get("/api/run/pointing/S0/lock")

    message = error(again, 405, "RunAlreadyLocked")
    assert message.startswith("run 'S0' of 'pointing' is already locked (its client was last")
    assert "a lock is released after 120 s of silence" in message
    assert anonymous.get("/api/run/pointing/S0").json()["locked"] is True
    assert anonymous.get("/api/experiment/pointing/available_run").json()["id"] == "S1"


def test_results_need_the_lock_and_its_token(anonymous: TestClient) -> None:
    unlocked = post_trial(anonymous, "S0", 0, 0, "made-up", {"trial": {"time": 1}})
    assert error(unlocked, 405, "RunNotLocked") == (
        "run 'S0' of 'pointing' is not locked: take its lock before writing"
    )
    lock(anonymous, "S0")

    wrong = post_trial(anonymous, "S0", 0, 0, "made-up", {"trial": {"time": 1}})

    assert error(wrong, 405, "WrongToken") == (
        "wrong token for run 'S0' of 'pointing': another client holds its lock"
    )
    assert row_counts(anonymous)["lm_trial_measure_values"] == 0
    assert anonymous.get("/api/run/pointing/S0").json()["started"] is False


def test_unlock_with_the_token(anonymous: TestClient) -> None:
    token = lock(anonymous, "S0")

    wrong = unlock(anonymous, "S0", "made-up")
    right = unlock(anonymous, "S0", token)
    twice = unlock(anonymous, "S0", token)

    assert "wrong token for run 'S0'" in error(wrong, 405, "WrongToken")
    assert right.status_code == 200
    assert right.json() == {
        "id": "S0",
        "experimentId": "pointing",
        "completed": False,
        "started": False,
        "trialCount": 6,
        "blockCount": 3,
        "locked": False,
    }
    assert "is not locked" in error(twice, 405, "RunNotLocked")
    assert post_trial(anonymous, "S0", 0, 0, token).status_code == 405
    lock(anonymous, "S0")


def test_an_expired_lock_is_taken_over_and_the_run_resumes(make_client: ClientFactory) -> None:
    client = make_client(authenticated=False, lock_timeout=0.2)
    imported(client)
    first = lock(client, "S0")
    for block, trial in ((0, 0), (0, 1), (1, 0)):
        assert post_trial(client, "S0", block, trial, first, {"trial": {"time": 1}}).is_success
    assert error(client.get("/api/run/pointing/S0/lock"), 405, "RunAlreadyLocked")

    time.sleep(0.25)  # the first client goes silent for longer than the lock timeout

    assert client.get("/api/run/pointing/S0").json()["locked"] is False
    second = lock(client, "S0")
    assert second != first
    current = client.get("/api/run/pointing/S0/current_trial").json()
    assert (current["blockNumber"], current["number"]) == (1, 1)
    late = post_trial(client, "S0", 1, 1, first, {"trial": {"time": 9}})
    assert error(late, 405, "WrongToken")
    resumed = post_trial(client, "S0", 1, 1, second, {"trial": {"time": 2}})
    assert resumed.status_code == 200
    assert resumed.json()["measures"] == {"time": "2"}
    assert client.get("/api/run/pointing/S0").json()["started"] is True


def test_a_silent_holder_keeps_its_run_until_someone_takes_it(anonymous: TestClient) -> None:
    token = lock(anonymous, "S0")
    age_lock(anonymous, "S0", 121)

    assert anonymous.get("/api/run/pointing/S0").json()["locked"] is False
    assert post_trial(anonymous, "S0", 0, 0, token, {"trial": {"time": 1}}).status_code == 200
    # The post was a sign of life: the lock holds again.
    assert anonymous.get("/api/run/pointing/S0").json()["locked"] is True
    assert error(anonymous.get("/api/run/pointing/S0/lock"), 405, "RunAlreadyLocked")


def test_calls_carrying_the_token_keep_the_lock_alive(anonymous: TestClient) -> None:
    token = lock(anonymous, "S0")

    for path in ("", "/plan", "/current_trial", "/next_trial"):
        age_lock(anonymous, "S0", 121)
        alive = anonymous.get(f"/api/run/pointing/S0{path}", params={"token": token})
        assert alive.status_code == 200, path
        assert error(anonymous.get("/api/run/pointing/S0/lock"), 405, "RunAlreadyLocked")
    age_lock(anonymous, "S0", 121)
    assert anonymous.get("/api/trial/pointing/S0/0/0", params={"token": token}).is_success
    assert error(anonymous.get("/api/run/pointing/S0/lock"), 405, "RunAlreadyLocked")
    wrong = anonymous.get("/api/run/pointing/S0/plan", params={"token": "made-up"})
    assert error(wrong, 405, "WrongToken")


def test_available_runs_prefer_never_locked_ones(anonymous: TestClient) -> None:
    lock(anonymous, "S0")
    lock(anonymous, "S1")
    age_lock(anonymous, "S0", 500)
    age_lock(anonymous, "S1", 200)

    assert anonymous.get("/api/experiment/pointing/available_run").json()["id"] == "S2"
    lock(anonymous, "S2")
    assert anonymous.get("/api/experiment/pointing/available_run").json()["id"] == "S0"
    lock(anonymous, "S0")
    assert anonymous.get("/api/experiment/pointing/available_run").json()["id"] == "S1"
    lock(anonymous, "S1")
    gone = anonymous.get("/api/experiment/pointing/available_run")
    assert "has no run left to give" in error(gone, 410, "NoAvailableRuns")


def test_started_runs_are_not_available(anonymous: TestClient) -> None:
    token = lock(anonymous, "S2")
    assert post_trial(anonymous, "S2", 0, 0, token).status_code == 200
    assert unlock(anonymous, "S2", token).status_code == 200
    lock(anonymous, "S0")
    lock(anonymous, "S1")

    assert error(anonymous.get("/api/experiment/pointing/available_run"), 410, "NoAvailableRuns")
    # Its own client can still come back to it by id.
    resumed = lock(anonymous, "S2")
    assert post_trial(anonymous, "S2", 0, 1, resumed).status_code == 200


def test_unprotected_runs_can_be_taken_over_at_any_time(make_client: ClientFactory) -> None:
    client = make_client(authenticated=False, unprotected_runs=True)
    imported(client)
    first = lock(client, "S0")

    second = lock(client, "S0")

    assert second != first
    assert error(post_trial(client, "S0", 0, 0, first), 405, "WrongToken")
    assert post_trial(client, "S0", 0, 0, second).status_code == 200


def test_an_admin_can_unlock_any_run(anonymous: TestClient) -> None:
    token = lock(anonymous, "S0")
    store = lightmill(anonymous).store

    assert in_app(anonymous, store.admin_unlock, "pointing", "S0") is True
    assert in_app(anonymous, store.admin_unlock, "pointing", "S0") is False

    assert anonymous.get("/api/run/pointing/S0").json()["locked"] is False
    assert error(post_trial(anonymous, "S0", 0, 0, token), 405, "RunNotLocked")
    lock(anonymous, "S0")
