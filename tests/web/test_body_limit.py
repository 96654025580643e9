"""Request bodies bounded before they are read: 1 MiB for every route but LightMill's client
routes, which bound their own, and the design upload form (MASTOK_MAX_DESIGN_MIB and its fields);
413 in the route's error shape."""

from __future__ import annotations

from collections.abc import Iterator

from starlette.testclient import TestClient

from tests.campaigns.factories import campaign_input
from tests.fixtures.app import ClientFactory
from tests.web.forms import csrf_token

MIB = 1 << 20


def chunks(size: int) -> Iterator[bytes]:
    """A body sent without Content-Length (chunked)."""
    sent = 0
    while sent < size:
        yield b" " * 65536
        sent += 65536


def test_an_api_body_over_one_mib_is_refused_before_it_is_read(client: TestClient) -> None:
    big = {**campaign_input("big"), "instructions": "x" * (MIB + 1)}
    answer = client.post("/api/campaigns", json=big)
    assert answer.status_code == 413
    assert answer.json() == {"error": "the request body is larger than 1 MiB"}
    assert client.get("/api/campaigns/big").status_code == 404


def test_a_chunked_body_is_cut_off_at_the_bound(client: TestClient) -> None:
    created = client.post("/api/campaigns", json=campaign_input("small"))
    assert created.status_code == 201
    answer = client.patch(
        "/api/campaigns/small",
        content=chunks(2 * MIB),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 413
    assert client.get("/api/campaigns/small").json()["slug"] == "small_join"


def test_a_page_form_over_the_bound_gets_a_text_answer(client: TestClient) -> None:
    answer = client.post("/campaigns/new", data={"consent": "x" * (2 * MIB)})
    assert answer.status_code == 413
    assert answer.text == "the request body is larger than 1 MiB"


def test_a_body_within_the_bound_is_read_as_usual(client: TestClient) -> None:
    near = {**campaign_input("near"), "instructions": "x" * 99_000}
    assert client.post("/api/campaigns", json=near).status_code == 201


def test_lightmill_routes_keep_their_own_bound(client: TestClient) -> None:
    answer = client.post(
        "/api/trial/nope/r1/0/0",
        content=b"{" * (2 * MIB),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code != 413  # LightMill's own answer (its bound is 16 MiB)
    assert "message" in answer.json()


def test_a_design_upload_is_bounded_before_it_is_read(make_client: ClientFactory) -> None:
    """The upload form parsed the whole body (spooled to disk) before its CSRF token or the
    file's size was checked: any page an admin visited could post gigabytes with the
    browser's cached credentials. Past MASTOK_MAX_DESIGN_MIB and the form's fields: 413."""
    client = make_client(max_design_mib=1)
    token = csrf_token(client.get("/experiments").text)
    big = {"design": ("experiment.xml", b"<" * (3 * MIB), "application/xml")}

    forged = client.post("/experiments", files=big)
    assert (forged.status_code, forged.text) == (413, "the request body is larger than 2 MiB")
    answer = client.post("/experiments", data={"csrf_token": token}, files=big)
    assert answer.status_code == 413
    within = {"design": ("experiment.xml", b"<" * (MIB + 1), "application/xml")}
    refused = client.post("/experiments", data={"csrf_token": token}, files=within)
    assert refused.status_code == 422  # the file's own bound, on the form
    assert "the file is larger than 1 MiB" in refused.text
