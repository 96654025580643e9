"""The admin pages, used as a browser would: real forms, CSRF tokens, a real oTree."""

from __future__ import annotations

import html
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tests.campaigns.factories import campaign_input
from tests.fixtures.app import ClientFactory
from tests.lightmill.helpers import services
from tests.web.forms import as_form, csrf_token, hidden_fields, submit


def test_home_redirects_to_the_dashboard(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["location"] == "/dashboard"
    dashboard = client.get("/dashboard")
    assert dashboard.status_code == 200
    assert "oTree 6.0.15 answers" in dashboard.text


def test_new_campaign_form_offers_otree_configs(client: TestClient) -> None:
    page = client.get("/campaigns/new")
    assert page.status_code == 200
    assert (
        '<option value="guess_two">guess_two (Guess a number (two players))</option>' in page.text
    )
    assert '<option value="survey">' in page.text


def test_create_then_list_with_share_url(client: TestClient) -> None:
    response = submit(client, "/campaigns/new", campaign_input("study_web"))
    assert response.status_code == 303
    assert response.headers["location"] == "/campaigns"
    listing = client.get("/campaigns").text
    assert "Campaign study_web created" in listing
    assert '<a class="share" href="http://testserver/join/study_web_join">' in listing
    assert "state-paused" in listing
    saved = client.get("/api/campaigns/study_web").json()
    assert saved["show_nb_participants"] is True and saved["join_once"] is False
    assert saved["consent"] == campaign_input()["consent"]


def test_invalid_form_comes_back_422_with_input_kept_and_messages(client: TestClient) -> None:
    values = campaign_input("study_bad", per_session="40", consent="Just text <b>bold</b>")
    response = submit(client, "/campaigns/new", values)
    assert response.status_code == 422
    page = response.text
    assert 'data-field="per_session">must be a whole number from 1 to 32</p>' in page
    assert 'data-field="consent">must contain an accept button' in page
    assert 'value="40"' in page
    assert 'value="study_bad"' in page
    assert html.escape("Just text <b>bold</b>", quote=False) in page
    assert "<b>bold</b>" not in page
    assert client.get("/api/campaigns").json() == []


def test_unknown_config_is_reported_at_its_field(client: TestClient) -> None:
    response = submit(client, "/campaigns/new", campaign_input(otree_config_name="nope"))
    assert response.status_code == 422
    assert 'data-field="otree_config_name">oTree has no session config' in response.text


def test_form_without_csrf_token_is_refused_and_nothing_saved(client: TestClient) -> None:
    client.get("/campaigns/new")
    response = client.post("/campaigns/new", data=as_form(campaign_input()))
    assert response.status_code == 403
    assert "reload the page" in response.text
    assert client.get("/api/campaigns").json() == []


def test_csrf_token_from_another_session_is_refused(make_client: ClientFactory) -> None:
    attacker, victim = make_client(), make_client()
    token = csrf_token(attacker.get("/campaigns/new").text)
    victim.get("/campaigns/new")
    response = victim.post(
        "/campaigns/new", data={**as_form(campaign_input()), "csrf_token": token}
    )
    assert response.status_code == 403
    assert victim.get("/api/campaigns").json() == []


def test_edit_changes_settings_but_not_the_namespace(client: TestClient) -> None:
    assert client.post("/api/campaigns", json=campaign_input("study_e")).status_code == 201
    page = client.get("/campaigns/edit/study_e")
    assert page.status_code == 200
    assert 'name="namespace"' not in page.text
    assert 'name="otree_config_name"' not in page.text
    values = campaign_input("study_e", max_sessions=9, join_once=True)
    values.update(state="Running", namespace="renamed", otree_config_name="survey")
    response = submit(client, "/campaigns/edit/study_e", values)
    assert response.status_code == 303
    saved = client.get("/api/campaigns/study_e").json()
    assert (saved["max_sessions"], saved["join_once"], saved["state"]) == (9, True, "Running")
    assert saved["otree_config_name"] == "guess_two"
    assert client.get("/api/campaigns/renamed").status_code == 404


def test_a_save_from_a_form_opened_before_another_save_is_refused(client: TestClient) -> None:
    """Two admins edit at once: the second save must not silently undo the first's change."""
    assert client.post("/api/campaigns", json=campaign_input("study_two")).status_code == 201
    first = client.get("/campaigns/edit/study_two").text
    second = client.get("/campaigns/edit/study_two").text
    shown = {**campaign_input("study_two"), "state": "Paused"}

    def post(page: str, **changes: object) -> Any:
        data = {**as_form({**shown, **changes}), "csrf_token": csrf_token(page)}
        data.update(hidden_fields(page, "version"))
        return client.post("/campaigns/edit/study_two", data=data)

    assert post(first, max_sessions=9).status_code == 303
    response = post(second, waiting_limit=10)
    assert response.status_code == 422
    assert "changed since this form was opened" in response.text
    saved = client.get("/api/campaigns/study_two").json()
    assert (saved["max_sessions"], saved["waiting_limit"]) == (9, 5)


def test_invalid_edit_keeps_input_and_saves_nothing(client: TestClient) -> None:
    before = client.post("/api/campaigns", json=campaign_input("study_i")).json()
    values = campaign_input("study_i", waiting_limit="45", grouping="Q\nA:1\nB:5\nGo")
    values["state"] = "Paused"
    response = submit(client, "/campaigns/edit/study_i", values)
    assert response.status_code == 422
    assert 'data-field="waiting_limit">must be a whole number from 1 to 30' in response.text
    assert 'value="45"' in response.text
    assert client.get("/api/campaigns/study_i").json() == before


def test_the_form_refuses_another_campaigns_old_slug_at_its_field(client: TestClient) -> None:
    assert client.post("/api/campaigns", json=campaign_input("study_o")).status_code == 201
    assert client.patch("/api/campaigns/study_o", json={"slug": "moved"}).status_code == 200
    response = submit(client, "/campaigns/new", campaign_input("study_n", slug="study_o_join"))
    assert response.status_code == 422
    assert (
        'data-field="slug">was study_o&#39;s slug: its old links lead there, so no other '
        "campaign may take it" in response.text
    )
    assert client.get("/api/campaigns/study_n").status_code == 404


def test_unknown_campaign_pages_are_404(client: TestClient) -> None:
    for path in ("/campaigns/edit/ghost", "/campaigns/supervise/ghost"):
        page = client.get(path)
        assert page.status_code == 404
        assert "No campaign named &#39;ghost&#39;." in page.text


def test_supervise_page_shows_the_campaign(client: TestClient) -> None:
    client.post("/api/campaigns", json=campaign_input("study_s"))
    page = client.get("/campaigns/supervise/study_s")
    assert page.status_code == 200
    assert "Supervise study_s" in page.text
    assert "http://testserver/join/study_s_join" in page.text


async def test_sessions_page_lists_otree_sessions_with_mastok_id(
    client: TestClient, otree_client: object
) -> None:
    from mastok.otree import OTreeClient

    assert isinstance(otree_client, OTreeClient)
    created = await otree_client.create_session("guess_two", 2, label="mk:study_x:1:c0ffee00")
    page = client.get("/sessions")
    assert page.status_code == 200
    assert f'<tr data-code="{created.code}">' in page.text
    assert "<td>mk:study_x:1</td>" in page.text
    listed = client.get("/api/sessions").json()["sessions"]
    mine = next(s for s in listed if s["code"] == created.code)
    assert mine["mastok_id"] == "mk:study_x:1"
    assert mine["num_participants"] == 2


@pytest.mark.parametrize("path", ["/dashboard", "/campaigns/new", "/sessions"])
def test_otree_down_is_said_plainly(make_client: ClientFactory, path: str) -> None:
    down = make_client(otree_api_url="http://127.0.0.1:9")
    page = down.get(path)
    assert page.status_code == 200
    assert "oTree is unreachable or refusing mastok's requests" in page.text


def test_campaign_can_be_created_by_name_while_otree_is_down(make_client: ClientFactory) -> None:
    down = make_client(otree_api_url="http://127.0.0.1:9")
    page = down.get("/campaigns/new")
    assert '<input id="otree_config_name" name="otree_config_name" type="text"' in page.text
    response = submit(down, "/campaigns/new", campaign_input("offline"))
    assert response.status_code == 303


def test_everything_is_served_under_the_web_prefix(make_client: ClientFactory) -> None:
    prefixed = make_client(web_prefix="/mastok")
    assert prefixed.get("/mastok/").headers["location"] == "/mastok/dashboard"
    assert prefixed.get("/campaigns").status_code == 404
    response = submit(prefixed, "/mastok/campaigns/new", campaign_input("study_pre"))
    assert response.headers["location"] == "/mastok/campaigns"
    listing = prefixed.get("/mastok/campaigns").text
    assert 'href="/mastok/campaigns/edit/study_pre"' in listing
    assert 'href="/mastok/front/css/mastok.css"' in listing
    assert "http://testserver/mastok/join/study_pre_join" in listing
    assert prefixed.get("/mastok/front/css/mastok.css").status_code == 200
    assert prefixed.get("/mastok/api/campaigns/study_pre").status_code == 200
    assert prefixed.get("/mastok/api/campaigns/ghost").json() == {
        "error": "no campaign named 'ghost'"
    }
    origin = {"origin": services(prefixed).settings.origin}
    joining = "/mastok/ws/join?slug=study_pre_join"
    with prefixed.websocket_connect(joining, headers=origin) as socket:
        assert socket.receive_json()["kind"] == "Paused"  # a new campaign waits for a start
    assert prefixed.patch("/mastok/api/campaigns/study_pre", json={"slug": "pre"}).is_success
    moved = prefixed.get("/mastok/join/study_pre_join?a=1")
    assert moved.headers["location"] == "/mastok/join/pre?a=1"
    with (
        pytest.raises(WebSocketDisconnect),  # nothing outside the prefix
        prefixed.websocket_connect("/ws/join?slug=study_pre_join", headers=origin) as socket,
    ):
        socket.receive_json()


def test_sessions_page_links_only_http_urls_from_otree(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """oTree's listing stood in: a real oTree gives its own http URLs, never a javascript: one."""
    from mastok.otree import SessionSummary
    from tests.lightmill.helpers import services

    listed = [
        SessionSummary("evil", 1, "survey", "", "javascript:alert(1)", "", None),
        SessionSummary("good", 1, "survey", "", "http://127.0.0.1:1/SessionMonitor/good", "", None),
    ]

    async def list_sessions() -> list[SessionSummary]:
        return listed

    monkeypatch.setattr(services(client).otree, "list_sessions", list_sessions)
    page = client.get("/sessions").text

    assert "javascript:" not in page
    assert page.count("oTree admin</a>") == 1
    assert client.get("/api/sessions").json()["sessions"][0]["admin_url"] == ""
