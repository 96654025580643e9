"""The JSON API fuzzed from its own OpenAPI document (schemathesis): whatever a client sends
that the document allows or nearly allows, no route answers 5xx, on a real server."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.fixtures.app import LOGIN, PASSWORD
from tests.fixtures.live import LiveServer, ServerFactory
from tests.live.helpers import running_campaign

AUTH = {"Authorization": "Basic " + base64.b64encode(f"{LOGIN}:{PASSWORD}".encode()).decode()}


@pytest.fixture
def live_api(make_server: ServerFactory) -> Iterator[LiveServer]:
    server = make_server()
    running_campaign(server, "fuzzed")  # something for the paths to find
    yield server


def test_no_api_route_answers_a_server_error(live_api: LiveServer) -> None:
    schema = schemathesis.openapi.from_url(f"{live_api.url}/api/openapi.json", headers=AUTH)
    tried = []
    for found in schema.get_all_operations():
        operation = found.ok()
        if operation.path == "/api/import":  # LightMill's import takes XML: its own tests
            continue
        tried.append(f"{operation.method.upper()} {operation.path}")

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def no_server_error(case: schemathesis.Case) -> None:
            case.call_and_validate(
                base_url=live_api.url, headers=AUTH, checks=[not_a_server_error], timeout=10
            )

        no_server_error()
    assert "PATCH /api/campaigns/{namespace}" in tried and len(tried) > 10
