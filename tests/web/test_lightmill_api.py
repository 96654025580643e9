"""LightMill's client API (mastok/web/lightmill_api.py): imports, refusals that store nothing,
unknown elements, CORS, auth."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from starlette.testclient import TestClient

from mastok.clock import ManualClock
from mastok.config import BY_NAME
from mastok.lightmill.results import TrialResults
from mastok.lightmill.store import TrialInfo
from mastok.web.lightmill_api import MIB
from tests.fixtures.app import ClientFactory, basic_auth
from tests.lightmill.helpers import (
    CLIENT_XML,
    ORIGIN,
    TEXT,
    XML,
    design,
    error,
    import_design,
    imported,
    in_app,
    lightmill,
    lock,
    nothing_stored,
    post_trial,
    row_counts,
)


@pytest.fixture
def anonymous(make_client: ClientFactory, clock: ManualClock) -> TestClient:
    return make_client(authenticated=False, clock=clock)


# --- Import -----------------------------------------------------------------------------------


def test_import_stores_the_whole_design(anonymous: TestClient) -> None:
    imported(anonymous)

    assert row_counts(anonymous) == {
        "lm_experiments": 1,
        "lm_factors": 4,
        "lm_factor_values": 8,
        "lm_measures": 6,
        "lm_runs": 3,
        "lm_blocks": 6,
        "lm_block_values": 7,
        "lm_trials": 10,
        "lm_trial_factor_values": 10 * 4 - 1,  # one trial leaves `distance` unset
        "trial values": 0,
        "event values": 0,
    }


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("malformed.xml", "cannot read the design: line 9: not well-formed XML: mismatched tag"),
        (
            "billion_laughs.xml",
            "cannot read the design: line 3: entity declarations are not accepted (entity 'lol')",
        ),
        (
            "external_entity.xml",
            "cannot read the design: line 3: entity declarations are not accepted (entity "
            "'secret' pointing to 'file:///etc/passwd')",
        ),
        (
            "unknown_value.xml",
            "cannot read the design: line 11: <trial values=\"size=medium\">: factor 'size' has "
            "no value 'medium'",
        ),
    ],
)
def test_broken_designs_are_refused_and_nothing_is_stored(
    anonymous: TestClient, name: str, message: str
) -> None:
    response = import_design(anonymous, name)

    assert error(response, 400, "CannotImportExperiment").startswith(message)
    assert "root:" not in response.text
    assert nothing_stored(anonymous)
    assert anonymous.get("/api/experiments").json() == {}


def test_an_existing_experiment_is_not_imported_again(anonymous: TestClient) -> None:
    imported(anonymous)
    before = row_counts(anonymous)

    again = import_design(anonymous)

    assert error(again, 400, "CannotImportExperiment") == "experiment 'pointing' already exists"
    assert row_counts(anonymous) == before


def test_a_client_import_is_refused_with_a_message_it_can_show(anonymous: TestClient) -> None:
    """Unless the settings let clients import, only the admin may: a client gets LightMill's
    error shape with the CORS headers (lightmill-connection shows its message), and no login
    prompt."""
    for headers in (CLIENT_XML, {**CLIENT_XML, **basic_auth(password="wrong")}):
        response = anonymous.post("/api/import", content=design(), headers=headers)

        message = error(response, 401, "ImportNotAllowed")
        assert message.startswith("importing a design needs mastok's admin credentials")
        assert "MASTOK_CLIENT_IMPORT" in message
        assert response.headers["access-control-allow-origin"] == "*"
        assert "www-authenticate" not in response.headers
    assert nothing_stored(anonymous)


@pytest.fixture
def open_import(make_client: ClientFactory, clock: ManualClock) -> TestClient:
    """A client of an app that lets clients import designs (`client_import`)."""
    return make_client(authenticated=False, clock=clock, client_import=True)


def test_clients_may_import_a_new_design_when_the_settings_say_so(open_import: TestClient) -> None:
    response = open_import.post("/api/import", content=design(), headers=CLIENT_XML)

    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.json() == open_import.get("/api/experiment/pointing").json()
    assert row_counts(open_import)["lm_trials"] == 10


def test_a_client_import_never_replaces_an_experiment(open_import: TestClient) -> None:
    imported(open_import)
    token = lock(open_import, "S2")
    assert post_trial(open_import, "S2", 0, 0, token, {"trial": {"time": 1}}).status_code == 200
    before = row_counts(open_import)
    described = open_import.get("/api/experiment/pointing").json()
    other = design().replace(b'name="Pointing"', b'name="Other"')  # another design, same id

    again = open_import.post("/api/import", content=other, headers=CLIENT_XML)

    assert error(again, 400, "CannotImportExperiment") == "experiment 'pointing' already exists"
    assert again.headers["access-control-allow-origin"] == "*"
    assert row_counts(open_import) == before
    assert open_import.get("/api/experiment/pointing").json() == described
    assert open_import.get("/api/trial/pointing/S2/0/0").json()["measures"] == {"time": "1"}


def test_a_client_import_is_size_limited(make_client: ClientFactory) -> None:
    assert BY_NAME["max_design_mib"].default == 64
    open_import = make_client(authenticated=False, client_import=True, max_design_mib=2)

    def padded(size: int) -> bytes:
        return design() + b" " * (size - len(design()))  # still the same, well-formed design

    oversized = open_import.post("/api/import", content=padded(2 * MIB + 1), headers=CLIENT_XML)
    assert error(oversized, 400, "InvalidBody") == "the body is larger than 2 MiB"
    assert nothing_stored(open_import)
    largest = open_import.post("/api/import", content=padded(2 * MIB), headers=CLIENT_XML)
    assert largest.status_code == 200, largest.text


def test_import_needs_an_xml_content_type(anonymous: TestClient) -> None:
    """A cross-site page could post text/plain with the admin's cached credentials."""
    response = anonymous.post("/api/import", content=design(), headers={**basic_auth(), **TEXT})

    assert "Content-Type: application/xml" in error(response, 415, "UnsupportedMediaType")
    assert nothing_stored(anonymous)
    texty = {**basic_auth(), "Content-Type": "text/xml; charset=utf-8"}
    assert anonymous.post("/api/import", content=design(), headers=texty).status_code == 200


# --- Unknown elements -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/api/experiment/nope", "there is no experiment 'nope'"),
        ("/api/experiment/nope/available_run", "there is no experiment 'nope'"),
        ("/api/run/nope/S0", "there is no experiment 'nope'"),
        ("/api/run/pointing/S9", "experiment 'pointing' has no run 'S9'"),
        ("/api/run/pointing/S9/plan", "experiment 'pointing' has no run 'S9'"),
        ("/api/run/pointing/S9/lock", "experiment 'pointing' has no run 'S9'"),
        ("/api/block/pointing/S0/3", "run 'S0' of 'pointing' has no block 3"),
        ("/api/block/pointing/S0/one", "block numbers are whole numbers from 0, not 'one'"),
        ("/api/trial/pointing/S0/1/2", "block 1 of run 'S0' of 'pointing' has no trial 2"),
        ("/api/trial/pointing/S0/1/-1", "trial numbers are whole numbers from 0, not '-1'"),
        ("/api/trial/pointing/S0/7/0", "run 'S0' of 'pointing' has no block 7"),
        # No design holds a NUL (XML has none); PostgreSQL answered a search for one with a 500.
        ("/api/experiment/a%00b", "there is no experiment 'a\\x00b'"),
        ("/api/experiment/a%00b/available_run", "there is no experiment 'a\\x00b'"),
        ("/api/run/pointing/S%000/lock", "experiment 'pointing' has no run 'S\\x000'"),
        ("/api/trial/pointing/S%000/0/0", "experiment 'pointing' has no run 'S\\x000'"),
    ],
)
def test_unknown_elements(anonymous: TestClient, path: str, message: str) -> None:
    imported(anonymous)

    assert error(anonymous.get(path), 400, "UnknownElement") == message


def test_results_for_an_unknown_trial(anonymous: TestClient) -> None:
    imported(anonymous)
    token = lock(anonymous, "S0")

    response = post_trial(anonymous, "S0", 0, 5, token, {"trial": {"time": 1}})

    assert error(response, 400, "UnknownElement") == (
        "block 0 of run 'S0' of 'pointing' has no trial 5"
    )
    assert row_counts(anonymous)["trial values"] == 0


UNKNOWN_BEFORE_THE_LOCK = [
    ("POST", "/api/trial/pointing/S0/0/9", "block 0 of run 'S0' of 'pointing' has no trial 9"),
    ("POST", "/api/trial/pointing/S0/9/0", "run 'S0' of 'pointing' has no block 9"),
    ("POST", "/api/trial/pointing/S9/0/0", "experiment 'pointing' has no run 'S9'"),
    ("POST", "/api/trial/nope/S0/0/0", "there is no experiment 'nope'"),
    ("POST", "/api/run/pointing/S9/unlock", "experiment 'pointing' has no run 'S9'"),
    ("GET", "/api/run/pointing/S9", "experiment 'pointing' has no run 'S9'"),
    ("GET", "/api/run/pointing/S9/current_trial", "experiment 'pointing' has no run 'S9'"),
    ("GET", "/api/block/pointing/S0/9", "run 'S0' of 'pointing' has no block 9"),
    ("GET", "/api/trial/pointing/S0/0/9", "block 0 of run 'S0' of 'pointing' has no trial 9"),
    ("GET", "/api/trial/pointing/S0/9/0", "run 'S0' of 'pointing' has no block 9"),
]


@pytest.mark.parametrize("held", [False, True], ids=["run-unlocked", "run-locked-by-another"])
@pytest.mark.parametrize(("method", "path", "message"), UNKNOWN_BEFORE_THE_LOCK)
def test_unknown_elements_are_answered_before_the_lock(
    anonymous: TestClient, held: bool, method: str, path: str, message: str
) -> None:
    """As LightMill: what is not there is UnknownElement, not RunNotLocked or WrongToken."""
    imported(anonymous)
    if held:
        lock(anonymous, "S0")
    token = "made-up"

    if method == "POST":
        body = json.dumps({"token": token, "measures": {"trial": {"time": 1}}})
        response = anonymous.post(path, content=body, headers=TEXT)
    else:
        response = anonymous.get(path, params={"token": token})

    assert error(response, 400, "UnknownElement") == message
    assert row_counts(anonymous)["trial values"] == 0


def test_a_call_naming_an_unknown_element_is_no_sign_of_life(
    anonymous: TestClient, clock: ManualClock
) -> None:
    imported(anonymous)
    token = lock(anonymous, "S0")
    clock.advance(seconds=100)

    assert error(post_trial(anonymous, "S0", 0, 9, token), 400, "UnknownElement")
    unknown_block = anonymous.get("/api/block/pointing/S0/9", params={"token": token})
    assert error(unknown_block, 400, "UnknownElement")

    clock.advance(seconds=21)  # 121 s since the lock's last sign of life
    assert anonymous.get("/api/run/pointing/S0").json()["locked"] is False


# --- Results that are refused -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"token": "t", "measures": {', "the body is not valid JSON: Expecting"),
        (b"\xff\xfe", "the body is not UTF-8 text"),
        (b"[1, 2]", "the body must be a JSON object"),
        (b'{"measures": {}}', "the body has no token"),
        (b'{"token": 12, "measures": {}}', '"token" must be the string the lock gave'),
        (b'{"token": "T", "measures": []}', '"measures" must be an object'),
        (b'{"token": "T", "measures": {"trial": 3}}', '"measures.trial" must be an object'),
        (b'{"token": "T", "measures": {"events": {}}}', '"measures.events" must be a list'),
        (b'{"token": "T", "measures": {"events": [1]}}', '"measures.events.0" must be an object'),
        (b'{"token": "T", "measures": {"trial": {"": 1}}}', "a measure id is empty"),
        (b'{"token": "T", "measures": {"trial": ' + b"[" * 5000 + b"]" * 5000 + b"}}", "deep"),
    ],
)
def test_malformed_results_are_refused_and_nothing_is_stored(
    anonymous: TestClient, body: bytes, message: str
) -> None:
    imported(anonymous)
    lock(anonymous, "S0")
    before = row_counts(anonymous)

    response = anonymous.post("/api/trial/pointing/S0/0/0", content=body, headers=TEXT)

    assert message in error(response, 400, "InvalidBody")
    assert row_counts(anonymous) == before
    assert anonymous.get("/api/run/pointing/S0").json()["started"] is False


@pytest.mark.parametrize(
    "measures",
    [{"trial": {"a\u0000b": 1}}, {"trial": {}, "events": [{"x": {"\u0000": 1}}]}],
    ids=["trial", "event"],
)
def test_a_measure_id_holding_a_nul_is_refused_on_either_database(
    anonymous: TestClient, measures: dict[str, Any]
) -> None:
    # PostgreSQL stores no NUL in text: registering such a measure failed with a 500 (without
    # the CORS headers, so the client could not even read it) at every try of the post.
    imported(anonymous)
    token = lock(anonymous, "S0")
    before = row_counts(anonymous)

    response = post_trial(anonymous, "S0", 0, 0, token, measures)

    assert "NUL" in error(response, 400, "InvalidBody")
    assert row_counts(anonymous) == before


def test_results_must_come_in_order(anonymous: TestClient) -> None:
    imported(anonymous)
    token = lock(anonymous, "S0")

    ahead = post_trial(anonymous, "S0", 1, 0, token, {"trial": {"time": 1}})

    assert error(ahead, 405, "ExperimentProgressError") == (
        "trial 0 of block 1 of run 'S0' cannot be completed yet: trials are completed in order "
        "and trial 0 of block 0 comes first"
    )
    assert anonymous.get("/api/trial/pointing/S0/1/0").json()["completionDate"] is None
    assert row_counts(anonymous)["trial values"] == 0
    assert post_trial(anonymous, "S0", 0, 0, token, {"trial": {"time": 1}}).status_code == 200
    again = post_trial(anonymous, "S0", 0, 0, token, {"trial": {"time": 2}})
    assert error(again, 405, "ExperimentProgressError") == (
        "trial 0 of block 0 of run 'S0' is already completed"
    )
    assert anonymous.get("/api/trial/pointing/S0/0/0").json()["measures"] == {"time": "1"}


def test_fixed_measures_refuse_unknown_ones(make_client: ClientFactory) -> None:
    client = make_client(authenticated=False, fixed_measures=True)
    imported(client)
    token = lock(client, "S0")
    before = row_counts(client)

    unknown = post_trial(client, "S0", 0, 0, token, {"trial": {"time": 1, "score": 2}})
    in_event = post_trial(client, "S0", 0, 0, token, {"events": [{"x": 1, "speed": 2}]})
    wrong_level = post_trial(client, "S0", 0, 0, token, {"trial": {"x": 1}})

    assert error(unknown, 400, "WrongMeasureKey") == (
        "unknown trial measure 'score': experiment 'pointing' has fixed measures"
    )
    assert "unknown event measure 'speed'" in error(in_event, 400, "WrongMeasureKey")
    assert error(wrong_level, 400, "WrongMeasureKey") == (
        "measure 'x' of experiment 'pointing' is not a trial-level measure"
    )
    assert row_counts(client) == before
    assert client.get("/api/run/pointing/S0").json()["started"] is False
    known = {"trial": {"time": 1, "hit": True}, "events": [{"x": 1, "hit": False}]}
    assert post_trial(client, "S0", 0, 0, token, known).status_code == 200


# --- CORS -------------------------------------------------------------------------------------


PREFLIGHT = {
    **ORIGIN,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type",
}


@pytest.mark.parametrize(
    "path",
    [
        "/api/import",
        "/api/experiments",
        "/api/experiment/pointing",
        "/api/experiment/pointing/available_run",
        "/api/run/pointing/S0",
        "/api/run/pointing/S0/lock",
        "/api/run/pointing/S0/unlock",
        "/api/run/pointing/S0/plan",
        "/api/run/pointing/S0/current_trial",
        "/api/run/pointing/S0/next_trial",
        "/api/block/pointing/S0/0",
        "/api/trial/pointing/S0/0/0",
    ],
)
def test_client_routes_answer_preflights_from_any_origin(anonymous: TestClient, path: str) -> None:
    response = anonymous.options(path, headers=PREFLIGHT)

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "content-type" in response.headers["access-control-allow-headers"].lower()
    # Any origin, but never with credentials: no page elsewhere sends the admin's along.
    assert "access-control-allow-credentials" not in response.headers


def test_client_answers_and_errors_carry_cors_headers(anonymous: TestClient) -> None:
    imported(anonymous)

    found = anonymous.get("/api/experiments", headers=ORIGIN)
    missing = anonymous.get("/api/run/pointing/S9", headers=ORIGIN)

    assert found.headers["access-control-allow-origin"] == "*"
    assert missing.status_code == 400
    assert missing.headers["access-control-allow-origin"] == "*"


def test_admin_routes_are_not_cors_open(anonymous: TestClient) -> None:
    preflight = anonymous.options("/api/campaigns", headers=PREFLIGHT)
    assert preflight.status_code == 401
    assert "access-control-allow-origin" not in preflight.headers
    listed = anonymous.get("/api/campaigns", headers={**ORIGIN, **basic_auth()})
    assert listed.status_code == 200
    assert "access-control-allow-origin" not in listed.headers


def test_client_routes_are_public_but_the_rest_of_the_api_is_not(anonymous: TestClient) -> None:
    assert anonymous.get("/api/experiments").status_code == 200
    assert anonymous.get("/api/campaigns").status_code == 401
    assert anonymous.get("/api/openapi.json").status_code == 401


def test_unlock_reads_its_token_from_any_body(anonymous: TestClient) -> None:
    imported(anonymous)
    token = lock(anonymous, "S0")

    broken = anonymous.post("/api/run/pointing/S0/unlock", content=b"token", headers=TEXT)
    unlocked = anonymous.post(
        "/api/run/pointing/S0/unlock", content=json.dumps({"token": token}), headers=TEXT
    )

    assert "the body is not valid JSON" in error(broken, 400, "InvalidBody")
    assert unlocked.status_code == 200
    assert unlocked.json()["locked"] is False


# --- Races ------------------------------------------------------------------------------------


def test_two_posts_racing_for_one_trial_store_it_once(anonymous: TestClient) -> None:
    imported(anonymous)
    token = lock(anonymous, "S2")
    store = lightmill(anonymous).store

    async def race() -> list[object]:
        posts = [
            store.record_trial(
                "pointing",
                "S2",
                0,
                0,
                TrialResults(token, {"time": str(i)}, []),
                fixed_measures=False,
            )
            for i in range(2)
        ]
        return await asyncio.gather(*posts, return_exceptions=True)

    outcomes = in_app(anonymous, race)

    assert sorted(type(o).__name__ for o in outcomes) == ["ExperimentProgressError", "TrialInfo"]
    assert row_counts(anonymous)["trial values"] == 1
    assert anonymous.get("/api/run/pointing/S2/current_trial").json()["number"] == 1


def test_runs_racing_to_register_a_measure_share_it(anonymous: TestClient) -> None:
    imported(anonymous)
    tokens = {run: lock(anonymous, run) for run in ("S1", "S2")}
    store = lightmill(anonymous).store

    async def race() -> list[object]:
        posts = [
            store.record_trial(
                "pointing",
                run,
                0,
                0,
                TrialResults(token, {"fresh": run}, [{"fresh": "e"}]),
                fixed_measures=False,
            )
            for run, token in tokens.items()
        ]
        return await asyncio.gather(*posts, return_exceptions=True)

    outcomes = in_app(anonymous, race)

    assert [type(o).__name__ for o in outcomes] == ["TrialInfo", "TrialInfo"]
    measures = anonymous.get("/api/experiment/pointing").json()["measures"]
    assert measures["fresh"]["levels"] == ["trial", "event"]
    assert anonymous.get("/api/trial/pointing/S1/0/0").json()["measures"] == {"fresh": "S1"}
    assert anonymous.get("/api/trial/pointing/S2/0/0").json()["measures"] == {"fresh": "S2"}


def test_posts_arriving_together_are_each_stored_or_refused_alone(anonymous: TestClient) -> None:
    """Posts that arrive at once are recorded in one batch; one refused among them (out of
    order, wrong token) fails alone and stores nothing, the others are stored whole."""
    imported(anonymous)
    tokens = {run: lock(anonymous, run) for run in ("S0", "S1", "S2")}
    store = lightmill(anonymous).store
    policy = lightmill(anonymous).policy

    def post(run: str, block: int, trial: int, token: str, time: int) -> object:
        events = [{"x": f"{time}.{n}", "y": str(-n)} for n in range(5)]
        return store.record_trial(
            "pointing",
            run,
            block,
            trial,
            TrialResults(token, {"time": str(time), "hit": "true"}, events),
            fixed_measures=False,
            policy=policy,
        )

    async def together() -> list[object]:
        posts = [
            post("S0", 0, 0, tokens["S0"], 1),
            post("S0", 2, 0, tokens["S0"], 2),  # out of order whatever comes first
            post("S1", 0, 0, tokens["S1"], 3),
            post("S2", 0, 0, "made-up", 4),
            post("S2", 0, 0, tokens["S2"], 5),
        ]
        return await asyncio.gather(*posts, return_exceptions=True)

    outcomes = in_app(anonymous, together)

    assert [type(o).__name__ for o in outcomes] == [
        "TrialInfo",
        "ExperimentProgressError",
        "TrialInfo",
        "WrongToken",
        "TrialInfo",
    ]
    for run, time in (("S0", 1), ("S1", 3), ("S2", 5)):
        trial = anonymous.get(f"/api/trial/pointing/{run}/0/0").json()
        assert trial["measures"] == {"time": str(time), "hit": "true"}
        assert trial["events"] == [{"x": f"{time}.{n}", "y": str(-n)} for n in range(5)]
    answered = outcomes[0]
    assert isinstance(answered, TrialInfo)
    assert answered.measures == {"time": "1", "hit": "true"}
    assert answered.factor_values == {
        "technique": "mouse",
        "size": "large",
        "hand": "right",
        "distance": "near",
    }
    counts = row_counts(anonymous)
    assert counts["trial values"] == 3 * 2
    assert counts["event values"] == 3 * 5 * 2


def test_a_refused_post_with_the_token_keeps_the_lock_alive(
    anonymous: TestClient, clock: ManualClock
) -> None:
    imported(anonymous)
    token = lock(anonymous, "S0")
    clock.advance(seconds=121)

    early = post_trial(anonymous, "S0", 1, 0, token, {"trial": {"time": 1}})

    assert error(early, 405, "ExperimentProgressError")
    assert anonymous.get("/api/run/pointing/S0").json()["locked"] is True
    assert error(anonymous.get("/api/run/pointing/S0/lock"), 405, "RunAlreadyLocked")
    assert row_counts(anonymous)["trial values"] == 0


def test_client_routes_follow_the_web_prefix(make_client: ClientFactory) -> None:
    client = make_client(authenticated=False, web_prefix="/mastok")

    response = client.get("/mastok/api/experiments", headers=ORIGIN)

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert client.get("/api/experiments").status_code == 401  # outside the prefix
    assert client.post("/mastok/api/import", content=design(), headers=XML).status_code == 401
