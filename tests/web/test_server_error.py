"""A bug's 500 (`mastok.web.server_error`): LightMill's shape with the CORS header on its client
routes, so an experiment's page can read it; JSON elsewhere under /api/, a page elsewhere. The
bug is a service method of the test's own that raises."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from mastok.app import create_app
from mastok.campaigns.service import CampaignService
from mastok.lightmill.service import LightMill
from mastok.web.server_error import MESSAGE
from tests.fixtures.app import basic_auth, settings_for


async def a_bug(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError("a bug nobody caught")


@pytest.fixture
def client(sqlite_database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setattr(LightMill, "experiments", a_bug)
    monkeypatch.setattr(CampaignService, "all", a_bug)
    app = create_app(settings_for(sqlite_database_url, otree_api_url=""))
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers.update(basic_auth())
        yield client


def test_a_lightmill_client_reads_a_bugs_500_from_another_origin(client: TestClient) -> None:
    answer = client.get("/api/experiments", headers={"Origin": "https://experiment.example"})
    assert answer.status_code == 500
    assert answer.headers["access-control-allow-origin"] == "*"
    assert answer.json() == {"message": MESSAGE, "type": "InternalServerError"}


def test_a_bug_under_the_api_is_json_and_elsewhere_a_page(client: TestClient) -> None:
    api = client.get("/api/campaigns")
    assert (api.status_code, api.json()) == (500, {"error": MESSAGE})
    assert "access-control-allow-origin" not in api.headers
    page = client.get("/")
    assert page.status_code == 500
    assert page.headers["content-type"].startswith("text/html")
    assert "a bug: its log has the details" in page.text
