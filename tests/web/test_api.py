"""The JSON API over a real database and a real oTree."""

from __future__ import annotations

import json

import pytest
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from tests.campaigns.factories import campaign_input
from tests.fixtures.app import ClientFactory
from tests.lightmill.helpers import services


def create(client: TestClient, **changes: object) -> dict[str, object]:
    response = client.post("/api/campaigns", json=campaign_input(**changes))
    assert response.status_code == 201, response.text
    return response.json()


def test_create_answers_201_with_the_paused_campaign(client: TestClient) -> None:
    response = client.post("/api/campaigns", json=campaign_input("study_a"))
    assert response.status_code == 201
    assert response.headers["location"] == "/api/campaigns/study_a"
    body = response.json()
    assert body["namespace"] == "study_a"
    assert body["state"] == "Paused"
    assert body["started_sessions"] == 0
    assert body["share_url"] == "http://testserver/join/study_a_join"
    assert body["consent"].endswith("[accept]I agree[/accept]")
    assert client.get("/api/campaigns/study_a").json() == body
    assert [c["namespace"] for c in client.get("/api/campaigns").json()] == ["study_a"]


def test_invalid_fields_get_422_per_field_and_nothing_is_saved(client: TestClient) -> None:
    bad = campaign_input(per_session=40, slug="no spaces", consent="no button")
    response = client.post("/api/campaigns", json=bad)
    assert response.status_code == 422
    assert response.json() == {
        "errors": {
            "slug": "use 2 to 128 letters, digits or underscores (A-Z, a-z, 0-9, _)",
            "per_session": "must be a whole number from 1 to 32",
            "consent": "must contain an accept button: [accept]I agree[/accept]",
        }
    }
    assert client.get("/api/campaigns").json() == []


def test_unknown_otree_config_is_refused_with_the_known_ones(client: TestClient) -> None:
    response = client.post("/api/campaigns", json=campaign_input(otree_config_name="nope"))
    assert response.status_code == 422
    message = response.json()["errors"]["otree_config_name"]
    assert "oTree has no session config 'nope'" in message
    assert "guess_two" in message and "survey" in message
    assert client.get("/api/campaigns").json() == []


def test_config_is_trusted_when_otree_is_down(make_client: ClientFactory) -> None:
    down = make_client(otree_api_url="http://127.0.0.1:9")
    response = down.post("/api/campaigns", json=campaign_input(otree_config_name="later"))
    assert response.status_code == 201


def test_namespace_and_slug_are_unique(client: TestClient) -> None:
    create(client, namespace="first", slug="shared_slug")
    response = client.post("/api/campaigns", json=campaign_input("first", slug="shared_slug"))
    assert response.status_code == 422
    assert response.json()["errors"] == {
        "namespace": "is already used by another campaign",
        "slug": "is already used by another campaign",
    }
    assert len(client.get("/api/campaigns").json()) == 1


FORMER = "was study_r's slug: its old links lead there, so no other campaign may take it"


def test_a_renamed_campaigns_old_slug_leads_to_it_and_no_other_campaign_takes_it(
    client: TestClient,
) -> None:
    """Its old link is out there (posted on a recruiting platform): people who follow it
    must not land in another study."""
    create(client, namespace="study_r", slug="posted")
    renamed = client.patch("/api/campaigns/study_r", json={"slug": "renamed"})
    assert renamed.status_code == 200, renamed.text
    taken = client.post("/api/campaigns", json=campaign_input("other", slug="posted"))
    assert (taken.status_code, taken.json()) == (422, {"errors": {"slug": FORMER}})
    create(client, namespace="third")
    moved = client.patch("/api/campaigns/third", json={"slug": "posted"})
    assert (moved.status_code, moved.json()) == (422, {"errors": {"slug": FORMER}})
    old = client.get("/join/posted?PROLIFIC_PID=p1&STUDY_ID=s1", follow_redirects=False)
    assert old.status_code == 307
    assert old.headers["location"] == "/join/renamed?PROLIFIC_PID=p1&STUDY_ID=s1"
    assert 'data-slug="renamed"' in client.get("/join/posted", follow_redirects=True).text
    origin = {"origin": services(client).settings.origin}  # a page opened before, back
    with client.websocket_connect("/ws/join?slug=posted", headers=origin) as socket:
        assert socket.receive_json()["kind"] == "Paused"  # its campaign's, not "no campaign"
    back = client.patch("/api/campaigns/study_r", json={"slug": "posted"})  # its own: taken back
    assert back.status_code == 200, back.text
    assert client.get("/join/renamed", follow_redirects=False).headers["location"] == (
        "/join/posted"
    )


def test_patch_changes_fields_and_state(client: TestClient) -> None:
    create(client, namespace="study_p")
    response = client.patch(
        "/api/campaigns/study_p", json={"state": "Running", "max_sessions": 5, "join_once": True}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["state"], body["max_sessions"], body["join_once"]) == ("Running", 5, True)
    assert client.get("/api/campaigns/study_p").json() == body


def test_patch_refuses_fixed_fields_and_saves_nothing(client: TestClient) -> None:
    before = create(client, namespace="study_f")
    response = client.patch(
        "/api/campaigns/study_f",
        json={"namespace": "x", "otree_config_name": "survey", "max_sessions": 7},
    )
    assert response.status_code == 422
    assert response.json()["errors"] == {
        "namespace": "cannot be changed after creation",
        "otree_config_name": "cannot be changed after creation",
    }
    assert client.get("/api/campaigns/study_f").json() == before


def test_patch_with_an_invalid_value_saves_nothing(client: TestClient) -> None:
    before = create(client, namespace="study_v")
    response = client.patch(
        "/api/campaigns/study_v", json={"max_sessions": 6, "state": "Busy", "slug": "a"}
    )
    assert response.status_code == 422
    assert set(response.json()["errors"]) == {"state", "slug"}
    assert client.get("/api/campaigns/study_v").json() == before


def test_unknown_campaign_is_404(client: TestClient) -> None:
    for read in ("/api/campaigns/ghost", "/api/campaigns/ghost/live"):
        response = client.get(read)
        assert (response.status_code, response.json()) == (
            404,
            {"error": "no campaign named 'ghost'"},
        )
    response = client.patch("/api/campaigns/ghost", json={"state": "Running"})
    assert response.status_code == 404
    assert response.json() == {"error": "no campaign named 'ghost'"}


def test_bodies_must_be_json_objects(client: TestClient) -> None:
    as_form = client.post("/api/campaigns", data={"namespace": "x"})
    assert as_form.status_code == 415
    broken = client.post(
        "/api/campaigns", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 400
    assert "not valid JSON" in broken.json()["error"]
    listed = client.post(
        "/api/campaigns", content=b"[1, 2]", headers={"content-type": "application/json"}
    )
    assert listed.status_code == 400
    assert client.get("/api/campaigns").json() == []


DEEP = 100_000
MALFORMED = {
    "deep list": b"[" * DEEP + b"]" * DEEP,
    "deep object": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "deep field": b'{"consent": ' + b"[" * DEEP + b"]" * DEEP + b"}",
    "unclosed deep": b"[" * DEEP,
    "not utf-8": b'{"namespace": "\xff\xfe"}',
    "huge number": b'{"per_session": ' + b"9" * 100_000 + b"}",
    "nan": b'{"per_session": NaN}',
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_deep_or_malformed_json_is_a_400_never_a_500(client: TestClient, body: bytes) -> None:
    create(client, namespace="kept")
    json_type = {"content-type": "application/json"}
    for method, path in (("POST", "/api/campaigns"), ("PATCH", "/api/campaigns/kept")):
        response = client.request(method, path, content=body, headers=json_type)

        assert response.status_code in (400, 422), (method, response.text)
        assert set(response.json()) <= {"error", "errors"}
    assert [c["namespace"] for c in client.get("/api/campaigns").json()] == ["kept"]
    assert (
        client.get("/api/campaigns/kept").json()["per_session"] == campaign_input()["per_session"]
    )


def test_sessions_twin_lists_otree_sessions_with_their_mastok_id(client: TestClient) -> None:
    body = client.get("/api/sessions").json()
    assert body["otree_problem"] is None
    assert isinstance(body["sessions"], list)
    assert len(body["sessions"]) <= 25


def test_otree_configs_and_dashboard(client: TestClient) -> None:
    names = [c["name"] for c in client.get("/api/otree/configs").json()]
    assert {"survey", "guess_two"} <= set(names)
    dashboard = client.get("/api/dashboard").json()
    assert dashboard["otree"]["reachable"] is True
    assert dashboard["otree"]["version"] == "6.0.15"


def test_otree_down_is_a_plain_answer_not_a_500(make_client: ClientFactory) -> None:
    down = make_client(otree_api_url="http://127.0.0.1:9")
    configs = down.get("/api/otree/configs")
    assert configs.status_code == 502
    assert "cannot reach oTree" in configs.json()["error"]
    sessions = down.get("/api/sessions")
    assert sessions.status_code == 200
    assert "cannot reach oTree" in sessions.json()["otree_problem"]
    assert down.get("/api/dashboard").json()["otree"]["reachable"] is False


def api_routes(client: TestClient) -> set[tuple[str, str]]:
    found = set()
    for route in client.app.routes:  # type: ignore[attr-defined]
        if isinstance(route, Mount) and route.path == "/api":
            for inner in route.routes:
                assert isinstance(inner, Route)
                for method in inner.methods or ():
                    if method != "HEAD":
                        found.add(("/api" + inner.path, method.lower()))
    return found


def test_openapi_document_matches_the_routes(client: TestClient) -> None:
    document = client.get("/api/openapi.json").json()
    assert document["openapi"].startswith("3.")
    documented = {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert documented == api_routes(client)
    schemas = document["components"]["schemas"]
    assert schemas["CampaignCreate"]["properties"]["per_session"]["maximum"] == 32
    assert "namespace" in schemas["CampaignCreate"]["required"]
    assert schemas["CampaignPatch"]["required"] == []
    json.dumps(document)
