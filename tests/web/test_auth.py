"""HTTP Basic authentication on everything but the public routes."""

from __future__ import annotations

import base64

import pytest
from starlette.testclient import TestClient

from mastok.web.auth import credentials_match
from tests.fixtures.app import LOGIN, PASSWORD, ClientFactory, basic_auth

PROTECTED = [
    "/",
    "/dashboard",
    "/campaigns",
    "/campaigns/new",
    "/campaigns/edit/x",
    "/campaigns/supervise/x",
    "/sessions",
    "/api/campaigns",
    "/api/openapi.json",
    "/api/sessions",
]


@pytest.fixture
def anonymous(make_client: ClientFactory) -> TestClient:
    return make_client(authenticated=False)


@pytest.mark.parametrize("path", PROTECTED)
def test_admin_routes_challenge_without_credentials(anonymous: TestClient, path: str) -> None:
    response = anonymous.get(path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Basic realm="mastok"')


@pytest.mark.parametrize(
    "headers",
    [
        basic_auth(LOGIN, "wrong"),
        basic_auth("someone", PASSWORD),
        basic_auth(LOGIN, PASSWORD + "x"),
        {"Authorization": "Bearer abc"},
        {"Authorization": "Basic !!notbase64"},
        {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
    ],
)
def test_wrong_credentials_get_401(anonymous: TestClient, headers: dict[str, str]) -> None:
    assert anonymous.get("/api/campaigns", headers=headers).status_code == 401


def test_writes_need_credentials_and_change_nothing(
    anonymous: TestClient, client: TestClient
) -> None:
    response = anonymous.post("/api/campaigns", json={"namespace": "x"})
    assert response.status_code == 401
    assert anonymous.post("/campaigns/new", data={"namespace": "x"}).status_code == 401
    assert client.get("/api/campaigns").json() == []


def test_right_credentials_pass(anonymous: TestClient) -> None:
    assert anonymous.get("/api/campaigns", headers=basic_auth()).status_code == 200


def test_public_routes_need_no_credentials(anonymous: TestClient) -> None:
    assert anonymous.get("/healthz").json() == {"status": "ok"}
    assert anonymous.get("/front/css/mastok.css").status_code == 200


def test_credentials_match_is_exact() -> None:
    # RFC 7617: the login ends at the first colon, the password may hold colons.
    assert credentials_match(basic_auth("a", "b:c")["Authorization"], "a", "b:c")
    assert not credentials_match(basic_auth("a", "b:")["Authorization"], "a", "b:c")
    assert not credentials_match(None, "a", "b")
    assert not credentials_match("", "a", "b")


def test_the_session_cookie_is_the_admin_pages_only(make_client: ClientFactory) -> None:
    client = make_client()
    assert "mastok_session" in client.get("/campaigns/new").headers.get("set-cookie", "")
    # The browser sends the cookie everywhere; public routes never read or set it.
    for path in ("/join/nobody", "/healthz", "/front/css/mastok.css"):
        answer = client.get(path)
        assert answer.status_code in (200, 404), path
        assert "set-cookie" not in answer.headers, path
