"""Run locks: one client at a time, tokens checked, and no run stranded by a vanished client.

Time passes by the app's clock, which the tests move by hand.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from mastok.clock import ManualClock, iso
from mastok.lightmill.locks import LockPolicy, LockState
from mastok.lightmill.results import TrialResults
from tests.fixtures.app import ClientFactory, basic_auth
from tests.lightmill.helpers import (
    TEXT,
    error,
    imported,
    in_app,
    lightmill,
    lock,
    post_trial,
    row_counts,
)


@pytest.fixture
def anonymous(make_client: ClientFactory, clock: ManualClock) -> TestClient:
    client = make_client(authenticated=False, clock=clock)
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
    assert row_counts(anonymous)["trial values"] == 0
    assert anonymous.get("/api/run/pointing/S0").json()["started"] is False


@pytest.mark.parametrize("token", ["jeton-é", "half-\\ud83d"])
def test_a_token_of_other_characters_is_a_wrong_token(anonymous: TestClient, token: str) -> None:
    """Tokens are hex; any other text (non-ASCII, half a character) is someone else's token."""
    lock(anonymous, "S0")
    raw = '{"token": "' + token + '", "measures": {"trial": {"time": 1}}}'  # as a page sends

    posted = anonymous.post("/api/trial/pointing/S0/0/0", content=raw, headers=TEXT)
    released = anonymous.post("/api/run/pointing/S0/unlock", content=raw, headers=TEXT)

    assert "wrong token for run 'S0'" in error(posted, 405, "WrongToken")
    assert "wrong token for run 'S0'" in error(released, 405, "WrongToken")
    assert row_counts(anonymous)["trial values"] == 0
    assert anonymous.get("/api/run/pointing/S0").json()["locked"] is True


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


def test_an_expired_lock_is_taken_over_and_the_run_resumes(
    anonymous: TestClient, clock: ManualClock
) -> None:
    client = anonymous
    first = lock(client, "S0")
    for block, trial in ((0, 0), (0, 1), (1, 0)):
        assert post_trial(client, "S0", block, trial, first, {"trial": {"time": 1}}).is_success
    assert error(client.get("/api/run/pointing/S0/lock"), 405, "RunAlreadyLocked")

    clock.advance(seconds=121)  # the first client goes silent for longer than the lock timeout

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


def test_a_silent_holder_keeps_its_run_until_someone_takes_it(
    anonymous: TestClient, clock: ManualClock
) -> None:
    token = lock(anonymous, "S0")
    clock.advance(seconds=121)

    assert anonymous.get("/api/run/pointing/S0").json()["locked"] is False
    assert post_trial(anonymous, "S0", 0, 0, token, {"trial": {"time": 1}}).status_code == 200
    # The post was a sign of life: the lock holds again.
    assert anonymous.get("/api/run/pointing/S0").json()["locked"] is True
    assert error(anonymous.get("/api/run/pointing/S0/lock"), 405, "RunAlreadyLocked")


def test_calls_carrying_the_token_keep_the_lock_alive(
    anonymous: TestClient, clock: ManualClock
) -> None:
    token = lock(anonymous, "S0")
    run = "/api/run/pointing/S0"
    paths = [run, f"{run}/plan", f"{run}/current_trial", f"{run}/next_trial"]

    for path in [*paths, "/api/block/pointing/S0/0", "/api/trial/pointing/S0/0/0"]:
        clock.advance(seconds=100)
        assert anonymous.get(path, params={"token": token}).status_code == 200, path
        clock.advance(seconds=100)  # 200 s since the previous sign of life, 100 s since this
        assert error(anonymous.get(f"{run}/lock"), 405, "RunAlreadyLocked"), path
    wrong = anonymous.get("/api/run/pointing/S0/plan", params={"token": "made-up"})
    assert error(wrong, 405, "WrongToken")


def test_available_runs_prefer_never_locked_ones(anonymous: TestClient, clock: ManualClock) -> None:
    lock(anonymous, "S0")
    clock.advance(seconds=300)
    lock(anonymous, "S1")
    clock.advance(seconds=200)  # S0's client silent for 500 s, S1's for 200 s

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


def lock_as_shown(client: TestClient, run: str) -> tuple[bool, str, str, list[str | None]]:
    """A run's lock as LightMill's run API (`locked`) and the monitoring API (status, lock,
    since when, last heartbeat, expiry) show it."""
    locked: bool = client.get(f"/api/run/pointing/{run}").json()["locked"]
    path = f"/api/monitoring/experiments/pointing/runs/{run}"
    shown = client.get(path, headers=basic_auth()).json()["run"]
    times = [shown[key] for key in ("locked_since", "last_heartbeat", "lock_expires_at")]
    return locked, shown["status"], shown["lock"], times


@pytest.mark.parametrize(
    "last",
    [{"trial": {"time": 2}}, {"trial": {"fresh": 2}}],
    ids=["in a batch", "alone (a measure to register)"],
)
def test_the_last_trial_releases_the_lock(anonymous: TestClient, last: dict[str, Any]) -> None:
    """lightmill-runner never unlocks a run it finished (run-experiment.js), nor did LightMill:
    the run's last trial releases its lock at once (the clock stands still here)."""
    token = lock(anonymous, "S2")
    assert post_trial(anonymous, "S2", 0, 0, token, {"trial": {"time": 1}}).status_code == 200
    assert lock_as_shown(anonymous, "S2")[:3] == (True, "started", "locked")

    done = post_trial(anonymous, "S2", 0, 1, token, last)

    assert done.status_code == 200, done.text
    assert done.json()["completionDate"] is not None
    assert lock_as_shown(anonymous, "S2") == (False, "completed", "unlocked", [None] * 3)
    later = anonymous.get("/api/run/pointing/S2", params={"token": token})
    assert error(later, 405, "RunNotLocked")
    assert lock(anonymous, "S2") != token


def test_runs_finishing_together_are_each_released(anonymous: TestClient) -> None:
    """Posts arriving together are recorded in one batch: those ending their run release its
    lock, the others keep theirs."""
    tokens = {run: lock(anonymous, run) for run in ("S0", "S1", "S2")}
    for run in ("S1", "S2"):
        assert post_trial(anonymous, run, 0, 0, tokens[run]).status_code == 200
    store, policy = lightmill(anonymous).store, lightmill(anonymous).policy

    async def together() -> list[object]:
        posts = [("S0", 0, 0), ("S1", 1, 0), ("S2", 0, 1)]  # S1's and S2's last trials
        return await asyncio.gather(
            *(
                store.record_trial(
                    "pointing",
                    run,
                    block,
                    trial,
                    TrialResults(tokens[run], {"time": "1"}, []),
                    fixed_measures=False,
                    policy=policy,
                )
                for run, block, trial in posts
            )
        )

    in_app(anonymous, together)

    assert lock_as_shown(anonymous, "S0")[:3] == (True, "started", "locked")
    for run in ("S1", "S2"):
        assert lock_as_shown(anonymous, run) == (False, "completed", "unlocked", [None] * 3)


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


def test_the_store_and_the_monitoring_pages_see_a_lock_expire_at_the_same_moment(
    anonymous: TestClient, clock: ManualClock
) -> None:
    lock(anonymous, "S0")
    expires = clock.now() + timedelta(seconds=120)

    def seen() -> tuple[bool, str, int, str | None]:
        """The run's `locked` (the store), its lock and the experiment's held locks (the
        monitoring pages), the lock's expiry as shown."""
        admin = basic_auth()
        twin = anonymous.get("/api/monitoring/experiments/pointing", headers=admin).json()
        run = next(r for r in twin["runs"] if r["id"] == "S0")
        locked: bool = anonymous.get("/api/run/pointing/S0").json()["locked"]
        return locked, run["lock"], twin["experiment"]["runs_locked"], run["lock_expires_at"]

    clock.set(expires)  # the last moment it is held
    assert seen() == (True, "locked", 1, iso(expires))
    assert error(anonymous.get("/api/run/pointing/S0/lock"), 405, "RunAlreadyLocked")

    clock.advance(microseconds=1)
    assert seen() == (False, "expired", 0, iso(expires))
    lock(anonymous, "S0")


HEARD = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("token", "heartbeat", "seconds_later", "state"),
    [
        ("t", HEARD, 0, LockState.LOCKED),
        ("t", HEARD, 120, LockState.LOCKED),
        ("t", HEARD, 120.000001, LockState.EXPIRED),
        ("t", HEARD.replace(tzinfo=None), 120, LockState.LOCKED),  # as SQLite gives it back
        ("t", None, 0, LockState.EXPIRED),
        (None, HEARD, 0, LockState.UNLOCKED),
        (None, None, 0, LockState.UNLOCKED),
    ],
)
def test_the_lock_rule(
    token: str | None, heartbeat: datetime | None, seconds_later: float, state: LockState
) -> None:
    policy = LockPolicy(120)
    now = HEARD + timedelta(seconds=seconds_later)

    assert policy.state(token, heartbeat, now) is state
    assert policy.is_live(token, heartbeat, now) is (state is LockState.LOCKED)
