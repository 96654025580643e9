"""URLs holding a NUL (`%00`) are answered 400 in the route's shape before any route runs:
PostgreSQL cannot search text for one, and a stranger's `/join/a%00b` was a 500."""

from __future__ import annotations

import pytest

from mastok.web.nul_urls import MESSAGE
from tests.fixtures.app import ClientFactory

PAGES = [
    "/join/a%00b",
    "/campaigns/supervise/a%00b",
    "/campaigns/edit/a%00b",
    "/experiments/a%00b",
    "/campaigns/participants/a%00b",
    "/join/study?PROLIFIC_PID=a%00b",
]
API = ["/api/campaigns/a%00b", "/api/campaigns/a%00b/live", "/api/campaigns?x=%00"]


@pytest.mark.parametrize("path", PAGES + API)
def test_a_nul_in_the_url_is_a_bad_request(make_client: ClientFactory, path: str) -> None:
    answer = make_client().get(path)

    assert answer.status_code == 400
    if path.startswith("/api/"):
        assert answer.json() == {"error": MESSAGE}
    else:
        assert answer.text == MESSAGE


def test_lightmill_answers_a_nul_itself(make_client: ClientFactory) -> None:
    """Its clients read LightMill's shape, with CORS (`test_lightmill_api`'s unknown elements)."""
    answer = make_client(authenticated=False).get("/api/experiment/a%00b")

    assert answer.status_code == 400
    assert answer.json()["type"] == "UnknownElement"
