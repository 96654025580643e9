"""The audit log: every state-changing admin action written with when, who, from where and
what changed, through the API, the forms and the supervise page's socket; read back paged."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from tests.campaigns.factories import campaign_input
from tests.fixtures.app import LOGIN
from tests.fixtures.live import ServerFactory
from tests.live.helpers import running_campaign
from tests.web.forms import submit

CONSENT_LINES = "# Consent\n\n- [ ] I am over 18\n\nLine one\nline two\n\n[accept]I agree[/accept]"


def entries(client: Any, **params: Any) -> list[dict[str, Any]]:
    answer = client.get("/api/audit", params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()["entries"]


def test_campaign_actions_through_the_api_are_logged(client: TestClient) -> None:
    assert client.post("/api/campaigns", json=campaign_input("aud")).status_code == 201
    client.patch("/api/campaigns/aud", json={"instructions": "Wait here.", "state": "Running"})
    client.patch("/api/campaigns/aud", json={"instructions": "Wait here."})  # no change
    logged = entries(client)
    assert [(e["action"], e["target"]) for e in logged] == [
        ("campaign.edited", "aud"),
        ("campaign.state", "aud"),
        ("campaign.created", "aud"),
    ]
    edited, state, created = logged
    assert edited["details"] == {"instructions": ["Please wait for the others.", "Wait here."]}
    assert state["details"] == {"state": ["Paused", "Running"]}
    assert created["details"] == {"slug": "aud_join", "otree_config_name": "guess_two"}
    assert all(e["login"] == LOGIN and e["address"] == "testclient" for e in logged)
    assert logged[0]["id"] > logged[1]["id"]  # newest first


def test_the_log_is_paged_and_shown(client: TestClient) -> None:
    for n in range(3):
        client.post("/api/campaigns", json=campaign_input(f"page{n}"))
    first = client.get("/api/audit", params={"limit": 2}).json()
    assert [e["target"] for e in first["entries"]] == ["page2", "page1"]
    rest = client.get(first["next"]).json()
    assert [e["target"] for e in rest["entries"]] == ["page0"] and rest["next"] is None
    assert client.get("/api/audit", params={"limit": "x"}).status_code == 400
    page = client.get("/audit")
    assert page.status_code == 200 and "campaign.created" in page.text and "page2" in page.text


def test_a_long_value_is_kept_short(client: TestClient) -> None:
    client.post("/api/campaigns", json=campaign_input("long"))
    client.patch("/api/campaigns/long", json={"instructions": "x" * 5000})
    (old, new) = entries(client)[0]["details"]["instructions"]
    assert old == "Please wait for the others."
    assert new == "x" * 200 + "…"


async def test_the_supervise_page_buttons_are_logged(make_server: ServerFactory) -> None:
    server = make_server()
    running_campaign(server, "sup")
    supervisor = await server.supervisor("sup")
    await supervisor.send("State", "Paused")
    await supervisor.sees("State", "Paused")
    with server.admin() as admin:
        logged = entries(admin)
    assert logged[0]["action"] == "campaign.state"
    assert logged[0]["details"] == {"state": ["Running", "Paused"]}
    assert logged[0]["address"] == "127.0.0.1"


def test_a_form_saved_as_a_browser_sends_it_logs_only_what_changed(client: TestClient) -> None:
    """A browser sends a textarea's lines ending with CRLF: texts left as they were are no
    change, to the log nor to the consent participants agree to."""
    values = campaign_input("crlf", consent=CONSENT_LINES, grouping="Q?\nA:1\nB:1\nGo")
    assert client.post("/api/campaigns", json=values).status_code == 201
    before = client.get("/api/campaigns/crlf").json()
    texts = ("consent", "grouping", "instructions", "pending", "paused", "completed")
    posted = {**values, "state": "Paused", "max_sessions": 7}
    posted.update({name: posted[name].replace("\n", "\r\n") for name in texts})
    assert submit(client, "/campaigns/edit/crlf", posted).status_code == 303
    assert entries(client)[0]["details"] == {"max_sessions": [3, 7]}
    after = client.get("/api/campaigns/crlf").json()
    assert [after[name] for name in texts] == [before[name] for name in texts]
