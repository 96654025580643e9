"""LightMill's monitoring pages and their JSON twins, used as an admin's browser and scripts do:
run states and locks, the Unlock button (auth and CSRF), the design upload, the unprotected
runs banner, a run's trials and a trial's events."""

from __future__ import annotations

import re
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any

import pytest
from starlette.testclient import TestClient

from mastok.clock import ManualClock, iso
from tests.fixtures.app import ClientFactory
from tests.lightmill.helpers import (
    design,
    error,
    imported,
    lock,
    nothing_stored,
    post_trial,
    row_counts,
)
from tests.web.forms import csrf_token

XP = "/experiments/pointing"
API = "/api/monitoring/experiments/pointing"


# --- Reading pages ----------------------------------------------------------------------------


class _Tables(HTMLParser):
    """The text of every cell of every table with an id: {id: [[cell, ...], ...]} (body rows)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.heads: dict[str, list[str]] = {}
        self.table: str | None = None
        self.row: list[str] | None = None
        self.cell: list[str] | None = None
        self.in_head = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.table = dict(attrs).get("id") or ""
            self.tables[self.table] = []
            self.heads[self.table] = []
        elif tag == "thead":
            self.in_head = True
        elif tag == "tr" and self.table is not None:
            self.row = []
        elif tag in ("td", "th") and self.row is not None:
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None and self.row is not None:
            self.row.append(" ".join("".join(self.cell).split()))
            self.cell = None
        elif tag == "tr" and self.row is not None and self.table is not None:
            if self.in_head:
                self.heads[self.table] = self.row
            else:
                self.tables[self.table].append(self.row)
            self.row = None
        elif tag == "thead":
            self.in_head = False
        elif tag == "table":
            self.table = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def table(page: str, table_id: str) -> list[list[str]]:
    parser = _Tables()
    parser.feed(page)
    return parser.tables[table_id]


def header(page: str, table_id: str) -> list[str]:
    parser = _Tables()
    parser.feed(page)
    return parser.heads[table_id]


def text_of(page: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}"[^>]*>(.*?)</', page, re.S)
    assert found, f"no element #{element_id}"
    return " ".join(found.group(1).split())


def ok(client: TestClient, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, response.text
    return response.text


@pytest.fixture
def client(make_client: ClientFactory, clock: ManualClock) -> TestClient:
    """An admin's client of an app on the test's clock."""
    return make_client(clock=clock)


def twin(client: TestClient, path: str) -> dict[str, Any]:
    response = client.get(path)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# --- The runs in every state ------------------------------------------------------------------


def three_states(client: TestClient, clock: ManualClock) -> dict[str, str]:
    """S0 started and locked, S1 unstarted with an expired lock, S2 completed and unlocked
    (`clock`: the client's app's). The clients' tokens."""
    imported(client)
    tokens = {"S1": lock(client, "S1")}
    clock.advance(seconds=600)  # S1's client goes silent
    tokens |= {run: lock(client, run) for run in ("S0", "S2")}
    for block, trial in ((0, 0), (0, 1)):
        assert post_trial(client, "S0", block, trial, tokens["S0"]).status_code == 200
    for trial in (0, 1):  # its last trial releases its lock
        assert post_trial(client, "S2", 0, trial, tokens["S2"]).status_code == 200
    return tokens


def run_cells(run: dict[str, Any]) -> list[str]:
    """A run's row on the experiment page, as its JSON twin describes it."""
    current = run["current"]
    return [
        run["id"],
        run["status"],
        f"{run['trials_done']}/{run['trials_total']}",
        f"block {current['block']}, trial {current['trial']}" if current else "—",
        run["lock"],
        run["locked_since"] or "—",
        run["last_heartbeat"] or "—",
        "" if run["lock"] == "unlocked" else "Unlock",
    ]


def test_the_experiment_page_shows_every_run_state(client: TestClient, clock: ManualClock) -> None:
    started = clock.now()
    three_states(client, clock)
    later = started + timedelta(seconds=600)  # S0 locked, S1's client silent since `started`

    page = ok(client, XP)
    data = twin(client, API)

    runs = {run["id"]: run for run in data["runs"]}
    assert [(r["id"], r["status"], r["lock"]) for r in data["runs"]] == [
        ("S0", "started", "locked"),
        ("S1", "unstarted", "expired"),
        ("S2", "completed", "unlocked"),
    ]
    assert (runs["S0"]["trials_done"], runs["S0"]["trials_total"]) == (2, 6)
    assert runs["S0"]["current"] == {"block": 1, "trial": 0}
    assert runs["S1"]["current"] == {"block": 0, "trial": 0}
    assert runs["S2"]["current"] is None
    held = [(r["locked_since"], r["last_heartbeat"], r["lock_expires_at"]) for r in data["runs"]]
    assert held == [
        (iso(later), iso(later), iso(later + timedelta(seconds=120))),
        (iso(started), iso(started), iso(started + timedelta(seconds=120))),
        (None, None, None),
    ]
    assert data["experiment"] == {
        "id": "pointing",
        "name": "Pointing",
        "author": "Ada Lovelace",
        "description": "Mouse or touch, small or large targets",
        "imported_at": iso(started),
        "runs": 3,
        "runs_started": 2,
        "runs_completed": 1,
        "runs_locked": 1,
        "trials": 10,
        "trials_done": 4,
    }
    assert (data["unprotected_runs"], data["lock_timeout"]) == (False, 120)

    # The page shows what its twin says, cell by cell.
    assert table(page, "runs") == [run_cells(run) for run in data["runs"]]
    assert text_of(page, "runs-completed") == "1/3"
    assert text_of(page, "trials-done") == "4/10"
    assert re.findall(r'<tr data-run="(\w+)" data-status="(\w+)" data-lock="(\w+)"', page) == [
        ("S0", "started", "locked"),
        ("S1", "unstarted", "expired"),
        ("S2", "completed", "unlocked"),
    ]
    assert page.count('<form class="unlock" method="post"') == 2
    assert f'action="{XP}/runs/S0/unlock"' in page and f'action="{XP}/runs/S2/unlock"' not in page
    assert f'href="{XP}/trials.csv"' in page and f'href="{XP}/events.csv"' in page
    assert 'data-api="/api/monitoring/experiments/pointing"' in page
    assert "/front/js/experiment.js" in page
    assert 'id="unprotected-runs"' not in page


def test_the_experiments_page_lists_them_with_their_progress(
    client: TestClient, clock: ManualClock
) -> None:
    empty = ok(client, "/experiments")
    assert "No experiment yet" in empty
    assert twin(client, "/api/monitoring/experiments")["experiments"] == []
    three_states(client, clock)

    page = ok(client, "/experiments")
    data = twin(client, "/api/monitoring/experiments")

    assert [
        (x["id"], x["runs_completed"], x["runs"], x["trials_done"]) for x in data["experiments"]
    ] == [("pointing", 1, 3, 4)]
    assert table(page, "experiments") == [
        [
            x["id"],
            x["name"],
            x["author"],
            f"{x['runs_completed']}/{x['runs']}",
            f"{x['trials_done']}/{x['trials']}",
        ]
        for x in data["experiments"]
    ]
    assert table(page, "experiments") == [["pointing", "Pointing", "Ada Lovelace", "1/3", "4/10"]]
    assert f'<a href="{XP}">pointing</a>' in page
    assert '<a href="/experiments">Experiments</a>' in page  # in the nav of every page
    assert '<a href="/experiments">Experiments</a>' in ok(client, "/campaigns")


def test_a_lock_refreshed_by_its_client_stays_locked(
    client: TestClient, clock: ManualClock
) -> None:
    tokens = three_states(client, clock)
    assert twin(client, API)["runs"][1]["lock"] == "expired"

    client.get("/api/run/pointing/S1", params={"token": tokens["S1"]})  # a sign of life

    assert twin(client, API)["runs"][1]["lock"] == "locked"
    assert table(ok(client, XP), "runs")[1][4] == "locked"


# --- Unlock -----------------------------------------------------------------------------------


def lock_of(client: TestClient, run: str) -> str:
    state: str = twin(client, f"{API}/runs/{run}")["run"]["lock"]
    return state


def test_the_unlock_button_releases_the_lock(client: TestClient, clock: ManualClock) -> None:
    tokens = three_states(client, clock)
    token = csrf_token(ok(client, XP))

    response = client.post(f"{XP}/runs/S0/unlock", data={"csrf_token": token})

    assert response.status_code == 303
    assert response.headers["location"] == XP
    page = ok(client, XP)
    assert "Run S0 unlocked" in page
    assert table(page, "runs")[0][4:] == ["unlocked", "—", "—", ""]
    assert lock_of(client, "S0") == "unlocked"
    # The client that held it can no longer write; anyone may take the run and resume it.
    assert error(post_trial(client, "S0", 1, 0, tokens["S0"]), 405, "RunNotLocked")
    assert client.get("/api/run/pointing/S0/current_trial").json()["blockNumber"] == 1
    lock(client, "S0")
    # An expired lock is released too; an unlocked run is left as it is.
    assert client.post(f"{XP}/runs/S1/unlock", data={"csrf_token": token}).status_code == 303
    assert lock_of(client, "S1") == "unlocked"
    assert client.post(f"{XP}/runs/S2/unlock", data={"csrf_token": token}).status_code == 303
    assert "Run S2 held no lock." in ok(client, XP)


def test_unlock_needs_the_admin_and_a_csrf_token(
    make_client: ClientFactory, clock: ManualClock
) -> None:
    admin = make_client(clock=clock)
    three_states(admin, clock)
    token = csrf_token(ok(admin, XP))
    anonymous = make_client(authenticated=False)
    other = make_client()
    other_token = csrf_token(ok(other, XP))

    assert anonymous.post(f"{XP}/runs/S0/unlock", data={"csrf_token": token}).status_code == 401
    assert anonymous.get(XP).status_code == 401
    without = admin.post(f"{XP}/runs/S0/unlock", data={})
    assert without.status_code == 403
    assert "reload the page" in without.text
    forged = admin.post(f"{XP}/runs/S0/unlock", data={"csrf_token": "1234##abcd"})
    assert forged.status_code == 403
    # A token from another session (another browser) is refused too.
    assert admin.post(f"{XP}/runs/S0/unlock", data={"csrf_token": other_token}).status_code == 403
    # No GET link changes anything.
    assert admin.get(f"{XP}/runs/S0/unlock").status_code == 405

    assert lock_of(admin, "S0") == "locked"
    assert lock_of(admin, "S1") == "expired"


def test_unlock_of_an_unknown_run_is_404(client: TestClient) -> None:
    imported(client)
    token = csrf_token(ok(client, "/experiments"))  # a session's token serves all its forms
    assert client.post(f"{XP}/runs/S9/unlock", data={"csrf_token": token}).status_code == 404
    missing = client.post("/experiments/nope/runs/S0/unlock", data={"csrf_token": token})
    assert missing.status_code == 404


def test_the_api_unlock(make_client: ClientFactory, clock: ManualClock) -> None:
    admin = make_client(clock=clock)
    three_states(admin, clock)
    anonymous = make_client(authenticated=False)

    assert anonymous.post(f"{API}/runs/S0/unlock", json={}).status_code == 401
    # Like every write of the admin API: JSON only, which no other site can send.
    form = admin.post(f"{API}/runs/S0/unlock", data={"a": "b"})
    assert form.status_code == 415
    assert lock_of(admin, "S0") == "locked"

    response = admin.post(f"{API}/runs/S0/unlock", json={})

    assert response.status_code == 200
    body = response.json()
    assert body["released"] is True
    assert body["run"] == twin(admin, API)["runs"][0]
    assert body["run"]["lock"] == "unlocked"
    assert admin.post(f"{API}/runs/S0/unlock", json={}).json()["released"] is False
    assert admin.post(f"{API}/runs/S9/unlock", json={}).status_code == 404


# --- Importing a design through the form ------------------------------------------------------


def upload(client: TestClient, name: str, data: bytes, token: str | None = None) -> Any:
    token = token or csrf_token(ok(client, "/experiments"))
    files = {"design": (name, data, "application/xml")}
    return client.post("/experiments", data={"csrf_token": token}, files=files)


def test_the_upload_form_imports_a_design(client: TestClient) -> None:
    page = ok(client, "/experiments")
    assert 'enctype="multipart/form-data"' in page
    assert 'name="design" type="file"' in page

    response = upload(client, "pointing.xml", design())

    assert response.status_code == 303
    assert response.headers["location"] == XP
    assert "Experiment pointing imported." in ok(client, XP)
    assert row_counts(client)["lm_trials"] == 10
    assert client.get("/api/experiment/pointing").json()["runs"] == ["S0", "S1", "S2"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("malformed.xml", "cannot read the design: line 9: not well-formed XML: mismatched tag"),
        (
            "billion_laughs.xml",
            "cannot read the design: line 3: entity declarations are not accepted "
            "(entity &#39;lol&#39;)",
        ),
        (
            "external_entity.xml",
            "cannot read the design: line 3: entity declarations are not accepted (entity "
            "&#39;secret&#39; pointing to &#39;file:///etc/passwd&#39;)",
        ),
        (
            "unknown_value.xml",
            "cannot read the design: line 11: &lt;trial values=&#34;size=medium&#34;&gt;: factor "
            "&#39;size&#39; has no value &#39;medium&#39;",
        ),
    ],
)
def test_the_upload_form_refuses_broken_designs(
    client: TestClient, name: str, message: str
) -> None:
    response = upload(client, name, design(name))

    assert response.status_code == 422
    assert f'<p class="error" data-field="design" role="alert">{message}' in response.text
    assert 'name="csrf_token"' in response.text  # the form again, ready for another file
    assert nothing_stored(client)


def test_the_upload_form_refuses_a_missing_file_or_an_existing_id(client: TestClient) -> None:
    token = csrf_token(ok(client, "/experiments"))
    nothing = client.post("/experiments", data={"csrf_token": token})
    assert nothing.status_code == 422
    assert "choose a TouchStone design file" in nothing.text
    empty = upload(client, "", b"", token)
    assert empty.status_code == 422
    assert "choose a TouchStone design file" in empty.text
    assert nothing_stored(client)

    assert upload(client, "pointing.xml", design(), token).status_code == 303
    again = upload(client, "pointing.xml", design(), token)

    assert again.status_code == 422
    assert "experiment &#39;pointing&#39; already exists" in again.text
    assert row_counts(client)["lm_experiments"] == 1


def test_the_upload_form_needs_the_admin_and_a_csrf_token(make_client: ClientFactory) -> None:
    admin = make_client()
    token = csrf_token(ok(admin, "/experiments"))
    anonymous = make_client(authenticated=False)

    assert upload(anonymous, "pointing.xml", design(), token).status_code == 401
    files = {"design": ("pointing.xml", design(), "application/xml")}
    without = admin.post("/experiments", files=files)
    assert without.status_code == 403
    assert admin.post("/experiments", data={"csrf_token": "x"}, files=files).status_code == 403
    assert nothing_stored(admin)


# --- The unprotected runs banner --------------------------------------------------------------


PAGES = (
    "/experiments",
    XP,
    f"{XP}/runs/S0",
    f"{XP}/runs/S0/trials/0/0",
)


def test_every_monitoring_page_warns_of_unprotected_runs(make_client: ClientFactory) -> None:
    unprotected = make_client(unprotected_runs=True)
    imported(unprotected)
    protected = make_client()

    for path in PAGES:
        page = ok(unprotected, path)
        assert '<div id="unprotected-runs" class="unprotected-runs" role="alert">' in page, path
        assert "Unprotected runs." in page
        assert "never run a real study like this" in page
        assert twin(unprotected, "/api/monitoring" + path)["unprotected_runs"] is True
        assert 'id="unprotected-runs"' not in ok(protected, path), path
        assert twin(protected, "/api/monitoring" + path)["unprotected_runs"] is False


# --- A run's trials and a trial's events ------------------------------------------------------


def test_the_run_page_shows_its_trials(client: TestClient) -> None:
    imported(client)
    token = lock(client, "S0")
    measures = {
        "trial": {"time": 812, "durations": {"reaction": 240}, "hit": True, "note": "a <b>"},
        "events": [{"x": 0.5, "hit": False}, {}, {"y": 2, "label": "up"}],
    }
    first = post_trial(client, "S0", 0, 0, token, measures).json()
    post_trial(client, "S0", 0, 1, token, {"trial": {"time": 90}})

    page = ok(client, f"{XP}/runs/S0")
    data = twin(client, f"{API}/runs/S0")

    assert data["factors"] == ["distance", "hand", "size", "technique"]
    assert data["measures"] == ["durations.movement", "durations.reaction", "hit", "note", "time"]
    assert header(page, "trials") == [
        "Block",
        "Measured block",
        "Trial",
        "Practice",
        "Completed",
        *data["factors"],
        *data["measures"],
        "Events",
    ]
    assert (data["page"], data["pages"], data["run"]["status"]) == (1, 1, "started")
    assert [(t["block"], t["trial"]) for t in data["trials"]] == [
        (0, 0),
        (0, 1),
        (1, 0),
        (1, 1),
        (2, 0),
        (2, 1),
    ]
    done = data["trials"][0]
    assert done["completed_at"] is not None
    assert abs(_epoch_ms(done["completed_at"]) - first["completionDate"]) <= 1
    assert done == {
        "block": 0,
        "measured_block": None,
        "trial": 0,
        "practice": True,
        "completed_at": done["completed_at"],
        "factor_values": {
            "distance": "near",
            "hand": "right",
            "size": "large",
            "technique": "mouse",
        },
        "measures": {"durations.reaction": "240", "hit": "true", "note": "a <b>", "time": "812"},
        "events": 3,
    }
    assert data["trials"][5] == {
        "block": 2,
        "measured_block": 1,
        "trial": 1,
        "practice": False,
        "completed_at": None,
        "factor_values": {"hand": "right", "size": "large", "technique": "mouse"},
        "measures": {},
        "events": 0,
    }

    def cells(t: dict[str, Any]) -> list[str]:
        return [
            str(t["block"]),
            "" if t["measured_block"] is None else str(t["measured_block"]),
            str(t["trial"]),
            "yes" if t["practice"] else "no",
            t["completed_at"] or "",
            *(t["factor_values"].get(f, "") for f in data["factors"]),
            *(t["measures"].get(m, "") for m in data["measures"]),
            str(t["events"]) if t["completed_at"] else "",
        ]

    assert table(page, "trials") == [cells(t) for t in data["trials"]]
    assert table(page, "trials")[0][5:] == [
        "near",
        "right",
        "large",
        "mouse",
        "",
        "240",
        "true",
        "a <b>",
        "812",
        "3",
    ]
    assert "a &lt;b&gt;" in page  # escaped
    assert f'href="{XP}/runs/S0/trials/0/0"' in page

    trial_page = ok(client, f"{XP}/runs/S0/trials/0/0")
    trial = twin(client, f"{API}/runs/S0/trials/0/0")
    assert trial["event_measures"] == ["hit", "label", "x", "y"]
    assert trial["events"] == [
        {"number": 0, "measures": {"x": "0.5", "hit": "false"}},
        {"number": 1, "measures": {}},
        {"number": 2, "measures": {"y": "2", "label": "up"}},
    ]
    assert trial["measures"] == done["measures"]
    assert trial["factor_values"] == done["factor_values"]
    assert header(trial_page, "events") == ["Event", "hit", "label", "x", "y"]
    assert table(trial_page, "events") == [
        ["0", "false", "", "0.5", ""],
        ["1", "", "", "", ""],
        ["2", "", "up", "", "2"],
    ]
    pending = ok(client, f"{XP}/runs/S0/trials/2/1")
    assert table(pending, "events") == [["The trial is not done yet."]]


def _epoch_ms(iso: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def long_design(trials: int) -> bytes:
    rows = "".join('<trial values=""/>' for _ in range(trials))
    return (
        '<experiment id="long"><factor id="f"><value id="a" default="1"/></factor>'
        f'<measure id="m" log="ok"/><run id="R"><block>{rows}</block></run></experiment>'
    ).encode()


def test_a_long_run_is_shown_a_page_at_a_time(client: TestClient) -> None:
    assert upload(client, "long.xml", long_design(1200)).status_code == 303
    path = "/experiments/long/runs/R"

    first = twin(client, f"/api/monitoring{path}")
    third = twin(client, f"/api/monitoring{path}?page=3")

    assert (first["page"], first["pages"], first["page_size"]) == (1, 3, 500)
    assert [t["trial"] for t in first["trials"]] == list(range(500))
    assert [t["trial"] for t in third["trials"]] == list(range(1000, 1200))
    page = ok(client, f"{path}?page=2")
    assert [row[2] for row in table(page, "trials")] == [str(n) for n in range(500, 1000)]
    assert "page 2 of 3" in page
    assert f'href="{path}?page=1"' in page and f'href="{path}?page=3"' in page
    for bad in ("4", "0", "x", "-1"):
        assert client.get(f"{path}?page={bad}").status_code == 404
        assert client.get(f"/api/monitoring{path}?page={bad}").status_code == 404


# --- Unknown ids ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/experiments/nope", "there is no experiment &#39;nope&#39;"),
        ("/experiments/nope/runs/S0", "there is no experiment &#39;nope&#39;"),
        (f"{XP}/runs/S9", "experiment &#39;pointing&#39; has no run &#39;S9&#39;"),
        (f"{XP}/runs/S0/trials/9/0", "run &#39;S0&#39; of &#39;pointing&#39; has no block 9"),
        (
            f"{XP}/runs/S0/trials/0/9",
            "block 0 of run &#39;S0&#39; of &#39;pointing&#39; has no trial 9",
        ),
        (f"{XP}/runs/S0/trials/0/x", "trial numbers are whole numbers from 0, not &#39;x&#39;"),
        (
            f"{XP}/runs/S0/trials/99999999999/0",
            "block numbers are whole numbers from 0, not &#39;99999999999&#39;",
        ),
        ("/experiments/nope/trials.csv", "there is no experiment &#39;nope&#39;"),
        ("/experiments/nope/events.csv", "there is no experiment &#39;nope&#39;"),
    ],
)
def test_unknown_ids_are_404(client: TestClient, path: str, message: str) -> None:
    imported(client)

    page = client.get(path)

    assert page.status_code == 404
    assert message in page.text
    if not path.endswith(".csv"):
        answer = client.get("/api/monitoring" + path)
        assert answer.status_code == 404
        assert answer.json() == {"error": message.replace("&#39;", "'")}


def test_monitoring_needs_the_admin(make_client: ClientFactory) -> None:
    anonymous = make_client(authenticated=False)
    imported(anonymous)
    for path in PAGES:
        assert anonymous.get(path).status_code == 401, path
        assert anonymous.get("/api/monitoring" + path).status_code == 401, path
    assert anonymous.get(f"{XP}/trials.csv").status_code == 401
    assert anonymous.get(f"{XP}/events.csv").status_code == 401


def test_pages_follow_the_web_prefix(make_client: ClientFactory) -> None:
    client = make_client(web_prefix="/mastok")
    imported_ = client.post(
        "/mastok/api/import", content=design(), headers={"Content-Type": "application/xml"}
    )
    assert imported_.status_code == 200

    page = ok(client, "/mastok/experiments/pointing")

    assert 'data-api="/mastok/api/monitoring/experiments/pointing"' in page
    assert 'href="/mastok/experiments/pointing/trials.csv"' in page
    assert twin(client, "/mastok/api/monitoring/experiments/pointing")["downloads"] == {
        "trials": "/mastok/experiments/pointing/trials.csv",
        "events": "/mastok/experiments/pointing/events.csv",
    }
    assert ok(client, "/mastok/experiments/pointing/trials.csv").startswith("experimentId,")
