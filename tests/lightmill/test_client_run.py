"""A whole run through LightMill's API, exactly as lightmill-runner drives it, then every stored
value read back through the API."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from tests.fixtures.app import ClientFactory
from tests.lightmill.helpers import ORIGIN, error, imported, lock, post_trial


def results_for(block: int, trial: int) -> dict[str, Any]:
    """What an experiment app would measure: nested, with lists, nulls and events."""
    return {
        "trial": {
            "time": 1000 * block + trial,
            "durations": {"reaction": 200 + trial, "movement": 300.5, "unused": None},
            "hit": trial % 2 == 0,
            "path": [{"x": block, "y": trial}, None, "end"],
        },
        "events": [
            {"x": 1.5, "y": -2, "hit": False},
            {"x": block, "label": f"b{block}t{trial}", "pointer": {"type": "mouse"}},
            {},
        ],
    }


def stored_trial_measures(block: int, trial: int) -> dict[str, str]:
    return {
        "time": str(1000 * block + trial),
        "durations.reaction": str(200 + trial),
        "durations.movement": "300.5",
        "hit": "true" if trial % 2 == 0 else "false",
        "path.0.x": str(block),
        "path.0.y": str(trial),
        "path.2": "end",
    }


def stored_events(block: int, trial: int) -> list[dict[str, str]]:
    return [
        {"x": "1.5", "y": "-2", "hit": "false"},
        {"x": str(block), "label": f"b{block}t{trial}", "pointer.type": "mouse"},
        {},
    ]


def test_a_client_runs_a_whole_run(make_client: ClientFactory) -> None:
    client = make_client(authenticated=False)
    client.headers.update(ORIGIN)
    imported(client)

    # runExperiment: is the experiment there, which run, lock it, its plan, the current trial.
    assert client.get("/api/experiments").json() == {"pointing": "Pointing"}
    run = client.get("/api/experiment/pointing/available_run", params={"__reqTime": "1"})
    assert run.status_code == 200
    assert run.headers["access-control-allow-origin"] == "*"
    assert run.json() == {
        "id": "S0",
        "experimentId": "pointing",
        "completed": False,
        "started": False,
        "trialCount": 6,
        "blockCount": 3,
        "locked": False,
    }
    token = lock(client, "S0")
    plan = client.get("/api/run/pointing/S0/plan").json()
    current = client.get("/api/run/pointing/S0/current_trial").json()
    assert (current["blockNumber"], current["number"]) == (0, 0)
    assert [(b["number"], b["practice"], b.get("measuredBlockNumber")) for b in plan] == [
        (0, True, None),
        (1, False, 0),
        (2, False, 1),
    ]
    assert "measuredBlockNumber" not in plan[0]  # as LightMill's plan
    assert plan[1]["factorValues"] == {"technique": "touch", "size": "small"}
    assert plan[1]["trials"][0] == {
        "number": 0,
        "factorValues": {"technique": "touch", "size": "small", "hand": "right", "distance": "far"},
        "completionDate": None,
    }

    # Every trial in order: results posted as text/plain, as the runner does.
    posted = {}
    for block in plan:
        for trial in block["trials"]:
            b, t = block["number"], trial["number"]
            response = post_trial(client, "S0", b, t, token, results_for(b, t))
            assert response.status_code == 200, response.text
            assert response.headers["access-control-allow-origin"] == "*"
            answer = response.json()
            assert (answer["blockNumber"], answer["number"]) == (b, t)
            assert answer["measures"] == stored_trial_measures(b, t)
            assert isinstance(answer["completionDate"], int)
            posted[(b, t)] = answer

    # The run is done: no current trial, its lock released (the runner never unlocks), and
    # the next client gets another run.
    done = client.get("/api/run/pointing/S0/current_trial")
    assert "run 'S0' of 'pointing' is completed" in error(done, 410, "RunCompleted")
    info = client.get("/api/run/pointing/S0").json()
    assert (info["completed"], info["started"], info["locked"]) == (True, True, False)
    assert client.get("/api/experiment/pointing/available_run").json()["id"] == "S1"

    # Everything stored, cell by cell, as the API reads it back.
    for block in plan:
        for trial in block["trials"]:
            b, t = block["number"], trial["number"]
            stored = client.get(f"/api/trial/pointing/S0/{b}/{t}").json()
            assert stored == {
                "experimentId": "pointing",
                "runId": "S0",
                "number": t,
                "blockNumber": b,
                "measuredBlockNumber": block.get("measuredBlockNumber"),
                "factorValues": trial["factorValues"],
                "measures": stored_trial_measures(b, t),
                "practice": block["practice"],
                "completionDate": posted[(b, t)]["completionDate"],
                "events": stored_events(b, t),
            }
    dates = [posted[key]["completionDate"] for key in sorted(posted)]
    assert dates == sorted(dates)
    replan = client.get("/api/run/pointing/S0/plan").json()
    assert [t["completionDate"] for b in replan for t in b["trials"]] == dates


def test_measures_posted_by_the_client_are_registered(make_client: ClientFactory) -> None:
    client = make_client(authenticated=False)
    imported(client)
    token = lock(client, "S2")

    measures = {"trial": {"time": 5, "score": {"total": 3}}, "events": [{"t": 1, "time": 2}]}
    assert post_trial(client, "S2", 0, 0, token, measures).status_code == 200

    found = client.get("/api/experiment/pointing").json()["measures"]
    assert found["score.total"] == {"name": None, "levels": ["trial"], "type": "unregistered"}
    assert found["t"] == {"name": None, "levels": ["event"], "type": "unregistered"}
    assert found["time"] == {"name": "Time", "levels": ["trial", "event"], "type": "Integer"}
    trial = client.get("/api/trial/pointing/S2/0/0").json()
    assert trial["measures"] == {"time": "5", "score.total": "3"}
    assert trial["events"] == [{"time": "2", "t": "1"}]


def test_the_experiment_description(client: TestClient) -> None:
    body = imported(client)

    assert client.get("/api/experiment/pointing").json() == body
    assert body["runs"] == ["S0", "S1", "S2"]
    assert body["factors"]["size"] == {
        "tag": "Within Subject",
        "name": "Target size",
        "type": "Integer",
        "values": {"small": None, "large": None},
        "defaultValue": "large",
        "default_value": "large",
    }
    assert body["factors"]["distance"]["defaultValue"] is None
    assert "default_value" not in body["factors"]["distance"]
    assert body["measures"]["hit"] == {
        "name": "Hit",
        "levels": ["trial", "event"],
        "type": "Boolean",
    }
    assert body["measures"]["x"]["levels"] == ["event"]
    assert (body["name"], body["description"]) == (
        "Pointing",
        "Mouse or touch, small or large targets",
    )


def test_blocks_and_next_trial(make_client: ClientFactory) -> None:
    client = make_client(authenticated=False)
    imported(client)

    assert client.get("/api/block/pointing/S0/0").json() == {
        "number": 0,
        "measuredBlockNumber": None,
        "factorValues": {"technique": "mouse"},
        "trialCount": 2,
        "practice": True,
    }
    assert client.get("/api/block/pointing/S0/2").json()["measuredBlockNumber"] == 1
    following = client.get("/api/run/pointing/S1/next_trial").json()
    assert (following["blockNumber"], following["number"], following["practice"]) == (1, 0, False)
    token = lock(client, "S1")
    assert post_trial(client, "S1", 0, 0, token).status_code == 200
    last = client.get("/api/run/pointing/S1/next_trial")
    assert "the current trial is the last of run 'S1'" in error(last, 410, "RunCompleted")
