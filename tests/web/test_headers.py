"""Security headers (mastok/web/headers.py) on every kind of answer: a page, the API, a static
file, LightMill's client API, errors (the admin's 401 and a 404)."""

from __future__ import annotations

import pytest

from mastok.web.headers import SECURITY_HEADERS, with_security_headers
from tests.fixtures.app import ClientFactory


@pytest.mark.parametrize(
    ("path", "authenticated", "status"),
    [
        ("/campaigns", True, 200),
        ("/api/campaigns", True, 200),
        ("/front/css/mastok.css", False, 200),
        ("/api/experiments", False, 200),
        ("/campaigns", False, 401),
        ("/no/such/page", True, 404),
    ],
)
def test_every_answer_carries_the_security_headers(
    make_client: ClientFactory, path: str, authenticated: bool, status: int
) -> None:
    client = make_client(authenticated=authenticated)

    response = client.get(path)

    assert response.status_code == status
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_a_header_the_answer_sets_itself_is_kept() -> None:
    own = [(b"content-type", b"text/html"), (b"X-Frame-Options", b"SAMEORIGIN")]

    headers = with_security_headers(own)

    assert headers[:2] == own
    assert [name.lower() for name, _ in headers].count(b"x-frame-options") == 1
    assert {name for name, _ in headers[2:]} == {
        b"content-security-policy",
        b"x-content-type-options",
        b"referrer-policy",
    }
