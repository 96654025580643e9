"""The campaign form's recruitment settings (issue 11): platform identity, recorded parameters,
exits as one line per outcome, Leave and the ready check. Posted as a browser posts them."""

from __future__ import annotations

import html
import re

from starlette.testclient import TestClient

from tests.campaigns.factories import campaign_input
from tests.web.forms import submit

PROLIFIC_URL = "https://app.prolific.com/submissions/complete?cc={code}"
EXITS_LINES = (
    f"timeout: C1TIMEOUT {PROLIFIC_URL}\n"
    "left: C1LEFT\n"
    "\n"
    "# a comment line\n"
    "full: https://example.org/back?pid={PROLIFIC_PID}&why={outcome}\n"
)


def prolific(namespace: str, **changes: object) -> dict[str, object]:
    return campaign_input(
        namespace,
        identity_param="PROLIFIC_PID",
        capture_params="PROLIFIC_PID, STUDY_ID SESSION_ID",
        require_identity=True,
        exits=EXITS_LINES,
        leave_after_seconds="45",
        ready_check_seconds="20",
        **changes,
    )


def field_value(page: str, name: str) -> str:
    found = re.search(rf'<input[^>]* name="{name}"[^>]*>', page)
    assert found, f"no input {name}"
    value = re.search(r'value="([^"]*)"', found.group(0))
    return html.unescape(value.group(1)) if value else ""


def checked(page: str, name: str) -> bool:
    found = re.search(rf'<input[^>]* name="{name}"[^>]*>', page)
    assert found, f"no input {name}"
    return " checked" in found.group(0)


def textarea(page: str, name: str) -> str:
    found = re.search(rf'<textarea[^>]* name="{name}"[^>]*>(.*?)</textarea>', page, re.S)
    assert found, f"no textarea {name}"
    return html.unescape(found.group(1)).lstrip("\r\n")


def test_new_form_offers_the_fields_and_the_platform_presets(client: TestClient) -> None:
    page = client.get("/campaigns/new").text
    for name in ("identity_param", "capture_params", "leave_after_seconds", "ready_check_seconds"):
        assert f'name="{name}"' in page
    assert 'name="require_identity" type="checkbox"' in page
    assert textarea(page, "exits") == ""
    assert field_value(page, "leave_after_seconds") == "0"
    assert field_value(page, "ready_check_seconds") == "0"
    assert (
        'data-preset="Prolific" data-identity="PROLIFIC_PID" '
        'data-capture="PROLIFIC_PID STUDY_ID SESSION_ID"' in page
    )
    assert (
        'data-preset="MTurk" data-identity="workerId" data-capture="workerId assignmentId hitId"'
        in page
    )
    assert "/front/js/campaign_form.js" in page
    assert client.get("/front/js/campaign_form.js").status_code == 200


def test_create_with_a_platform_exits_leave_and_ready_check(client: TestClient) -> None:
    response = submit(client, "/campaigns/new", prolific("study_pf"))
    assert response.status_code == 303, response.text
    saved = client.get("/api/campaigns/study_pf").json()
    assert saved["identity_param"] == "PROLIFIC_PID"
    assert saved["capture_params"] == ["PROLIFIC_PID", "STUDY_ID", "SESSION_ID"]
    assert saved["require_identity"] is True
    assert saved["leave_after_seconds"] == 45
    assert saved["ready_check_seconds"] == 20
    assert saved["exits"] == {
        "full": {"code": None, "url": "https://example.org/back?pid={PROLIFIC_PID}&why={outcome}"},
        "left": {"code": "C1LEFT", "url": None},
        "timeout": {"code": "C1TIMEOUT", "url": PROLIFIC_URL},
    }


def test_a_form_without_the_new_fields_keeps_todays_behaviour(client: TestClient) -> None:
    """An older page (or a script) posting only the fields it knows: the defaults apply."""
    response = submit(client, "/campaigns/new", campaign_input("study_old"))
    assert response.status_code == 303
    saved = client.get("/api/campaigns/study_old").json()
    assert (saved["identity_param"], saved["capture_params"], saved["exits"]) == ("", [], {})
    assert (saved["require_identity"], saved["leave_after_seconds"]) == (False, 0)
    assert saved["ready_check_seconds"] == 0


def test_edit_shows_the_stored_settings_as_lines_and_replaces_the_exits(
    client: TestClient,
) -> None:
    assert submit(client, "/campaigns/new", prolific("study_pe")).status_code == 303
    page = client.get("/campaigns/edit/study_pe").text
    assert field_value(page, "identity_param") == "PROLIFIC_PID"
    assert field_value(page, "capture_params") == "PROLIFIC_PID, STUDY_ID, SESSION_ID"
    assert checked(page, "require_identity")
    assert field_value(page, "leave_after_seconds") == "45"
    assert textarea(page, "exits").splitlines() == [
        "full: https://example.org/back?pid={PROLIFIC_PID}&why={outcome}",
        "left: C1LEFT",
        f"timeout: C1TIMEOUT {PROLIFIC_URL}",
    ]

    # Saving the page as shown changes nothing.
    before = client.get("/api/campaigns/study_pe").json()
    shown = {
        **campaign_input("study_pe"),
        "state": "Paused",
        "identity_param": field_value(page, "identity_param"),
        "capture_params": field_value(page, "capture_params"),
        "require_identity": True,
        "exits": textarea(page, "exits"),
        "leave_after_seconds": field_value(page, "leave_after_seconds"),
        "ready_check_seconds": field_value(page, "ready_check_seconds"),
    }
    assert submit(client, "/campaigns/edit/study_pe", shown).status_code == 303
    after = client.get("/api/campaigns/study_pe").json()
    assert {k: v for k, v in after.items() if k != "updated_at"} == {
        k: v for k, v in before.items() if k != "updated_at"
    }

    # MTurk instead, one exit only: the exits are replaced whole, the identity is optional.
    changed = {
        **shown,
        "identity_param": "workerId",
        "capture_params": "workerId assignmentId hitId",
        "require_identity": False,
        "exits": "not_ready: NOTREADY https://example.org/x?w={workerId}",
        "leave_after_seconds": "0",
        "ready_check_seconds": "0",
    }
    assert submit(client, "/campaigns/edit/study_pe", changed).status_code == 303
    saved = client.get("/api/campaigns/study_pe").json()
    assert saved["identity_param"] == "workerId"
    assert saved["capture_params"] == ["workerId", "assignmentId", "hitId"]
    assert saved["require_identity"] is False
    assert saved["exits"] == {
        "not_ready": {"code": "NOTREADY", "url": "https://example.org/x?w={workerId}"}
    }
    assert (saved["leave_after_seconds"], saved["ready_check_seconds"]) == (0, 0)

    # Emptying the exits' box removes every exit.
    assert submit(client, "/campaigns/edit/study_pe", {**changed, "exits": ""}).status_code == 303
    assert client.get("/api/campaigns/study_pe").json()["exits"] == {}


def test_unreadable_exits_are_reported_at_the_field_and_nothing_is_saved(
    client: TestClient,
) -> None:
    cases = {
        "timeout C1": "line 1: write &#39;outcome: CODE https://…&#39;",
        "timeout: A B": "line 1: a code is one word; the url starts with http",
        "lunch: C1": "&#39;lunch&#39; is not an outcome",
        "away: C1": "away: nobody is there to be told",
        "left: C1 https://x.org/?p={STUDY_ID}": "left: unknown placeholder {STUDY_ID}",
        "left: C1\nleft: C2": "line 2: left appears twice",
    }
    for lines, message in cases.items():
        values = campaign_input("study_x", identity_param="PROLIFIC_PID", exits=lines)
        response = submit(client, "/campaigns/new", values)
        assert response.status_code == 422, lines
        assert f'data-field="exits">{message}' in response.text, (lines, response.text)
        assert textarea(response.text, "exits") == lines  # kept for the admin to fix
        assert field_value(response.text, "identity_param") == "PROLIFIC_PID"
    assert client.get("/api/campaigns").json() == []


def test_a_recorded_parameter_may_be_used_in_an_exit_url(client: TestClient) -> None:
    values = campaign_input(
        "study_sona",
        capture_params="survey_code",
        exits="completed: https://sona.example/credit?id={survey_code}",
    )
    assert submit(client, "/campaigns/new", values).status_code == 303
    exits = client.get("/api/campaigns/study_sona").json()["exits"]
    assert exits == {
        "completed": {"code": None, "url": "https://sona.example/credit?id={survey_code}"}
    }


def test_wrong_platform_settings_come_back_at_their_fields(client: TestClient) -> None:
    values = campaign_input(
        "study_w",
        capture_params="PROLIFIC_PID, bad name!",
        require_identity=True,
        leave_after_seconds="-1",
        ready_check_seconds="601",
    )
    response = submit(client, "/campaigns/new", values)
    assert response.status_code == 422
    page = response.text
    assert 'data-field="capture_params">&#39;name!&#39;: use letters, digits' in page
    assert 'data-field="leave_after_seconds">must be a whole number from 0 to 86400' in page
    assert 'data-field="ready_check_seconds">must be a whole number from 0 to 600' in page
    assert field_value(page, "capture_params") == "PROLIFIC_PID, bad name!"
    assert client.get("/api/campaigns").json() == []

    missing = campaign_input("study_w", require_identity=True)
    response = submit(client, "/campaigns/new", missing)
    assert response.status_code == 422
    assert 'data-field="require_identity">name the identity parameter' in response.text


def test_the_api_takes_only_exits_the_form_can_show_and_save_again(client: TestClient) -> None:
    """The form writes a code and its url as words on one line: a code with a space in it,
    taken by the API, would come back in the form as two words, and every save of the form
    (of any field) would be refused."""
    exits = {"timeout": {"code": "C1 TIMEOUT", "url": None}}
    answer = client.post("/api/campaigns", json=campaign_input("spaced", exits=exits))
    assert answer.status_code == 422
    assert answer.json()["errors"] == {"exits": "timeout: a code is one word (no spaces)"}
